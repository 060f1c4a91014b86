"""Error level analysis (ELA) on Pillow's JPEG codec.

ELA re-encodes an image as JPEG at a fixed quality and takes the absolute
difference to the original. Regions that already went through JPEG at that
quality change little; pasted, resampled or never-compressed regions change
more. The exact and display forms are bit-identical to the usual Pillow code
(``im.save(buf, "JPEG", quality=q)`` + ``ImageChops.difference`` and, for the
display form, ``ImageEnhance.Brightness(diff).enhance(255 / max)``); the
accurate integer DCT is what Pillow uses, and the maps depend on it.

Speed: the JPEG encode + decode is the floor. The round trip runs on one of
the backends in ``edge_app.features.ela_codecs``: libjpeg-turbo's TurboJPEG API when the
system has it (3-byte RGB in and out, coder state kept between frames, large
images coded in strips on several cores, then a numpy max - min difference) and
its maps are checked identical to Pillow's, else Pillow's codec (whose 4-byte
pixels cost two layout conversions, about 0.5 ms at 640x480 and 4.5 ms at
1920x1080 on a 2.8 GHz Xeon core). Neither does Python per-pixel work.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from edge_app.features.ela_codecs import open_best

__all__ = [
    "ELA_QUALITY",
    "ELA_CLIP_LEVEL",
    "ELA_SCALE",
    "ElaWorkspace",
    "error_level",
    "error_level_display",
    "error_level_normalized",
]

#: JPEG quality used for ELA throughout the project (device and convert/).
ELA_QUALITY = 90

#: Model input scale: ``min(level * ELA_SCALE, 1)``. A fixed scale, not the
#: per-image maximum, so a level means the same to a model in every image.
#: On NUAA frames and CASIA photos at q=90 the 99.9th percentile of the
#: error level is 6-18 and the maximum rarely above 36, so clipping at 32
#: keeps the strong (suspicious) errors apart and each integer level
#: distinct after int8 quantisation of [0, 1].
ELA_CLIP_LEVEL = 32
ELA_SCALE = 1.0 / ELA_CLIP_LEVEL  # plain float (JSON-friendly); exact in float32

def _check_rgb(rgb: object) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"ELA input must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(
            f"ELA input must be uint8 RGB (H, W, 3), got dtype {rgb.dtype} "
            f"(convert to uint8 0..255 first)"
        )
    if rgb.ndim == 2:
        raise ValueError(
            f"ELA input must be RGB (H, W, 3), got a 2-D grayscale array of shape {rgb.shape}"
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        extra = " (RGBA? drop the alpha channel)" if rgb.ndim == 3 and rgb.shape[2] == 4 else ""
        raise ValueError(f"ELA input must have shape (H, W, 3), got shape {rgb.shape}{extra}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"ELA input is empty: shape {rgb.shape}")
    # Pillow reads the pixels through the buffer protocol, which needs C order.
    return np.ascontiguousarray(rgb)


def _check_quality(quality: object) -> int:
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise ValueError(f"JPEG quality must be an int in 1..100, got {quality!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    return int(quality)


class ElaWorkspace:
    """The JPEG codec and buffers reused from frame to frame (one thread only).

    The functions below use one per thread when none is given; pass your own to keep
    buffers for a second image size without reallocating. ``codec`` names a backend in
    ``edge_app.features.ela_codecs`` ("auto": the fastest that reproduces Pillow's maps here).
    ``threads``: cores one large image may be coded on (None: the backend's default, up
    to 4; 1 keeps all work in the calling thread). Crops always stay in the caller's thread.
    """

    def __init__(self, codec: str = "auto", threads: int | None = None) -> None:
        self.codec = open_best(codec, threads)

    def _levels(self, rgb: np.ndarray, quality: int) -> np.ndarray:
        """Unchecked core of :func:`error_level` (rgb C-contiguous uint8 (H, W, 3))."""
        return self.codec.levels(rgb, quality)


_local = threading.local()


def _workspace(workspace: ElaWorkspace | None) -> ElaWorkspace:
    if workspace is not None:
        return workspace
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = ElaWorkspace()
    return ws


def _check_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = f"{out.shape} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a {np.dtype(dtype)} array of shape {shape}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out


def error_level(
    rgb: np.ndarray,
    quality: int = ELA_QUALITY,
    *,
    out: np.ndarray | None = None,
    workspace: ElaWorkspace | None = None,
) -> np.ndarray:
    """Exact error level |rgb - jpeg(rgb, quality)|, uint8 (H, W, 3), unscaled.

    Without ``out`` the result is a read-only array (like ``np.asarray`` of a
    Pillow image); with ``out`` it is copied there and ``out`` is returned.
    """
    rgb = _check_rgb(rgb)
    quality = _check_quality(quality)
    levels = _workspace(workspace)._levels(rgb, quality)
    if out is None:
        return levels
    out = _check_out(out, levels.shape, np.uint8)
    np.copyto(out, levels)
    return out


def error_level_display(
    rgb: np.ndarray,
    quality: int = ELA_QUALITY,
    *,
    out: np.ndarray | None = None,
    workspace: ElaWorkspace | None = None,
) -> np.ndarray:
    """ELA as forensic tools show it: brightest error scaled to (about) 255.

    Bit-identical to ``ImageEnhance.Brightness(diff).enhance(255.0 / max)``,
    which blends with black in C: ``(uint8)(float32(255.0 / max) * level)``,
    truncated in float32. So the brightest level maps to 254 instead of 255
    for 32 of the 255 possible maxima (7, 14, 28, ...) where float32 rounds
    the product just below 255. An all-zero map stays all zero.
    """
    rgb = _check_rgb(rgb)
    quality = _check_quality(quality)
    ws = _workspace(workspace)
    levels = ws._levels(rgb, quality)
    if out is None and levels.flags.owndata:
        # a map the codec made for this call alone: scale it in place, one
        # full-size allocation less (6 MB at 1080p)
        levels.flags.writeable = True
        out = levels
    out = _check_out(out, levels.shape, np.uint8)
    peak = int(levels.max())
    if peak == 0:
        out.fill(0)
        return out
    alpha = np.float32(255.0 / peak)  # Pillow passes the factor to C as float
    # One ufunc pass: numpy multiplies in float32 through its small internal buffers and
    # truncates toward zero into uint8 like the C cast (alpha * peak stays below 256, so
    # nothing wraps); 15% faster than multiply-then-copy through our own float32 buffer.
    np.multiply(levels, alpha, out=out, dtype=np.float32, casting="unsafe")
    return out


def error_level_normalized(
    rgb: np.ndarray,
    quality: int = ELA_QUALITY,
    *,
    out: np.ndarray | None = None,
    workspace: ElaWorkspace | None = None,
) -> np.ndarray:
    """ELA for models: float32 (H, W, 3) ``min(level * ELA_SCALE, 1)`` in [0, 1]."""
    rgb = _check_rgb(rgb)
    quality = _check_quality(quality)
    levels = _workspace(workspace)._levels(rgb, quality)
    out = _check_out(out, levels.shape, np.float32)
    np.multiply(levels, ELA_SCALE, out=out, dtype=np.float32)
    np.minimum(out, np.float32(1.0), out=out)
    return out
