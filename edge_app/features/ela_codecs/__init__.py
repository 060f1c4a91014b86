"""JPEG round-trip backends for ELA: one small file each, one method, the same output.

Every backend gives the exact error level |rgb - decode(encode(rgb, quality))| of a
C-contiguous uint8 (H, W, 3) array, bit-identical to Pillow's JPEG codec (accurate integer
DCT, 4:2:0, fancy upsampling). ``pillow`` always works. ``turbojpeg`` (the system's
libjpeg-turbo through ctypes) reads and writes 3-byte RGB directly, which spares the two layout
conversions Pillow's 4-byte pixels need, keeps its coder state between frames and codes large
images in strips on several cores; it is used only when its library loads and a self-check on
fixed images, whole and cut into strips, gives Pillow's maps exactly, so a different
libjpeg-turbo build can never change a map.

To add a backend: a module here with ``NAME``, ``open_codec(threads: int | None) -> codec``
(raising ``CodecUnavailable`` when it cannot run; ``threads`` is how many cores it may use,
None for its default) whose codec has ``levels(rgb: np.ndarray, quality: int) -> np.ndarray``;
then list it in ``PREFERENCE``. A backend that codes large images in strips on several cores
has ``threads`` > 1 and takes ``levels(rgb, quality, strips=n)`` to force a split, so that the
self-check holds the split maps to Pillow's too.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

#: Tried in this order by ``open_best``; ``EDGE_APP_ELA_CODEC`` names one to force it.
PREFERENCE = ("turbojpeg", "pillow")
ENV = "EDGE_APP_ELA_CODEC"


class CodecUnavailable(RuntimeError):
    """The backend's library is missing or it does not reproduce Pillow's maps."""


class ElaCodec(Protocol):
    name: str

    def levels(self, rgb: np.ndarray, quality: int) -> np.ndarray:
        """Exact error level of C-contiguous uint8 (H, W, 3) ``rgb``; a new uint8 array."""


def open_codec(name: str, threads: int | None = None) -> ElaCodec:
    """A fresh codec of backend ``name`` (one per thread: codecs keep buffers), using at most
    ``threads`` cores (None: the backend's default)."""
    if name not in PREFERENCE:
        raise ValueError(f"unknown ELA codec {name!r}; known: {', '.join(PREFERENCE)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"ELA threads must be an int >= 1, got {threads!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    codec = module.open_codec(threads)
    if name != "pillow":
        _check_identical(f"{name} x{getattr(codec, 'threads', 1)}", codec)
    return codec


_verdicts: dict[str, str | None] = {}  # backend -> None (identical) or why it was refused
_lock = threading.Lock()


def _self_check_images() -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    smooth = 128 + 90 * np.sin(xx / 17) * np.cos(yy / 11)
    textured = smooth[..., None] + rng.normal(0, 12, (96, 128, 3)) + [0, 20, -20]
    return [
        np.clip(textured, 0, 255).astype(np.uint8),
        rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        rng.integers(0, 256, (7, 13, 3), dtype=np.uint8),
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
    ]


def _check_identical(name: str, codec: ElaCodec) -> None:
    """Refuse a backend whose maps differ from Pillow's on fixed images (once per process)."""
    with _lock:
        if name not in _verdicts:
            from edge_app.features.ela_codecs import pillow

            reference = pillow.open_codec()
            why = None
            threads = getattr(codec, "threads", 1)
            splits = [{}, {"strips": threads}] if threads > 1 else [{}]
            for img in _self_check_images():
                for q in (1, 50, 90, 95, 100):
                    expected = reference.levels(img, q)
                    for split in splits:
                        try:
                            same = np.array_equal(codec.levels(img, q, **split), expected)
                        except Exception as exc:  # a broken library must not take ELA down
                            why = f"{type(exc).__name__}: {exc}"
                            break
                        if not same:
                            how = f", in {threads} strips" if split else ""
                            why = f"its maps differ from Pillow's (image {img.shape}, quality {q}{how})"
                            break
                    if why:
                        break
                if why:
                    break
            _verdicts[name] = why
            if why:
                log.warning("ELA codec %s not used: %s; using Pillow's codec", name, why)
        if _verdicts[name]:
            raise CodecUnavailable(f"{name}: {_verdicts[name]}")


def open_best(preferred: str | None = None, threads: int | None = None) -> ElaCodec:
    """The first backend that works here: ``preferred``, else ``$EDGE_APP_ELA_CODEC``, else
    ``PREFERENCE`` order. A forced backend that cannot run is an error, not a fallback."""
    forced = preferred if preferred not in (None, "auto") else os.environ.get(ENV)
    if forced and forced != "auto":
        return open_codec(forced, threads)
    for name in PREFERENCE:
        try:
            return open_codec(name, threads)
        except CodecUnavailable as exc:
            log.debug("ELA codec %s unavailable: %s", name, exc)
    raise AssertionError("the pillow codec is always available")  # pragma: no cover
