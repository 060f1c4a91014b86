"""Calibrate the shipped forensics model on validation images, evaluate it on held-out test
images, and write the report with its figures.

    python -m convert.evaluate_forensics [--models-dir models] [--reports-dir models/reports]

Validation (scene-disjoint from test and training) chooses, in this order: how patch
scores become an image score (the aggregation with the highest validation AUC), the image
threshold (maximum Youden J = TPR - FPR) and the heatmap threshold (maximum mean per-image
pixel F1 on the validation tampered images). They are written into the model's metadata.
Test images are only reported. CASIA images go through the device's own path
(``edge_app.forensics.check_image`` on the file, int8 model); the self-made and re-saved
sets use the cached features from the same code.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from convert import metrics
from convert.datasets import REPO
from edge_app.copy_move import CopyMoveParams, copy_move_score
from edge_app.keypoint_copy_move import KeypointParams, keypoint_copy_move_score
from edge_app.tflite_model import write_metadata

# copy-move pair counts that weigh as much as a CNN score of 0.5 (chosen on validation)
HALF_PAIRS = (2, 3, 5, 8, 12, 20, 30, 50, 80)
# keypoint copy-move inlier counts that weigh as much as a CNN score of 0.5 (chosen on
# validation jointly with HALF_PAIRS; inf is "no keypoint evidence", as in v0.3.0)
HALF_INLIERS = (1, 2, 3, 5, 8, 12, 20, math.inf)
AGGREGATIONS = ("max", "top2", "top3", "top5", "top8", "top12", "ctop1", "ctop3", "ctop5", "ctop12")


def aggregation_meaning(how: str) -> str:
    if how.startswith("ctop"):
        return (f"contrast ({how}): sigmoid of the mean of the {how[4:]} highest patch logits minus the image's median "
                "patch logit (0.5 = uniform image)")
    if how == "max":
        return "highest patch score"
    return f"mean of the {how[3:]} highest patch scores ({how})"
BOOTSTRAP = 2000
SEED = 4321


# --------------------------------------------------------------------------- statistics


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


def bootstrap_auc(neg, pos, n: int = BOOTSTRAP, seed: int = SEED) -> dict:
    """AUC with a 95% percentile interval from resampling each class with replacement."""
    neg, pos = np.asarray(neg), np.asarray(pos)
    rng = np.random.default_rng(seed)
    vals = [rank_auc(neg[rng.integers(len(neg), size=len(neg))], pos[rng.integers(len(pos), size=len(pos))])
            for _ in range(n)] if len(neg) and len(pos) else [float("nan")]
    return {"auc": round(rank_auc(neg, pos), 4), "ci95": [round(float(np.percentile(vals, 2.5)), 4),
            round(float(np.percentile(vals, 97.5)), 4)], "n_neg": int(len(neg)), "n_pos": int(len(pos))}


def _prop(k: int, n: int) -> dict:
    lo, hi = metrics.wilson(k, n)
    return {"value": round(k / n, 4) if n else None, "k": int(k), "n": int(n), "ci95": [round(lo, 4), round(hi, 4)]}


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
        "accuracy": _prop(tp + tn, len(scores)),
        "precision": _prop(tp, tp + fp),
        "recall": _prop(tp, tp + fn),
        "specificity": _prop(tn, tn + fp),
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


# --------------------------------------------------------------------------- scoring


class Scored:
    def __init__(self, name, label, kind, quality, subsampling, patch_scores, coords, heat, mask, extra=None,
                 copy_move=None, keypoint=None):
        self.name, self.label, self.kind = name, label, kind
        self.quality, self.subsampling = quality, subsampling
        self.patch_scores, self.coords, self.mask = patch_scores, coords, mask
        self.cnn_heat = self.heat = heat
        self.copy_move = copy_move  # edge_app.copy_move.CopyMove
        self.keypoint = keypoint  # edge_app.keypoint_copy_move.KeypointCopyMove
        self.extra = extra or {}
        self.score = None


def score_samples(analyzer, samples) -> list[Scored]:
    from edge_app.forensics import assemble_heatmap

    out = []
    for s in samples:
        feats = s.feats.astype(np.float32)
        ps, coords = analyzer.patch_scores(feats)
        heat = assemble_heatmap(ps, coords, feats.shape[0], feats.shape[1], analyzer.patch)
        out.append(Scored(s.name, s.label, s.kind, s.quality, s.subsampling, ps, coords, heat, s.mask, s.extra,
                          s.extra["copy_move"], s.extra["keypoint_copy_move"]))
    return out


def score_files(analyzer, items, split: str, timings: list | None = None) -> list[Scored]:
    """CASIA images of ``split`` through the device's own path, from the file."""
    from convert.forensics_data import jpeg_history, load_mask
    from edge_app.forensics import check_image

    out = []
    for it in (i for i in items if i.split == split):
        t0 = time.perf_counter()
        result, img, analysis = check_image(it.path, analyzer)
        if timings is not None and img is not None and img.rgb.shape[:2] in ((256, 384), (384, 256)):
            timings.append({**analysis.timing_ms, "total": (time.perf_counter() - t0) * 1e3})
        if analysis is None:
            raise RuntimeError(f"{it.path}: {result.get('error')}")
        mask = load_mask(it.mask, img.rgb.shape[:2]) if it.mask else None
        h = jpeg_history(it.path)
        out.append(Scored(it.name, it.label, it.kind, h["quality"], h["subsampling"], analysis.patch_scores,
                          analysis.coords, analysis.heatmap, mask, {"path": str(it.path)}, analysis.copy_move,
                          analysis.keypoint_copy_move))
    return out


def aggregate_all(scored: list[Scored], how: str, half_pairs: float | None = None,
                  half_inliers: float | None = None, heat: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Image scores as the device computes them: the CNN's aggregate, and with ``half_pairs``
    / ``half_inliers`` the max with the block / keypoint copy-move scores (the heatmap
    likewise, unless ``heat`` is False); None leaves that evidence out."""
    from edge_app.forensics import aggregate, with_copy_move

    for s in scored:
        s.score = aggregate(s.patch_scores, how)
        s.heat = s.cnn_heat
        if half_pairs is not None or half_inliers is not None:
            if heat:
                s.score, _, _, s.heat = with_copy_move(s.score, s.cnn_heat, s.copy_move, half_pairs,
                                                       s.keypoint, half_inliers)
            else:  # the same scores without drawing the maps, for the validation grid
                s.score = max(s.score, 0.0 if half_pairs is None else copy_move_score(s.copy_move.pairs, half_pairs),
                              0.0 if half_inliers is None else keypoint_copy_move_score(s.keypoint.inliers,
                                                                                        half_inliers))
    return np.array([s.score for s in scored]), np.array([s.label for s in scored])


def evidence_parts(scored: list[Scored], how: str, half_pairs: float) -> dict[str, np.ndarray]:
    """Each part of the image score on its own, for the ablation: the CNN, the block pair
    count, the keypoint inlier count, and the v0.3.0 scoring (CNN and blocks). Call it before
    the shipped combination: ``aggregate_all`` leaves its scores and heatmaps on ``scored``."""
    cnn, _ = aggregate_all(scored, how)
    v3, _ = aggregate_all(scored, how, half_pairs)
    return {"cnn_alone": cnn, "copy_move_alone": np.array([s.copy_move.pairs for s in scored], float),
            "keypoint_alone": np.array([s.keypoint.inliers for s in scored], float), "cnn_and_blocks_v0_3_0": v3}


# --------------------------------------------------------------------------- report parts


def quality_class(s) -> str:
    return f"q{s.quality} {s.subsampling}" if s.quality else "no JPEG"


def per_quality(scored: list[Scored], threshold: float) -> list[dict]:
    groups = defaultdict(list)
    for s in scored:
        groups[(s.label, quality_class(s))].append(s.score)
    rows = []
    for (label, cls), v in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        v = np.array(v)
        rows.append({"label": "manipulated" if label else "authentic", "source_quality": cls, "n": len(v),
                     "mean_score": round(float(v.mean()), 4), "flagged": _prop(int((v >= threshold).sum()), len(v))})
    return rows


def quality_lookup_baseline(items, test_scored: list[Scored]) -> float:
    """AUC of a 'classifier' that only knows the source JPEG tables: the tampered share
    among training images of the same (quality, subsampling) class."""
    from convert.forensics_data import jpeg_history

    counts = defaultdict(lambda: [0, 0])
    for it in (i for i in items if i.split == "train"):
        h = jpeg_history(it.path)
        counts[(h["quality"], h["subsampling"])][it.label] += 1
    s = np.array([(lambda c: (c[1] + 0.5) / (c[0] + c[1] + 1))(counts[(x.quality, x.subsampling)]) for x in test_scored])
    y = np.array([x.label for x in test_scored])
    return round(rank_auc(s[y == 0], s[y == 1]), 4)


def _fmt_prop(p: dict) -> str:
    if p.get("value") is None:
        return "n/a"
    return f"{p['value']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] ({p['k']}/{p['n']})"


def _fmt_ci(d: dict, key="value") -> str:
    return f"{d[key]:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"


def figures_table(name: str, f: dict) -> str:
    return (f"| {name} | {f['n']} ({f['manipulated']}/{f['authentic']}) | {_fmt_ci(f['roc_auc'], 'auc')} | "
            f"{_fmt_prop(f['accuracy'])} | {_fmt_prop(f['precision'])} | {_fmt_prop(f['recall'])} | "
            f"{_fmt_prop(f['specificity'])} | {_fmt_ci(f['f1'])} |")


FIG_HEADER = ("| set | n (manip./auth.) | ROC AUC [95% CI] | accuracy | precision | recall | specificity | F1 |\n"
              "|---|---|---|---|---|---|---|---|")


# --------------------------------------------------------------------------- pictures


def plot_roc(path: Path, curves: list[tuple[str, np.ndarray, np.ndarray]], op: tuple[float, float] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5))
    for label, neg, pos in curves:
        t = np.unique(np.concatenate([neg, pos, [np.inf]]))[::-1]
        tpr = [(pos >= x).mean() for x in t]
        fpr = [(neg >= x).mean() for x in t]
        ax.plot(fpr, tpr, label=f"{label} (AUC {rank_auc(neg, pos):.3f})")
    if op:
        ax.plot([op[0]], [op[1]], "ko", label="threshold (chosen on val), test point")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (authentic flagged)")
    ax.set_ylabel("true positive rate (manipulated flagged)")
    ax.set_title("forensics (CNN + copy-move evidence), held-out test images", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_quality(path: Path, groups: list[tuple[str, np.ndarray]], threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.6))
    ax.boxplot([g for _, g in groups], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(groups) + 1), [n for n, _ in groups], rotation=35, ha="right", fontsize=7)
    ax.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set_ylabel("image score")
    ax.set_title("test scores by source JPEG quality (estimated from the quantization tables)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def examples_page(path: Path, rows: list[dict], pixel_threshold: float) -> None:
    """Each row: image | ground truth | suspected regions overlaid | ELA (display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_app.ela import error_level_display
    from edge_app.forensics import overlay

    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.1 * len(rows)))
    for r, row in enumerate(rows):
        rgb = row["rgb"]
        panels = [rgb, row["mask"] if row["mask"] is not None else np.zeros(rgb.shape[:2]),
                  overlay(rgb, row["heat"], pixel_threshold), error_level_display(np.ascontiguousarray(rgb))]
        titles = [row["title"], "ground truth", f"heatmap >= {pixel_threshold:.2f}", "ELA q90 (display)"]
        for c, (im, t) in enumerate(zip(panels, titles)):
            ax = axes[r, c]
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=1 if im.ndim == 2 else None)
            ax.set_title(t, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    from PIL import Image

    with Image.open(path) as im:  # 256 colours: a third of the size, same picture to the eye
        small = im.convert("RGB").quantize(256)
    small.save(path, optimize=True)


# --------------------------------------------------------------------------- main


def _update_meta(path: Path, updates: dict) -> None:
    """Merge ``updates`` into the metadata JSON at ``path``; a value None removes its key."""
    meta = json.loads(path.read_text())
    for key, value in updates.items():
        if value is None:
            meta.pop(key, None)
        elif isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    write_metadata(path, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--reports-dir", type=Path, default=None, help="default: <models-dir>/reports")
    args = parser.parse_args(argv)
    reports = args.reports_dir or args.models_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)

    from convert import forensics_data as fd
    from edge_app.forensics import MODEL_NAME, load_analyzer

    t_start = time.time()
    int8 = load_analyzer(args.models_dir, MODEL_NAME)
    flt = load_analyzer(args.models_dir, MODEL_NAME + "_float")
    for a in (int8, flt):
        # run the copy-move detector but give it no weight yet: its weight is chosen below
        a.copy_move_params, a.copy_move_half_pairs = CopyMoveParams(), math.inf
        a.keypoint_params, a.keypoint_half_inliers = KeypointParams(), math.inf
    q = int8.recompress_quality
    items, notes = fd.split_items()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    # ---- validation: aggregation, threshold, pixel threshold
    log("scoring validation images (int8, device path) ...")
    val = score_files(int8, items, "val")
    self_val = score_samples(int8, fd.selfmade_set(items, "val", q))
    aucs, aucs_casia, aucs_self = {}, {}, {}
    for how in AGGREGATIONS:
        s, y = aggregate_all(val, how)
        aucs_casia[how] = round(rank_auc(s[y == 0], s[y == 1]), 4)
        s, y = aggregate_all(self_val, how)
        aucs_self[how] = round(rank_auc(s[y == 0], s[y == 1]), 4)
        # both targets count: CASIA v1 (whose source tables leak the label) and the
        # self-made manipulations (same tables on both sides, no leak)
        aucs[how] = round((aucs_casia[how] + aucs_self[how]) / 2, 4)
    how = max(AGGREGATIONS, key=lambda h: (aucs[h], h == "top3"))
    # copy-move evidence: how many matched block pairs and how many keypoint inliers weigh as
    # much as a CNN score of 0.5, jointly, by the same criterion (mean of the two validation AUCs)
    grid_aucs = {}
    for hp in HALF_PAIRS:
        for hi in HALF_INLIERS:
            s, y = aggregate_all(val, how, hp, hi, heat=False)
            a_casia = rank_auc(s[y == 0], s[y == 1])
            s, y = aggregate_all(self_val, how, hp, hi, heat=False)
            a_self = rank_auc(s[y == 0], s[y == 1])
            grid_aucs[(hp, hi)] = {"casia_val": round(a_casia, 4), "self_made_val": round(a_self, 4),
                                   "mean": round((a_casia + a_self) / 2, 4)}
    half, half_kp = max(grid_aucs, key=lambda k: grid_aucs[k]["mean"])
    half_aucs = {hp: grid_aucs[(hp, half_kp)] for hp in HALF_PAIRS}
    kp_aucs = {hi: grid_aucs[(half, hi)] for hi in HALF_INLIERS}
    log(f"val: copy-move half_pairs {half}, half_inliers {half_kp} ({grid_aucs[(half, half_kp)]}; "
        f"blocks only {grid_aucs[(half, math.inf)]}; CNN alone {aucs_casia[how]} / {aucs_self[how]})")
    vs, vy = aggregate_all(val, how, half, half_kp)
    whole_mean = np.array([float(np.mean(s.patch_scores)) for s in val])
    whole_mean_auc = round(rank_auc(whole_mean[vy == 0], whole_mean[vy == 1]), 4)
    threshold, op = youden_threshold(vs, vy)
    val_masked = [s for s in val if s.label == 1 and s.mask is not None]
    grid = np.round(np.arange(0.05, 0.96, 0.025), 3)
    pix_f1 = {float(t): np.mean([_f1(*pixel_counts(s.heat, s.mask, t)) for s in val_masked]) for t in grid}
    pixel_threshold = max(pix_f1, key=pix_f1.get)
    log(f"val: aggregation {how} (AUCs {aucs}), threshold {threshold:.4f}, pixel threshold {pixel_threshold}")
    int8.threshold = flt.threshold = threshold
    int8.aggregation = flt.aggregation = how
    val_fig = image_figures(vs, vy, threshold)

    # ---- test: CASIA through the device path
    log("scoring test images ...")
    timings: list[dict] = []
    test = score_files(int8, items, "test", timings)
    tp = evidence_parts(test, how, half)
    ts, ty = aggregate_all(test, how, half, half_kp)
    # the device computes the same combination: check on test images through check_image
    int8.copy_move_half_pairs, int8.keypoint_half_inliers = half, half_kp
    for s in test[::12]:
        from edge_app.forensics import check_image

        _, _, a = check_image(s.extra["path"], int8)
        if abs(a.score - s.score) > 1e-6:
            raise RuntimeError(f"{s.name}: device score {a.score} differs from the evaluation's {s.score}")
    int8.copy_move_half_pairs = int8.keypoint_half_inliers = math.inf
    test_fig = image_figures(ts, ty, threshold)
    by_kind = {}
    for kind in ("splicing", "copy-move"):
        sel = np.array([s.kind == kind for s in test])
        by_kind[kind] = {"n": int(sel.sum()), "recall": _prop(int((ts[sel] >= threshold).sum()), int(sel.sum())),
                         "auc_vs_all_authentic": bootstrap_auc(ts[ty == 0], ts[sel])}
    test_masked = [s for s in test if s.label == 1 and s.mask is not None]
    pix = pixel_figures([s.heat for s in test_masked], [s.mask for s in test_masked], pixel_threshold)
    pix_by_kind = {k: pixel_figures([s.heat for s in test_masked if s.kind == k],
                                    [s.mask for s in test_masked if s.kind == k], pixel_threshold)
                   for k in ("splicing", "copy-move")}
    flt_test = score_files(flt, items, "test")
    fs, _ = aggregate_all(flt_test, how, half, half_kp)
    float_fig = {"roc_auc": bootstrap_auc(fs[ty == 0], fs[ty == 1]),
                 "decision_agreement_with_int8": round(float(np.mean((fs >= threshold) == (ts >= threshold))), 4)}

    # ---- quality bias
    log("quality-bias sets ...")
    quality_rows = per_quality(test, threshold)
    requality = score_samples(int8, fd.requality_set(items, "test", q))
    rp = evidence_parts(requality, how, half)
    rs, _ = aggregate_all(requality, how, half, half_kp)
    au_scores = ts[ty == 0]
    req_rows = []
    for cls in sorted({quality_class(s) for s in requality}):
        sel = np.array([quality_class(s) == cls for s in requality])
        tam = np.array([s.label == 1 and quality_class(s) == cls for s in test])
        req_rows.append({
            "tables_of_tampered_class": cls, "n": int(sel.sum()),
            "flagged": _prop(int((rs[sel] >= threshold).sum()), int(sel.sum())),
            "auc_resaved_vs_original_authentic": round(rank_auc(au_scores, rs[sel]), 4),
            "auc_tampered_vs_resaved_authentic_same_tables": (
                bootstrap_auc(rs[sel], ts[tam]) if tam.any() else None),
        })
    quality_only_auc = quality_lookup_baseline(items, test)
    cm_share = {}
    for cls in sorted({quality_class(s) for s in test if s.label == 1}):
        sel = [s for s in test if s.label == 1 and quality_class(s) == cls]
        cm_share[cls] = {"k": sum(s.kind == "copy-move" for s in sel), "n": len(sel)}
    matched_auc = bootstrap_auc(rs, ts[ty == 1])

    # ---- self-made
    log("self-made manipulations ...")
    self_test = score_samples(int8, fd.selfmade_set(items, "test", q))
    sp = evidence_parts(self_test, how, half)
    ss_v3 = sp["cnn_and_blocks_v0_3_0"]
    ss, sy = aggregate_all(self_test, how, half, half_kp)
    svs, svy = aggregate_all(self_val, how, half, half_kp)
    self_fig = image_figures(ss, sy, threshold)
    self_kinds = {}
    controls = ss[sy == 0]
    for kind in ("self-splice", "self-copy-move"):
        sel = np.array([s.kind == kind for s in self_test])
        self_kinds[kind] = {"n": int(sel.sum()), "recall": _prop(int((ss[sel] >= threshold).sum()), int(sel.sum())),
                            "auc_vs_controls": bootstrap_auc(controls, ss[sel])}
    for tr in ("none", "scale", "rotate"):
        sel = np.array([s.label == 1 and s.extra.get("transform", "").startswith(tr) for s in self_test])
        if sel.any():
            self_kinds[f"transform {tr}"] = {"n": int(sel.sum()),
                                             "recall": _prop(int((ss[sel] >= threshold).sum()), int(sel.sum())),
                                             "auc_vs_controls": bootstrap_auc(controls, ss[sel])}
        for kind in ("self-splice", "self-copy-move"):
            sel = np.array([s.kind == kind and s.extra.get("transform", "").startswith(tr) for s in self_test])
            if sel.any():
                self_kinds[f"{kind[5:]}, transform {tr}"] = {
                    "n": int(sel.sum()), "recall": _prop(int((ss[sel] >= threshold).sum()), int(sel.sum())),
                    "auc_vs_controls": bootstrap_auc(controls, ss[sel]),
                    "auc_vs_controls_v0_3_0_scoring": round(rank_auc(ss_v3[sy == 0], ss_v3[sel]), 4)}
    for feather in (False, True):
        sel = np.array([s.label == 1 and s.extra.get("feathered") is feather for s in self_test])
        self_kinds[f"feathered={feather}"] = {"n": int(sel.sum()),
                                              "recall": _prop(int((ss[sel] >= threshold).sum()), int(sel.sum())),
                                              "auc_vs_controls": bootstrap_auc(controls, ss[sel])}
    self_masked = [s for s in self_test if s.label == 1]
    self_pix = pixel_figures([s.heat for s in self_masked], [s.mask for s in self_masked], pixel_threshold)

    # ---- lossless sources: own threshold on val (same false-alarm rate as JPEG val), test reported
    log("lossless sources ...")
    lval, _ = aggregate_all(score_samples(int8, fd.lossless_set(items, "val", q)), how, half, half_kp)
    val_fpr = 1 - val_fig["specificity"]["value"]
    lossless_threshold = max(threshold, fpr_threshold(lval, val_fpr))
    lossless = score_samples(int8, fd.lossless_set(items, "test", q))
    ls, _ = aggregate_all(lossless, how, half, half_kp)
    lman = score_samples(int8, fd.lossless_selfmade_set(items, "test", q))
    lms, _ = aggregate_all(lman, how, half, half_kp)
    lossless_fig = {"n": len(ls), "threshold": round(lossless_threshold, 4),
                    "threshold_criterion": f"validation never-JPEG authentic images flagged at the JPEG validation "
                                           f"false-positive rate ({val_fpr:.3f})",
                    "flagged_at_jpeg_threshold": _prop(int((ls >= threshold).sum()), len(ls)),
                    "flagged": _prop(int((ls >= lossless_threshold).sum()), len(ls)),
                    "mean_score": round(float(ls.mean()), 4),
                    "same_images_full_size_jpeg_mean_score": round(float(np.mean(
                        [s.score for s in test if s.name in {x.name[:-4] for x in lossless}])), 4),
                    "selfmade_n": len(lms),
                    "selfmade_recall": _prop(int((lms >= lossless_threshold).sum()), len(lms)),
                    "selfmade_auc": bootstrap_auc(ls, lms)}

    # ---- timing (384x256, one thread, this shared machine)
    tm = {k: round(float(np.median([t[k] for t in timings])), 2)
          for k in ("features", "model", "heatmap", "copy_move", "keypoint_copy_move", "total")}
    tm["patches"] = int(timings[0]["patches"]) if timings else 0
    t_flt = []
    for it in [i for i in items if i.split == "test"][:40]:
        from edge_app.forensics import check_image

        _, _, a = check_image(it.path, flt)
        t_flt.append(a.timing_ms["model"])
    tm["model_float32"] = round(float(np.median(t_flt)), 2)
    tm["per_patch_int8"] = round(tm["model"] / max(1, tm["patches"]), 3)

    # ---- figures
    log("figures ...")
    fpr = test_fig["confusion"]["fp"] / max(1, test_fig["authentic"])
    tpr = test_fig["confusion"]["tp"] / max(1, test_fig["manipulated"])
    plot_roc(reports / "forensics_roc.png",
             [("CASIA v1 test, int8", ts[ty == 0], ts[ty == 1]),
              ("CASIA v1 test, int8, CNN alone (no copy-move evidence)", tp["cnn_alone"][ty == 0],
               tp["cnn_alone"][ty == 1]),
              ("CASIA v1 test, float32", fs[ty == 0], fs[ty == 1]),
              ("CASIA tampered vs authentic re-saved with tampered tables", rs, ts[ty == 1]),
              ("self-made test (vs controls, same tables)", controls, ss[sy == 1])], (fpr, tpr))
    groups = []
    for row_label, src in (("authentic", [s for s in test if s.label == 0]),
                           ("manipulated", [s for s in test if s.label == 1]),
                           ("authentic re-saved", requality)):
        classes = defaultdict(list)
        for s in src:
            classes[quality_class(s)].append(s.score)
        for cls, v in sorted(classes.items()):
            if len(v) >= 5:
                groups.append((f"{row_label} {cls} (n={len(v)})", np.array(v)))
    plot_quality(reports / "forensics_scores_by_quality.png", groups, threshold)
    ex_rows = _example_rows(test, fd, threshold, items)
    examples_page(reports / "forensics_examples.png", ex_rows, pixel_threshold)

    # ---- metadata + report
    evaluation = {
        "data": "CASIA v1 held-out test images (scene-disjoint from training and validation), through the device "
                "path (file -> edge_app.forensics.check_image, int8)",
        "casia_test": test_fig, "casia_test_by_type": by_kind, "casia_test_pixel": pix,
        "casia_test_pixel_by_type": pix_by_kind,
        "casia_val": val_fig, "float32_on_casia_test": float_fig,
        "quality_bias": {"quality_only_baseline_auc": quality_only_auc,
                         "auc_tampered_vs_authentic_resaved_with_tampered_tables": matched_auc,
                         "resaved_authentic": req_rows, "per_source_quality": quality_rows,
                         "copy_move_share_of_tampered_by_class": cm_share},
        "self_made_test": self_fig, "self_made_by_kind": self_kinds, "self_made_pixel": self_pix,
        "self_made_val_auc": round(rank_auc(svs[svy == 0], svs[svy == 1]), 4),
        "lossless_png_authentic": lossless_fig,
        "aggregation_val_auc": aucs,
        "aggregation_val_auc_casia": aucs_casia,
        "aggregation_val_auc_self_made": aucs_self,
        "val_auc_mean_of_all_patches_not_a_candidate": whole_mean_auc,
        "timing_ms_384x256": tm,
        "copy_move": {
            "half_pairs": half, "val_auc_by_half_pairs": half_aucs,
            "half_inliers": half_kp if math.isfinite(half_kp) else None,
            "val_auc_by_half_inliers": {str(k): v for k, v in kp_aucs.items()},
            "val_auc_grid": [{"half_pairs": hp, "half_inliers": str(hi), **v} for (hp, hi), v in grid_aucs.items()],
            "val_auc_cnn_alone": {"casia_val": aucs_casia[how], "self_made_val": aucs_self[how]},
            # what each part gives on test (AUC, bootstrap 95%), the combination being what ships
            "test_ablation": {
                name: {k: bootstrap_auc(v[neg], v[pos]) for k, v in (parts | {"combined": combined}).items()}
                for name, parts, combined, neg, pos in (
                    ("casia_test", tp, ts, ty == 0, ty == 1),
                    ("casia_test_copy_move_vs_authentic", tp, ts, ty == 0,
                     np.array([s.kind == "copy-move" for s in test])),
                    ("casia_test_splicing_vs_authentic", tp, ts, ty == 0,
                     np.array([s.kind == "splicing" for s in test])),
                    ("self_made_test", sp, ss, sy == 0, sy == 1),
                    ("self_made_test_copy_move_vs_controls", sp, ss, sy == 0,
                     np.array([s.kind == "self-copy-move" for s in self_test])),
                    ("self_made_test_splice_vs_controls", sp, ss, sy == 0,
                     np.array([s.kind == "self-splice" for s in self_test])))
            } | {"quality_matched": {k: bootstrap_auc(rp[k], tp[k][ty == 1]) for k in tp}
                 | {"combined": bootstrap_auc(rs, ts[ty == 1])}},
            "authentic_test_flagged_by_copy_move_alone": _prop(
                int(sum(copy_move_score(s.copy_move.pairs, half) >= threshold for s in test if s.label == 0)),
                int((ty == 0).sum())),
            "authentic_test_flagged_by_keypoints_alone": _prop(
                int(sum(keypoint_copy_move_score(s.keypoint.inliers, half_kp) >= threshold
                        for s in test if s.label == 0)), int((ty == 0).sum())),
        },
    }
    from convert.train_forensics import VERSION

    meta_updates = {
        "version": VERSION,
        "threshold": round(threshold, 6),
        "lossless_threshold": round(lossless_threshold, 6),
        "pixel_threshold": float(pixel_threshold),
        "operating_point": {**op, "val_tpr": val_fig["recall"]["value"], "val_fpr": round(1 - val_fig["specificity"]["value"], 4),
                            "pixel_threshold_criterion": "maximum mean per-image pixel F1 on CASIA v1 validation tampered images",
                            "aggregation_criterion": "highest mean of the CASIA v1 validation AUC and the self-made "
                                                     f"validation AUC among {list(AGGREGATIONS)}: {aucs}"},
        "output": {"image_score": {"aggregation": how, "meaning": f"max of the CNN's {aggregation_meaning(how)} "
                                   "and the copy-move scores (copy_move, keypoint_copy_move); manipulated when "
                                   "score >= threshold"}},
        "copy_move": {"half_pairs": half, "params": dataclasses.asdict(CopyMoveParams()),
                      "meaning": "edge_app.copy_move.find_copy_move on the decoded image; copy-move score = "
                                 "pairs / (pairs + half_pairs); the heatmap takes the matched blocks at that score",
                      "criterion": "half_pairs and keypoint_copy_move.half_inliers jointly: the highest mean of "
                                   "the CASIA v1 validation AUC and the self-made validation AUC over "
                                   f"{list(HALF_PAIRS)} x {[str(h) for h in HALF_INLIERS]}",
                      "val_auc": grid_aucs[(half, half_kp)]},
        # validation may find the keypoint evidence adds nothing (inf): then the section goes
        "keypoint_copy_move": None if math.isinf(half_kp) else {
                               "half_inliers": half_kp, "params": dataclasses.asdict(KeypointParams()),
                               "meaning": "edge_app.keypoint_copy_move.find_keypoint_copy_move on the decoded image "
                                          "(SIFT keypoints, one similarity transform by RANSAC); score = inliers / "
                                          "(inliers + half_inliers); the heatmap takes the inliers' hulls at that "
                                          "score",
                               "criterion": "chosen jointly with copy_move.half_pairs, see there"},
        "evaluation": {k: evaluation[k] for k in ("data", "casia_test", "casia_test_pixel", "float32_on_casia_test",
                                                  "self_made_test", "self_made_pixel", "lossless_png_authentic",
                                                  "timing_ms_384x256")}
        | {"quality_bias": {k: evaluation["quality_bias"][k] for k in
                            ("quality_only_baseline_auc", "auc_tampered_vs_authentic_resaved_with_tampered_tables")}},
    }
    for name in (MODEL_NAME, MODEL_NAME + "_float"):
        _update_meta(args.models_dir / f"{name}.json", meta_updates)
    (reports / "forensics_evaluation.json").write_text(json.dumps(evaluation, indent=1, default=str) + "\n")
    meta = json.loads((args.models_dir / f"{MODEL_NAME}.json").read_text())
    write_report(reports / "forensics.md", meta, evaluation, notes, aucs, how, threshold, pixel_threshold, q)
    log(f"report: {reports / 'forensics.md'} ({time.time() - t_start:.0f}s)")
    f = test_fig
    print(f"CASIA test: AUC {f['roc_auc']['auc']} {f['roc_auc']['ci95']} acc {f['accuracy']['value']} "
          f"P {f['precision']['value']} R {f['recall']['value']} F1 {f['f1']['value']}; pixel F1 "
          f"{pix['f1_mean_per_image']['value']} IoU {pix['iou_mean_per_image']} AUC {pix['pixel_auc']}; "
          f"self-made AUC {self_fig['roc_auc']['auc']}; quality-matched AUC {matched_auc['auc']}")
    return 0


def _example_rows(test: list[Scored], fd, threshold: float, items) -> list[dict]:
    """Two caught and one missed splice, two caught and one missed copy-move, the two
    highest-scoring authentic images, and a self-made splice."""
    from edge_app.forensics import assemble_heatmap

    rows = []

    def add(s, tag):
        rgb = fd.load_rgb(Path(s.extra["path"]))
        rows.append({"rgb": rgb, "mask": s.mask, "heat": s.heat,
                     "title": f"{tag}, score {s.score:.2f}"})

    for kind in ("splicing", "copy-move"):
        k = sorted((s for s in test if s.kind == kind and s.mask is not None), key=lambda s: -s.score)
        hits = [s for s in k if s.score >= threshold]
        miss = [s for s in k if s.score < threshold]
        for s in hits[len(hits) // 4: len(hits) // 4 + 1] + hits[len(hits) // 2: len(hits) // 2 + 1]:
            add(s, f"{kind} caught")
        for s in miss[:1]:
            add(s, f"{kind} missed")
    au = sorted((s for s in test if s.label == 0), key=lambda s: -s.score)
    add(au[0], "authentic, highest")
    add(au[len(au) // 2], "authentic, median")
    return rows


def _copy_move_section(ev: dict) -> list[str]:
    cm = ev["copy_move"]
    half, half_kp = cm["half_pairs"], cm["half_inliers"]
    ab = cm["test_ablation"]
    names = {"casia_test": "CASIA v1 test, all", "casia_test_copy_move_vs_authentic": "CASIA test copy-moves vs authentic",
             "casia_test_splicing_vs_authentic": "CASIA test splices vs authentic",
             "quality_matched": "CASIA tampered vs authentic re-saved with tampered tables",
             "self_made_test": "self-made test vs controls, all",
             "self_made_test_copy_move_vs_controls": "self-made copy-moves vs controls",
             "self_made_test_splice_vs_controls": "self-made splices vs controls"}
    kp_text = (f"inliers / (inliers + {half_kp})" if half_kp is not None
               else "(validation gave the keypoint evidence no weight)")
    return [
        "### Copy-move evidence (v0.3.0: block matching; v0.4.0: keypoints; the CNN is unchanged)",
        "",
        "The CNN judges each patch by its own compression and noise traces, so a region copied within the same "
        "image, which shares the image's camera noise and JPEG history, was its weak spot (CASIA copy-move AUC 0.70 "
        "in v0.2.0). Two detectors that read no compression at all add their evidence:",
        "",
        "- `edge_app.copy_move` (v0.3.0), block matching in the manner of Fridrich et al. (2003): every textured "
        "16x16 block of the decoded image is described by its 4x4 grid of sub-block means, the descriptors are "
        "sorted, and near-equal neighbours at least 24 px apart vote for their shift; the evidence is the number of "
        "pairs behind the most frequent shift. It finds plain translations only.",
        "- `edge_app.keypoint_copy_move` (v0.4.0), keypoints in the manner of Amerini et al. (2011): SIFT keypoints "
        "(OpenCV), each matched to its nearest other keypoint when that is clearly nearer than the second nearest "
        "(ratio 0.6) and at least 24 px away, then one similarity transform (rotation, uniform scale, shift) by "
        "RANSAC; the evidence is its inlier count (from 3). It finds copies that were scaled or rotated, which block "
        "matching misses.",
        "",
        f"Image score = max(CNN score, pairs / (pairs + {half}), {kp_text}); the heatmap also takes each detector's "
        "matched regions (source and copy) at its score. The two weights were chosen jointly on validation only, "
        "by the same criterion as the aggregation (the keypoint detector's own parameters were compared on the "
        "same validation images; `inf` = no keypoint evidence, i.e. the v0.3.0 scoring):",
        "",
        f"| half_pairs (half_inliers {half_kp if half_kp is not None else 'inf'}) | CASIA val | self-made val | mean |",
        "|---|---|---|---|",
        f"| CNN alone | {cm['val_auc_cnn_alone']['casia_val']:.4f} | {cm['val_auc_cnn_alone']['self_made_val']:.4f} | "
        f"{(cm['val_auc_cnn_alone']['casia_val'] + cm['val_auc_cnn_alone']['self_made_val']) / 2:.4f} |",
        *(f"| {'**' + str(h) + '**' if str(h) == str(half) else h} | {v['casia_val']:.4f} | {v['self_made_val']:.4f} | "
          f"{v['mean']:.4f} |" for h, v in cm["val_auc_by_half_pairs"].items()),
        "",
        f"| half_inliers (half_pairs {half}) | CASIA val | self-made val | mean |",
        "|---|---|---|---|",
        *(f"| {'**' + h + '**' if h == str(half_kp) else h} | {v['casia_val']:.4f} | {v['self_made_val']:.4f} | "
          f"{v['mean']:.4f} |" for h, v in cm["val_auc_by_half_inliers"].items()),
        "",
        "What each part gives on held-out **test** (ROC AUC, bootstrap 95%; a detector alone ranks by its count; "
        "v0.3.0 = CNN and block matching, as shipped before the keypoints):",
        "",
        "| set | CNN alone | blocks alone | keypoints alone | v0.3.0 scoring | combined (shipped) |",
        "|---|---|---|---|---|---|",
        *(f"| {names.get(k, k)} | {_fmt_ci(v['cnn_alone'], 'auc')} | {_fmt_ci(v['copy_move_alone'], 'auc')} | "
          f"{_fmt_ci(v['keypoint_alone'], 'auc')} | {_fmt_ci(v['cnn_and_blocks_v0_3_0'], 'auc')} | "
          f"{_fmt_ci(v['combined'], 'auc')} |" for k, v in ab.items()),
        "",
        "Authentic test images flagged by one detector's score alone (score >= the image threshold): block "
        f"matching {_fmt_prop(cm['authentic_test_flagged_by_copy_move_alone'])}, keypoints "
        f"{_fmt_prop(cm['authentic_test_flagged_by_keypoints_alone'])}. Neither detector reads compression, so "
        "they add nothing to the quality bias; on never-compressed (PNG) sources they work as on JPEGs.",
        "",
    ]


def write_report(path: Path, meta: dict, ev: dict, notes: dict, aucs: dict, how: str, threshold: float,
                 pixel_threshold: float, q: int) -> None:
    t, pix, sm = ev["casia_test"], ev["casia_test_pixel"], ev["self_made_test"]
    qb = ev["quality_bias"]
    split = notes["split"]["images"]
    lines = [
        "# forensics_cnn: image forensics evaluation",
        "",
        f"Model `models/forensics_cnn.tflite` v{meta['version']} (int8, sha256 `{meta['sha256'][:16]}...`), "
        f"task `{meta['task']}`. Reproduce training, calibration and this report (about 15-20 minutes on 2 CPU "
        "cores; caches under `.cache/forensics/`):",
        "",
        "```",
        "python -m convert.train_forensics          # cache features, train, export, then convert.evaluate_forensics",
        "python -m convert.evaluate_forensics       # calibrate on val + this report, for the shipped model",
        "```",
        "",
        "Data and split are deterministic (seeded); TensorFlow training on CPU is not bit-identical from run to run, "
        "so a retrained model gives figures within the noise of these, not the same digits. "
        "`python -m convert.evaluate_forensics` on the shipped model reproduces this report (timings aside).",
        "",
        "## Summary and targets",
        "",
        "| target (issue 6) | reached on held-out test | met? |",
        "|---|---|---|",
        f"| image-level ROC AUC >= 0.90 on CASIA v1, quality bias controlled | {_fmt_ci(t['roc_auc'], 'auc')} "
        f"(quality-matched: {_fmt_ci(qb['auc_tampered_vs_authentic_resaved_with_tampered_tables'], 'auc')}) | "
        f"{'yes' if t['roc_auc']['auc'] >= 0.9 else '**no**'} |",
        f"| image-level ROC AUC >= 0.80 on self-made manipulations | {_fmt_ci(sm['roc_auc'], 'auc')} (a second "
        "look at the test set: see Data and split) | "
        f"{'yes' if sm['roc_auc']['auc'] >= 0.8 else '**no**'} |",
        f"| pixel-level F1 reported | {pix['f1_mean_per_image']['value']:.3f} mean per image (whole-image baseline "
        f"{pix['baseline_f1_whole_image_marked']:.3f}), pixel AUC {pix['pixel_auc']:.3f} | yes |",
        "",
        "## What the model does",
        "",
        f"Every image is first re-encoded as JPEG at quality {q} (Pillow, 4:2:0), so all images share the same last "
        "compression; then ELA at quality 90 (3 channels, `edge_app.ela`) and the wavelet noise residual of the luma "
        "(`edge_app.wavelet`, signed square root) are computed on the whole image. "
        + ("**Relative input (v0.2.0):** each of the 4 channels is then divided by the image's own level (the median "
           "over its 8x8 blocks of the block-mean |value|, times 8 for ELA and 4 for the residual, floored) and clipped "
           "to [-1, 1] (`edge_app.forensics.relative_features`), so the model sees how a patch differs from the rest "
           "of the same image; a level the whole image shares (its quantization history, its noise) divides away. "
           if meta["input"].get("relative") else "")
        + "A ~69k-parameter CNN (3x3 stem, "
        "8x8 stride-8 block layer, two 3x3 layers; ReLU; int8) scores 64x64 patches on a stride-32 grid aligned to "
        "the 8x8 JPEG block grid (77 patches at 384x256). Patch labels come from the masks (>= 10% of the patch "
        "inside the mask: manipulated; no pixel inside, and every patch of authentic images and controls: "
        f"authentic). Image score: `{how}`, {aggregation_meaning(how)}. Heatmap: per-pixel mean of the covering "
        "patch scores.",
        "",
        "Aggregation chosen on validation by the mean of the CASIA v1 validation AUC and the self-made validation "
        "AUC (both targets count; CASIA alone rewards whatever tracks the source tables). Validation AUCs "
        "(CASIA / self-made / mean):",
        "",
        "| aggregation | CASIA val | self-made val | mean |",
        "|---|---|---|---|",
        *(f"| `{k}` | {ev['aggregation_val_auc_casia'][k]:.4f} | {ev['aggregation_val_auc_self_made'][k]:.4f} | "
          f"{ev['aggregation_val_auc'][k]:.4f} |" for k in ev["aggregation_val_auc"]),
        "",
        f"The plain mean over all patches would reach "
        f"{ev['val_auc_mean_of_all_patches_not_a_candidate']} on CASIA validation; it was not a candidate, because it "
        "measures the whole image's history rather than a region, which is where the quality bias lives.",
        "",
        *(["Second round (v0.2.0): every candidate tried (input representation, patch labels, aggregation, "
           "a learned combination, hand-crafted baselines) with its validation figures is in "
           "[forensics_candidates.md](forensics_candidates.md).", ""]
          if (path.parent / "forensics_candidates.md").is_file() else []),
        *_copy_move_section(ev),
        "## Data and split",
        "",
        "CASIA v1.0 (research use): 800 authentic, 921 tampered 384x256 JPEGs. Masks matched to images through "
        "`masks/FileNameCorrection.xlsx` and (ops, place, id, set of sources), so swapped source order and D/S "
        f"mix-ups match; {len(notes['renamed'])} names corrected, all 920 tampered images have a mask "
        "(one, `Sp_D_CNN_A_sec0012_ani0007_0275`, has a mask of the transposed size and is left out of pixel figures). "
        f"Excluded: {', '.join(f'`{k}` ({v})' for k, v in notes['excluded'].items())}.",
        "",
        f"Scene-disjoint split: union-find over shared source images gives {notes['split']['groups']} groups "
        f"(largest {notes['split']['largest_group']} images); whole groups go to train / val / test "
        f"({split['train']} / {split['val']} / {split['test']} images). No source image of a test image occurs in "
        "training or validation. Validation chose the epoch, the aggregation, the copy-move detectors' parameters "
        "and weights, the image threshold and the pixel threshold; test chose nothing. The test set was first "
        "reported for v0.3.0 (which missed the self-made target); the keypoint detector of v0.4.0 was then added "
        "and weighed on validation alone, so its test figures are a **second look** at the same test images.",
        "",
        "Self-made manipulations (second source of truth): for every authentic image of a split, one splice (region "
        "from another authentic image of the same split) and one copy-move; random polygon/ellipse/rectangle regions "
        "of 3-20% of the image, 40% feathered by 1-3 px, 25% scaled and 15% rotated; each saved with the quantization "
        "tables and chroma subsampling of a random CASIA image of the split, and each with an **authentic control**: "
        "the same authentic image saved with the same tables. Training used the train-split ones; reported here are "
        "the test-split ones.",
        "",
        "## Image level, held-out CASIA v1 test",
        "",
        f"Threshold {threshold:.4f} chosen on validation ({meta['operating_point']['criterion']}; val TPR "
        f"{meta['operating_point']['val_tpr']}, FPR {meta['operating_point']['val_fpr']}). Proportions with Wilson "
        "95% intervals, AUC and F1 with bootstrap 95% intervals (2000 resamples).",
        "",
        FIG_HEADER,
        figures_table("CASIA v1 test (int8)", t),
        figures_table("CASIA v1 val (int8, calibration set)", ev["casia_val"]),
        figures_table("self-made test vs controls (int8)", sm),
        "",
        f"float32 model on CASIA test: AUC {_fmt_ci(ev['float32_on_casia_test']['roc_auc'], 'auc')}; int8/float32 "
        f"decision agreement {ev['float32_on_casia_test']['decision_agreement_with_int8']:.3f}.",
        "",
        "By manipulation type (test): "
        + "; ".join(f"{k}: recall {_fmt_prop(v['recall'])}, AUC vs all authentic {_fmt_ci(v['auc_vs_all_authentic'], 'auc')}"
                    for k, v in ev["casia_test_by_type"].items()) + ".",
        "",
        "![ROC](forensics_roc.png)",
        "",
        "## Localization (pixel level)",
        "",
        f"Heatmap threshold {pixel_threshold:.3f} (chosen on validation: best mean per-image pixel F1). Over the "
        "tampered test images with masks; `baseline` marks the whole image as manipulated.",
        "",
        "| set | images | F1 mean per image [95% CI] | IoU mean per image | F1 pooled | IoU pooled | pixel AUC | baseline F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in (("CASIA test, all", pix), *((f"CASIA test, {k}", v) for k, v in ev["casia_test_pixel_by_type"].items()),
                    ("self-made test", ev["self_made_pixel"])):
        lines.append(f"| {name} | {p['images']} | {_fmt_ci(p['f1_mean_per_image'])} | {p['iou_mean_per_image']:.3f} | "
                     f"{p['f1_pooled']:.3f} | {p['iou_pooled']:.3f} | {p['pixel_auc']:.3f} | "
                     f"{p['baseline_f1_whole_image_marked']:.3f} |")
    lines += [
        "",
        "Examples (test images; the heatmap is 64-pixel patches at stride 32, so it is blocky by design):",
        "",
        "![examples](forensics_examples.png)",
        "",
        "## JPEG-quality bias",
        "",
        "CASIA v1 authentic images were saved at IJG qualities 80/84/90 (and ~94, 4:2:2), tampered ones at 75 or with "
        "Photoshop tables (~93 at 4:4:4 or 4:2:0, ~99 at 4:4:4). A 'classifier' that only looks up the source "
        f"quantization class (tampered share per class in training) reaches AUC **{qb['quality_only_baseline_auc']}** "
        "on the test images: the bias is real, and a figure like ours means nothing unless it survives the checks "
        "below.",
        "",
        "1. **Authentic test images re-saved with a tampered image's tables** (one copy per tampered quality "
        "class; exact tables and subsampling of a tampered test image). If the model read the tables, these would be "
        "flagged like tampered ones.",
        "",
        "| tables of tampered class | n | flagged [95% CI] | AUC re-saved vs original authentic | AUC tampered vs re-saved authentic, same tables |",
        "|---|---|---|---|---|",
    ]
    orig_fp = t["confusion"]["fp"], t["authentic"]
    for r in qb["resaved_authentic"]:
        m = r["auc_tampered_vs_resaved_authentic_same_tables"]
        matched = f"{_fmt_ci(m, 'auc')} ({m['n_pos']} tampered)" if m else "n/a"
        lines.append(f"| {r['tables_of_tampered_class']} | {r['n']} | {_fmt_prop(r['flagged'])} | "
                     f"{r['auc_resaved_vs_original_authentic']:.3f} | {matched} |")
    lines += [
        "",
        f"Original authentic test images flagged: {_fmt_prop(_prop(orig_fp[0], orig_fp[1]))}. "
        f"All CASIA tampered test images against all re-saved authentic ones (quality matched): AUC "
        f"**{_fmt_ci(qb['auc_tampered_vs_authentic_resaved_with_tampered_tables'], 'auc')}**.",
        "",
        "2. **Per source quality** (test, estimated from `im.quantization`; nearest IJG quality, Photoshop tables are "
        "approximate):",
        "",
        "| class | source quality | n | mean score | flagged [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for r in qb["per_source_quality"]:
        lines.append(f"| {r['label']} | {r['source_quality']} | {r['n']} | {r['mean_score']:.3f} | {_fmt_prop(r['flagged'])} |")
    au_rows = [r for r in qb["per_source_quality"] if r["label"] == "authentic"]
    big = [r for r in au_rows if r["n"] >= 10]
    small = [r for r in au_rows if r["n"] < 10]
    if big:
        lo, hi = min(big, key=lambda r: r["mean_score"]), max(big, key=lambda r: r["mean_score"])
        lines += ["", f"The bias is reduced, not gone: mean scores of *authentic* images still depend on their source "
                  f"quality, from {lo['mean_score']:.2f} ({lo['source_quality']}) to {hi['mean_score']:.2f} "
                  f"({hi['source_quality']})" + (", and the rare classes ("
                  + ", ".join(f"{r['source_quality']}: {r['flagged']['k']}/{r['n']} flagged" for r in small)
                  + ") are too few to judge" if small else "") + ". Where the quality is matched exactly (table 1), "
                  "the separation from tampered images is what the model adds beyond the tables."]
    share = qb.get("copy_move_share_of_tampered_by_class")
    if share:
        lines += ["", "Manipulation type and source quality go together in CASIA v1, which the copy-move evidence makes "
                  "visible: share of copy-moves among the tampered test images per class: "
                  + ", ".join(f"{k} {v['k']}/{v['n']}" for k, v in share.items())
                  + ". The copy-move score reads no compression at all; what it adds is checked where the tables "
                  "are matched (table 1) and on the self-made pairs below."]
    lines += [
        "",
        "![scores by quality](forensics_scores_by_quality.png)",
        "",
        "3. **Self-made manipulations** are saved with the same tables as their authentic controls, so in that "
        f"comparison the source quality carries no information at all: AUC **{_fmt_ci(sm['roc_auc'], 'auc')}** "
        f"(validation: {ev['self_made_val_auc']}).",
        "",
        "| self-made subset (test) | n | recall at threshold [95% CI] | AUC vs controls [95% CI] | AUC, v0.3.0 scoring |",
        "|---|---|---|---|---|",
    ]
    for k, v in ev["self_made_by_kind"].items():
        lines.append(f"| {k} | {v['n']} | {_fmt_prop(v['recall'])} | {_fmt_ci(v['auc_vs_controls'], 'auc')} | "
                     f"{v.get('auc_vs_controls_v0_3_0_scoring', '-')} |")
    lf = ev["lossless_png_authentic"]
    tm = ev["timing_ms_384x256"]
    lines += [
        "",
        "## Lossless sources",
        "",
        ("Never-compressed pixels look like pasted material to this model. "
         if lf["mean_score"] > lf["same_images_full_size_jpeg_mean_score"] else
         "Never-compressed pixels do not look like pasted material to this model (with the relative input they score "
         "lower than the same images as JPEG files), but it has no power on them either. ")
        + f"{lf['n']} authentic test images with no "
        "JPEG history left in their pixels (reduced 2x by box averaging, which wipes out the 8x8 block grid; as a PNG "
        "from a lossless source would be) are flagged at the JPEG threshold "
        f"{_fmt_prop(lf['flagged_at_jpeg_threshold'])} (mean score {lf['mean_score']:.3f}; the same images as "
        f"full-size JPEG files: {lf['same_images_full_size_jpeg_mean_score']:.3f}).",
        "",
        f"**Decision:** files without JPEG history of their own (PNG, BMP, TIFF, ...) are scored the same way but "
        f"compared with `lossless_threshold` = {lf['threshold']:.4f}, chosen on validation ({lf['threshold_criterion']}), "
        "and the output says the source is lossless and the evidence weaker. On test: authentic never-JPEG images "
        f"flagged {_fmt_prop(lf['flagged'])}; self-made splices/copy-moves of never-JPEG images ({lf['selfmade_n']}, "
        f"kept lossless) caught {_fmt_prop(lf['selfmade_recall'])}, AUC against the authentic ones "
        f"{_fmt_ci(lf['selfmade_auc'], 'auc')}. A PNG made *from* a JPEG keeps the JPEG's pixels and scores exactly "
        "like it, but is judged with the lossless threshold too (the file cannot tell us its history). In short: "
        "the CNN has next to no power on never-compressed images and the copy-move matching (which needs no JPEG "
        "history) gives what power there is; the lossless threshold only keeps their false "
        "alarms at the JPEG rate, and the output tells the user to treat such a verdict as unverified.",
        "",
        "## Speed (this shared 2-core x86 machine, 1 thread, medians over the 384x256 test images)",
        "",
        f"Features (recompress + ELA + wavelet) {tm['features']} ms, model {tm['model']} ms for {tm['patches']} "
        f"patches ({tm['per_patch_int8']} ms per patch, int8; float32 {tm['model_float32']} ms), heatmap "
        f"{tm['heatmap']} ms, copy-move block matching {tm['copy_move']} ms, keypoint matching "
        f"{tm.get('keypoint_copy_move', '-')} ms, whole call from file {tm['total']} ms. "
        "Both copy-move detectors grow with the pixel count (they run on at most 1 MP, reduced above that).",
        "",
        "## What these figures can and cannot claim",
        "",
        "- They hold for CASIA v1-like images: 384x256 photos, splices and copy-moves made by hand without much "
        "post-processing, source scenes not seen in training. 185 tampered and 159 authentic test images give "
        "intervals several points wide; read the intervals, not the point values.",
        "- The quality bias is controlled, not removed: the common recompression equalises the last compression; the "
        "checks above show how much of the score still follows the source tables (compare the flagged rates of "
        "re-saved and original authentic images, and the quality-matched AUC with the plain one). A gap between "
        "them is the part of the plain figure that the quality bias may explain.",
        "- Self-made manipulations come from the same scenes' authentic images and our own generator; they show "
        "the model responds to pasted regions when the compression history is matched, not that it catches a "
        "careful human forger (blending, noise matching, recompression chains, AI in-painting are not covered).",
        "- Localization is at the scale of 64-pixel patches; pixel F1 is bounded by that blockiness, and small "
        "regions are missed or over-drawn. Compare with the whole-image baseline F1. Copy-move evidence marks "
        "16-pixel blocks of both the source and the copy; CASIA's masks count only the copy.",
        "- The block matcher finds plain translations; the keypoint matcher finds scaled and rotated copies too, "
        "but only where the copy holds enough distinct keypoints (small or smooth copies give few). A strongly "
        "periodic texture (tiles, fences, printed patterns) or a repeated object can read as a copy to either. Much "
        "of the CASIA v1 gain over the CNN alone comes from its copy-moves, most of which are plain translations.",
        "- Images from phones or social networks (resized, recompressed several times, other quantization tables) "
        "are outside this evaluation; downscaled inputs lose the traces the model uses.",
        "- One data set, one split, one seed. No claim about other data sets.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
