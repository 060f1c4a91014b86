"""Error level analysis (ELA) on Pillow's JPEG codec.

ELA re-encodes an image as JPEG at a fixed quality and takes the absolute
difference to the original. Regions that already went through JPEG at that
quality change little; pasted, resampled or never-compressed regions change
more. The exact and display forms are bit-identical to the usual Pillow code
(``im.save(buf, "JPEG", quality=q)`` + ``ImageChops.difference`` and, for the
display form, ``ImageEnhance.Brightness(diff).enhance(255 / max)``); the
accurate integer DCT is what Pillow uses, and the maps depend on it.

Speed: the JPEG encode + decode is the floor. Beyond it we do three C passes
inside Pillow (RGB -> Pillow's 4-byte pixels, the difference, 4 -> 3 bytes
back to numpy) and no Python per-pixel work; we skip Image.open's header
parsing by running Pillow's JPEG decoder directly. Pillow's RGB images keep 4
bytes per pixel, so both layout conversions are unavoidable when input and
output are numpy arrays (about 0.5 ms at 640x480, 4.5 ms at 1920x1080 on a
2.8 GHz Xeon core); numpy versions of them (strided copies) and a numpy
max/min/subtract difference were measured slower than Pillow's loops.
"""

from __future__ import annotations

import io
import numbers
import threading

import numpy as np
from PIL import Image

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

# Display scaling goes through a float32 buffer of this many values, which
# stays in L2 cache; a whole-frame float32 temporary was ~25% slower.
_BLOCK = 1 << 16


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
    """Pillow images and buffers reused from frame to frame (one thread only).

    The functions below use one per thread when none is given; pass your own
    to keep buffers for a second image size without reallocating.
    """

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None
        self._src: Image.Image | None = None
        self._dec = None  # Pillow core image the JPEG is decoded into
        self._jpeg = io.BytesIO()
        self._f32 = np.empty(_BLOCK, np.float32)

    def _prepare(self, size: tuple[int, int]) -> None:
        if size != self._size:
            self._src = Image.new("RGB", size)
            self._dec = Image.core.new("RGB", size)
            self._size = size

    def _levels(self, rgb: np.ndarray, quality: int) -> np.ndarray:
        """Unchecked core of :func:`error_level` (rgb C-contiguous uint8 (H, W, 3))."""
        h, w = rgb.shape[:2]
        size = (w, h)
        self._prepare(size)
        src = self._src
        # Unpack into the persistent image: no new allocation per frame.
        src.frombytes(rgb)

        jpeg = self._jpeg
        # Overwrite from the start without truncating: truncation would shrink
        # the BytesIO buffer and make the next frame reallocate it.
        jpeg.seek(0)
        src.save(jpeg, format="JPEG", quality=quality)
        nbytes = jpeg.tell()

        with jpeg.getbuffer() as view:
            # A bytes copy (8 us at 1080p) that decoders of every Pillow
            # version accept; the view is released before the next write.
            data = view[:nbytes].tobytes()

        # Decode straight into the persistent image with Pillow's own JPEG
        # decoder (same C code and arguments Image.open(...).load() uses) and
        # skip Image.open's header parsing and chunked reads.
        decoder = Image._getdecoder("RGB", "jpeg", ("RGB", ""))
        try:
            decoder.setimage(self._dec, (0, 0, w, h))
            consumed, err = decoder.decode(data)
        finally:
            decoder.cleanup()
        if err < 0 or consumed >= 0:
            raise OSError(f"JPEG round trip failed: Pillow decoder status {consumed}, error {err}")

        # |a - b| per byte in one C pass (ImageChops.difference), then pack
        # Pillow's 4-byte pixels back to RGB in one raw-encoder call sized to
        # the whole image, which avoids tobytes()' 64 KiB chunks + join copy.
        diff = src.im.chop_difference(self._dec)
        encoder = Image._getencoder("RGB", "raw", "RGB")
        encoder.setimage(diff, (0, 0, w, h))
        chunks = []
        while True:
            _, status, data = encoder.encode(w * h * 3)
            chunks.append(data)
            if status or not data:
                break
        if status <= 0:
            raise OSError(f"packing the ELA map failed: Pillow encoder error {status}")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)


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
    out = _check_out(out, levels.shape, np.uint8)
    peak = int(levels.max())
    if peak == 0:
        out.fill(0)
        return out
    alpha = np.float32(255.0 / peak)  # Pillow passes the factor to C as float
    src = levels.reshape(-1)
    dst = out.reshape(-1)
    buf = ws._f32
    for start in range(0, src.size, _BLOCK):
        block = src[start : start + _BLOCK]
        tmp = buf[: block.size]
        np.multiply(block, alpha, out=tmp, dtype=np.float32)
        # float -> uint8 truncates toward zero like the C cast; alpha * peak
        # stays below 256, so nothing wraps.
        np.copyto(dst[start : start + _BLOCK], tmp, casting="unsafe")
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
