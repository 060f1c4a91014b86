"""The patch grid the CNN scores (aligned to the 8x8 JPEG block grid), the heatmap assembled
from patch scores, and the plain per-patch ELA statistic (the ablation's baseline).
"""

from __future__ import annotations

import numpy as np

from edge_app.forensics.errors import ForensicsError
from edge_app.forensics.features import relative_features


def _axis_starts(n: int, patch: int, stride: int) -> list[int]:
    # starts on multiples of 8 keep every patch on the JPEG block grid the model saw in
    # training; the last start is the 8-aligned one nearest the far edge
    last = ((n - patch) // 8) * 8
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def patch_grid(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of overlapping patches covering the image."""
    if height < patch or width < patch:
        raise ForensicsError(f"image is {width}x{height}, smaller than one {patch}x{patch} analysis patch")
    return [(y, x) for y in _axis_starts(height, patch, stride) for x in _axis_starts(width, patch, stride)]


def assemble_heatmap(scores: np.ndarray, coords: list[tuple[int, int]], height: int, width: int,
                     patch: int) -> np.ndarray:
    """Per-pixel mean of the scores of all patches covering it, float32 (H, W)."""
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    for s, (y, x) in zip(scores, coords):
        total[y:y + patch, x:x + patch] += s
        count[y:y + patch, x:x + patch] += 1
    covered = count > 0
    heat = np.zeros_like(total)
    heat[covered] = total[covered] / count[covered]
    if not covered.all():
        # a border thinner than 8 pixels beyond the last aligned patch: nearest value
        ys = np.where(covered.any(axis=1))[0]
        xs = np.where(covered.any(axis=0))[0]
        inner = heat[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        heat = np.pad(inner, ((ys[0], height - ys[-1] - 1), (xs[0], width - xs[-1] - 1)), mode="edge")
    return heat


def ela_patch_statistic(feats: np.ndarray, coords: list[tuple[int, int]], patch: int) -> np.ndarray:
    """Per patch: the mean |relative ELA| over its pixels (3 channels), from 8x8 block means."""
    rel = relative_features(feats)
    h, w = rel.shape[:2]
    hh, ww = h // 8 * 8, w // 8 * 8
    blocks = np.abs(rel[:hh, :ww, :3]).mean(axis=2).reshape(hh // 8, 8, ww // 8, 8).mean(axis=(1, 3))
    k = patch // 8
    return np.array([blocks[y // 8:y // 8 + k, x // 8:x // 8 + k].mean() for y, x in coords], np.float32)
