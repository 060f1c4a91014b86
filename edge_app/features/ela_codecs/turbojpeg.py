"""ELA round trip on libjpeg-turbo's TurboJPEG C API, called through ctypes.

Why not a Python binding such as PyTurboJPEG: it creates and destroys a compressor and a
decompressor and allocates the JPEG buffer on every call; measured against it side by side,
keeping them makes the round trip 17% faster for an 80x80 face crop, 10% for 128x128 and 8%
at 640x480 (min times). PyTurboJPEG 2 also dropped libjpeg-turbo 2, which the Pi ships. Here
each engine keeps its handles and buffers for the life of the workspace; the calls are the
TurboJPEG API that libjpeg-turbo 2.0 to 3.x export (``tjCompress2``, ``tjDecompress2``,
``tjGetErrorStr2``), so the ``libturbojpeg`` Debian and Raspberry Pi OS bookworm ship
(``libturbojpeg0``, libjpeg-turbo 2.1) works.

Flags match Pillow's JPEG settings: accurate integer DCT both ways (``TJFLAG_ACCURATEDCT``;
TurboJPEG otherwise picks the fast DCT, whose maps differ by up to ~12 levels), 4:2:0, fancy
upsampling (the default). 3-byte RGB goes in and out, sparing the two layout conversions of
Pillow's 4-byte pixels; the difference is numpy max - min in cache-sized chunks.

Large images are cut into horizontal strips coded on several cores at once; ctypes releases
the GIL during each call. The maps stay exact because JPEG codes 16-row bands (one MCU row at
4:2:0) independently except for the decoder's fancy upsampling, which blends each chroma row
with its neighbours above and below. So each strip starts on a 16-row boundary and carries one
extra MCU row of context on each inner side; those rows are coded and dropped. The self-check
in ``edge_app.features.ela_codecs`` compares split maps with Pillow's before the backend is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import weakref
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from edge_app.features.ela_codecs import CodecUnavailable

NAME = "turbojpeg"

# turbojpeg.h
_TJPF_RGB = 0
_TJSAMP_420 = 2
_TJFLAG_NOREALLOC = 1024
_TJFLAG_ACCURATEDCT = 4096

_MCU_ROWS = 16  # 4:2:0: one MCU row is 16 pixel rows
# A strip of fewer pixels is not worth a thread handoff plus 32 rows of context. Measured
# on this project's 2-core VM (1 strip vs 2, min time): 320x240 0.87x (slower), 400x300
# 0.99x, 480x360 1.12x, 640x480 1.28x; so about 80k pixels per strip, 64 rows at least.
MIN_STRIP_PIXELS = 80_000
MIN_STRIP_ROWS = 64

# The difference runs in chunks this size so its three passes stay in L2 cache:
# measured 2.1 ms instead of 3.0 ms at 1920x1080 on this project's x86 machine.
_CHUNK = 1 << 16

_LIBRARY_NAMES = ("libturbojpeg.so.0", "libturbojpeg.so", "libturbojpeg.dylib", "turbojpeg.dll")


def _load_library() -> ctypes.CDLL:
    names = [n for n in (os.environ.get("EDGE_APP_TURBOJPEG"), ctypes.util.find_library("turbojpeg")) if n]
    errors = []
    for name in names + list(_LIBRARY_NAMES):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        raise CodecUnavailable(f"libturbojpeg could not be loaded ({errors[-1]})")
    c_void_p, c_int, c_ulong = ctypes.c_void_p, ctypes.c_int, ctypes.c_ulong
    try:
        lib.tjInitCompress.restype = c_void_p
        lib.tjInitCompress.argtypes = []
        lib.tjInitDecompress.restype = c_void_p
        lib.tjInitDecompress.argtypes = []
        lib.tjDestroy.restype = c_int
        lib.tjDestroy.argtypes = [c_void_p]
        lib.tjBufSize.restype = c_ulong
        lib.tjBufSize.argtypes = [c_int, c_int, c_int]
        lib.tjCompress2.restype = c_int
        lib.tjCompress2.argtypes = [c_void_p, c_void_p, c_int, c_int, c_int, c_int,
                                    ctypes.POINTER(c_void_p), ctypes.POINTER(c_ulong), c_int, c_int, c_int]
        lib.tjDecompress2.restype = c_int
        lib.tjDecompress2.argtypes = [c_void_p, c_void_p, c_ulong, c_void_p, c_int, c_int, c_int, c_int, c_int]
        lib.tjGetErrorStr2.restype = ctypes.c_char_p
        lib.tjGetErrorStr2.argtypes = [c_void_p]
    except AttributeError as exc:  # older than libjpeg-turbo 2.0
        raise CodecUnavailable(f"libturbojpeg lacks the TurboJPEG 2 API ({exc})") from None
    return lib


class _Engine:
    """One compressor, one decompressor and their buffers; used by one thread at a time."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._c = lib.tjInitCompress()
        self._d = lib.tjInitDecompress()
        if not self._c or not self._d:
            raise CodecUnavailable("libturbojpeg could not create a compressor/decompressor")
        weakref.finalize(self, _destroy, lib, self._c, self._d)
        self._shape: tuple[int, ...] | None = None
        self._jpeg = np.empty(0, np.uint8)
        self._dec = np.empty(0, np.uint8)
        self._low = np.empty(_CHUNK, np.uint8)

    def _fail(self, handle: int, step: str, shape: tuple[int, ...]) -> None:
        why = self._lib.tjGetErrorStr2(handle) or b"unknown error"
        raise OSError(f"JPEG {step} of a {shape[1]}x{shape[0]} image failed: {why.decode(errors='replace')}")

    def round_trip(self, rgb: np.ndarray, quality: int) -> np.ndarray:
        """decode(encode(rgb)) for C-contiguous uint8 (h, w, 3); a buffer reused next call."""
        h, w = rgb.shape[:2]
        if rgb.shape != self._shape:
            # the worst case for any content, so NOREALLOC can never overflow
            self._jpeg = np.empty(self._lib.tjBufSize(w, h, _TJSAMP_420), np.uint8)
            self._dec = np.empty_like(rgb)
            self._shape = rgb.shape
        buf = ctypes.c_void_p(self._jpeg.ctypes.data)
        size = ctypes.c_ulong(self._jpeg.size)
        if self._lib.tjCompress2(self._c, rgb.ctypes.data, w, 0, h, _TJPF_RGB, ctypes.byref(buf),
                                 ctypes.byref(size), _TJSAMP_420, quality,
                                 _TJFLAG_ACCURATEDCT | _TJFLAG_NOREALLOC) != 0:
            self._fail(self._c, "encode", rgb.shape)
        if self._lib.tjDecompress2(self._d, buf, size, self._dec.ctypes.data, w, 0, h, _TJPF_RGB,
                                   _TJFLAG_ACCURATEDCT) != 0:
            self._fail(self._d, "decode", rgb.shape)
        return self._dec

    def absdiff(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out = |a - b| for uint8 arrays of one shape, without a wider type: max - min."""
        a, b, o = a.reshape(-1), b.reshape(-1), out.reshape(-1)
        for start in range(0, a.size, _CHUNK):
            end = start + _CHUNK
            x, y, hi = a[start:end], b[start:end], o[start:end]
            low = self._low[: hi.size]
            np.maximum(x, y, out=hi)
            np.minimum(x, y, out=low)
            np.subtract(hi, low, out=hi)

    def levels_into(self, rgb: np.ndarray, quality: int, strip: tuple[int, int, int, int],
                    out: np.ndarray) -> None:
        start, stop, keep_start, keep_stop = strip
        dec = self.round_trip(rgb[start:stop], quality)
        lo, hi = keep_start - start, keep_stop - start
        self.absdiff(rgb[keep_start:keep_stop], dec[lo:hi], out[keep_start:keep_stop])


def _destroy(lib: ctypes.CDLL, *handles: int) -> None:
    for handle in handles:
        lib.tjDestroy(handle)


def strip_plan(height: int, strips: int) -> list[tuple[int, int, int, int]]:
    """Cut ``height`` rows into ``strips`` parts: (start, stop, keep_start, keep_stop) each.

    Kept parts tile the image on 16-row boundaries; each coded part adds one MCU row of
    context on its inner sides (see the module docstring)."""
    mcu_rows = -(-height // _MCU_ROWS)
    strips = max(1, min(strips, mcu_rows))
    cuts = [round(i * mcu_rows / strips) * _MCU_ROWS for i in range(strips)] + [height]
    plan = []
    for i in range(strips):
        keep_start, keep_stop = cuts[i], cuts[i + 1]
        start = max(0, keep_start - _MCU_ROWS)
        stop = min(height, keep_stop + _MCU_ROWS)
        plan.append((start, stop, keep_start, keep_stop))
    return plan


class TurboJpegCodec:
    name = NAME

    def __init__(self, lib: ctypes.CDLL, threads: int = 1) -> None:
        self.threads = max(1, int(threads))
        self._engines = [_Engine(lib) for _ in range(self.threads)]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def strips_for(self, shape: tuple[int, ...]) -> int:
        h, w = shape[:2]
        return max(1, min(self.threads, h // MIN_STRIP_ROWS, h * w // MIN_STRIP_PIXELS))

    def levels(self, rgb: np.ndarray, quality: int, strips: int | None = None) -> np.ndarray:
        """Exact error level; ``strips`` overrides the split (tests, self-check)."""
        n = self.strips_for(rgb.shape) if strips is None else max(1, min(strips, len(self._engines)))
        out = np.empty_like(rgb)
        plan = strip_plan(rgb.shape[0], n) if n > 1 else []
        if len(plan) <= 1:
            engine = self._engines[0]
            engine.absdiff(rgb, engine.round_trip(rgb, quality), out)
        else:
            if self._pool is None or self._pool_pid != os.getpid():
                # a forked child (multiprocessing in convert/) inherits the pool but not its
                # threads: jobs would never run, so the child makes its own
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="ela-strip")
                self._pool_pid = os.getpid()
                weakref.finalize(self, self._pool.shutdown, wait=False)
            # the caller's thread codes the last strip instead of waiting idle
            jobs = [self._pool.submit(eng.levels_into, rgb, quality, part, out)
                    for eng, part in zip(self._engines, plan[:-1])]
            try:
                self._engines[len(plan) - 1].levels_into(rgb, quality, plan[-1], out)
            finally:
                wait(jobs)  # never return (or raise) while a strip still writes into out
            for job in jobs:
                job.result()
        out.flags.writeable = False  # like Pillow's result: a map, not a buffer to reuse
        return out


def default_threads() -> int:
    """Cores this process may use, at most 4 (a Pi's count; more strips gain little)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def open_codec(threads: int | None = None) -> TurboJpegCodec:
    return TurboJpegCodec(_load_library(), default_threads() if threads is None else threads)
