"""Figures for the forensics reports: image-level figures at a threshold, pixel-level figures
(rank AUC, bootstrap intervals and Wilson proportions from ``convert.forensics_common``).

Until v0.4.0 this module also calibrated the CNN's scoring on CASIA v1 and wrote the report
(now ``models/reports/forensics_v0.4.0.md``; the code is in the git history). Since v0.5.0
``convert.calibrate_forensics`` does both, on authentic photos of every kind.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math

import numpy as np

from convert.forensics_common import BOOTSTRAP, BOOTSTRAP_SEED as SEED, bootstrap_auc, prop, rank_auc


# --------------------------------------------------------------------------- statistics


def _f1(tp, fp, fn) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def image_figures(scores: np.ndarray, labels: np.ndarray, threshold: float, seed: int = SEED) -> dict:
    """Accuracy, precision, recall, specificity (Wilson 95%), F1 (bootstrap 95%), ROC AUC
    (bootstrap 95%) at ``threshold``; manipulated = positive."""
    pred = scores >= threshold
    pos, neg = labels == 1, labels == 0
    tp, fp = int((pred & pos).sum()), int((pred & neg).sum())
    fn, tn = int((~pred & pos).sum()), int((~pred & neg).sum())
    rng = np.random.default_rng(seed)
    f1s = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(len(scores), size=len(scores))
        p, y = pred[i], labels[i]
        f1s.append(_f1(int((p & (y == 1)).sum()), int((p & (y == 0)).sum()), int((~p & (y == 1)).sum())))
    return {
        "n": int(len(scores)), "manipulated": int(pos.sum()), "authentic": int(neg.sum()),
        "threshold": round(float(threshold), 4),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "accuracy": prop(tp + tn, len(scores)),
        "precision": prop(tp, tp + fp),
        "recall": prop(tp, tp + fn),
        "specificity": prop(tn, tn + fp),
        "f1": {"value": round(_f1(tp, fp, fn), 4), "ci95": [round(float(np.percentile(f1s, 2.5)), 4),
                                                           round(float(np.percentile(f1s, 97.5)), 4)]},
        "roc_auc": bootstrap_auc(scores[neg], scores[pos], seed=seed),
    }


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    cands = np.unique(scores)
    best = (-1.0, 0.5)
    for t in cands:
        tpr = float((scores[labels == 1] >= t).mean())
        fpr = float((scores[labels == 0] >= t).mean())
        if tpr - fpr > best[0]:
            best = (tpr - fpr, float(t))
    t = best[1]
    # midway to the next lower score: the same decisions on val, a margin for new data
    lower = cands[cands < t]
    if len(lower):
        t = float((t + lower.max()) / 2)
    return t, {"criterion": "maximum Youden J (TPR - FPR) on CASIA v1 validation images", "J": round(best[0], 4)}


def fpr_threshold(authentic_scores: np.ndarray, fpr: float) -> float:
    """A threshold that flags at most ``fpr`` of ``authentic_scores`` (midway between scores)."""
    s = np.sort(np.asarray(authentic_scores, np.float64))[::-1]
    k = int(math.floor(fpr * len(s)))
    if k <= 0:
        return float(min(1.0, s[0] + 1e-4))
    if k >= len(s):
        return float(s[-1])
    return float((s[k] + s[k - 1]) / 2)


def pixel_counts(heat: np.ndarray, mask: np.ndarray, t: float) -> tuple[int, int, int]:
    pred = heat >= t
    return int((pred & mask).sum()), int((pred & ~mask).sum()), int((~pred & mask).sum())


def pixel_figures(heats: list[np.ndarray], masks: list[np.ndarray], t: float, seed: int = SEED) -> dict:
    """Pixel F1 and IoU at ``t`` (mean over images and pooled), pixel AUC (pooled, every
    2nd pixel in each direction), and the F1 of marking the whole image for comparison."""
    f1s, ious, whole = [], [], []
    TP = FP = FN = 0
    for h, m in zip(heats, masks):
        tp, fp, fn = pixel_counts(h, m, t)
        TP, FP, FN = TP + tp, FP + fp, FN + fn
        f1s.append(_f1(tp, fp, fn))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
        p = m.mean()
        whole.append(2 * p / (1 + p))
    neg = np.concatenate([h[::2, ::2][~m[::2, ::2]] for h, m in zip(heats, masks)])
    pos = np.concatenate([h[::2, ::2][m[::2, ::2]] for h, m in zip(heats, masks)])
    rng = np.random.default_rng(seed)
    boot = [float(np.mean(np.asarray(f1s)[rng.integers(len(f1s), size=len(f1s))])) for _ in range(BOOTSTRAP)]
    return {
        "images": len(heats),
        "pixel_threshold": round(float(t), 4),
        "f1_mean_per_image": {"value": round(float(np.mean(f1s)), 4),
                              "ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)]},
        "iou_mean_per_image": round(float(np.mean(ious)), 4),
        "f1_pooled": round(_f1(TP, FP, FN), 4),
        "iou_pooled": round(TP / (TP + FP + FN), 4) if TP + FP + FN else 0.0,
        "pixel_auc": round(rank_auc(neg, pos), 4),
        "baseline_f1_whole_image_marked": round(float(np.mean(whole)), 4),
    }
