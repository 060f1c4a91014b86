"""Train the image-forensics patch CNN on CASIA v1 (+ self-made manipulations), export
float32 and int8 TFLite, then calibrate on val and write the report on test.

    python -m convert.train_forensics                 # cache, train, export, evaluate, report
    python -m convert.train_forensics --no-evaluate   # train + export only
    python -m convert.calibrate_forensics             # calibrate + report for the shipped model

Inputs are the device's own features (``edge_app.forensics.features.prepare``): every
image is re-encoded at JPEG quality ``RECOMPRESS_QUALITY`` (``convert.forensics_common``)
first (CASIA v1 saved authentic and tampered images at different qualities; see
``convert/forensics_data.py``), then ELA (q90, 3 channels) and the wavelet noise residual of
the luma (1 channel). Since v0.2.0 each channel is then made relative to the image itself
(``edge_app.forensics.features.relative_features``: divided by the image's own median
8x8-block level), so a region whose compression/noise
statistics differ from the rest of the same image stands out and a level the whole image
shares divides away (``--absolute`` trains on the v0.1.0 input). Candidates and their
validation figures: ``models/reports/forensics_candidates.md``.

Training is on 64x64 patches at 8-pixel-aligned positions (the JPEG block grid the device's
patch grid also keeps): patches with >= 10% of their area inside the ground-truth mask are
positives; patches of authentic images, of the self-made authentic controls (saved with the
tables of tampered images too) and mask-free patches of tampered images are negatives.
Scene-disjoint train/val/test (``forensics_data.scene_split``); the epoch kept is the one
with the lowest validation patch loss; test is never used to choose anything.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from convert.datasets import REPO
from convert.forensics_common import RECOMPRESS_QUALITY, SPLIT_SEED, rank_auc

NAME = "forensics_cnn"
VERSION = "0.4.0"  # 0.3.0: + block copy-move evidence (edge_app.forensics.copy_move); 0.4.0: + keypoint copy-move
PATCH = 64
STRIDE = 32
POS_COVERAGE = 0.10  # share of a patch inside the mask to count it as manipulated
SEED = 1234


def build(batch_size: int | None = None, channels: int = 4):
    """~69k parameters, ReLU only (int8 XNNPACK-friendly). A 3x3 stem at full resolution,
    then a stride-8 8x8 convolution: with patches on the 8-pixel grid every output cell
    is one JPEG block, then two 3x3 layers over the 8x8 block grid."""
    import keras
    from keras import layers

    inp = keras.Input((PATCH, PATCH, channels), batch_size=batch_size, name="features")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(32, 8, strides=8, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(48, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(48, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(1, name="manipulated_logit")(x)
    return keras.Model(inp, out, name=NAME)


# --------------------------------------------------------------------------- patches


def _positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys = np.arange(0, h - PATCH + 1, 8)
    xs = np.arange(0, w - PATCH + 1, 8)
    return np.repeat(ys, len(xs)), np.tile(xs, len(ys))


def patch_candidates(sample) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) 8-aligned patch corners as (N, 2) arrays for one sample."""
    h, w = sample.feats.shape[:2]
    ys, xs = _positions(h, w)
    corners = np.stack([ys, xs], axis=1)
    if sample.label == 0:
        return np.zeros((0, 2), int), corners
    if sample.mask is None:
        return np.zeros((0, 2), int), np.zeros((0, 2), int)  # tampered without a mask: no patch labels
    ii = np.pad(sample.mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    cov = (ii[ys + PATCH, xs + PATCH] - ii[ys, xs + PATCH] - ii[ys + PATCH, xs] + ii[ys, xs]) / PATCH**2
    return corners[cov >= POS_COVERAGE], corners[cov == 0]


class PatchSampler:
    def __init__(self, samples, n_pos: int = 4, n_neg_tampered: int = 2, n_neg_authentic: int = 4):
        self.samples = samples
        self.cands = [patch_candidates(s) for s in samples]
        self.n = (n_pos, n_neg_tampered, n_neg_authentic)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n_pos, n_neg_t, n_neg_a = self.n
        picks = []
        for i, (s, (pos, neg)) in enumerate(zip(self.samples, self.cands)):
            if s.label == 1:
                for arr, n, y in ((pos, n_pos, 1.0), (neg, n_neg_t, 0.0)):
                    if len(arr):
                        for j in rng.choice(len(arr), size=min(n, len(arr)), replace=False):
                            picks.append((i, arr[j][0], arr[j][1], y))
            elif len(neg):
                for j in rng.choice(len(neg), size=min(n_neg_a, len(neg)), replace=False):
                    picks.append((i, neg[j][0], neg[j][1], 0.0))
        x = np.empty((len(picks), PATCH, PATCH, self.samples[0].feats.shape[2]), np.float32)
        y = np.empty(len(picks), np.float32)
        for k, (i, r, c, lab) in enumerate(picks):
            x[k] = self.samples[i].feats[r:r + PATCH, c:c + PATCH]
            y[k] = lab
        return x, y


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flips and 90-degree turns: they keep a 64-pixel patch on the 8x8 block grid."""
    out = x.copy()
    flip = rng.random(len(x)) < 0.5
    out[flip] = out[flip, :, ::-1]
    rot = rng.random(len(x)) < 0.5
    out[rot] = np.rot90(out[rot], axes=(1, 2))
    return out


def _auc(neg: np.ndarray, pos: np.ndarray) -> float:
    return rank_auc(neg, pos)


def train(args) -> tuple:
    import keras
    import tensorflow as tf

    from convert import forensics_data as fd

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)

    t0 = time.time()
    items, notes = fd.split_items()
    print(f"split: {notes['split']}", file=sys.stderr)
    q = args.quality
    train_s = fd.casia_set(items, "train", q) + (fd.selfmade_set(items, "train", q) if args.selfmade else [])
    val_s = fd.casia_set(items, "val", q) + fd.selfmade_set(items, "val", q)
    if args.relative:
        from edge_app.forensics.features import relative_features

        for s in train_s + val_s:
            s.feats = relative_features(s.feats).astype(np.float16)
    print(f"data ready in {time.time() - t0:.0f}s: {len(train_s)} training images "
          f"({sum(s.label for s in train_s)} manipulated), {len(val_s)} validation images", file=sys.stderr)

    sampler = PatchSampler(train_s, args.pos_per_image, 2, args.neg_per_image)
    x_va, y_va = PatchSampler(val_s, 4, 2, 4).draw(np.random.default_rng(SEED + 1))
    model = build(channels=train_s[0].feats.shape[2])
    total_steps = args.epochs * (len(sampler.draw(np.random.default_rng(0))[1]) // args.batch + 1)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, total_steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    print(f"training {model.count_params()} parameters for {args.epochs} epochs "
          f"(val: {len(y_va)} patches, {int(y_va.sum())} manipulated)", file=sys.stderr)
    best = (np.inf, None, -1)
    for epoch in range(args.epochs):
        t1 = time.time()
        x_tr, y_tr = sampler.draw(rng)
        pos = y_tr.mean()
        cw = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
        hist = model.fit(augment(x_tr, rng), y_tr, batch_size=args.batch, epochs=1, shuffle=True, verbose=0,
                         class_weight=cw)
        logits = model.predict(x_va, batch_size=512, verbose=0).ravel()
        p = 1 / (1 + np.exp(-logits))
        eps = 1e-6
        w = np.where(y_va == 1, 0.5 / y_va.mean(), 0.5 / (1 - y_va.mean()))
        val_loss = float(np.mean(w * -(y_va * np.log(p + eps) + (1 - y_va) * np.log(1 - p + eps))))
        val_auc = _auc(logits[y_va == 0], logits[y_va == 1])
        h = {k: v[-1] for k, v in hist.history.items()}
        mark = ""
        if val_loss < best[0]:
            best = (val_loss, model.get_weights(), epoch + 1)
            mark = " *"
        print(f"epoch {epoch + 1}/{args.epochs}: {len(y_tr)} patches ({pos:.0%} manipulated) loss {h['loss']:.4f} "
              f"acc {h['binary_accuracy']:.3f} | val patch loss {val_loss:.4f} AUC {val_auc:.4f} "
              f"({time.time() - t1:.0f}s){mark}", file=sys.stderr, flush=True)
    model.set_weights(best[1])
    print(f"kept epoch {best[2]} (lowest validation patch loss {best[0]:.4f})", file=sys.stderr)
    return model, sampler, rng, {"epochs": args.epochs, "kept_epoch": best[2], "train_images": len(train_s),
                                 "train_patches_per_epoch": int(len(y_tr)), "split_counts": notes["split"],
                                 "casia_notes": {"excluded": notes["excluded"],
                                                 "renamed_by_FileNameCorrection": len(notes["renamed"])}}


def export(model, sampler, rng, info: dict, args) -> None:
    from convert.tflite_export import to_float_tflite, to_int8_tflite, write_model
    from edge_app.forensics.analyzer import TASK
    from edge_app.forensics.features import FEATURES

    exp = build(batch_size=1, channels=len(FEATURES))
    exp.set_weights(model.get_weights())
    x_rep, _ = sampler.draw(np.random.default_rng(SEED + 2))
    idx = rng.choice(len(x_rep), size=min(400, len(x_rep)), replace=False)

    def representative():
        for i in idx:
            yield [x_rep[i:i + 1]]

    meta = {
        "version": VERSION,
        "task": TASK,
        "input": {
            "features": FEATURES,
            "channels": {"0-2": "ELA of R, G, B", "3": "wavelet noise residual of the luma"},
            "normalisation": {
                "recompress": f"the RGB image is first JPEG re-encoded at quality {args.quality} "
                              "(Pillow, 4:2:0) and decoded; all features are taken from that image",
                "ela": "edge_app.features.ela.error_level_normalized(rgb, 90): min(|x - jpeg90(x)| / 32, 1)",
                "wavelet_residual_luma": "r = edge_app.features.wavelet.noise_residual_normalized(luma, 'db4', 3) "
                                         "(clip(residual / 16, -1, 1)), then sign(r) * sqrt(|r|); "
                                         "luma = 0.299 R + 0.587 G + 0.114 B",
                "code": "edge_app.forensics.features.prepare",
                **({"relative": "then every channel divided by its factor (ELA 8, residual 4) times the image's own "
                                "level (median over the image's 8x8 blocks of the block-mean |value|; floors 0.004 "
                                "ELA, 0.01 residual) and clipped to [-1, 1]: edge_app.forensics.relative_features, "
                                "applied by ForensicsAnalyzer.patch_scores"} if args.relative else {}),
            },
            "recompress_quality": args.quality,
            "relative": bool(args.relative),
            "patch": {"size": PATCH, "stride": STRIDE, "grid": "top-left corners on multiples of 8 (JPEG block "
                      "grid); last row/column at the 8-aligned position nearest the far edge"},
        },
        "output": {
            "kind": "manipulated_logit",
            "meaning": "per patch: logit of P(patch holds manipulated pixels); patch score = sigmoid(logit)",
            "image_score": {"aggregation": "top3", "meaning": "P(image manipulated) proxy; manipulated when "
                            "score >= threshold"},
            "heatmap": "per pixel: mean score of the patches covering it; suspect where >= pixel_threshold",
        },
        "threshold": 0.5,
        "pixel_threshold": 0.5,
        "training_data": {
            "dataset": "CASIA image tampering detection database v1.0 (CASIA v1): 800 authentic, 920 tampered "
                       "(splicing, copy-move) 384x256 JPEGs with ground-truth masks",
            "license": "CASIA v1: research use",
            "self_made": "per authentic training image one splice (donor from another training image) and one "
                         "copy-move with random polygon/ellipse/rectangle regions (3-20% of the image, some "
                         "feathered, some scaled or rotated), each with an authentic control; both saved with "
                         "the quantization tables and subsampling of a random CASIA training image",
            "split": "scene-disjoint: union-find over shared source images, whole groups dealt to train/val/test "
                     f"~60/20/20 (convert.forensics_data.scene_split, seed {SPLIT_SEED})",
            "patch_labels": f"positive when >= {POS_COVERAGE:.0%} of the patch is inside the mask, negative when "
                            "no pixel is; patches of authentic images and controls negative",
            "produced_by": "python -m convert.train_forensics",
            "seed": SEED,
            **info,
        },
        "license": "weights trained on CASIA v1 (research use only): research use only",
    }
    float_path = write_model(args.models_dir, f"{NAME}_float", to_float_tflite(exp), {**meta, "quantized_from": None})
    int8_path = write_model(args.models_dir, NAME, to_int8_tflite(exp, representative),
                            {**meta, "float_model": float_path.name})
    print(f"wrote {int8_path} ({int8_path.stat().st_size} bytes) and {float_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quality", type=int, default=RECOMPRESS_QUALITY, help="common recompression quality")
    parser.add_argument("--pos-per-image", type=int, default=4)
    parser.add_argument("--neg-per-image", type=int, default=4)
    parser.add_argument("--no-selfmade", dest="selfmade", action="store_false",
                        help="train on CASIA only (self-made sets are still evaluated)")
    parser.add_argument("--absolute", dest="relative", action="store_false",
                        help="feed the absolute feature maps (v0.1.0) instead of per-image relative ones")
    parser.add_argument("--pos-coverage", type=float, default=POS_COVERAGE,
                        help="share of a patch inside the mask for a positive label")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--no-export", action="store_true", help="train and print figures only (a pilot)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip calibration and the report")
    args = parser.parse_args(argv)
    globals()["POS_COVERAGE"] = args.pos_coverage
    t0 = time.time()
    model, sampler, rng, info = train(args)
    info["training_seconds"] = round(time.time() - t0)
    if args.no_export:
        return 0
    export(model, sampler, rng, info, args)
    if not args.no_evaluate:
        from convert import calibrate_forensics

        return calibrate_forensics.main(["--models-dir", str(args.models_dir)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
