"""Model inputs built from a face crop: named feature planes stacked as channels.

A model's metadata lists its features in channel order (``input.features``); the device
builds exactly that stack here, and ``convert/`` trains on the output of this same code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _rgb(crop: np.ndarray) -> np.ndarray:
    return crop.astype(np.float32) * (1.0 / 255.0)


# name -> (channels, function of the uint8 RGB crop returning float32 (H, W, channels))
FEATURES: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "rgb": (3, _rgb),
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
