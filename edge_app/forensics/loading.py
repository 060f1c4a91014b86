"""A still image from a file or bytes to the RGB array analysed, with its size guards: refused
over ``max_pixels`` before decoding, downscaled (or refused) over ``analysis_max_pixels``;
format and estimated JPEG quality kept. Decoding is ``edge_app.images``' strict decoder.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_app.forensics.errors import ForensicsError
from edge_app.forensics.jpeg_quality import estimate_jpeg_quality
from edge_app.images import ImageLoadError, decode_image, open_image_file, probe, rgb_array

MIN_SIDE = 64  # smaller images cannot hold one patch


@dataclass
class LoadedImage:
    rgb: np.ndarray
    width: int  # as stored, before any downscaling
    height: int
    format: str
    jpeg_quality: int | None = None  # estimated from the quantization tables
    standard_tables: bool | None = None
    downscaled_from: tuple[int, int] | None = None

    @property
    def lossless(self) -> bool:
        return self.format in ("PNG", "BMP", "TIFF", "PPM", "GIF")

    @property
    def source_info(self) -> dict:
        info = {"format": self.format, "jpeg_history": self.format == "JPEG"}
        if self.format == "JPEG":
            info["jpeg_quality_estimate"] = self.jpeg_quality
            info["standard_ijg_tables"] = self.standard_tables
        return info


def open_image(source: str | Path | bytes, max_pixels: int, analysis_max_pixels: int,
               oversize: str = "downscale", name: str = "") -> LoadedImage:
    """Decode a file or bytes to RGB, with the format and JPEG quality, size-checked.

    Over ``max_pixels`` the image is refused before decoding. Over
    ``analysis_max_pixels`` it is downscaled (``oversize="downscale"``) or refused.
    Every problem is a ``ForensicsError`` naming the input.
    """
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "image data")
    # the strict reader and decoder of edge_app.images: regular files only, header-checked
    # dimensions, decoder warnings as errors, every decoder exception a per-image error
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ForensicsError(f"{label}: empty (0 bytes)")
            opened = contextlib.nullcontext(io.BytesIO(bytes(source)))
        else:
            opened = open_image_file(source)
        with opened as fp:
            w, h, fmt = probe(fp, label)
            if w * h > max_pixels:
                raise ForensicsError(f"{label}: image is {w}x{h} ({w * h / 1e6:.1f} MP), over the "
                                     f"{max_pixels / 1e6:.1f} MP limit; refused")
            if w * h > analysis_max_pixels and oversize == "refuse":
                raise ForensicsError(f"{label}: image is {w}x{h} ({w * h / 1e6:.1f} MP), over the analysis "
                                     f"limit of {analysis_max_pixels / 1e6:.1f} MP (forensics.oversize = refuse)")
            im, fmt, quantization = decode_image(fp, label, max_pixels)
        # the array is made once, at the size analysed: over the analysis limit straight
        # from the decoded image (a 12 MP RGB array is 36 MB that was only ever resized)
        try:
            if w * h > analysis_max_pixels:
                f = (analysis_max_pixels / (w * h)) ** 0.5
                size = max(MIN_SIDE, int(w * f)), max(MIN_SIDE, int(h * f))
                im = _lanczos_by_passes(im, size)
            rgb = rgb_array(im, label)
        finally:
            im.close()
    except ImageLoadError as exc:
        raise ForensicsError(str(exc)) from None
    except MemoryError:
        raise ForensicsError(f"{label}: not enough memory to decode and downscale it") from None
    q = estimate_jpeg_quality(quantization) if fmt == "JPEG" else None
    loaded = LoadedImage(rgb, w, h, fmt, q[0] if q else None, q[1] if q else None)
    if w * h > analysis_max_pixels:
        loaded.downscaled_from = (w, h)
    if min(loaded.rgb.shape[:2]) < MIN_SIDE:
        raise ForensicsError(f"{label}: image is {w}x{h}; forensics needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return loaded


def _lanczos_by_passes(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im.convert("RGB").resize(size, LANCZOS)``, the same pixels with less memory at once.

    Pillow resamples in two passes, horizontal first into an 8-bit image, then vertical;
    the horizontal pass treats every row on its own. Run here as separate calls (the
    horizontal one strip by strip, then the source closed before the vertical one), the
    result is bit-identical (tests/test_forensics.py compares) while a 12 MP source, its
    4000x3000 -> 2309x3000 intermediate and the output are never all held together:
    48 + 28 + 16 MB at once became at most 48 + 28 MB (issue 15). ``im`` is consumed.
    """
    w, h = im.size
    nw, nh = size
    try:
        if im.mode != "RGB":
            # LANCZOS on RGBA/LA premultiplies alpha: convert first, as the array path did
            rgb = im.convert("RGB")
            im.close()
            im = rgb
        if nw == w or nh == h:  # one pass only: Pillow does exactly this
            return im.resize(size, Image.Resampling.LANCZOS)
        temp = Image.new("RGB", (nw, h))
        for y in range(0, h, 256):
            strip = im.crop((0, y, w, min(h, y + 256)))
            temp.paste(strip.resize((nw, strip.height), Image.Resampling.LANCZOS), (0, y))
            strip.close()
        im.close()
        out = temp.resize(size, Image.Resampling.LANCZOS)
        temp.close()
        return out
    finally:
        im.close()
