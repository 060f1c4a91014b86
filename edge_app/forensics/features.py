"""The forensics CNN's input planes: recompress at one JPEG quality, then ELA and the wavelet
noise residual (``edge_app.features``), optionally made relative to the image's own level.

Why the recompression: a data set (CASIA v1 above all) can save authentic and tampered
images at different JPEG qualities, and an ELA model then learns the quantization table
instead of the tampering; re-encoding every image at one quality (``input.recompress_quality``)
leaves the traces of its earlier history only.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from edge_app.features.ela import ELA_QUALITY, error_level_normalized
from edge_app.features.wavelet import WAVELET, WAVELET_LEVEL, noise_residual_normalized


FEATURES = ["ela_r", "ela_g", "ela_b", "wavelet_residual_luma"]
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def recompress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 after one JPEG encode + decode at ``quality`` (Pillow, 4:2:0, accurate DCT)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def features(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W, 4): ELA at quality 90 (3 channels, [0, 1]) and the wavelet noise
    residual of the luma (1 channel, [-1, 1]), both from the ``edge_app`` feature code.

    The residual of a JPEG-compressed image is small (often under 0.3 grey levels, i.e.
    under 0.02 after ``noise_residual_normalized``), below one int8 step of a [-1, 1]
    input; a signed square root, ``sign(r) * sqrt(|r|)``, spreads it over the int8 range
    while keeping sign and order (0.1 grey level -> 0.08, 1 -> 0.25, 16 -> 1).
    """
    h, w = rgb.shape[:2]
    out = np.empty((h, w, len(FEATURES)), np.float32)
    out[..., :3] = error_level_normalized(rgb, ELA_QUALITY)
    luma = rgb.astype(np.float32) @ _LUMA
    r = noise_residual_normalized(luma, WAVELET, WAVELET_LEVEL)
    out[..., 3] = np.copysign(np.sqrt(np.abs(r)), r)
    return out


def prepare(rgb: np.ndarray, recompress_quality: int) -> np.ndarray:
    """The model's feature map for an image: recompress first, then features."""
    return features(recompress(rgb, recompress_quality))


# relative (per-image) normalisation: each channel divided by the image's own robust level
# (median over its 8x8 JPEG blocks of the block-mean |value|), times these factors, floored
RELATIVE_FACTORS = np.array([8.0, 8.0, 8.0, 4.0], np.float32)
RELATIVE_FLOORS = np.array([0.004, 0.004, 0.004, 0.01], np.float32)


def image_levels(feats: np.ndarray) -> np.ndarray:
    """Per channel: the median over the image's 8x8 blocks of the block mean of |value|."""
    h, w, c = feats.shape
    hh, ww = h // 8 * 8, w // 8 * 8
    blocks = np.abs(feats[:hh, :ww].astype(np.float32)).reshape(hh // 8, 8, ww // 8, 8, c).mean(axis=(1, 3))
    return np.median(blocks.reshape(-1, c), axis=0)


def relative_features(feats: np.ndarray) -> np.ndarray:
    """Features relative to the image itself: each channel divided by ``RELATIVE_FACTORS``
    times the image's own level (``image_levels``, floored at ``RELATIVE_FLOORS``) and
    clipped to [-1, 1]. A region whose compression/noise statistics differ from the rest of
    the image stands out; a level shared by the whole image (its quantization history,
    its overall noise) is divided away."""
    scale = RELATIVE_FACTORS * np.maximum(image_levels(feats), RELATIVE_FLOORS)
    return np.clip(feats.astype(np.float32) / scale, -1.0, 1.0)
