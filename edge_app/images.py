"""Reading still images with clear errors: the one place a file becomes an RGB array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # beyond this a still is refused rather than exhausting a Pi's memory


class ImageLoadError(ValueError):
    """The file is not a usable image; the message names it and says why."""


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageLoadError(f"{path}: image is {im.width}x{im.height}, over the {max_pixels} pixel limit")
            im.load()  # decode now so truncation is reported here, not later
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: refused as a decompression bomb ({exc})") from None
    except OSError as exc:
        # Pillow raises OSError for truncated or corrupt image data
        raise ImageLoadError(f"{path}: corrupt or truncated image data ({exc})") from None
