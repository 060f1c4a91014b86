"""Reading still images with clear errors: the one place a file becomes an RGB array.

Decoding is strict, because a damaged image is not evidence: a decoder warning is an error
(libjpeg's "Corrupt JPEG data" through ``edge_app.jpeg_strict``, Pillow's Python warnings,
PNG chunk CRCs), only the formats in ``FORMATS`` are tried whatever the name says, and any
exception a decoder raises becomes an ``ImageLoadError`` for that one file.

Memory is bounded before anything is decoded: only regular files are read (a FIFO would
block forever, a device never end), at most ``MAX_FILE_BYTES``, and the dimensions the header
declares are checked against ``MAX_PIXELS``, so a 600-byte file declaring 6000x6000 is
refused unread.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from edge_app import jpeg_strict

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# The decoders tried, whatever the file is called (phone JPEGs with a second image open as
# JPEG and come back as format "MPO").
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
# Sized for a 512 MB Pi: Pillow holds RGB at 4 bytes a pixel and the array copy takes 3 more,
# so 12.5 MP (a 12 MP phone or Pi camera still) peaks near 90 MB above the process' own
# ~150 MB; see the report of issue 15 for the measured peaks.
MAX_PIXELS = 12_500_000
MAX_FILE_BYTES = 50_000_000
# Pillow's WebP decoder holds the frame twice more than the others (libwebp's RGBA buffer and a
# bytes copy): measured 282 MB peak for a 12.2 MP WebP where a JPEG, PNG, BMP or TIFF of the same
# size peaks at 183-186 MB (edge-app liveness, 74 MB at rest). So WebP gets half the budget.
_PIXEL_COST = {"WEBP": 2}
_SPECIAL = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket"}
# warnings.catch_warnings swaps process-wide state: two threads decoding at once (camera
# loop and MQTT check_image) must not interleave it, or a filter would leak.
_DECODE_LOCK = threading.RLock()


class ImageLoadError(ValueError):
    """The file is not a usable image; the message names it and says why."""


@dataclass
class DecodedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    width: int
    height: int
    format: str
    quantization: dict | None = None  # JPEG quantization tables, for a quality estimate


def open_image_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
    """A regular file opened for reading, within ``max_bytes``; anything else refused, said as what it is."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageLoadError(f"{path}: not readable by this user (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageLoadError(f"{path}: symbolic link loop") from None
        raise ImageLoadError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageLoadError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):
            what = _SPECIAL.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise ImageLoadError(f"{path}: is {what}, not a regular file; refused")
        if st.st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
        if st.st_size > max_bytes:
            raise ImageLoadError(f"{path}: {st.st_size} bytes, over the {max_bytes}-byte limit; refused unread")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except ImageLoadError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise ImageLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def probe(data: bytes | BinaryIO, label: str) -> tuple[int, int, str]:
    """(width, height, format) from the header alone; nothing is decoded."""
    fp = _stream(data, label)
    with _DECODE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fp.seek(0)
            with Image.open(fp, formats=FORMATS) as im:
                size = im.width, im.height, im.format or "unknown"
        except Exception as exc:  # any decoder failure is a problem with this one file
            raise _load_error(label, exc) from None
        if caught:  # e.g. "Corrupt EXIF data", "Tag data larger than file"
            raise ImageLoadError(f"{label}: decoder warning: {caught[0].message}")
    return size


def decode_image(data: bytes | BinaryIO, label: str, max_pixels: int = MAX_PIXELS
                 ) -> tuple[Image.Image, str, dict | None]:
    """(decoded Pillow image in its own mode, format, JPEG quantization tables), strictly,
    within ``max_pixels``; the caller closes the image. For callers that resize before
    making an array (``edge_app.forensics.loading``): a 12 MP RGB array is 36 MB they never need."""
    fp = _stream(data, label)
    with _DECODE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = None
        try:
            w, h, fmt = probe(fp, label)
            if w < 1 or h < 1:
                raise ImageLoadError(f"{label}: image declares {w}x{h} pixels")
            limit = max_pixels // _PIXEL_COST.get(fmt, 1)
            if w * h > limit:
                raise ImageLoadError(f"{label}: image is {w}x{h} ({w * h / 1e6:.1f} MP), over the "
                                     f"{limit / 1e6:.1f} MP limit{' for ' + fmt if limit != max_pixels else ''}; "
                                     f"refused before decoding")
            if fmt in ("JPEG", "MPO"):
                fp.seek(0)
                problem = jpeg_strict.check(fp.read())
                if problem:
                    raise ImageLoadError(f"{label}: corrupt or truncated JPEG data ({problem})")
            elif fmt == "PNG":
                fp.seek(0)
                with Image.open(fp, formats=("PNG",)) as im:
                    im.verify()  # chunk CRCs: Pillow checks them only in verify()
            fp.seek(0)
            im = Image.open(fp, formats=FORMATS)
            if (im.width, im.height) != (w, h):
                raise ImageLoadError(f"{label}: changed while read")
            quantization = {k: list(v) for k, v in getattr(im, "quantization", {}).items()} or None
            im.load()  # decode now so truncation is reported here, not later
            if caught:
                raise ImageLoadError(f"{label}: decoder warning: {caught[0].message}")
        except ImageLoadError:
            if im is not None:
                im.close()
            raise
        except Exception as exc:  # Pillow raises many types for bad data; each stays this file's error
            if im is not None:
                im.close()
            raise _load_error(label, exc) from None
    return im, fmt, quantization


# Rows per strip when a decoded image becomes an array: Pillow's ``tobytes`` (behind
# ``np.asarray(im)``) gathers the whole image in chunks and joins them, two full copies at
# once (72 MB for 12 MP) beside Pillow's own 48 MB; strips of 64 rows (about 1 MB at 4000
# pixels wide) hold one copy and a strip.
_STRIP_ROWS = 64


def rgb_array(im: Image.Image, label: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) of a decoded Pillow image, converted to RGB strip by strip (every mode
    conversion Pillow does to RGB is per pixel, so the strips give the same values as
    ``np.asarray(im.convert("RGB"))``) without a second full image."""
    w, h = im.size
    # under the decode lock with warnings recorded and dropped, as when the conversion ran
    # inside ``decode_image``'s block (a conversion warning was never an error)
    with _DECODE_LOCK, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return _rgb_array(im, w, h, label)


def _rgb_array(im: Image.Image, w: int, h: int, label: str) -> np.ndarray:
    try:
        if h <= _STRIP_ROWS:
            rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
        else:
            rgb = np.empty((h, w, 3), np.uint8)
            for y in range(0, h, _STRIP_ROWS):
                strip = im.crop((0, y, w, min(h, y + _STRIP_ROWS)))
                if strip.mode != "RGB":
                    strip = strip.convert("RGB")
                rgb[y:y + strip.height] = np.asarray(strip)
    except MemoryError:
        raise ImageLoadError(f"{label}: not enough memory to decode it") from None
    except Exception as exc:  # a mode Pillow cannot convert to RGB is this file's problem
        raise _load_error(label, exc) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageLoadError(f"{label}: decoded to an unexpected array {rgb.shape} {rgb.dtype}")
    return rgb


def decode(data: bytes | BinaryIO, label: str, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode encoded image bytes (or a seekable binary file) to RGB, strictly, within ``max_pixels``."""
    im, fmt, quantization = decode_image(data, label, max_pixels)
    try:
        rgb = rgb_array(im, label)
        w, h = im.size
    finally:
        im.close()
    return DecodedImage(rgb, w, h, fmt, quantization)


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    # decoded from the open file, not from a copy of its bytes: a 12 MP BMP is 37 MB of them
    with open_image_file(path, max_bytes) as fh:
        return decode(fh, str(path), max_pixels).rgb


def _stream(data: bytes | BinaryIO, label: str) -> BinaryIO:
    if isinstance(data, (bytes, bytearray, memoryview)):
        if not len(data):
            raise ImageLoadError(f"{label}: empty (0 bytes)")
        return io.BytesIO(data)
    return data


def _load_error(label: str, exc: BaseException) -> ImageLoadError:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return ImageLoadError(f"{label}: not an image file of a supported format ({', '.join(FORMATS)})")
    if isinstance(exc, Image.DecompressionBombError):
        return ImageLoadError(f"{label}: refused as a decompression bomb ({exc})")
    if isinstance(exc, MemoryError):
        return ImageLoadError(f"{label}: not enough memory to decode it")
    return ImageLoadError(f"{label}: corrupt or truncated image data ({type(exc).__name__}: {exc})")
