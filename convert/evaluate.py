"""The liveness report: leave-one-source-out first, the MiniFASNet pair beside ours on the same crops.

    python -m convert.evaluate [--models-dir models] [--out models/reports]

Reads the folds written by ``python -m convert.train_liveness --loso [--ablation]`` (runs/loso/)
and the shipped models, and writes ``models/reports/liveness.md`` with its plots:

- per held-out source (a domain no model of that fold saw): ROC AUC, APCER / BPCER / ACER at the
  fold's threshold (chosen on the calibration source's lives, never on the held-out one), APCER at
  BPCER 5% read off the held-out ROC (an oracle operating point, labelled as such), per attack
  kind, with n and 95% Wilson intervals; the MiniFASNet pair (the teachers, float, their published
  rule: the mean softmax's arg max) scored on exactly the same crops;
- the framing check: on each held-out source, how often the fused decision of the same face
  changes when the same picture is placed into a 640x480 camera frame on another fill;
- the previous version's folds beside these (``--previous-dir``), when they exist;
- the interpolation toward the teacher at every alpha tried (runs/loso_alpha/, ``--alphas``), when
  those folds exist;
- the ELA + wavelet ablation, when its folds exist;
- the shipped int8 models: XNNPACK partitions, int8 vs float32 agreement, cost per face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from convert import metrics
from convert import pad_data
from convert.datasets import REPO
from edge_app.tflite_model import write_metadata
from convert.train_liveness import (CALIBRATION, LOSO_DIR, MODELS, TARGET_BPCER, VERSION, calibration_threshold,
                                    fold_split, model_inputs, sigmoid, teacher_softmax)

PREVALENCE = 0.01
PHONE_DOMAIN = "oulu"  # the held-out phone-captured source of the ACER target
# What changed between the previous version's folds (--previous-dir) and these; update with VERSION.
PREVIOUS_VERSION = "v0.3.0"
CHANGE_SINCE_PREVIOUS = (
    "v0.3.0 trained each picture at one framing at a time. v0.4.0 also penalises the squared gap between the logits "
    "of two framings of the same picture (`convert.train_liveness.paired_loss`). Its weight, 0.3, was chosen on "
    "the validation people of the training sources, not on these tables.")


def alarm_precision(apcer: float, bpcer: float, p: float = PREVALENCE) -> float | None:
    tp = (1 - apcer) * p
    fp = bpcer * (1 - p)
    return tp / (tp + fp) if tp + fp > 0 else None


def peer_scores(teacher_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(live) of the pair's mean softmax, their published decision: the mean softmax's arg max is live)."""
    mean = teacher_softmax(teacher_logits).mean(axis=1)
    return mean[:, 1], mean.argmax(-1) == 1


def rates(live_ok: np.ndarray, attack_ok: np.ndarray) -> dict:
    """APCER / BPCER / ACER from boolean 'accepted as live' arrays."""
    ap = metrics.rate(int(attack_ok.sum()), len(attack_ok))
    bp = metrics.rate(int((~live_ok).sum()), len(live_ok))
    acer = None if ap["rate"] is None or bp["rate"] is None else (ap["rate"] + bp["rate"]) / 2
    return {"APCER": ap, "BPCER": bp, "ACER": acer}


def fold_figures(path: Path, crops: pad_data.Crops, peer_framings: bool = True) -> dict:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    idx = z["test_idx"]
    y = crops.label[idx] == 1
    kinds = crops.attack[idx]
    # the threshold rule is re-applied from the fold's saved logits, so every fold is judged by
    # the same rule (calibration_threshold), whichever version of train_liveness wrote it
    names = list(meta["weights"])
    val_idx = fold_split(crops, meta["held_out"])[1]
    fused_val = sigmoid(np.column_stack([z[f"{n}|val"] for n in names]) @ np.array([meta["weights"][n] for n in names])
                        + meta["bias"])
    thr = calibration_threshold(z["fused|cal"], z["cal_idx"], crops)
    thr_pool = calibration_threshold(np.r_[fused_val, z["fused|cal"]], np.r_[val_idx, z["cal_idx"]], crops)
    cal_live = z["fused|cal"][crops.label[z["cal_idx"]] == 1]
    thr_cal5 = metrics.threshold_for_bpcer(cal_live, TARGET_BPCER)
    ours = z["fused|test_view"]
    p_peer, peer_live = peer_scores(crops.teacher[idx])
    out = {"meta": meta, "n_live": int(y.sum()), "n_attack": int((~y).sum()), "threshold": thr,
           "calibration_AUC": calibration_auc(z, crops)}
    has_both = y.any() and (~y).any()
    out["ours"] = {**rates(ours[y] >= thr, ours[~y] >= thr),
                   "ROC_AUC": metrics.auc(ours[y], ours[~y]) if has_both else None,
                   "APCER_at_BPCER_5pct_oracle": (metrics.apcer(ours[~y], metrics.threshold_for_bpcer(ours[y], TARGET_BPCER))
                                                  if has_both else None)}
    out["ours_cal_bpcer5"] = {**rates(ours[y] >= thr_cal5, ours[~y] >= thr_cal5), "threshold": thr_cal5}
    out["ours_pool_eer"] = {**rates(ours[y] >= thr_pool, ours[~y] >= thr_pool), "threshold": thr_pool}
    out["peer"] = {**rates(peer_live[y], peer_live[~y]),
                   "ROC_AUC": metrics.auc(p_peer[y], p_peer[~y]) if has_both else None,
                   "APCER_at_BPCER_5pct_oracle": (metrics.apcer(p_peer[~y], metrics.threshold_for_bpcer(p_peer[y], TARGET_BPCER))
                                                  if has_both else None)}
    per_model = {}
    for key in z.files:
        name, _, part = key.partition("|")
        if part == "test_view" and name != "fused" and has_both:
            s = z[key]
            per_model[name] = metrics.auc(s[y], s[~y])
    out["per_model_auc"] = per_model
    out["kinds"] = {}
    for k in sorted(set(kinds[~y])):
        m = (~y) & (kinds == k)
        out["kinds"][k] = {"ours": metrics.apcer(ours[m], thr), "peer": metrics.rate(int(peer_live[m].sum()), int(m.sum())),
                           "ours_auc": metrics.auc(ours[y], ours[m]) if y.any() else None,
                           "peer_auc": metrics.auc(p_peer[y], p_peer[m]) if y.any() else None}
    base = ours >= thr
    out["framing_flips"] = {fr: metrics.rate(int(((z[f"fused|test_{fr}"] >= thr) != base).sum()), len(base))
                            for fr in pad_data.FRAMINGS[1:]}
    out["framing_auc"] = {fr: metrics.auc(z[f"fused|test_{fr}"][y], z[f"fused|test_{fr}"][~y]) if has_both else None
                          for fr in pad_data.FRAMINGS}
    out["roc"] = {"ours": (ours[y], ours[~y]), "peer": (p_peer[y], p_peer[~y])}
    out["framing_scores"] = {fr: z[f"fused|test_{fr}"] for fr in pad_data.FRAMINGS}
    if not peer_framings:
        return out
    # the pair on the same framings: their published decision, view against each camera frame
    from convert.minifasnet import TEACHER_DIR, TEACHERS, teacher_logits

    peer_live_by = {}
    for fr in pad_data.FRAMINGS:
        zz = np.stack([teacher_logits(TEACHER_DIR / TEACHERS["v2"], crops.arrays[f"{fr}@2.7"][idx]),
                       teacher_logits(TEACHER_DIR / TEACHERS["v1se"], crops.arrays[f"{fr}@4.0"][idx])], axis=1)
        peer_live_by[fr] = peer_scores(zz)
    out["peer_framing_flips"] = {fr: metrics.rate(int((peer_live_by[fr][1] != peer_live_by["view"][1]).sum()), len(idx))
                                 for fr in pad_data.FRAMINGS[1:]}
    out["peer_framing_auc"] = {fr: metrics.auc(p[y], p[~y]) if has_both else None for fr, (p, _) in peer_live_by.items()}
    return out


def calibration_auc(z, crops: pad_data.Crops) -> float:
    """ROC AUC of a fold's fused scores on the calibration source (phone captures no model of the fold trained on)."""
    y = crops.label[z["cal_idx"]] == 1
    return metrics.auc(z["fused|cal"][y], z["fused|cal"][~y])


def interpolation_table(alpha_dir: Path, crops: pad_data.Crops) -> dict | None:
    """Mean and per-fold fused ROC AUCs at every alpha tried, and the alpha the chooser's rule picks."""
    from convert import choose_interpolation

    table, folds = choose_interpolation.alpha_table(alpha_dir, crops)
    if not table:
        return None
    return {"table": table, "folds": folds, "chosen": choose_interpolation.choose(table),
            "domains": sorted(set.intersection(*(set(f) for f in folds.values())))}


def previous_fold_figures(path: Path, crops: pad_data.Crops) -> dict:
    """ROC AUC, rates at the current rule's threshold, and framing flips of a fold written by an earlier version."""
    z = np.load(path)
    idx = z["test_idx"]
    y = crops.label[idx] == 1
    thr = calibration_threshold(z["fused|cal"], z["cal_idx"], crops)
    ours = z["fused|test_view"]
    base = ours >= thr
    return {"ROC_AUC": metrics.auc(ours[y], ours[~y]) if y.any() and (~y).any() else None, "threshold": thr,
            "calibration_AUC": calibration_auc(z, crops),
            **rates(ours[y] >= thr, ours[~y] >= thr),
            "framing_flips": {fr: metrics.rate(int(((z[f"fused|test_{fr}"] >= thr) != base).sum()), len(base))
                              for fr in pad_data.FRAMINGS[1:]}}


def delegation(path: Path) -> dict:
    """How XNNPACK took the graph: delegate nodes and whether one of them spans input to output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ops = it._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    inp = it.get_input_details()[0]["index"]
    outp = it.get_output_details()[0]["index"]
    whole = len(delegates) == 1 and inp in list(delegates[0]["inputs"]) and outp in list(delegates[0]["outputs"])
    return {"nodes": len(original), "delegate_partitions": len(delegates), "one_partition_covers_graph": bool(whole),
            "ops": sorted({o["op_name"] for o in original})}


def per_face_cost(models_dir: Path, crops: pad_data.Crops, repeats: int = 200) -> dict:
    """Median ms per face on one thread, each model's crop + features + invoke (LivenessModel.score, the
    device's own path), int8 and float32 interleaved."""
    from edge_app.frames.detector import Face
    from edge_app.liveness.scorer import load_liveness_model

    frames = crops.arrays["canvas_a@4.0"][:50]  # stand-in frames: 80x80 views are enough to time the crop step
    face = Face(20.0, 20.0, 40.0, 40.0, 1.0)
    out = {}
    loaded = {(n, v): load_liveness_model(models_dir / f"{n}{'' if v == 'int8' else '_float'}.json", num_threads=1)
              for n in MODELS for v in ("int8", "float32")}
    samples: dict = {k: [] for k in loaded}
    for k, m in loaded.items():
        for i in range(10):
            m.score(frames[i], face)
    for r in range(repeats):
        for k, m in loaded.items():
            t0 = time.perf_counter()
            m.score(frames[r % len(frames)], face)
            samples[k].append((time.perf_counter() - t0) * 1e3)
    for n in MODELS:
        out[n] = {v: statistics.median(samples[(n, v)]) for v in ("int8", "float32")}
    out["all_int8_ms"] = sum(out[n]["int8"] for n in MODELS)
    return out


def int8_agreement(models_dir: Path, crops: pad_data.Crops) -> dict:
    from edge_app.tflite_model import load_model

    cal = np.flatnonzero(crops.domain == CALIBRATION)
    out = {}
    for n, spec in MODELS.items():
        meta = json.loads((models_dir / f"{n}.json").read_text())
        feats = meta["input"]["features"]
        x = model_inputs(crops.arrays[f"view@{meta['input']['crop']['scale']}"][cal], feats)
        m8, mf = load_model(models_dir / f"{n}.json"), load_model(models_dir / f"{n}_float.json")
        s8 = sigmoid([m8.run(x[i:i + 1])[0].ravel()[0] for i in range(len(x))])
        sf = sigmoid([mf.run(x[i:i + 1])[0].ravel()[0] for i in range(len(x))])
        thr = meta["threshold"]
        out[n] = {"n": int(len(x)), "decision_agreement": float(np.mean((s8 >= thr) == (sf >= thr))),
                  "max_abs_score_diff": float(np.max(np.abs(s8 - sf)))}
    return out


# ----------------------------------------------------------------------------- report

def pct(r, ci: bool = True) -> str:
    if r is None:
        return "–"
    if isinstance(r, dict):
        if r["rate"] is None:
            return "n/a (n=0)"
        s = f"{100 * r['rate']:.1f}% ({r['errors']}/{r['n']})"
        if ci:
            s += f" [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"
        return s
    return f"{100 * r:.1f}%"


def num(v, fmt="{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def plots(out_dir: Path, folds: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    doms = [d for d, f in folds.items() if f["ours"]["ROC_AUC"] is not None]
    cols = 3
    rows = (len(doms) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax, dom in zip(axes.ravel(), doms):
        f = folds[dom]
        for key, style, label in (("ours", "-", "ours (fused int8-ready)"), ("peer", "--", "MiniFASNet pair")):
            live, att = f["roc"][key]
            ap, bp, _ = metrics.roc(live, att)
            auc = f[key]["ROC_AUC"]
            ax.plot(ap, 1 - bp, style, label=f"{label}, AUC {auc:.3f}")
        ax.plot([f["ours"]["APCER"]["rate"]], [1 - f["ours"]["BPCER"]["rate"]], "o", color="C0",
                label="ours at the shipped-rule threshold")
        ax.set_title(f"held out: {dom} ({f['n_live']} live / {f['n_attack']} attack)")
        ax.set_xlabel("APCER (attacks accepted)")
        ax.set_ylabel("1 - BPCER (lives accepted)")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(doms):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / "liveness_loso_roc.png", dpi=90)
    plt.close(fig)
    names.append("liveness_loso_roc.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    doms = list(folds)
    x = np.arange(len(doms))
    for k, fr in enumerate(pad_data.FRAMINGS[1:]):
        vals = [100 * (folds[d]["framing_flips"][fr]["rate"] or 0) for d in doms]
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=f"view vs {fr}")
    ax.axhline(5, color="red", ls="--", label="target 5%")
    ax.set_xticks(x, doms, rotation=30, ha="right")
    ax.set_ylabel("decisions that change (%)")
    ax.set_title("Framing check: the same picture in another camera frame (held-out sources)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "liveness_framing.png", dpi=90)
    plt.close(fig)
    names.append("liveness_framing.png")
    return names


def write_report(path: Path, folds: dict, ablation: dict, ablation_base: dict, previous: dict, shipped: dict,
                 crops: pad_data.Crops, pngs: list[str], interpolation: dict | None = None,
                 ablation_version: str = PREVIOUS_VERSION) -> None:
    L: list[str] = []
    add = L.append
    add("# Liveness models: evaluation\n")
    add("Produced by `python -m convert.evaluate` after `python -m convert.pad_data build --cache CACHE`, "
        "`python -m convert.train_liveness --loso --ablation` and `python -m convert.train_liveness`. "
        f"Generated {time.strftime('%Y-%m-%d')}.\n")
    add("## Headline: leave-one-source-out\n")
    add("Each row is a fold: both models and their fusion were trained without the held-out source (and without "
        f"the calibration source `{CALIBRATION}`), the threshold was set by the fold's own models at the equal-error "
        f"point of `{CALIBRATION}`'s phone captures (`convert.train_liveness.calibration_threshold`), and the held-out "
        "source was then scored once. The MiniFASNet pair "
        "(the teachers we start from, float32, their published rule) is scored on exactly the same crops. Rates with "
        "(errors/n) and 95% Wilson intervals. APCER at BPCER 5% is read off the held-out ROC itself: an oracle "
        "operating point that shows ranking, not a deployable threshold.\n")
    add("| held-out source | live / attack | ROC AUC ours | ROC AUC pair | APCER ours | BPCER ours | ACER ours | "
        "ACER pair | APCER@BPCER5% ours (oracle) | alarm precision @1% |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    aucs_ours, aucs_peer = [], []
    for dom, f in folds.items():
        o, p = f["ours"], f["peer"]
        if o["ROC_AUC"] is not None:
            aucs_ours.append(o["ROC_AUC"])
            aucs_peer.append(p["ROC_AUC"])
        prec = (alarm_precision(o["APCER"]["rate"], o["BPCER"]["rate"])
                if o["APCER"]["rate"] is not None and o["BPCER"]["rate"] is not None else None)
        add(f"| {dom} | {f['n_live']} / {f['n_attack']} | {num(o['ROC_AUC'])} | {num(p['ROC_AUC'])} | {pct(o['APCER'])} | "
            f"{pct(o['BPCER'])} | {pct(o['ACER'], False)} | {pct(p['ACER'], False)} | "
            f"{pct(o['APCER_at_BPCER_5pct_oracle'], False)} | {'–' if prec is None else f'{100 * prec:.1f}%'} |")
    if aucs_ours:
        add(f"\nMean ROC AUC over the {len(aucs_ours)} held-out sources with both classes: ours "
            f"**{np.mean(aucs_ours):.3f}**, MiniFASNet pair {np.mean(aucs_peer):.3f}. Better than the pair on "
            f"{sum(a > b for a, b in zip(aucs_ours, aucs_peer))} of {len(aucs_ours)}.\n")
    add("Per model (ROC AUC on the held-out source, each model alone): " + "; ".join(
        f"{dom}: " + ", ".join(f"{n} {v:.3f}" for n, v in f["per_model_auc"].items()) for dom, f in folds.items()
        if f["per_model_auc"]) + "\n")
    add("![ROC per held-out source](liveness_loso_roc.png)\n")
    add("**Earlier threshold rules, on record.** Two rules came before this one, and both were seen on these folds. "
        f"The first was BPCER <= 5% on `{CALIBRATION}`'s lives alone: on its {shipped.get('cal_live_n', '?')} lives a 5% "
        "point is the 2nd-3rd lowest face. The second (v0.3.0) was the equal-error point of a pool: the "
        f"{CALIBRATION} captures plus the validation people of the training sources, each domain weighted equally. "
        f"It left {CALIBRATION}'s own lives at BPCER 48%, which is the fault the independent phone sets had reported. "
        f"v0.4.0 takes the equal-error point of `{CALIBRATION}` alone, the phone-captured source the issue names. "
        "It was chosen for that reason, not by these tables.\n")
    add("| held-out source | BPCER<=5% on kaggle: thr / APCER / BPCER / ACER | pool EER (v0.3.0): thr / APCER / BPCER / ACER |")
    add("|---|---|---|")
    for dom, f in folds.items():
        o, q = f["ours_cal_bpcer5"], f["ours_pool_eer"]
        add(f"| {dom} | {o['threshold']:.3f} / {pct(o['APCER'])} / {pct(o['BPCER'])} / {pct(o['ACER'], False)} | "
            f"{q['threshold']:.3f} / {pct(q['APCER'])} / {pct(q['BPCER'])} / {pct(q['ACER'], False)} |")
    add("")
    add("### Per attack kind (held-out sources, fold threshold)\n")
    add("| held-out source | attack kind | n | APCER ours | APCER pair | ROC AUC ours | ROC AUC pair |")
    add("|---|---|---|---|---|---|---|")
    for dom, f in folds.items():
        for k, v in f["kinds"].items():
            add(f"| {dom} | {k} | {v['ours']['n']} | {pct(v['ours'])} | {pct(v['peer'])} | {num(v['ours_auc'])} | "
                f"{num(v['peer_auc'])} |")
    add("\n## Framing check\n")
    add("The same held-out picture, as its own view and placed into two 640x480 camera frames at random sizes on "
        "other fills (a photo, a flat wall, a blurred copy), each cut by the device's detector and crop code: the share "
        "of faces whose fused decision changes (target <= 5%).\n")
    add("| held-out source | n | ours: flips view vs canvas_a | ours: vs canvas_b | pair: vs canvas_a | pair: vs canvas_b | "
        "ROC AUC ours view / canvas_a / canvas_b | ROC AUC pair view / canvas_a / canvas_b |")
    add("|---|---|---|---|---|---|---|---|")
    for dom, f in folds.items():
        ff, pf, fa, pa = f["framing_flips"], f["peer_framing_flips"], f["framing_auc"], f["peer_framing_auc"]
        add(f"| {dom} | {ff['canvas_a']['n']} | {pct(ff['canvas_a'])} | {pct(ff['canvas_b'])} | {pct(pf['canvas_a'])} | "
            f"{pct(pf['canvas_b'])} | {' / '.join(num(fa[k]) for k in pad_data.FRAMINGS)} | "
            f"{' / '.join(num(pa[k]) for k in pad_data.FRAMINGS)} |")
    add("\n![framing check](liveness_framing.png)\n")
    if previous:
        now_v = f"v{VERSION}"
        add(f"## {PREVIOUS_VERSION} folds beside {now_v}\n")
        add(CHANGE_SINCE_PREVIOUS + f" Both versions are judged here by the same threshold rule (equal-error point of "
            f"`{CALIBRATION}`)." + (f" A source absent from the headline has only its {PREVIOUS_VERSION} fold."
                                    if set(previous) - set(folds) else "") + "\n")
        add(f"The last two columns score the same folds' models on `{CALIBRATION}`: phone captures that neither "
            "version trained on, the kind of picture the independent sets hold. The threshold is set on them, so only "
            "their ranking (AUC) is shown.\n")
        pv = PREVIOUS_VERSION
        add(f"| held-out source | ROC AUC {pv} | ROC AUC {now_v} | ACER {pv} | ACER {now_v} | flips {pv} (canvas_a / canvas_b) "
            f"| flips {now_v} (canvas_a / canvas_b) | {CALIBRATION} AUC {pv} | {CALIBRATION} AUC {now_v} |")
        add("|---|---|---|---|---|---|---|---|---|")
        for dom, p in previous.items():
            f = folds.get(dom)
            now = (num(f["ours"]["ROC_AUC"]), pct(f["ours"]["ACER"], False),
                   " / ".join(pct(f["framing_flips"][k], False) for k in pad_data.FRAMINGS[1:]),
                   num(f["calibration_AUC"])) if f else ("–",) * 4
            add(f"| {dom} | {num(p['ROC_AUC'])} | {now[0]} | {pct(p['ACER'], False)} | {now[1]} | "
                f"{' / '.join(pct(p['framing_flips'][k], False) for k in pad_data.FRAMINGS[1:])} | {now[2]} | "
                f"{num(p['calibration_AUC'])} | {now[3]} |")
        add("")
    elif PREVIOUS_VERSION == "v0.3.0":
        add("## v0.3.0 folds beside v0.4.0\n")
        add(CHANGE_SINCE_PREVIOUS + " The v0.3.0 folds were not kept with this run; the table (held-out AUC, ACER, "
            "framing flips and kaggle AUC of both versions, fold by fold) is in this report at commit 014ed1a. In short: "
            "held-out AUC down on four sources and up on three, kaggle AUC up on five of seven.\n")
    if interpolation:
        add("## Interpolation toward the teacher (every alpha tried)\n")
        shipped_alpha = MODELS["liveness_cnn"].get("interpolation", 1.0)
        table = interpolation["table"]
        best_held = max(table, key=lambda a: table[a]["held_out"])
        add("Each fold's models were fine-tuned once; alpha puts the top's weights that far from the teacher's start "
            "(0: the MiniFASNet weights with their live-vs-attack head) towards the fine-tuned ones (1: fine-tuned all the "
            "way), and the fold's fusion and threshold are refitted at each alpha by the usual rule (weight-space "
            "interpolation, WiSE-FT). The rule, fixed before the folds ran: `python -m convert.choose_interpolation` takes "
            f"the alpha with the highest mean fused ROC AUC on `{CALIBRATION}` (phone captures no fold trained on). It "
            f"chose alpha {interpolation['chosen']:g}; the shipped models use alpha {shipped_alpha:g}. The held-out "
            "columns are shown for the record and were not used to choose."
            + (f" On them alpha {best_held:g} has the highest mean ({table[best_held]['held_out']:.3f} against "
               f"{table[interpolation['chosen']]['held_out']:.3f}); it was seen after the choice and not acted on, because "
               "choosing by these columns would stop them being a test." if best_held != interpolation["chosen"] else "")
            + "\n")
        doms = interpolation["domains"]
        add(f"| alpha | mean {CALIBRATION} AUC (chooses) | mean validation AUC | mean held-out AUC | "
            + " | ".join(doms) + " |")
        add("|---|---|---|---|" + "---|" * len(doms))
        for a, v in interpolation["table"].items():
            mark = " (shipped)" if a == MODELS["liveness_cnn"].get("interpolation", 1.0) else ""
            add(f"| {a:g}{mark} | {v['calibration']:.3f} | {v['validation']:.3f} | {v['held_out']:.3f} | "
                + " | ".join(num(interpolation["folds"][a][d]["held_out"]) for d in doms) + " |")
        add("")
    if ablation:
        add("## Ablation: ELA and wavelet channels in the CNN\n")
        current = ablation_version == f"v{VERSION}"
        add(f"Run on the {ablation_version} folds" + (" (the headline's models)" if current else
                                                      " (without the consistency loss)")
            + ": same folds, same steps, same seed; the CNN takes RGB + ELA + wavelet residual (9 channels, the extra "
            "channels of the first convolution start at zero) instead of RGB alone"
            + (", and is fused with the fold's own attention model." if current else ".")
            + (" The v0.3.0 run (commit 014ed1a) moved the fused AUC by -0.004 to +0.004 on the same four sources."
               if current else "") + "\n")
        add("| held-out source | CNN rgb AUC | CNN +ELA+wavelet AUC | fused (rgb CNN) AUC | fused (+ELA+wavelet CNN) AUC |")
        add("|---|---|---|---|---|")
        for dom in ablation:
            a, f = ablation[dom], ablation_base[dom]
            add(f"| {dom} | {num(f['per_model_auc'].get('liveness_cnn'))} | "
                f"{num(a['per_model_auc'].get('liveness_cnn+ela+wavelet'))} | {num(f['ours']['ROC_AUC'])} | "
                f"{num(a['ours']['ROC_AUC'])} |")
        add("")
    if not ablation:
        add("## Ablation: ELA and wavelet channels in the CNN\n")
        add("Not rerun for this version (its folds, `python -m convert.train_liveness --loso --ablation-only`, take about "
            "as long as the headline's). The last run, on the v0.3.0 folds of casia_fasd_like, oulu, vt_replay and "
            "webcam_replay, is in this report at commit 014ed1a: the ELA + wavelet channels moved the CNN's held-out AUC "
            "by -0.014 to +0.005 and the fused AUC by -0.004 to +0.004, so the shipped CNN takes RGB alone.\n")
    add("## The shipped models\n")
    add(f"Trained on every source but `{CALIBRATION}`; fusion and threshold from the int8 models' scores by the same "
        f"rule as the folds (equal-error point of `{CALIBRATION}`). On the calibration source itself "
        f"(`{CALIBRATION}`, which trained nothing): {shipped.get('cal_text', '')}\n")
    for n, d in shipped.get("delegation", {}).items():
        add(f"- `{n}` int8: {d['delegate_partitions']} XNNPACK partition(s) over {d['nodes']} nodes, whole graph: "
            f"{d['one_partition_covers_graph']}.")
    for n, a in shipped.get("agreement", {}).items():
        add(f"- `{n}` int8 vs float32 on the calibration source: decisions agree on {100 * a['decision_agreement']:.1f}% "
            f"of {a['n']} faces; largest score difference {a['max_abs_score_diff']:.3f}.")
    cost = shipped.get("cost")
    if cost:
        add(f"- Cost per face, one thread, crop + features + invoke (median): " + ", ".join(
            f"`{n}` int8 {cost[n]['int8']:.2f} ms (float32 {cost[n]['float32']:.2f} ms)" for n in MODELS)
            + f"; both int8 models {cost['all_int8_ms']:.2f} ms.")
    add("\n## Data\n")
    add("`convert.pad_data` builds one manifest from the six repositories of `../shared/datasets/pad_sources.tsv` at "
        "their listed commits, plus NUAA; exact and near duplicates removed, geometry normalised (see its docstring).\n")
    add("| domain | live | attack | attack kinds |")
    add("|---|---|---|---|")
    for dom in sorted(set(crops.domain)):
        m = crops.domain == dom
        kinds = sorted(set(crops.attack[m & (crops.label == 0)]))
        add(f"| {dom} | {int((m & (crops.label == 1)).sum())} | {int((m & (crops.label == 0)).sum())} | {', '.join(kinds)} |")
    add("\n## What these figures cannot claim\n")
    add("- Every source here is a public research collection; most are tight face crops from phones or webcams. A "
        "door camera at 1-2 m sees faces smaller and from above: the framing check places pictures into camera-sized "
        "frames, but no held-out source is a door camera.\n"
        "- Attack kinds with few samples (the intervals say how few) are not measured well; masks come from one "
        "source (axon), which has 25 lives, so its AUC is measured against few lives.\n"
        f"- The threshold is the equal-error point of {CALIBRATION}'s {shipped.get('cal_live_n', '?')} lives and "
        f"{shipped.get('cal_attack_n', '?')} attacks: its own error is wide (a handful of faces move it), and a source "
        "whose lives or attacks score differently gets other error rates at it (the held-out APCER and BPCER columns).\n"
        "- Speed here is measured on a shared 2-core x86 machine under load; int8 is not faster than float32 on x86 "
        "(XNNPACK's int8 kernels pay off on ARM), so the Pi figure will differ.\n")
    path.write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "reports")
    ap.add_argument("--loso-dir", type=Path, default=LOSO_DIR)
    ap.add_argument("--previous-dir", type=Path, default=LOSO_DIR.parent / "loso_v030",
                    help=f"folds of the previous version ({PREVIOUS_VERSION}; and its ELA/wavelet ablation), "
                         "shown beside these")
    ap.add_argument("--alpha-dir", type=Path, default=LOSO_DIR.parent / "loso_alpha",
                    help="folds of every interpolation tried (train_liveness --loso --alphas)")
    args = ap.parse_args(argv)
    crops = pad_data.Crops()
    folds, ablation, ablation_base, previous = {}, {}, {}, {}
    for path in sorted(args.loso_dir.glob("*.npz")):
        if not path.stem.endswith("_ablation"):
            folds[path.stem] = fold_figures(path, crops)
    # this version's ablation (train_liveness --loso --ablation[-only] writes <dom>_ablation.npz beside the
    # folds) comes first; the previous version's is the fallback
    for path in sorted(args.loso_dir.glob("*_ablation.npz")):
        dom = path.stem.replace("_ablation", "")
        ablation[dom] = fold_figures(path, crops, peer_framings=False)
        ablation_base[dom] = fold_figures(args.loso_dir / f"{dom}.npz", crops, peer_framings=False)
    ablation_version = f"v{VERSION}" if ablation else PREVIOUS_VERSION
    for path in sorted(args.previous_dir.glob("*.npz")) if args.previous_dir.is_dir() else []:
        dom = path.stem.replace("_ablation", "")
        if path.stem.endswith("_ablation"):
            if ablation_version != PREVIOUS_VERSION:
                continue
            ablation[dom] = fold_figures(path, crops, peer_framings=False)
            ablation_base[dom] = fold_figures(args.previous_dir / f"{dom}.npz", crops, peer_framings=False)
        else:
            previous[dom] = previous_fold_figures(path, crops)
    if not folds:
        print(f"{args.loso_dir}: no folds (run python -m convert.train_liveness --loso)", file=sys.stderr)
        return 1
    shipped = {"delegation": {n: delegation(args.models_dir / f"{n}.tflite") for n in MODELS},
               "agreement": int8_agreement(args.models_dir, crops),
               "cost": per_face_cost(args.models_dir, crops),
               "cal_live_n": int(((crops.domain == CALIBRATION) & (crops.label == 1)).sum()),
               "cal_attack_n": int(((crops.domain == CALIBRATION) & (crops.label == 0)).sum())}
    op = json.loads((args.models_dir / "fusion.json").read_text())["operating_point"]["figures_on_calibration"]
    shipped["cal_text"] = (f"threshold {json.loads((args.models_dir / 'fusion.json').read_text())['threshold']:.3f}, "
                           f"APCER {pct(op['APCER'])}, BPCER {pct(op['BPCER'])}, ROC AUC {op['ROC_AUC']:.3f}.")
    args.out.mkdir(parents=True, exist_ok=True)
    pngs = plots(args.out, folds)
    write_report(args.out / "liveness.md", folds, ablation, ablation_base, previous, shipped, crops, pngs,
                 interpolation_table(args.alpha_dir, crops), ablation_version)
    summary = {dom: {"ROC_AUC": f["ours"]["ROC_AUC"], "peer_ROC_AUC": f["peer"]["ROC_AUC"], "APCER": f["ours"]["APCER"],
                     "BPCER": f["ours"]["BPCER"], "ACER": f["ours"]["ACER"], "peer_ACER": f["peer"]["ACER"],
                     "framing_flips": f["framing_flips"], "n_live": f["n_live"], "n_attack": f["n_attack"]}
               for dom, f in folds.items()}
    fusion_path = args.models_dir / "fusion.json"
    fusion = json.loads(fusion_path.read_text())
    fusion["evaluation"] = {"leave_one_source_out": summary,
                            "data": "each fold: trained without the held-out source and without the calibration source; "
                                    "threshold from the calibration source; report: models/reports/liveness.md",
                            "command": "python -m convert.evaluate"}
    write_metadata(fusion_path, fusion)
    print(f"wrote {args.out / 'liveness.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
