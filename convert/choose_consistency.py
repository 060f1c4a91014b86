"""Choose the framing-consistency weight of ``convert.train_liveness`` on validation people only.

    python -m convert.choose_consistency liveness_cnn 0 0.3 1.0

For each weight: fine-tune the model (the shipped recipe, every training source, no held-out
source), then score the validation people of the training sources (never the calibration source,
never a held-out source) in all three framings and print ROC AUC per framing, the share of
decisions that change between the view and each camera frame (at the validation equal-error
point), and the mean logit gap. ``CONSISTENCY`` in train_liveness was set from this output
(0 -> 7.1% / 0.988, 0.3 -> 5.5% / 0.983, 1.0 -> 10.4% / 0.967 for the CNN at 1,000 steps).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from convert import metrics, pad_data
from convert import train_liveness as tl


def trial(name: str, weight: float, crops: pad_data.Crops, feats: dict, steps: int) -> dict:
    spec = {**tl.MODELS[name], "consistency": weight}
    train_idx, val_idx = tl.fold_split(crops, None)
    _, top, _ = tl.train_model(f"{name} consistency {weight:g}", spec, crops, feats, train_idx, steps=steps)
    y = crops.label[val_idx] == 1
    z = {fr: tl.predict_logits(top, feats[fr][val_idx]) for fr in pad_data.FRAMINGS}
    thr = tl.calibration_threshold(tl.sigmoid(z["view"]), val_idx, crops)
    live = {fr: tl.sigmoid(v) >= thr for fr, v in z.items()}
    return {"weight": weight,
            "val_auc": {fr: round(metrics.auc(v[y], v[~y]), 4) for fr, v in z.items()},
            "flips": {fr: round(float((live[fr] != live["view"]).mean()), 4) for fr in pad_data.FRAMINGS[1:]},
            "mean_abs_logit_gap": {fr: round(float(np.abs(z[fr] - z["view"]).mean()), 3) for fr in pad_data.FRAMINGS[1:]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.choose_consistency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=list(tl.MODELS))
    ap.add_argument("weights", nargs="+", type=float, help="consistency weights to try")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    crops = pad_data.Crops()
    feats = tl.trunk_features(args.model, tl.MODELS[args.model], crops)
    for w in args.weights:
        print(json.dumps(trial(args.model, w, crops, feats, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
