"""Model inputs built from a face crop: named feature planes stacked as channels.

A model's metadata lists its features in channel order (``input.features``); the device
builds exactly that stack here, and ``convert/`` trains on the output of this same code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edge_app.features.ela import error_level_normalized
from edge_app.features.wavelet import noise_residual_normalized


def _rgb(crop: np.ndarray) -> np.ndarray:
    return crop.astype(np.float32) * (1.0 / 255.0)


def _ela(crop: np.ndarray) -> np.ndarray:
    # ELA of the resized model crop (quality ELA_QUALITY, fixed scale, [0, 1]): taken after
    # crop_face, so it does not depend on whether the camera frame was ever a JPEG
    # (picamera2 frames are not, training frames mostly are) nor on the face's size.
    return error_level_normalized(crop)


def _wavelet(crop: np.ndarray) -> np.ndarray:
    # db4 BayesShrink noise residual of the model crop, per RGB channel, fixed scale, [-1, 1]
    return noise_residual_normalized(crop)


# name -> (channels, function of the uint8 RGB crop returning float32 (H, W, channels))
FEATURES: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "rgb": (3, _rgb),
    "ela": (3, _ela),
    "wavelet": (3, _wavelet),
}


def feature_channels(names: list[str]) -> int:
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; known: {sorted(FEATURES)}")
    return sum(FEATURES[n][0] for n in names)


def model_input(crop: np.ndarray, names: list[str]) -> np.ndarray:
    """(1, H, W, C) float32 for a (H, W, 3) uint8 crop, channels in the order of ``names``."""
    planes = [FEATURES[n][1](crop) for n in names]
    stacked = planes[0] if len(planes) == 1 else np.concatenate(planes, axis=-1)
    return stacked[None]
