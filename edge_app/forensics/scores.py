"""From patch scores and raw statistics to image scores: aggregation over patches and the
calibration that puts every detector's threshold at 0.5.
"""

from __future__ import annotations

import numpy as np


def aggregate(patch_scores: np.ndarray, how: str) -> float:
    """Image score from patch scores: ``max``, ``topK`` (mean of the K highest),
    ``qtopP`` (mean of the highest P percent, at least one patch), ``pP`` (the P-th
    percentile) or ``ctopK`` (contrast: sigmoid of the mean of the K highest patch logits
    minus the image's median patch logit).

    ``qtopP`` and ``pP`` do not grow with the image's size: an authentic photo's patch
    scores are one distribution, and the top 5% of it is the same for a crop and the
    whole, while the top 3 patches of 700 reach further up that distribution than the top 3
    of 77 (the cause of v0.4.0's false alarms on large photos)."""
    s = np.sort(np.asarray(patch_scores, np.float64))[::-1]
    if how.startswith("qtop"):
        k = max(1, int(round(float(how[4:]) / 100 * len(s))))
        return float(s[:k].mean())
    if how.startswith("p") and how[1:].replace(".", "").isdigit():
        return float(np.percentile(s, float(how[1:])))
    if how == "max":
        return float(s[0])
    if how.startswith("ctop"):
        k = max(1, min(int(how[4:]), len(s)))
        p = np.clip(s, 1e-4, 1 - 1e-4)
        logit = np.log(p / (1 - p))
        return float(sigmoid(logit[:k].mean() - np.median(logit)))
    if how.startswith("top"):
        k = max(1, min(int(how[3:]), len(s)))
        return float(s[:k].mean())
    raise ValueError(f"unknown aggregation {how!r}")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def calibrated(raw: float, threshold: float) -> float:
    """A detector's raw statistic as a score that is 0.5 exactly at its calibrated threshold:
    for probabilities (CNN) the logit shifted by the threshold's, for areas a / (a + t)."""
    if raw <= 0:
        return 0.0
    return float(raw / (raw + threshold))


def calibrated_prob(p, threshold: float):
    """Probabilities shifted so that ``threshold`` maps to 0.5 (logit difference)."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return sigmoid(np.log(p / (1 - p)) - np.log(t / (1 - t)))
