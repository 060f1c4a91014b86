"""Train the first liveness CNN on NUAA (subject-disjoint), export float32 and int8 TFLite.

    python -m convert.train_liveness_cnn [--epochs 12] [--models-dir models]

Crops come from the device's own detector and crop code (``convert/face_crops.py``); the
threshold is chosen on the validation subjects for BPCER 5%, and the metadata records
validation and test figures separately (test subjects are never used to choose anything).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from convert import metrics
from convert.datasets import NUAA_SPLIT, REPO, nuaa_split
from convert.face_crops import crops_for
from convert.tflite_export import to_float_tflite, to_int8_tflite, write_model
from edge_app.features import model_input

NAME = "liveness_cnn"
VERSION = "0.1.0"
SIZE = 80
SCALE = 2.0  # face box enlarged 2x: some context (hand, paper edge) without the room
FEATURES = ["rgb"]
TARGET_BPCER = 0.05
SEED = 1234


def build(batch_size: int | None = None):
    """A small residual CNN: ReLU only (PReLU splits XNNPACK int8 graphs), ~60k parameters."""
    import keras
    from keras import layers

    def block(x, filters, stride):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inp = keras.Input((SIZE, SIZE, len(FEATURES) * 3), batch_size=batch_size, name="face")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = block(x, 24, 2)
    x = block(x, 32, 2)
    x = block(x, 48, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, name="live_logit")(x)
    return keras.Model(inp, out, name=NAME)


def inputs(crops: np.ndarray) -> np.ndarray:
    return np.concatenate([model_input(c, FEATURES) for c in crops]) if len(crops) else np.zeros((0, SIZE, SIZE, 3), np.float32)


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    flip = rng.random(len(x)) < 0.5
    out[flip] = out[flip, :, ::-1]
    gain = rng.uniform(0.75, 1.25, (len(x), 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-0.08, 0.08, (len(x), 1, 1, 1)).astype(np.float32)
    return np.clip(out * gain + bias, 0.0, 1.0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def tflite_scores(path: Path, x: np.ndarray) -> np.ndarray:
    from edge_app.tflite_model import load_model

    model = load_model(path.with_suffix(".json"))
    return np.array([sigmoid(model.run(x[i : i + 1])[0].ravel()[0]) for i in range(len(x))])


def split_figures(live: np.ndarray, attack: np.ndarray, threshold: float) -> dict:
    ap, bp = metrics.apcer(attack, threshold), metrics.bpcer(live, threshold)
    return {
        "APCER_print": ap,
        "BPCER": bp,
        "ACER": (ap["rate"] + bp["rate"]) / 2,
        "EER": metrics.eer(live, attack),
        "ROC_AUC": metrics.auc(live, attack),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(SEED)

    data = {}
    for split in ("train", "val", "test"):
        samples = nuaa_split(split)
        crops, kept = crops_for(samples, SCALE, SIZE, f"nuaa_{split}")
        y = np.array([1.0 if s.label == "live" else 0.0 for s in kept], np.float32)
        data[split] = (inputs(crops), y, len(samples) - len(kept))
        print(f"{split}: {len(kept)} crops ({int(y.sum())} live, {int(len(y) - y.sum())} print), "
              f"{data[split][2]} frames without a detected face", file=sys.stderr)

    x_tr, y_tr, _ = data["train"]
    x_va, y_va, _ = data["val"]
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    # balance classes: NUAA train holds more prints than live frames
    pos = y_tr.mean()
    class_weight = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
    print(f"training {model.count_params()} parameters for {args.epochs} epochs", file=sys.stderr)
    for epoch in range(args.epochs):
        t0 = time.time()
        hist = model.fit(augment(x_tr, rng), y_tr, batch_size=32, epochs=1, shuffle=True, verbose=0,
                         class_weight=class_weight, validation_data=(x_va, y_va))
        h = {k: v[-1] for k, v in hist.history.items()}
        print(f"epoch {epoch + 1}/{args.epochs}: loss {h['loss']:.4f} acc {h['binary_accuracy']:.3f} "
              f"val_loss {h['val_loss']:.4f} val_acc {h['val_binary_accuracy']:.3f} ({time.time() - t0:.0f}s)",
              file=sys.stderr, flush=True)

    # export with batch 1: a dynamic batch dimension can keep XNNPACK off the graph
    export = build(batch_size=1)
    export.set_weights(model.get_weights())
    rep_idx = rng.choice(len(x_tr), size=min(300, len(x_tr)), replace=False)

    def representative():
        for i in rep_idx:
            yield [x_tr[i : i + 1]]

    base_meta = {
        "version": VERSION,
        "task": "face_liveness",
        "input": {
            "features": FEATURES,
            "channel_order": "RGB",
            "normalisation": "rgb: x / 255",
            "crop": {"scale": SCALE, "size": SIZE, "recipe": "edge_app.crop.crop_face (shift inward, no padding)"},
        },
        "output": {"kind": "live_logit", "meaning": "logit of P(live); score = sigmoid(logit); live when score >= threshold"},
        "training_data": {
            "dataset": "NUAA Photograph Imposter database (non-commercial research licence)",
            "subjects": {k: list(v) for k, v in NUAA_SPLIT.items()},
            "train_crops": int(len(y_tr)),
            "attacks_seen": ["print"],
            "produced_by": "python -m convert.train_liveness_cnn",
            "seed": SEED,
            "epochs": args.epochs,
        },
        "license": "weights trained on non-commercial research data: research use only",
    }
    float_path = write_model(args.models_dir, f"{NAME}_float", to_float_tflite(export),
                             {**base_meta, "quantized_from": None})
    int8_path = write_model(args.models_dir, NAME, to_int8_tflite(export, representative),
                            {**base_meta, "float_model": float_path.name})

    # threshold on validation subjects only; test subjects are reported, never used to choose
    figures = {}
    scores = {}
    for tag, path in (("float32", float_path), ("int8", int8_path)):
        scores[tag] = {s: tflite_scores(path, data[s][0]) for s in ("val", "test")}
    val_s, val_y = scores["int8"]["val"], y_va
    threshold = metrics.threshold_for_bpcer(val_s[val_y == 1], TARGET_BPCER)
    for tag in ("float32", "int8"):
        figures[tag] = {}
        for split in ("val", "test"):
            s, y = scores[tag][split], data[split][1]
            figures[tag][split] = split_figures(s[y == 1], s[y == 0], threshold)
    agree = {split: float(np.mean((scores["int8"][split] >= threshold) == (scores["float32"][split] >= threshold)))
             for split in ("val", "test")}

    meta_path = args.models_dir / f"{NAME}.json"
    meta = json.loads(meta_path.read_text())
    meta["threshold"] = threshold
    meta["operating_point"] = {"criterion": f"BPCER {TARGET_BPCER:.0%} on NUAA validation subjects",
                               "subjects": list(NUAA_SPLIT["val"])}
    meta["evaluation"] = {
        "data": "NUAA frames; 'val' = validation subjects (threshold chosen here), 'test' = held-out subjects",
        "figures": figures,
        "int8_float_decision_agreement": agree,
        "frames_without_face": {s: data[s][2] for s in ("train", "val", "test")},
        "caveat": "NUAA: 15 people, one webcam, prints only; in-domain figures overrate real-world performance",
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    fmeta_path = args.models_dir / f"{NAME}_float.json"
    fmeta = json.loads(fmeta_path.read_text())
    fmeta["threshold"] = threshold
    fmeta_path.write_text(json.dumps(fmeta, indent=2) + "\n")
    for tag in ("float32", "int8"):
        for split in ("val", "test"):
            f = figures[tag][split]
            print(f"{tag} {split}: APCER {f['APCER_print']['rate']:.3f} {f['APCER_print']['ci95']} "
                  f"BPCER {f['BPCER']['rate']:.3f} {f['BPCER']['ci95']} ACER {f['ACER']:.3f} "
                  f"EER {f['EER']:.3f} AUC {f['ROC_AUC']:.4f}")
    print(f"threshold {threshold:.4f}; int8/float decision agreement {agree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
