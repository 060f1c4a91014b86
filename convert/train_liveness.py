"""Train both liveness models and their score fusion; export float32 and int8 TFLite.

    python -m convert.train_liveness                  # the shipped models + fusion.json
    python -m convert.train_liveness --cross-source   # also the cross-source check models (runs/)

Models (``MODELS``):

- ``liveness_cnn``: a residual CNN on a tight crop (scale 1.6) whose 9 input channels
  fuse three views of the face: RGB, the ELA map and the wavelet noise residual, all built
  by ``edge_app.features`` (the device's code) from the same 80x80 crop.
- ``liveness_attn``: a MobileNetV2-style body with squeeze-and-excitation attention
  (hard-sigmoid gates) on RGB at crop scale 2.7: face plus context (hands, paper edges,
  bezels).

Data (``convert.liveness_data``): NUAA train subjects (live, real prints), print and
replay attacks simulated from their live frames, and UTKFace train identities as live
frames in scenes plus attacks simulated from the same images. Each sample's target mixes
its label with the MiniFASNet teachers' P(live) (distillation: ``TEACHER_WEIGHT``); the
teachers are never shipped or loaded by the device. Each epoch takes every training frame
once, at its nominal crop or at a random tighter / wider crop.

Selection and calibration use validation subjects / identities only: the epoch kept is
the one with the best mean validation ROC AUC over the three validation sources; each
model's threshold and the fusion threshold are set for BPCER <= 5% on the live faces of
*each* validation source (the stricter of NUAA and UTKFace), the fusion weights are a
logistic regression on the int8 models' validation logits. Test subjects and identities
are never read here (``convert/evaluate.py`` reports on them).

Everything is seeded (numpy, Keras, TF op determinism): the same command on a CPU gives
the same models.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from convert import liveness_data as data
from convert import metrics
from convert.datasets import NUAA_SPLIT, REPO
from convert.tflite_export import to_float_tflite, to_int8_tflite, write_model
from edge_app.features import feature_channels, model_input
from edge_app.tflite_model import write_metadata

VERSION = "0.2.0"
SEED = 1234
SIZE = data.SIZE
TARGET_BPCER = 0.05
TEACHER_WEIGHT = 0.25  # target = (1 - w) * label + w * teacher P(live)
BATCH = 64

MODELS = {
    "liveness_cnn": {
        "arch": "cnn",
        "features": ["rgb", "ela", "wavelet"],
        "crop": "cnn",
        "epochs": 10,
        "lr": 2e-3,
        "description": "residual CNN (ReLU, 4 residual blocks with 1x1 projection shortcuts) on RGB + ELA + wavelet "
                       "residual, fused at the input (9 channels)",
    },
    "liveness_attn": {
        "arch": "attn",
        "features": ["rgb"],
        "crop": "attn",
        "epochs": 10,
        "lr": 2e-3,
        "description": "MobileNetV2-style inverted residual body with squeeze-and-excitation attention "
                       "(hard-sigmoid gates, ReLU6) on RGB with context",
    },
}

# validation sources whose mean ROC AUC picks the epoch, and whose live faces set thresholds
VAL_SETS = {
    "nuaa_print": {"live": ("nuaa", "none"), "attack": ("nuaa", "nuaa_print")},
    "nuaa_sim": {"live": ("nuaa", "none"), "attack": ("nuaa_sim", None)},
    "utk_sim": {"live": ("utk", "none"), "attack": ("utk", ("print_edge", "print_full", "replay_edge", "replay_full"))},
}
LIVE_SOURCES = ("nuaa", "utk")

# training sets for the cross-source check: train on one source, test on the other
CROSS = {
    "nuaa_only": {"train_sources": ("nuaa",), "val_sets": ("nuaa_print",), "live_sources": ("nuaa",)},
    "utk_only": {"train_sources": ("utk",), "val_sets": ("utk_sim",), "live_sources": ("utk",)},
}


# ----------------------------------------------------------------------------- models


def build_cnn(channels: int, batch_size: int | None = None, name: str = "liveness_cnn"):
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, relu=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    def block(x, filters, stride):
        y = conv_bn(x, filters, 3, stride)
        y = conv_bn(y, filters, 3, 1, relu=False)
        shortcut = x
        if stride != 1 or x.shape[-1] != filters:
            shortcut = conv_bn(x, filters, 1, stride, relu=False)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inp = keras.Input((SIZE, SIZE, channels), batch_size=batch_size, name="face")
    x = conv_bn(inp, 24, 3, 2)  # 40x40
    x = block(x, 32, 2)  # 20x20
    x = block(x, 48, 2)  # 10x10
    x = block(x, 64, 1)
    x = block(x, 96, 2)  # 5x5
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, name="live_logit")(x)
    return keras.Model(inp, out, name=name)


def build_attn(channels: int, batch_size: int | None = None, name: str = "liveness_attn"):
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, act=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x) if act else x

    def se(x, reduction=4):
        c = x.shape[-1]
        s = layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = layers.Conv2D(max(8, c // reduction), 1, activation="relu")(s)
        s = layers.Conv2D(c, 1)(s)
        s = layers.Activation("hard_sigmoid")(s)  # relu6(x + 3) / 6: int8-friendly gate
        return layers.Multiply()([x, s])

    def inverted(x, filters, stride, expand):
        c = x.shape[-1]
        y = conv_bn(x, c * expand, 1, 1)
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU(6.0)(y)
        y = se(y)
        y = conv_bn(y, filters, 1, 1, act=False)
        return layers.Add()([x, y]) if stride == 1 and c == filters else y

    inp = keras.Input((SIZE, SIZE, channels), batch_size=batch_size, name="face")
    x = conv_bn(inp, 16, 3, 2)  # 40x40
    x = conv_bn(x, 24, 3, 2)  # 20x20
    x = inverted(x, 24, 1, 3)
    x = inverted(x, 40, 2, 3)  # 10x10
    x = inverted(x, 40, 1, 3)
    x = inverted(x, 64, 2, 3)  # 5x5
    x = inverted(x, 64, 1, 3)
    x = inverted(x, 96, 2, 3)  # 3x3
    x = conv_bn(x, 128, 1, 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, name="live_logit")(x)
    return keras.Model(inp, out, name=name)


BUILDERS = {"cnn": build_cnn, "attn": build_attn}


# ------------------------------------------------------------------------ data utils


def features_of(crops: np.ndarray, names: list[str], cache_key: str | None = None) -> np.ndarray:
    """float16 (N, 80, 80, C) through ``edge_app.features.model_input``: the device's code.

    RGB-only inputs are returned as raw 0..255 values (``scale_rgb`` divides, exactly as the
    "rgb" feature does). With ``cache_key`` the array is kept under ``.cache/`` (the ELA and
    wavelet planes take about a millisecond per crop).
    """
    if names == ["rgb"]:
        return crops.astype(np.float16)
    path = None
    if cache_key:
        digest = hashlib.sha1(crops.tobytes()).hexdigest()[:12]
        path = data.CACHE / f"features_{cache_key}_{'+'.join(names)}_{digest}.npy"
        if path.is_file():
            return np.load(path)
    out = np.empty((len(crops), SIZE, SIZE, feature_channels(names)), np.float16)
    for i, c in enumerate(crops):
        out[i] = model_input(c, names)[0]
    if path is not None:
        data.CACHE.mkdir(exist_ok=True)
        np.save(path, out)
    return out


def scale_rgb(x: np.ndarray, names: list[str]) -> np.ndarray:
    """float32 model input from a features_of() array (rgb-only arrays hold raw 0..255)."""
    if names == ["rgb"]:
        return x.astype(np.float32) * np.float32(1 / 255)
    return x.astype(np.float32)


def cell_weights(split: data.Split, index: np.ndarray) -> np.ndarray:
    """Sample weights: live and attack weigh the same; within each, the sources share fixed parts."""
    parts = {("nuaa", 1): 0.5, ("utk", 1): 0.5, ("nuaa", 0): 0.3, ("nuaa_sim", 0): 0.2, ("utk", 0): 0.5}
    keys = [(split.records[i]["source"], int(split.label[i])) for i in index]
    present = {k for k in keys}
    total = {lab: sum(v for k, v in parts.items() if k[1] == lab and k in present) for lab in (0, 1)}
    counts = {k: keys.count(k) for k in present}
    w = np.array([parts[k] / total[k[1]] / counts[k] for k in keys], np.float64)
    return (w * len(w) / w.sum()).astype(np.float32)


class Batches:
    """Epoch batches: nominal or jittered crop, horizontal flip, photometric jitter (RGB-only)."""

    def __init__(self, nominal, jitter, target, weight, names, rng):
        self.nominal, self.jitter, self.target, self.weight = nominal, jitter, target, weight
        self.names, self.rng = names, rng

    def epoch(self):
        n = len(self.target)
        order = self.rng.permutation(n)
        use_jitter = self.rng.random(n) < 0.5
        flip = self.rng.random(n) < 0.5
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            x = np.where(use_jitter[idx, None, None, None], self.jitter[idx], self.nominal[idx])
            x = scale_rgb(x, self.names)
            f = flip[idx]
            x[f] = x[f, :, ::-1]
            if self.names == ["rgb"]:
                gain = self.rng.uniform(0.8, 1.2, (len(idx), 1, 1, 1)).astype(np.float32)
                bias = self.rng.uniform(-0.06, 0.06, (len(idx), 1, 1, 1)).astype(np.float32)
                x = np.clip(x * gain + bias, 0.0, 1.0)
            yield x, self.target[idx], self.weight[idx]


def val_sets(split: data.Split, names=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in names or VAL_SETS:
        spec = VAL_SETS[name]
        live = split.mask(spec["live"][0], spec["live"][1], 1)
        attack = split.mask(spec["attack"][0], spec["attack"][1], 0)
        out[name] = (np.nonzero(live)[0], np.nonzero(attack)[0])
    return out


def threshold_per_source(scores: np.ndarray, split: data.Split, sources=LIVE_SOURCES) -> tuple[float, dict]:
    """The stricter of the per-source BPCER-5% thresholds on validation live faces."""
    per = {}
    for src in sources:
        live = scores[split.mask(src, "none", 1)]
        per[src] = metrics.threshold_for_bpcer(live, TARGET_BPCER)
    return float(min(per.values())), per


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# --------------------------------------------------------------------------- training


def train_one(name: str, spec: dict, train: data.Split, val: data.Split, train_index: np.ndarray,
              val_names: tuple[str, ...], epochs: int, seed: int):
    """Train a Keras model; returns (model, history, best epoch)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    names = spec["features"]
    t0 = time.time()
    nominal = features_of(train.crops[spec["crop"]], names, f"train_{spec['crop']}")[train_index]
    jitter = features_of(train.crops[spec["crop"] + "_jitter"], names, f"train_{spec['crop']}_jitter")[train_index]
    vx = scale_rgb(features_of(val.crops[spec["crop"]], names, f"val_{spec['crop']}"), names)
    print(f"[{name}] features for {len(train_index)} training frames (x2 crops) and {len(vx)} validation "
          f"frames in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    y = train.label[train_index].astype(np.float32)
    teacher = train.teacher[train_index]
    target = np.where(np.isfinite(teacher), (1 - TEACHER_WEIGHT) * y + TEACHER_WEIGHT * teacher, y).astype(np.float32)
    weight = cell_weights(train, train_index)
    batches = Batches(nominal, jitter, target, weight, names, rng)

    model = BUILDERS[spec["arch"]](nominal.shape[-1], name=name.replace("@", "."))
    steps = epochs * math.ceil(len(train_index) / BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(spec["lr"], steps, warmup_target=None)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    print(f"[{name}] {model.count_params()} parameters, {epochs} epochs of {len(train_index)} frames",
          file=sys.stderr, flush=True)
    vsets = val_sets(val, val_names)
    best, best_weights, history = -1.0, None, []
    for epoch in range(epochs):
        t0 = time.time()
        losses = [model.train_on_batch(x, t, sample_weight=w) for x, t, w in batches.epoch()]
        z = model.predict(vx, batch_size=256, verbose=0).ravel()
        aucs = {k: metrics.auc(z[li], z[ai]) for k, (li, ai) in vsets.items()}
        score = float(np.mean(list(aucs.values())))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_auc": aucs, "seconds": round(time.time() - t0, 1)})
        if score > best:
            best, best_weights, best_epoch = score, model.get_weights(), epoch + 1
        print(f"[{name}] epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f} val AUC "
              + " ".join(f"{k} {v:.4f}" for k, v in aucs.items()) + f" ({time.time() - t0:.0f}s)",
              file=sys.stderr, flush=True)
    model.set_weights(best_weights)
    return model, history, best_epoch


def export(model, spec: dict, name: str, representative_x: np.ndarray, models_dir: Path, meta: dict) -> tuple[Path, Path]:
    """float32 and full-integer int8 TFLite with batch-1 inputs (XNNPACK takes the whole graph)."""
    exp = BUILDERS[spec["arch"]](model.input.shape[-1], batch_size=1, name=name)
    exp.set_weights(model.get_weights())

    def representative():
        for i in range(len(representative_x)):
            yield [representative_x[i : i + 1]]

    float_path = write_model(models_dir, f"{name}_float", to_float_tflite(exp), {**meta, "quantized_from": None})
    int8_path = write_model(models_dir, name, to_int8_tflite(exp, representative), {**meta, "float_model": float_path.name})
    return float_path, int8_path


def tflite_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Raw logits of a shipped model through the device loader (metadata verified)."""
    from edge_app.tflite_model import load_model

    m = load_model(path.with_suffix(".json"))
    return np.array([m.run(x[i : i + 1])[0].ravel()[0] for i in range(len(x))], np.float64)


def fit_fusion(z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2, iters: int = 200) -> tuple[np.ndarray, float]:
    """Weighted logistic regression on logits (Newton steps, small L2 on the weights)."""
    X = np.column_stack([z, np.ones(len(z))])
    beta = np.zeros(X.shape[1])
    reg = np.full(X.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = sigmoid(X @ beta)
        grad = X.T @ (w * (p - y)) + reg * beta
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + np.diag(reg) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta[:-1], float(beta[-1])


def val_figures(scores: np.ndarray, val: data.Split, threshold: float) -> dict:
    out = {}
    for k, (li, ai) in val_sets(val).items():
        ap, bp = metrics.apcer(scores[ai], threshold), metrics.bpcer(scores[li], threshold)
        out[k] = {"APCER": ap, "BPCER": bp, "ACER": (ap["rate"] + bp["rate"]) / 2,
                  "EER": metrics.eer(scores[li], scores[ai]), "ROC_AUC": metrics.auc(scores[li], scores[ai])}
    return out


def composition(split: data.Split, index: np.ndarray) -> dict:
    out: dict[str, int] = {}
    for i in index:
        r = split.records[i]
        k = f"{r['source']}:{r['attack']}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def teacher_info() -> dict:
    return {
        "models": [f"MiniFASNet {f}" for f in data.TEACHERS.values()],
        "license": "Apache-2.0 (Minivision Silent-Face-Anti-Spoofing)",
        "how": f"distillation: each training target = {1 - TEACHER_WEIGHT:g} x label + {TEACHER_WEIGHT:g} x the "
               "teachers' ensemble P(live) on the same frame (crops at 2.7 and 4.0, BGR 0-255)",
        "at_run_time": "never loaded or shipped",
    }


def train_shipped(args) -> int:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    train, val = data.load("train", args.workers), data.load("val", args.workers)
    train_index = np.arange(len(train.records))
    started = time.time()
    val_logits, paths = {}, {}
    selected = [n for n in MODELS if not args.only or n in args.only]
    for name in selected:
        spec = MODELS[name]
        epochs = args.epochs or spec["epochs"]
        t0 = time.time()
        model, history, best_epoch = train_one(name, spec, train, val, train_index, tuple(VAL_SETS), epochs, SEED)
        train_seconds = time.time() - t0
        names = spec["features"]
        rep_idx = np.random.default_rng(SEED).choice(len(train_index), size=min(400, len(train_index)), replace=False)
        rep = scale_rgb(features_of(train.crops[spec["crop"]], names, f"train_{spec['crop']}")[rep_idx], names)
        meta = {
            "version": VERSION,
            "task": "face_liveness",
            "architecture": {"description": spec["description"], "parameters": int(model.count_params()),
                             "keras_layers": len(model.layers)},
            "input": {
                "features": names,
                "channel_order": "RGB",
                "normalisation": {"rgb": "x / 255", "ela": "edge_app.ela.error_level_normalized (quality 90, "
                                  "min(level / 32, 1))", "wavelet": "edge_app.wavelet.noise_residual_normalized "
                                  "(db4, 3 levels, BayesShrink; clip(residual / 16, -1, 1))"},
                "feature_code": "edge_app.features.model_input (same function in convert/ and on the device)",
                "crop": {"scale": data.SCALES[spec["crop"]], "size": SIZE,
                         "recipe": "edge_app.crop.crop_face (shift inward, no padding)",
                         "trained_on_scales": {"nominal": data.SCALES[spec["crop"]], "jitter_range": list(data.JITTER[spec["crop"]])}},
            },
            "output": {"kind": "live_logit", "meaning": "logit of P(live); score = sigmoid(logit); live when score >= threshold"},
            "training_data": {
                "datasets": ["NUAA Photograph Imposter database (non-commercial research licence)",
                             "UTKFace (non-commercial research licence)",
                             "CASIA v1 authentic photos as scenery (non-commercial research licence)"],
                "nuaa_subjects": {k: list(v) for k, v in NUAA_SPLIT.items()},
                "utkface_identities": {k: v for k, v in data.UTK_SPLIT.items()},
                "composition": composition(train, train_index),
                "simulation": "convert.attack_sim: print (tone, gamut, dot gain, halftone, paper, sheen, bend) and "
                              "screen replay (display JPEG, pixel grid / subpixels, gamma, tint, glare) attacks, "
                              "held up in a scene with edge/bezel/fingers or filling the whole view; UTKFace live faces "
                              "composed into scenes; all through one camera model (convert.attack_sim.camera)",
                "teachers": teacher_info(),
                "produced_by": "python -m convert.train_liveness",
                "data_cache": f"convert.liveness_data version {data.VERSION}, seed {data.SEED}",
                "seed": SEED,
                "epochs": epochs,
                "epoch_kept": best_epoch,
                "history": history,
                "train_seconds": round(train_seconds, 1),
            },
            "license": "weights trained on non-commercial research data: research use only",
        }
        float_path, int8_path = export(model, spec, name, rep, args.models_dir, meta)
        vx = scale_rgb(features_of(val.crops[spec["crop"]], names, f"val_{spec['crop']}"), names)
        val_logits[name] = {"int8": tflite_logits(int8_path, vx), "float32": tflite_logits(float_path, vx)}
        paths[name] = (float_path, int8_path)
        print(f"[{name}] exported {int8_path.name} and {float_path.name}", file=sys.stderr, flush=True)

    # thresholds per model (each model's own JSON) and the fusion, on validation data only
    for name in selected:
        s8 = sigmoid(val_logits[name]["int8"])
        sf = sigmoid(val_logits[name]["float32"])
        thr, per = threshold_per_source(s8, val)
        for path, scores, tag in ((paths[name][1], s8, "int8"), (paths[name][0], sf, "float32")):
            meta_path = path.with_suffix(".json")
            meta = json.loads(meta_path.read_text())
            meta["threshold"] = thr
            meta["operating_point"] = {
                "criterion": f"BPCER <= {TARGET_BPCER:.0%} on the live faces of each validation source "
                             "(the lower of the NUAA-validation-subject and UTKFace-validation-identity thresholds)",
                "per_source_thresholds": per,
                "scored_by": "int8 model",
                "data": "validation split (NUAA subjects " + ", ".join(NUAA_SPLIT["val"]) +
                        f"; {data.UTK_SPLIT['val']} UTKFace validation identities)",
            }
            meta.setdefault("evaluation", {})["validation"] = {
                "note": "validation data also chose the epoch and the threshold: not an unbiased error estimate; "
                        "see models/reports/liveness.md for held-out test figures",
                "figures": val_figures(scores, val, thr),
            }
            write_metadata(meta_path, meta)
        agree = float(np.mean((s8 >= thr) == (sf >= thr)))
        print(f"[{name}] threshold {thr:.4f} (per source {per}); int8/float validation decision agreement {agree:.4f}",
              file=sys.stderr)

    if len(selected) == len(MODELS):
        names = list(MODELS)
        z = np.column_stack([val_logits[n]["int8"] for n in names])
        y = val.label.astype(np.float64)
        w = cell_weights(val, np.arange(len(y))).astype(np.float64)
        weights, bias = fit_fusion(z, y, w)
        fused = sigmoid(z @ weights + bias)
        thr, per = threshold_per_source(fused, val)
        fusion = {
            "weights": {n: float(v) for n, v in zip(names, weights)},
            "bias": bias,
            "threshold": thr,
            "formula": "fused = sigmoid(bias + sum_i weights[i] * logit(score_i)), score_i = sigmoid(model logit)",
            "operating_point": {
                "criterion": f"BPCER <= {TARGET_BPCER:.0%} on the live faces of each validation source "
                             "(the lower of the NUAA and UTKFace thresholds)",
                "per_source_thresholds": per,
            },
            "fitted_on": "validation split, int8 model logits: NUAA subjects " + ", ".join(NUAA_SPLIT["val"]) +
                         f" (live, real prints, simulated attacks) and {data.UTK_SPLIT['val']} UTKFace validation "
                         "identities (live, simulated print/replay); class- and source-balanced logistic regression",
            "models": {n: json.loads((args.models_dir / f"{n}.json").read_text())["sha256"] for n in names},
            "validation_figures": val_figures(fused, val, thr),
            "produced_by": "python -m convert.train_liveness",
            "version": VERSION,
        }
        write_metadata(args.models_dir / "fusion.json", fusion)
        print(f"fusion weights {fusion['weights']} bias {bias:.3f} threshold {thr:.4f}", file=sys.stderr)
    print(f"total training + export {time.time() - started:.0f}s", file=sys.stderr)
    return 0


def train_cross(args) -> int:
    """Cross-source check models (not shipped): float TFLite + threshold in runs/cross_source/."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    train, val = data.load("train", args.workers), data.load("val", args.workers)
    out = args.cross_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for setup, cfg in CROSS.items():
        idx = np.nonzero(train.mask(cfg["train_sources"]))[0]
        for name, spec in MODELS.items():
            if args.only and name not in args.only:
                continue
            epochs = args.epochs or max(4, spec["epochs"] - 2)
            t0 = time.time()
            model, history, best_epoch = train_one(f"{name}@{setup}", spec, train, val, idx, cfg["val_sets"], epochs, SEED)
            exp = BUILDERS[spec["arch"]](model.input.shape[-1], batch_size=1, name=name)
            exp.set_weights(model.get_weights())
            path = out / f"{name}@{setup}.tflite"
            path.write_bytes(to_float_tflite(exp))
            names = spec["features"]
            vx = scale_rgb(features_of(val.crops[spec["crop"]], names, f"val_{spec['crop']}"), names)
            z = model.predict(vx, batch_size=256, verbose=0).ravel()
            thr, per = threshold_per_source(sigmoid(z), val, cfg["live_sources"])
            summary[f"{name}@{setup}"] = {"model": name, "setup": setup, "train_sources": list(cfg["train_sources"]),
                                          "threshold": thr, "threshold_from": f"validation live faces of {cfg['live_sources']}",
                                          "epochs": epochs, "epoch_kept": best_epoch, "composition": composition(train, idx),
                                          "features": names, "crop": {"scale": data.SCALES[spec["crop"]], "size": SIZE},
                                          "train_seconds": round(time.time() - t0, 1), "file": path.name}
    (out / "cross_source.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--epochs", type=int, default=0, help="override every model's epoch count")
    parser.add_argument("--only", nargs="*", choices=list(MODELS), help="train only these (no fusion unless all)")
    parser.add_argument("--workers", type=int, default=2, help="processes that build the data cache if missing")
    parser.add_argument("--cross-source", action="store_true", help="train the cross-source check models instead")
    parser.add_argument("--cross-dir", type=Path, default=REPO / "runs" / "cross_source")
    args = parser.parse_args(argv)
    return train_cross(args) if args.cross_source else train_shipped(args)


if __name__ == "__main__":
    raise SystemExit(main())
