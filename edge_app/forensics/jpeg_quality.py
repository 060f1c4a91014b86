"""A JPEG's quality estimated from its luminance quantization table (the IJG scale, 1..100).
"""

from __future__ import annotations

import numpy as np


# IJG (libjpeg) standard luminance table at quality 50, natural (row-major) order as
# Pillow's ``im.quantization`` gives it.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.int64)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])  # row q-1


def estimate_jpeg_quality(quantization: dict | None) -> tuple[int, bool] | None:
    """(IJG quality 1..100 whose luminance table is nearest, exact match?) or None.

    Photoshop and cameras use their own tables; the nearest IJG quality (least mean
    absolute difference over the 64 entries) is then an estimate, flagged not exact.
    """
    if not quantization or 0 not in quantization:
        return None
    lum = np.asarray(quantization[0], np.int64).ravel()
    if lum.size != 64:
        return None
    err = np.abs(_IJG_TABLES - lum[None, :]).mean(axis=1)
    q = int(np.argmin(err))
    return q + 1, bool(err[q] == 0)
