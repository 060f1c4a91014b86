"""Figures for the Keras MiniFASNet pair: ReLU drift, distillation cost, int8 delegation and speed.

    .venv/bin/python -m convert.minifasnet_bench [--datasets ../shared/datasets] [--padcache DIR]
        [--teachers ../shared/teachers/minifasnet] [--only drift,distill,int8,train]

Crops are cut by the device's detector and crop code from NUAA frames (live, print) and from the
real PAD images of a padcache directory (read in place, labels from the folder names); they are
cached under .cache/ (never committed). Prints one JSON object per section.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from convert import metrics
from convert import minifasnet as mf
from convert.datasets import REPO

CACHE = REPO / ".cache"
LIVE_DIRS = re.compile(r"/(live|real)/", re.I)
ATTACK_DIRS = re.compile(r"/(fake|spoof|spool)/", re.I)


def nuaa_paths(nuaa: Path, per_class: int, rng) -> list[tuple[Path, int, str]]:
    with open(nuaa / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for label, name in ((1, "live"), (0, "print")):
        rs = [r for r in rows if r["label"] == name]
        for i in rng.choice(len(rs), per_class, replace=False):
            out.append((nuaa / rs[i]["path"], label, "nuaa"))
    return out


def padcache_paths(padcache: Path, per_cell: int, rng, skip: set[Path] = frozenset()) -> list[tuple[Path, int, str]]:
    """``per_cell`` images per (repository snapshot, live/attack), labelled by their folder."""
    out = []
    for repo in sorted(p for p in padcache.iterdir() if p.is_dir()):
        files = sorted(p for p in repo.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p not in skip)
        for label, pattern in ((1, LIVE_DIRS), (0, ATTACK_DIRS)):
            cell = [p for p in files if pattern.search("/" + str(p.relative_to(repo)))]
            for i in rng.choice(len(cell), min(per_cell, len(cell)), replace=False):
                out.append((cell[i], label, repo.name))
    return out


def crops(items: list[tuple[Path, int, str]], tag: str) -> dict:
    """{"v2": crops at 2.7, "v1se": crops at 4.0, "label", "source"}; frames without a face dropped."""
    cache = CACHE / f"minifasnet_{tag}_{len(items)}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    from convert.face_crops import largest_face_crop
    from edge_app.frames.detector import load_detector
    from edge_app.images import ImageLoadError, load_rgb

    det = load_detector(REPO / "models")
    out = {"v2": [], "v1se": [], "label": [], "source": []}
    for path, label, source in items:
        try:
            rgb = load_rgb(path)
        except ImageLoadError:
            continue
        faces = det.detect(rgb)
        if not faces:
            continue
        for kind in mf.KINDS:
            out[kind].append(largest_face_crop(det, rgb, mf.CROP_SCALE[kind], mf.SIZE))
        out["label"].append(label)
        out["source"].append(source)
    arr = {k: np.array(v) for k, v in out.items()}
    CACHE.mkdir(exist_ok=True)
    np.savez(cache, **arr)
    return arr


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def auc(score, label) -> float:
    return float(metrics.auc(score[label == 1], score[label == 0]))


def compare(ref_live, live, label, source) -> dict:
    """How far ``live`` logits are from the reference ones, and both AUCs per source group."""
    p_ref, p = 1 / (1 + np.exp(-ref_live)), 1 / (1 + np.exp(-live))
    out = {"n": int(len(live)), "spearman": spearman(ref_live, live), "mean_abs_dp": float(np.abs(p - p_ref).mean()),
           "max_abs_dp": float(np.abs(p - p_ref).max()), "decision_flips_at_0.5": float(((p >= 0.5) != (p_ref >= 0.5)).mean())}
    for group in ("nuaa", "pad"):
        m = (source == "nuaa") if group == "nuaa" else (source != "nuaa")
        if m.any() and len(set(label[m])) == 2:
            out[f"auc_{group}"] = {"reference": auc(ref_live[m], label[m]), "this": auc(live[m], label[m])}
    return out


def drift(evalset: dict, train: dict, teachers: Path) -> dict:
    """ReLU (teacher weights, no training) against the PReLU teacher; live heads against exact log-odds."""
    out = {}
    for kind in mf.KINDS:
        x = mf.rgb_input(evalset[kind])
        ref = mf.teacher_model(kind, teachers / mf.TEACHERS[kind])
        live_ref, logits_ref = ref.predict(x, batch_size=128, verbose=0)
        relu = mf.build_minifasnet(kind, "relu", batch_size=None, outputs="both")
        mf.load_teacher_weights(relu, teachers / mf.TEACHERS[kind])
        live_relu, _ = relu.predict(x, batch_size=128, verbose=0)
        exact = mf.live_log_odds(logits_ref)
        rms = mf.fit_live_head(ref, train[kind])  # fitted on the distillation crops, judged on the eval crops
        live_fit = ref.predict(x, batch_size=128, verbose=0)[0][:, 0]
        out[kind] = {"linear_live_head_vs_exact_log_odds": compare(exact, live_ref[:, 0], evalset["label"], evalset["source"]),
                     "fitted_live_head_vs_exact_log_odds": {"train_rms": rms, **compare(exact, live_fit, evalset["label"], evalset["source"])},
                     "relu_vs_prelu_exact_log_odds": compare(exact, live_relu[:, 0], evalset["label"], evalset["source"])}
    return out


def distill(train: dict, evalset: dict, teachers: Path, epochs: int) -> tuple[dict, dict]:
    """Distil a ReLU student per kind; after each epoch, how close its live logit is to the teacher's."""
    out, students = {}, {}
    for kind in mf.KINDS:
        x_eval = mf.rgb_input(evalset[kind])
        ref = mf.teacher_model(kind, teachers / mf.TEACHERS[kind])
        live_ref = mf.live_log_odds(ref.predict(x_eval, batch_size=128, verbose=0)[1])
        curve = []
        t0 = time.perf_counter()

        def track(epoch, student, cpu_s):
            live = student.predict(x_eval, batch_size=128, verbose=0)[0][:, 0]
            row = compare(live_ref, live, evalset["label"], evalset["source"])
            curve.append({"epoch": epoch, "cpu_s": round(cpu_s, 1), "wall_s": round(time.perf_counter() - t0, 1), **row})
            print(f"  distill {kind} epoch {epoch}: spearman {row['spearman']:.4f} cpu {cpu_s:.0f}s", file=sys.stderr, flush=True)

        students[kind] = mf.distill_relu_from_prelu(kind, teachers / mf.TEACHERS[kind], train[kind], epochs=epochs,
                                                    learning_rate=1e-4, on_epoch=track)
        out[kind] = {"train_crops": int(len(train[kind])), "curve": curve}
    return out, students


def int8(calib: dict, evalset: dict, teachers: Path, distilled: dict | None = None, repeats: int = 1000) -> dict:
    """int8 vs float32 TFLite of the ReLU build (and the PReLU one, for its partitions), side by side."""
    from convert.tflite_export import to_float_tflite, to_int8_tflite
    from edge_app.interpreters import create_interpreter, delegate_partitions

    out = {}
    tmp = CACHE / "minifasnet_tflite"
    tmp.mkdir(parents=True, exist_ok=True)
    for kind in mf.KINDS:
        rep = mf.rgb_input(calib[kind])
        x_eval = mf.rgb_input(evalset[kind])
        interps = {}
        for act in ("relu", "prelu"):
            model = mf.build_minifasnet(kind, act, batch_size=1)
            mf.load_teacher_weights(model, teachers / mf.TEACHERS[kind])
            if act == "relu" and distilled and kind in distilled:
                mf.copy_weights(distilled[kind], model)
            for prec in ("float32", "int8"):
                data = to_float_tflite(model) if prec == "float32" else to_int8_tflite(model, lambda: ([r[None]] for r in rep))
                path = tmp / f"{kind}_{act}_{prec}.tflite"
                path.write_bytes(data)
                it = create_interpreter(path, num_threads=1)
                parts, whole = delegate_partitions(it)
                ops = sorted({o["op_name"] for o in it._get_ops_details() if o["op_name"] != "DELEGATE"})
                out.setdefault(kind, {})[f"{act}_{prec}"] = {"bytes": len(data), "delegate_partitions": parts,
                                                             "one_partition_covers_graph": whole, "ops": ops}
                interps[(act, prec)] = it
        # int8 against float on the same crops (decisions at P(live) 0.5, logit error)
        lives = {k: np.array([run(it, x[None]) for x in x_eval]) for k, it in interps.items() if k[0] == "relu"}
        f, q = lives[("relu", "float32")], lives[("relu", "int8")]
        out[kind]["relu_int8_vs_float"] = {"max_abs_logit": float(np.abs(f - q).max()), "spearman": spearman(f, q),
                                           "decision_flips_at_0": float(((f >= 0) != (q >= 0)).mean())}
        out[kind]["invoke_ms_1_thread"] = timing({k: it for k, it in interps.items()}, x_eval, repeats)
    return out


def run(it, x: np.ndarray) -> float:
    d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]
    if d_in["dtype"] == np.int8:
        s, z = d_in["quantization"]
        x = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
    it.set_tensor(d_in["index"], x)
    it.invoke()
    y = it.get_tensor(d_out["index"]).ravel()[0]
    if d_out["dtype"] == np.int8:
        s, z = d_out["quantization"]
        return float((float(y) - z) * s)
    return float(y)


def timing(interps: dict, x: np.ndarray, repeats: int) -> dict:
    """ms per invoke, the variants interleaved in one loop so they share the machine's load.

    Wall-clock median, and the median of the calling thread's CPU time: with one thread XNNPACK
    runs in the caller, so the CPU time holds still when other jobs load the machine.
    """
    inputs = {}
    for k, it in interps.items():
        d = it.get_input_details()[0]
        if d["dtype"] == np.int8:
            s, z = d["quantization"]
            inputs[k] = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
        else:
            inputs[k] = x
        for _ in range(20):
            it.set_tensor(d["index"], inputs[k][:1])
            it.invoke()
    wall, cpu = {k: [] for k in interps}, {k: [] for k in interps}
    for r in range(repeats):
        for k, it in interps.items():
            it.set_tensor(it.get_input_details()[0]["index"], inputs[k][r % len(x)][None])
            t0, c0 = time.perf_counter(), time.thread_time()
            it.invoke()
            cpu[k].append((time.thread_time() - c0) * 1e3)
            wall[k].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for (a, p) in interps:
        out[f"{a}_{p}"] = {"wall_median": statistics.median(wall[(a, p)]), "cpu_median": statistics.median(cpu[(a, p)])}
    out["float32_over_int8_relu_cpu"] = out["relu_float32"]["cpu_median"] / out["relu_int8"]["cpu_median"]
    return out


def train_step(teachers: Path, batch: int = 64, steps: int = 6) -> dict:
    """ms per image of one Adam step (forward + backward) at batch 64, all layers or the first blocks frozen."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, mf.SIZE, mf.SIZE, 3)).astype(np.float32)
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    out = {"batch": batch, "tf_threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                                          "inter": tf.config.threading.get_inter_op_parallelism_threads()}}
    for kind in mf.KINDS:
        for freeze in (None, "conv_3", "conv_4"):
            model = mf.build_minifasnet(kind, "relu", batch_size=None)
            mf.load_teacher_weights(model, teachers / mf.TEACHERS[kind])
            frozen = mf.freeze_until(model, freeze) if freeze else 0
            model.compile(optimizer=keras.optimizers.Adam(1e-4),
                          loss=keras.losses.BinaryCrossentropy(from_logits=True))
            model.train_on_batch(x, y)  # trace and build the optimizer
            model.train_on_batch(x, y)
            wall, cpu = [], []
            for _ in range(steps):
                t0, c0 = time.perf_counter(), time.process_time()
                model.train_on_batch(x, y)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
            out[f"{kind}_frozen_through_{freeze or 'none'}"] = {
                "frozen_layers": frozen, "trainable_params": trainable,
                "wall_ms_per_image": 1e3 * statistics.median(wall) / batch,
                "cpu_ms_per_image": 1e3 * statistics.median(cpu) / batch}
            print(f"  train step {kind} frozen {freeze}: {1e3 * statistics.median(wall) / batch:.2f} ms/image",
                  file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--padcache", type=Path, default=Path("/work/padcache"))
    ap.add_argument("--teachers", type=Path, default=None)
    ap.add_argument("--only", default="drift,distill,int8,train")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write every section into this file")
    args = ap.parse_args(argv)
    results = {}

    def report(name, value):
        results[name] = value
        print(json.dumps({name: value}, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")

    teachers = args.teachers or args.datasets.parent / "teachers" / "minifasnet"
    only = set(args.only.split(","))
    rng = np.random.default_rng(0)
    eval_items = nuaa_paths(args.datasets / "nuaa", 50, rng) + padcache_paths(args.padcache, 10, rng)
    evalset = crops(eval_items, "eval")
    report("eval_crops", {"n": int(len(evalset["label"])), "live": int(evalset["label"].sum()),
                          "nuaa": int((evalset["source"] == "nuaa").sum())})
    train_items = padcache_paths(args.padcache, 300, np.random.default_rng(1), skip={p for p, _, _ in eval_items})
    train = crops(train_items, "distill")
    report("distill_crops", {"n": int(len(train["label"]))})
    if "drift" in only:
        report("drift", drift(evalset, train, teachers))
    distilled = None
    if "distill" in only:
        res, distilled = distill(train, evalset, teachers, args.epochs)
        report("distill", res)
    if "int8" in only:
        report("int8", int8(train, evalset, teachers, distilled))
    if "train" in only:
        report("train_step", train_step(teachers))


if __name__ == "__main__":
    main()
