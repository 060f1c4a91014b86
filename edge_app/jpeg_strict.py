"""Strict JPEG check: does libjpeg decode this file without a single warning?

Pillow's JPEG decoder drops libjpeg's warnings ("Corrupt JPEG data: premature end of data
segment", "bad Huffman code", extraneous bytes before a marker): a file with damaged scan data
decodes to an image with garbage blocks, and such images have been scored `live`. TurboJPEG
reports warnings (``TJFLAG_STOPONWARNING``), so every JPEG is decoded once through it before
Pillow decodes it for use. The check decodes at 1/8 scale: the entropy decoder, where the
warnings come from, still reads every coefficient, while the inverse DCT and the output
buffer shrink 64-fold.

The library is the one the ELA backend loads (``libturbojpeg0`` on Debian and Raspberry Pi
OS). Where it is missing, ``check`` cannot run: ``available()`` says so, the image loader
logs it once and ``edge-app doctor`` warns.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

_TJPF_RGB = 0
_TJPF_CMYK = 11
_TJCS_CMYK = 3
_TJCS_YCCK = 4
_TJFLAG_STOPONWARNING = 8192
_TJERR_WARNING = 0


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    from edge_app.features.ela_codecs import CodecUnavailable
    from edge_app.features.ela_codecs.turbojpeg import _load_library

    try:
        lib = _load_library()
        c_void_p, c_int, c_ulong, p_int = ctypes.c_void_p, ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(ctypes.c_int)
        lib.tjDecompressHeader3.restype = c_int
        lib.tjDecompressHeader3.argtypes = [c_void_p, c_void_p, c_ulong, p_int, p_int, p_int, p_int]
        lib.tjGetErrorCode.restype = c_int
        lib.tjGetErrorCode.argtypes = [c_void_p]
    except (CodecUnavailable, AttributeError) as exc:
        log.warning("strict JPEG check unavailable (%s): corrupt JPEG data is not detected; "
                    "install libturbojpeg0", exc)
        return None
    return lib


def available() -> bool:
    return _library() is not None


def check(data: bytes) -> str | None:
    """None when ``data`` decodes cleanly (or the check cannot run), else libjpeg's complaint."""
    lib = _library()
    if lib is None:
        return None
    handle = lib.tjInitDecompress()
    if not handle:
        return "libturbojpeg could not create a decompressor"
    try:
        buf = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
        w, h, subsamp, colorspace = (ctypes.c_int() for _ in range(4))
        if lib.tjDecompressHeader3(handle, buf, len(data), ctypes.byref(w), ctypes.byref(h),
                                   ctypes.byref(subsamp), ctypes.byref(colorspace)) != 0:
            return _why(lib, handle)
        cmyk = colorspace.value in (_TJCS_CMYK, _TJCS_YCCK)
        sw, sh = -(-w.value // 8), -(-h.value // 8)
        channels = 4 if cmyk else 3
        out = ctypes.create_string_buffer(sw * sh * channels + 64)
        if lib.tjDecompress2(handle, buf, len(data), out, sw, 0, sh, _TJPF_CMYK if cmyk else _TJPF_RGB,
                             _TJFLAG_STOPONWARNING) != 0:
            return _why(lib, handle)
        return None
    finally:
        lib.tjDestroy(handle)


def _why(lib: ctypes.CDLL, handle) -> str:
    text = (lib.tjGetErrorStr2(handle) or b"unknown error").decode(errors="replace")
    kind = "warning" if lib.tjGetErrorCode(handle) == _TJERR_WARNING else "error"
    return f"libjpeg {kind}: {text}"
