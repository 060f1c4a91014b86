"""What the forensics scripts of ``convert/`` share: constants and statistics, in one module
that imports none of them, so their imports run one way:

    forensics_common  <-  forensics_data, evaluate_forensics, forensics_report
    forensics_data, forensics_report  <-  calibrate_forensics  <-  train_forensics

Constants: the common JPEG recompression quality and the CASIA v1 split seed. Statistics:
rank AUC with a bootstrap interval, proportions with Wilson intervals and their formats.
"""

from __future__ import annotations

import sys

import numpy as np

from convert import metrics

# One last JPEG step at the same quality for every image, high enough to keep the traces of
# earlier edits: on validation patches q95 gave AUC 0.76 after 3 epochs where q70 (below every
# CASIA source quality) gave 0.66 after 4. Whether the model then reads the source quality
# is tested directly (authentic images re-saved with tampered images' tables, in training as
# negatives and in the report as a test).
RECOMPRESS_QUALITY = 95
SPLIT_SEED = 20240601  # CASIA v1's scene-disjoint train/val/test split (forensics_data.scene_split)

BOOTSTRAP = 2000  # resamples of a bootstrap interval
BOOTSTRAP_SEED = 4321


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rank_auc(neg, pos) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney), O(n log n)."""
    neg = np.asarray(neg, np.float64).ravel()
    pos = np.asarray(pos, np.float64).ravel()
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    allv = np.concatenate([neg, pos])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    ranks = np.empty(len(allv), np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    r_pos = ranks[len(neg):].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap_auc(neg, pos, n: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> dict:
    """AUC with a 95% percentile interval from resampling each class with replacement."""
    neg, pos = np.asarray(neg), np.asarray(pos)
    rng = np.random.default_rng(seed)
    vals = [rank_auc(neg[rng.integers(len(neg), size=len(neg))], pos[rng.integers(len(pos), size=len(pos))])
            for _ in range(n)] if len(neg) and len(pos) else [float("nan")]
    return {"auc": round(rank_auc(neg, pos), 4), "ci95": [round(float(np.percentile(vals, 2.5)), 4),
            round(float(np.percentile(vals, 97.5)), 4)], "n_neg": int(len(neg)), "n_pos": int(len(pos))}


def prop(k: int, n: int) -> dict:
    """k of n as a proportion with its 95% Wilson interval."""
    lo, hi = metrics.wilson(k, n)
    return {"value": round(k / n, 4) if n else None, "k": int(k), "n": int(n), "ci95": [round(lo, 4), round(hi, 4)]}


def fmt_prop(p: dict) -> str:
    return "n/a" if p["value"] is None else f"{p['value']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] ({p['k']}/{p['n']})"


def fmt_auc(a: dict) -> str:
    return f"{a['auc']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"
