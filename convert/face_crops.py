"""Face crops for training, cut by the device's own detector and crop code.

Training on crops from the same detector and crop recipe the device runs keeps the
model's input distribution the one it will see. Crops are cached under ``.cache/``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from convert.datasets import REPO, Sample
from edge_app.frames.crop import crop_face
from edge_app.frames.detector import FaceDetector, load_detector

CACHE = REPO / ".cache"


def largest_face_crop(detector: FaceDetector, rgb: np.ndarray, scale: float, size: int):
    faces = detector.detect(rgb)
    if not faces:
        return None
    face = max(faces, key=lambda f: f.w * f.h)
    return crop_face(rgb, face, scale, size)


def crops_for(samples: list[Sample], scale: float, size: int, tag: str, models_dir: Path = REPO / "models"):
    """(crops uint8 [N,size,size,3], kept samples); frames where no face is found are skipped."""
    key = hashlib.sha1("|".join(str(s.path) for s in samples).encode()).hexdigest()[:10]
    cache = CACHE / f"crops_{tag}_{scale:g}_{size}_{key}.npz"
    if cache.is_file():
        data = np.load(cache)
        keep = data["keep"]
        return data["crops"], [s for s, k in zip(samples, keep) if k]
    detector = load_detector(models_dir)
    crops, keep = [], []
    for i, sample in enumerate(samples):
        rgb = np.asarray(Image.open(sample.path).convert("RGB"))
        crop = largest_face_crop(detector, rgb, scale, size)
        keep.append(crop is not None)
        if crop is not None:
            crops.append(crop)
        if (i + 1) % 500 == 0 or i + 1 == len(samples):
            print(f"  [{tag}] cropped {i + 1}/{len(samples)} frames, {len(samples[: i + 1]) - sum(keep)} without a face",
                  file=sys.stderr, flush=True)
    CACHE.mkdir(exist_ok=True)
    arr = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    np.savez(cache, crops=arr, keep=np.array(keep))
    return arr, [s for s, k in zip(samples, keep) if k]
