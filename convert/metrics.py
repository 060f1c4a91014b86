"""ISO/IEC 30107-3 error rates with confidence intervals.

Scores are P(live): a sample is accepted as live when score >= threshold.
"""

from __future__ import annotations

import math

import numpy as np


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval: a small set with zero errors is not a 0% error rate."""
    if n == 0:
        return (0.0, 1.0)
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(errors: int, n: int) -> dict:
    lo, hi = wilson(errors, n)
    return {"rate": errors / n if n else None, "errors": int(errors), "n": int(n), "ci95": [round(lo, 4), round(hi, 4)]}


def apcer(attack_scores: np.ndarray, threshold: float) -> dict:
    return rate(int(np.sum(attack_scores >= threshold)), len(attack_scores))


def bpcer(live_scores: np.ndarray, threshold: float) -> dict:
    return rate(int(np.sum(live_scores < threshold)), len(live_scores))


def threshold_for_bpcer(live_scores: np.ndarray, target: float) -> float:
    """Smallest threshold step so that at most ``target`` of live scores fall below it."""
    s = np.sort(np.asarray(live_scores, dtype=np.float64))
    k = int(math.floor(target * len(s)))
    return float(s[k]) if k < len(s) else float(s[-1])


def roc(live_scores: np.ndarray, attack_scores: np.ndarray):
    """(APCER, BPCER, thresholds) over every distinct score."""
    thresholds = np.unique(np.concatenate([live_scores, attack_scores, [np.inf]]))
    ap = np.array([(attack_scores >= t).mean() for t in thresholds])
    bp = np.array([(live_scores < t).mean() for t in thresholds])
    return ap, bp, thresholds


def eer(live_scores: np.ndarray, attack_scores: np.ndarray) -> float:
    ap, bp, _ = roc(live_scores, attack_scores)
    i = int(np.argmin(np.abs(ap - bp)))
    return float((ap[i] + bp[i]) / 2)


def auc(live_scores: np.ndarray, attack_scores: np.ndarray) -> float:
    """Probability that a random live sample scores above a random attack (ties count half)."""
    live = np.asarray(live_scores)[:, None]
    att = np.asarray(attack_scores)[None, :]
    return float(((live > att).sum() + 0.5 * (live == att).sum()) / (live.size * att.size))
