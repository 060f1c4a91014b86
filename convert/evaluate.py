"""Evaluate the shipped liveness models and their fusion on held-out data; write the report.

    python -m convert.evaluate [--models-dir models] [--out models/reports]

Held-out data (``convert.liveness_data`` split "test"): NUAA test subjects (live, real
prints), attacks simulated from those subjects' live frames, and UTKFace test
identities (live faces in scenes, simulated print and replay attacks of the same
images). Nothing here was used to train a model, pick an epoch, fit the fusion or set
a threshold: thresholds are the ones shipped in the metadata (set on validation data).

For each model (int8, as shipped), for the fusion and for the MiniFASNet teachers
(reference row): APCER per attack type, BPCER per live source, ACER, EER, ROC AUC, each
rate with n and its 95% Wilson interval; BPCER at APCER 1% and APCER at BPCER 5% (read
off the test ROC: descriptive, not an operating point anyone could have chosen); the
precision of attack alarms at 1% attack prevalence; BPCER by gender, age band and
ethnicity on UTKFace live faces; int8 against float32 (decision agreement, timings, one
XNNPACK partition). Cross-source figures come from the models of
``python -m convert.train_liveness --cross-source`` when ``runs/cross_source`` holds them.

Writes ``<out>/liveness.md``, ``liveness_roc.png``, ``liveness_scores.png``, all figures as
JSON to ``runs/liveness_evaluation.json``, and adds test figures to each model's metadata
``evaluation``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from convert import liveness_data as data
from convert import metrics
from convert.datasets import NUAA_SPLIT, REPO
from convert.train_liveness import MODELS, features_of, logit, scale_rgb, sigmoid
from edge_app.tflite_model import write_metadata

PREVALENCE = 0.01
SIM_ATTACKS = ("print_edge", "print_full", "replay_edge", "replay_full")

# (live source, attack source, attack kinds): the attack types reported separately
ATTACK_SETS = {
    "NUAA print (real)": ("nuaa", "nuaa", ("nuaa_print",)),
    "sim print, UTKFace": ("utk", "utk", ("print_edge", "print_full")),
    "sim replay, UTKFace": ("utk", "utk", ("replay_edge", "replay_full")),
    "sim print, NUAA subjects": ("nuaa", "nuaa_sim", ("print_edge", "print_full")),
    "sim replay, NUAA subjects": ("nuaa", "nuaa_sim", ("replay_edge", "replay_full")),
}
DETAIL_SETS = {
    "UTKFace print, edge in view": ("utk", "utk", ("print_edge",)),
    "UTKFace print, full frame": ("utk", "utk", ("print_full",)),
    "UTKFace replay, bezel in view": ("utk", "utk", ("replay_edge",)),
    "UTKFace replay, full frame": ("utk", "utk", ("replay_full",)),
    "NUAA-subject print, full frame": ("nuaa", "nuaa_sim", ("print_full",)),
    "NUAA-subject replay, full frame": ("nuaa", "nuaa_sim", ("replay_full",)),
}
AGE_BANDS = ((0, 12), (13, 19), (20, 39), (40, 59), (60, 200))


def op_bpcer_at_apcer(live, attack, target=0.01) -> dict:
    """BPCER at the threshold where APCER first drops to <= target (read off the test ROC)."""
    a = np.sort(attack)[::-1]
    k = int(np.floor(target * len(a)))  # at most k attacks may score >= threshold
    thr = np.nextafter(a[k], np.inf) if k < len(a) else -np.inf
    return {"threshold": float(thr), "APCER": float(np.mean(attack >= thr)), "BPCER": metrics.bpcer(live, thr)}


def op_apcer_at_bpcer(live, attack, target=0.05) -> dict:
    thr = metrics.threshold_for_bpcer(live, target)
    return {"threshold": float(thr), "BPCER": float(np.mean(live < thr)), "APCER": metrics.apcer(attack, thr)}


def alarm_precision(apcer: float, bpcer: float, p: float = PREVALENCE) -> float | None:
    tp = (1 - apcer) * p
    fp = bpcer * (1 - p)
    return tp / (tp + fp) if tp + fp > 0 else None


def figures_for(scores: np.ndarray, split: data.Split, threshold: float) -> dict:
    out = {"threshold": threshold, "live": {}, "attacks": {}, "attack_details": {}}
    for src in ("nuaa", "utk"):
        out["live"][src] = metrics.bpcer(scores[split.mask(src, "none", 1)], threshold)
    for table, sets in (("attacks", ATTACK_SETS), ("attack_details", DETAIL_SETS)):
        for name, (live_src, att_src, kinds) in sets.items():
            live = scores[split.mask(live_src, "none", 1)]
            att = scores[split.mask(att_src, kinds, 0)]
            ap = metrics.apcer(att, threshold)
            bp = out["live"][live_src]
            entry = {"APCER": ap, "BPCER_of": live_src}
            if table == "attacks":
                entry.update({
                    "ACER": (ap["rate"] + bp["rate"]) / 2,
                    "EER": metrics.eer(live, att),
                    "ROC_AUC": metrics.auc(live, att),
                    "BPCER_at_APCER_1pct": op_bpcer_at_apcer(live, att),
                    "APCER_at_BPCER_5pct": op_apcer_at_bpcer(live, att),
                    "alarm_precision_at_1pct_prevalence": alarm_precision(ap["rate"], bp["rate"]),
                })
            out[table][name] = entry
    # all live vs all attacks of the test split, one line
    live = scores[split.label == 1]
    att = scores[split.label == 0]
    ap, bp = metrics.apcer(att, threshold), metrics.bpcer(live, threshold)
    out["pooled"] = {"APCER": ap, "BPCER": bp, "ACER": (ap["rate"] + bp["rate"]) / 2, "EER": metrics.eer(live, att),
                     "ROC_AUC": metrics.auc(live, att),
                     "alarm_precision_at_1pct_prevalence": alarm_precision(ap["rate"], bp["rate"])}
    out["groups"] = group_bpcer(scores, split, threshold)
    return out


def group_bpcer(scores: np.ndarray, split: data.Split, threshold: float) -> dict:
    live = np.nonzero(split.mask("utk", "none", 1))[0]
    recs = [split.records[i] for i in live]
    s = scores[live]
    out = {}
    for attr in ("gender", "race", "age"):
        groups: dict[str, list[int]] = {}
        for j, r in enumerate(recs):
            if attr == "age":
                key = next(f"{lo}-{hi if hi < 200 else '+'}" for lo, hi in AGE_BANDS if lo <= r["age"] <= hi)
            else:
                key = r[attr]
            groups.setdefault(key, []).append(j)
        table = {k: metrics.bpcer(s[v], threshold) for k, v in sorted(groups.items())}
        rates = [v["rate"] for v in table.values()]
        best, worst = min(rates), max(rates)
        out[attr] = {"groups": table, "worst_over_best": (worst / best) if best > 0 else (None if worst > 0 else 1.0),
                     "worst_minus_best": worst - best}
    return out


# ---------------------------------------------------------------------------- scoring


def load_models(models_dir: Path):
    from edge_app.liveness import load_liveness_model

    out = {}
    for name in MODELS:
        int8 = load_liveness_model(models_dir / f"{name}.json")
        flt = load_liveness_model(models_dir / f"{name}_float.json")
        out[name] = (int8, flt)
    return out


def model_inputs(name: str, split: data.Split, lm) -> np.ndarray:
    spec = MODELS[name]
    if abs(lm.crop_scale - data.SCALES[spec["crop"]]) > 1e-9 or lm.crop_size != data.SIZE or lm.features != spec["features"]:
        raise SystemExit(f"{name}: metadata crop/features ({lm.crop_scale}, {lm.crop_size}, {lm.features}) differ from "
                         f"the evaluation data ({data.SCALES[spec['crop']]}, {data.SIZE}, {spec['features']})")
    return scale_rgb(features_of(split.crops[spec["crop"]], spec["features"], f"{split.name}_{spec['crop']}"), spec["features"])


def run_logits(model, x: np.ndarray) -> np.ndarray:
    return np.array([model.run(x[i : i + 1])[0].ravel()[0] for i in range(len(x))], np.float64)


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


def timings(models_dir: Path, names: list[str], x_by_name: dict, crops: np.ndarray, repeats: int = 300) -> dict:
    """Median / p95 ms per crop, 1 thread, int8 and float32 interleaved in one run."""
    from edge_app.features import model_input
    from edge_app.tflite_model import load_model

    loaded = {}
    for name in names:
        loaded[(name, "int8")] = load_model(models_dir / f"{name}.json", num_threads=1)
        loaded[(name, "float32")] = load_model(models_dir / f"{name}_float.json", num_threads=1)
    samples = {k: [] for k in loaded}
    for k, m in loaded.items():  # warm-up
        for _ in range(20):
            m.run(x_by_name[k[0]][:1])
    for r in range(repeats):
        for k, m in loaded.items():
            x = x_by_name[k[0]][r % len(x_by_name[k[0]])][None]
            t0 = time.perf_counter()
            m.run(x)
            samples[k].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name in names:
        i8, f32 = samples[(name, "int8")], samples[(name, "float32")]
        out[name] = {"int8_ms": {"median": statistics.median(i8), "p95": float(np.percentile(i8, 95))},
                     "float32_ms": {"median": statistics.median(f32), "p95": float(np.percentile(f32, 95))},
                     "float_over_int8": statistics.median(f32) / statistics.median(i8)}
    # feature planes of the CNN on real 80x80 test crops (the device computes them per face)
    feats = {}
    for names_ in (["rgb"], ["rgb", "ela", "wavelet"]):
        for i in range(10):
            model_input(crops[i % len(crops)], names_)
        t = []
        for i in range(200):
            crop = crops[i % len(crops)]
            t0 = time.perf_counter()
            model_input(crop, names_)
            t.append((time.perf_counter() - t0) * 1e3)
        feats["+".join(names_)] = {"median": statistics.median(t), "p95": float(np.percentile(t, 95))}
    out["features_ms"] = feats
    return out


def device_samples(models_dir: Path) -> dict:
    """What the device code says about edge_app/sample/{live,print}.jpg (not tuned on, just reported)."""
    from edge_app.config import Config
    from edge_app.detector import load_detector
    from edge_app.images import load_rgb
    from edge_app.liveness import load_scorer

    cfg = Config()
    det = load_detector(models_dir, 1, cfg.detector.min_score)
    scorer = load_scorer(models_dir, list(MODELS))
    out = {}
    for name in ("live", "print"):
        rgb = load_rgb(REPO / "edge_app" / "sample" / f"{name}.jpg")
        faces = det.detect(rgb)
        if not faces:
            out[name] = {"face": False}
            continue
        fs = scorer.score(rgb, max(faces, key=lambda f: f.w * f.h))
        out[name] = {"face": True, "scores": fs.scores, "fused": fs.fused,
                     "decision": "live" if fs.fused >= scorer.threshold else "attack"}
    return out


def cross_source(cross_dir: Path, test: data.Split) -> dict | None:
    summary_path = cross_dir / "cross_source.json"
    if not summary_path.is_file():
        return None
    from ai_edge_litert.interpreter import Interpreter

    summary = json.loads(summary_path.read_text())
    out = {}
    for key, info in summary.items():
        it = Interpreter(model_path=str(cross_dir / info["file"]), num_threads=1)
        it.allocate_tensors()
        i_idx, o_idx = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        spec = MODELS[info["model"]]
        x = scale_rgb(features_of(test.crops[spec["crop"]], spec["features"], f"test_{spec['crop']}"), spec["features"])
        z = []
        for i in range(len(x)):
            it.set_tensor(i_idx, x[i : i + 1])
            it.invoke()
            z.append(float(it.get_tensor(o_idx).ravel()[0]))
        s = sigmoid(np.array(z))
        thr = info["threshold"]
        rows = {}
        for name, (live_src, att_src, kinds) in ATTACK_SETS.items():
            live, att = s[test.mask(live_src, "none", 1)], s[test.mask(att_src, kinds, 0)]
            rows[name] = {"ROC_AUC": metrics.auc(live, att), "APCER": metrics.apcer(att, thr),
                          "BPCER": metrics.bpcer(live, thr), "APCER_at_BPCER_5pct": op_apcer_at_bpcer(live, att)["APCER"]}
        out[key] = {**info, "test": rows}
    return out


# ----------------------------------------------------------------------------- report


def pct(r: dict | float | None, ci: bool = True) -> str:
    if r is None:
        return "–"
    if isinstance(r, dict):
        if r["rate"] is None:
            return "n/a (n=0)"
        s = f"{100 * r['rate']:.2f}% ({r['errors']}/{r['n']})"
        if ci:
            s += f" [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"
        return s
    return f"{100 * r:.2f}%"


def prec_str(p: float | None) -> str:
    return "–" if p is None else f"{100 * p:.1f}%"


def plots(out_dir: Path, scores: dict, test: data.Split, thresholds: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, name in zip(axes, ("NUAA print (real)", "sim print, UTKFace", "sim replay, UTKFace")):
        live_src, att_src, kinds = ATTACK_SETS[name]
        lm, am = test.mask(live_src, "none", 1), test.mask(att_src, kinds, 0)
        for label, s in scores.items():
            ap, bp, _ = metrics.roc(s[lm], s[am])
            ax.plot(np.maximum(ap, 1e-4), 1 - bp, label=f"{label} (AUC {metrics.auc(s[lm], s[am]):.3f})")
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_xlabel("APCER (attacks accepted)")
        ax.set_ylabel("1 - BPCER (live accepted)")
        ax.set_title(f"{name}: {int(lm.sum())} live / {int(am.sum())} attacks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Held-out test ROC (live source matches the attack source)")
    fig.tight_layout()
    fig.savefig(out_dir / "liveness_roc.png", dpi=110)
    plt.close(fig)
    files.append("liveness_roc.png")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    groups = {
        "live NUAA": test.mask("nuaa", "none", 1), "live UTKFace": test.mask("utk", "none", 1),
        "NUAA print": test.mask("nuaa", "nuaa_print", 0), "sim print": test.mask(("utk", "nuaa_sim"), ("print_edge", "print_full"), 0),
        "sim replay": test.mask(("utk", "nuaa_sim"), ("replay_edge", "replay_full"), 0),
    }
    for ax, label in zip(axes, ("liveness_cnn", "liveness_attn", "fusion")):
        s = scores[label]
        for g, m in groups.items():
            ax.hist(s[m], bins=40, range=(0, 1), histtype="step", density=True, label=f"{g} ({int(m.sum())})")
        ax.axvline(thresholds[label], color="k", ls="--", lw=1, label=f"threshold {thresholds[label]:.3f}")
        ax.set_title(f"{label}: score P(live) on test")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "liveness_scores.png", dpi=110)
    plt.close(fig)
    files.append("liveness_scores.png")
    return files


def write_report(path: Path, res: dict) -> None:
    L = []
    add = L.append
    add("# Liveness models: held-out evaluation\n")
    add("Produced by `python -m convert.evaluate` (after `python -m convert.liveness_data`, "
        "`python -m convert.train_liveness` and, for the cross-source table, "
        "`python -m convert.train_liveness --cross-source`). All figures are on the **test** split: NUAA subjects "
        f"{', '.join(NUAA_SPLIT['test'])} and {data.UTK_SPLIT['test']} UTKFace test identities, never used for "
        "training, epoch choice, fusion fitting or thresholds. Scores are P(live); a face is accepted as live when "
        "its score >= the shipped threshold. Rates: errors/n and the 95% Wilson interval in brackets.\n")
    add("## Shipped models\n")
    add("| model | architecture | parameters | input | crop scale (trained on) | threshold (val) | training |")
    add("|---|---|---|---|---|---|---|")
    for name, m in res["model_info"].items():
        add(f"| {name} | {m['architecture']} | {m['parameters']:,} | {' + '.join(m['features'])} 80x80 "
            f"({m['channels']} ch, int8) | {m['scale']} ({m['jitter'][0]}-{m['jitter'][1]}) | {m['threshold']:.4f} "
            f"(per source {', '.join(f'{k} {v:.3f}' for k, v in m['per_source'].items())}) | {m['epochs']} epochs, "
            f"epoch {m['epoch_kept']} kept, {m['train_seconds']:.0f}s |")
    fu = res["fusion"]
    add(f"\nFusion (`models/fusion.json`): fused = sigmoid({fu['bias']:.3f} + "
        + " + ".join(f"{w:.3f} * logit({n})" for n, w in fu["weights"].items())
        + f"), live when fused >= {fu['threshold']:.4f}. Weights: logistic regression on the int8 models' validation "
        "logits (class- and source-balanced). Threshold rule, for every model and the fusion: BPCER <= 5% on the live "
        "faces of *each* validation source (NUAA validation subjects, UTKFace validation identities), i.e. the lower of "
        "the two per-source thresholds. There is no third source to calibrate on: validation data holds different "
        "people (and different CASIA scenes) than training, but the same sources; the cross-source table below shows "
        "how far a threshold moves when the source changes.\n")
    add("Training data (train split, frames with a detected face): "
        + ", ".join(f"{k} {v}" for k, v in res["train_composition"].items())
        + ". Targets mix the label with the MiniFASNet teachers' P(live) (distillation, weight "
        f"{res['teacher_weight']}); the teachers are not shipped or loaded by the device.\n")
    add("## Test data\n")
    add("| frames (face found) | n |\n|---|---|")
    for k, v in sorted(res["test_composition"].items()):
        add(f"| {k} | {v} |")
    lost = {k: v for k, v in res["no_face"].items() if v["no_face"]}
    add(f"\nFrames where the device's detector found no face (a `no_face` decision on the device, never live; "
        f"left out of the rates below): {json.dumps({k: v['no_face'] for k, v in lost.items()}) if lost else 'none'}.\n")
    add("Caveats on the data: NUAA is 15 people, one webcam, prints only (4 test subjects: in-domain figures "
        "overrate real-world performance). The simulated attacks come from our own simulator "
        "(`convert/attack_sim.py`), the same one the models were trained with: a low APCER on them shows the models "
        "learned the simulator, not that they catch real replays. UTKFace live frames are aligned crops composed into "
        "scenes, not camera frames of people. None of this is the independent phone-captured set.\n")

    systems = list(res["systems"])
    add("## Error rates at the shipped thresholds\n")
    for sysname in systems:
        f = res["systems"][sysname]
        add(f"### {sysname} (threshold {f['threshold']:.4f})\n")
        add("| live source | BPCER |\n|---|---|")
        for src, r in f["live"].items():
            add(f"| {src} | {pct(r)} |")
        add("")
        add("| attack type | APCER | ACER | EER | ROC AUC | BPCER @ APCER 1% | APCER @ BPCER 5% | alarm precision @ 1% prevalence |")
        add("|---|---|---|---|---|---|---|---|")
        for name, a in f["attacks"].items():
            prec = a["alarm_precision_at_1pct_prevalence"]
            add(f"| {name} (BPCER of {a['BPCER_of']}) | {pct(a['APCER'])} | {pct(a['ACER'])} | {pct(a['EER'])} | "
                f"{a['ROC_AUC']:.4f} | {pct(a['BPCER_at_APCER_1pct']['BPCER'])} | {pct(a['APCER_at_BPCER_5pct']['APCER'])} | "
                f"{prec_str(prec)} |")
        p = f["pooled"]
        add(f"| **all test attacks vs all test live** | {pct(p['APCER'])} (BPCER {pct(p['BPCER'], False)}) | {pct(p['ACER'])} | "
            f"{pct(p['EER'])} | {p['ROC_AUC']:.4f} | | | "
            f"{prec_str(p['alarm_precision_at_1pct_prevalence'])} |")
        add("\nBy presentation style:\n")
        add("| attack | APCER |\n|---|---|")
        for name, a in f["attack_details"].items():
            add(f"| {name} | {pct(a['APCER'])} |")
        add("")
    add("Notes: *BPCER @ APCER 1%* and *APCER @ BPCER 5%* are read off the test ROC itself (a threshold chosen "
        "with the test labels): they describe the curve, they are not achievable operating points. "
        "*Alarm precision* = (1-APCER)p / ((1-APCER)p + BPCER(1-p)) at p = 1% attacks, with the shipped threshold "
        "and that row's APCER and BPCER. The teacher row (MiniFASNet V2 @2.7 + V1SE @4.0, mean softmax) is shown at "
        "its published rule (P(live) >= 0.5, close to its argmax rule) and at a threshold set by our rule on "
        "validation data.\n")

    add("## BPCER by group (UTKFace test identities, live faces, shipped thresholds)\n")
    for sysname in systems:
        g = res["systems"][sysname]["groups"]
        add(f"**{sysname}**\n")
        add("| attribute | group | BPCER |\n|---|---|---|")
        for attr in ("gender", "age", "race"):
            for k, r in g[attr]["groups"].items():
                add(f"| {attr} | {k} | {pct(r)} |")
            wob = g[attr]["worst_over_best"]
            add(f"| {attr} | worst / best | {'∞ (best group 0%)' if wob is None else f'{wob:.2f}x'} "
                f"(difference {100 * g[attr]['worst_minus_best']:.1f} points) |")
        add("")

    add("## int8 against float32\n")
    add("| model | decision agreement (all test crops) | mean abs score difference | max abs difference | "
        "int8 median / p95 ms | float32 median / p95 ms | float / int8 | XNNPACK |")
    add("|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        q = res["quantization"][name]
        t = res["timing"][name]
        d = res["delegation"][name]
        add(f"| {name} | {pct(q['agreement'])} ({q['n']} crops) | {q['mean_abs_diff']:.4f} | {q['max_abs_diff']:.4f} | "
            f"{t['int8_ms']['median']:.3f} / {t['int8_ms']['p95']:.3f} | {t['float32_ms']['median']:.3f} / "
            f"{t['float32_ms']['p95']:.3f} | {t['float_over_int8']:.2f}x | "
            f"int8: {d['int8']['delegate_partitions']} partition(s) over {d['int8']['nodes']} nodes, whole graph: "
            f"{d['int8']['one_partition_covers_graph']}; float: {d['float32']['delegate_partitions']} / "
            f"{d['float32']['one_partition_covers_graph']} |")
    fq = res["quantization"]["fusion"]
    add(f"| fusion (int8 vs float inputs) | {pct(fq['agreement'])} | {fq['mean_abs_diff']:.4f} | {fq['max_abs_diff']:.4f} | | | | |")
    feats = res["timing"]["features_ms"]
    add(f"\nTimings: ai-edge-litert, 1 thread, {res['timing_repeats']} runs per model interleaved int8/float in one "
        "process (`Model.run`, including quantize/dequantize), on this shared 2-core x86 machine; compare ratios, "
        "not absolute values. Feature planes per 80x80 crop: "
        + ", ".join(f"{k} {v['median']:.3f} ms median" for k, v in feats.items()) + ".")
    add("Delegation check: after `allocate_tensors()` the interpreter's node list (`_get_ops_details()`) holds the "
        "original nodes plus one `DELEGATE` node per XNNPACK partition; one partition whose inputs hold the model "
        "input and whose outputs hold the model output means XNNPACK runs the whole graph.\n")

    cs = res.get("cross_source")
    add("## Cross-source check\n")
    if not cs:
        add("Not run (`python -m convert.train_liveness --cross-source` writes the models to runs/cross_source).\n")
    else:
        add("Each architecture trained on one source only (same recipe, fewer epochs), epoch and threshold from "
            "that source's validation data, then tested on both sources' test data. `nuaa_only` = NUAA train subjects "
            "(live + real prints, no simulation, no UTKFace); `utk_only` = UTKFace train identities (live + simulated "
            "attacks, no NUAA). APCER/BPCER at the model's own threshold.\n")
        add("| model @ training source | test set | ROC AUC | APCER | BPCER | APCER @ BPCER 5% (test ROC) |\n|---|---|---|---|---|---|")
        for key, info in cs.items():
            for name, r in info["test"].items():
                add(f"| {key} | {name} | {r['ROC_AUC']:.4f} | {pct(r['APCER'])} | {pct(r['BPCER'], False)} | "
                    f"{pct(r['APCER_at_BPCER_5pct'])} |")
        add("")
        auc = {k: {n: r["ROC_AUC"] for n, r in v["test"].items()} for k, v in cs.items()}
        lines = []
        for model in MODELS:
            a, b = auc.get(f"{model}@utk_only"), auc.get(f"{model}@nuaa_only")
            if a and b:
                lines.append(f"{model}: trained on simulation only (utk_only) it separates real NUAA prints with ROC AUC "
                             f"{a['NUAA print (real)']:.3f}; trained on NUAA only it scores "
                             f"{b['sim print, UTKFace']:.3f} / {b['sim replay, UTKFace']:.3f} on simulated print / replay "
                             f"of UTKFace identities (0.5 = chance).")
        for line in lines:
            add(f"- {line}")
        add("\nThresholds do not transfer across sources (compare APCER/BPCER at each model's own threshold with the "
            "in-domain rows). Shipped models are trained on both sources (tables above).\n")

    add("## Built-in sample frames (device code, not tuned on)\n")
    for name, r in res["device_samples"].items():
        if not r["face"]:
            add(f"- `{name}.jpg`: no face found")
        else:
            add(f"- `{name}.jpg`: {r['decision']} (fused {r['fused']:.4f}; "
                + ", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items()) + ")")
    add("")
    add("## Targets\n")
    for line in res["targets"]:
        add(f"- {line}")
    add("\n![ROC](liveness_roc.png)\n\n![scores](liveness_scores.png)\n")
    path.write_text("\n".join(L) + "\n")


def targets(res: dict) -> list[str]:
    f = res["systems"]["fusion"]
    out = []
    nuaa = f["attacks"]["NUAA print (real)"]
    out.append(f"Held-out NUAA subjects ACER < 1%: fusion ACER {pct(nuaa['ACER'])} "
               f"(APCER {pct(nuaa['APCER'], False)}, BPCER {pct(f['live']['nuaa'], False)}) -> "
               f"{'met' if nuaa['ACER'] < 0.01 else 'missed'}")
    for name in ("sim print, UTKFace", "sim replay, UTKFace", "sim print, NUAA subjects", "sim replay, NUAA subjects"):
        a = f["attacks"][name]
        at = a["APCER_at_BPCER_5pct"]["APCER"]["rate"]
        out.append(f"{name}: APCER < 5% at BPCER 5%: {pct(at)} read off the test ROC, {pct(a['APCER'], False)} at the "
                   f"shipped threshold (BPCER there {pct(f['live'][a['BPCER_of']], False)}) -> {'met' if at < 0.05 else 'missed'}")
    for attr in ("gender", "age", "race"):
        g = f["groups"][attr]
        wob = g["worst_over_best"]
        ok = wob is not None and wob <= 1.5
        out.append(f"BPCER spread by {attr} (UTKFace live): worst/best "
                   f"{'inf' if wob is None else f'{wob:.2f}x'} -> {'met' if ok else 'missed'} (small groups: see intervals)")
    for name in MODELS:
        a = res["quantization"][name]["agreement"]["rate"]
        out.append(f"{name} int8 vs float decisions within 1%: agreement {100 * a:.2f}% -> {'met' if a >= 0.99 else 'missed'}")
    for name in MODELS:
        t = res["timing"][name]["int8_ms"]["median"]
        out.append(f"{name} int8 <= ~1.5 ms per crop (1 thread): {t:.3f} ms median -> {'met' if t <= 1.5 else 'missed'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "reports")
    parser.add_argument("--cross-dir", type=Path, default=REPO / "runs" / "cross_source")
    parser.add_argument("--json", type=Path, default=REPO / "runs" / "liveness_evaluation.json",
                        help="every figure of the report, machine-readable")
    parser.add_argument("--timing-repeats", type=int, default=300)
    parser.add_argument("--no-metadata", action="store_true", help="do not add test figures to the model JSONs")
    args = parser.parse_args(argv)

    test, val = data.load("test"), data.load("val")
    models = load_models(args.models_dir)
    fusion = json.loads((args.models_dir / "fusion.json").read_text())
    names = list(MODELS)
    logits, inputs = {}, {}
    for name in names:
        int8, flt = models[name]
        x = model_inputs(name, test, int8)
        inputs[name] = x
        logits[name] = {"int8": run_logits(int8.model, x), "float32": run_logits(flt.model, x)}
        print(f"scored {len(x)} test crops with {name} (int8 and float32)", file=sys.stderr, flush=True)

    def fuse(zs: dict) -> np.ndarray:
        # the device's formula: logit(sigmoid(z)) == z up to the clip in edge_app.liveness.logit
        return sigmoid(fusion["bias"] + sum(fusion["weights"][n] * logit(sigmoid(zs[n])) for n in names))

    scores = {n: sigmoid(logits[n]["int8"]) for n in names}
    scores["fusion"] = fuse({n: logits[n]["int8"] for n in names})
    fused_float = fuse({n: logits[n]["float32"] for n in names})
    thresholds = {n: models[n][0].threshold for n in names}
    thresholds["fusion"] = float(fusion["threshold"])

    # teachers: their published rule, and our validation rule applied to them
    from convert.train_liveness import threshold_per_source

    teacher_val_thr, _ = threshold_per_source(val.teacher, val)
    systems = {n: figures_for(scores[n], test, thresholds[n]) for n in ("fusion", *names)}
    systems["teachers (MiniFASNet, P>=0.5)"] = figures_for(test.teacher.astype(np.float64), test, 0.5)
    systems[f"teachers (MiniFASNet, our val rule: {teacher_val_thr:.3f})"] = figures_for(
        test.teacher.astype(np.float64), test, teacher_val_thr)

    quant = {}
    for name in names:
        s8, sf = scores[name], sigmoid(logits[name]["float32"])
        thr = thresholds[name]
        agree = int(np.sum((s8 >= thr) == (sf >= thr)))
        quant[name] = {"agreement": metrics.rate(agree, len(s8)), "n": len(s8),
                       "mean_abs_diff": float(np.mean(np.abs(s8 - sf))), "max_abs_diff": float(np.max(np.abs(s8 - sf)))}
    agree = int(np.sum((scores["fusion"] >= thresholds["fusion"]) == (fused_float >= thresholds["fusion"])))
    quant["fusion"] = {"agreement": metrics.rate(agree, len(fused_float)), "n": len(fused_float),
                       "mean_abs_diff": float(np.mean(np.abs(scores["fusion"] - fused_float))),
                       "max_abs_diff": float(np.max(np.abs(scores["fusion"] - fused_float)))}

    print("timing int8 vs float32 ...", file=sys.stderr, flush=True)
    timing = timings(args.models_dir, names, {n: inputs[n][:64] for n in names}, test.crops["cnn"][:64], args.timing_repeats)
    deleg = {n: {"int8": delegation(args.models_dir / f"{n}.tflite"), "float32": delegation(args.models_dir / f"{n}_float.tflite")}
             for n in names}

    comp: dict[str, int] = {}
    for r in test.records:
        k = f"{r['source']}:{r['attack']}"
        comp[k] = comp.get(k, 0) + 1
    res = {
        "command": "python -m convert.evaluate",
        "test_composition": comp,
        "no_face": test.no_face,
        "systems": systems,
        "quantization": quant,
        "timing": timing,
        "timing_repeats": args.timing_repeats,
        "delegation": deleg,
        "cross_source": cross_source(args.cross_dir, test),
        "device_samples": device_samples(args.models_dir),
        "models": {n: json.loads((args.models_dir / f"{n}.json").read_text())["sha256"] for n in names},
    }
    info = {}
    for name in names:
        meta = models[name][0].model.metadata
        td = meta["training_data"]
        info[name] = {"architecture": meta["architecture"]["description"], "parameters": meta["architecture"]["parameters"],
                      "features": meta["input"]["features"], "channels": int(meta["input"]["shape"][-1]),
                      "scale": meta["input"]["crop"]["scale"], "jitter": meta["input"]["crop"]["trained_on_scales"]["jitter_range"],
                      "threshold": meta["threshold"], "per_source": meta["operating_point"]["per_source_thresholds"],
                      "epochs": td["epochs"], "epoch_kept": td["epoch_kept"], "train_seconds": td["train_seconds"]}
        res["train_composition"] = td["composition"]
    from convert.train_liveness import TEACHER_WEIGHT

    res["model_info"] = info
    res["teacher_weight"] = TEACHER_WEIGHT
    res["fusion"] = {k: fusion[k] for k in ("weights", "bias", "threshold")}
    res["targets"] = targets(res)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_scores = {**{n: scores[n] for n in ("fusion", *names)}, "teachers": test.teacher.astype(np.float64)}
    plots(args.out, plot_scores, test, thresholds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1, default=float) + "\n")
    write_report(args.out / "liveness.md", res)

    if not args.no_metadata:
        def brief(f: dict) -> dict:
            return {"live_BPCER": f["live"], "attacks": {k: {kk: a[kk] for kk in ("APCER", "ACER", "EER", "ROC_AUC") if kk in a}
                                                           for k, a in f["attacks"].items()}}

        test_desc = (f"test split: NUAA subjects {', '.join(NUAA_SPLIT['test'])} (live, real prints, simulated attacks "
                     f"from their live frames) and {data.UTK_SPLIT['test']} UTKFace test identities (live in scenes, "
                     "simulated print/replay); report: models/reports/liveness.md")
        for name in names:
            for suffix in ("", "_float"):
                p = args.models_dir / f"{name}{suffix}.json"
                meta = json.loads(p.read_text())
                meta.setdefault("evaluation", {})["test"] = {"data": test_desc, "scored_as": "int8 model",
                                                             "figures": brief(systems[name]),
                                                             "int8_float_decision_agreement": quant[name]["agreement"]}
                write_metadata(p, meta)
        fusion["evaluation"] = {"test": {"data": test_desc, "figures": brief(systems["fusion"])}}
        write_metadata(args.models_dir / "fusion.json", fusion)
    for line in res["targets"]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
