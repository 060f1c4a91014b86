"""Where a liveness model's int8 decision flips come from: the frozen trunk or the fine-tuned top.

    python -m convert.int8_error_sources [liveness_cnn|liveness_attn]     # about 10 CPU minutes a model

The shipped recipe (``convert.train_liveness``, every training domain) is trained once more; then,
on the calibration source's faces (kaggle, which trains no model), at the int8 model's own
equal-error threshold there:

- full int8 against float32 (what ``convert.evaluate`` reports as int8 agreement);
- the int8 *trunk* (the teacher's frozen first stages, quantized alone) feeding the float32 top:
  if this flips as often as the full int8 model, the trunk is where the error is born;
- the same recipe trained with Gaussian noise of the int8 trunk's measured error (per channel)
  added to the cached trunk features (``spec["trunk_noise"]``): does a top trained to expect
  that error flip less?

It prints figures only; it writes no model. Validation AUC is on the validation people of the
training sources.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import time

import numpy as np

from convert import metrics, pad_data
from convert import train_liveness as tl
from convert.tflite_export import to_float_tflite, to_int8_tflite


def run_tflite(content: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs (float) of a TFLite model for each row of ``x``, quantizing int8 inputs/outputs."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=2)
    it.allocate_tensors()
    di, do = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for k in range(len(x)):
        v = x[k:k + 1]
        if di["dtype"] == np.int8:
            scale, zero = di["quantization"]
            v = np.clip(np.round(v / scale + zero), -128, 127).astype(np.int8)
        it.set_tensor(di["index"], v)
        it.invoke()
        r = it.get_tensor(do["index"])[0]
        if do["dtype"] == np.int8:
            scale, zero = do["quantization"]
            r = (r.astype(np.float32) - zero) * scale
        out.append(np.array(r, np.float32))
    return np.array(out)


def representative(x: np.ndarray):
    def gen():
        for k in range(len(x)):
            yield [x[k:k + 1]]
    return gen


def flips(name: str, spec: dict, crops: pad_data.Crops, feats: dict, trunk8: bytes, model, top, rep: np.ndarray) -> dict:
    from convert import minifasnet

    cal_idx = np.flatnonzero(crops.domain == tl.CALIBRATION)
    _, val_idx = tl.fold_split(crops, None)
    exp, _, _ = tl.build(spec, 1)
    minifasnet.copy_weights(model, exp)
    x = tl.model_inputs(crops.arrays[f"view@{spec['scale']}"][cal_idx], spec["features"])
    z8 = run_tflite(to_int8_tflite(exp, representative(rep)), x).ravel()
    zf = run_tflite(to_float_tflite(exp), x).ravel()
    zmix = top.predict(run_tflite(trunk8, x), verbose=0).ravel()
    s8, sf, smix = tl.sigmoid(z8), tl.sigmoid(zf), tl.sigmoid(zmix)
    thr = tl.calibration_threshold(s8, cal_idx, crops)
    live = crops.label[cal_idx] == 1
    zv = tl.predict_logits(top, feats["view"][val_idx])
    yv = crops.label[val_idx] == 1
    return {"n": int(len(cal_idx)), "full_int8_agree": float(np.mean((s8 >= thr) == (sf >= thr))),
            "int8_trunk_float_top_agree": float(np.mean((smix >= thr) == (sf >= thr))),
            "mean_abs_logit_diff_full": float(np.abs(z8 - zf).mean()),
            "mean_abs_logit_diff_trunk_only": float(np.abs(zmix - zf).mean()),
            "float_auc_calibration": float(metrics.auc(sf[live], sf[~live])), "float_auc_val": float(metrics.auc(zv[yv], zv[~yv]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.int8_error_sources", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="liveness_cnn", choices=list(tl.MODELS))
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    name, spec = args.model, tl.MODELS[args.model]
    crops = pad_data.Crops()
    feats = tl.trunk_features(name, spec, crops)
    train_idx, _ = tl.fold_split(crops, None)
    rng = np.random.default_rng(1)
    crops_at = crops.arrays[f"view@{spec['scale']}"]
    rep = tl.model_inputs(crops_at[rng.choice(train_idx, size=300, replace=False)], spec["features"])
    trunk8, probe, err = tl.int8_trunk_error(name, spec, crops, train_idx, rng)
    sigma = err.reshape(-1, err.shape[-1]).std(0)
    print(f"[{name}] int8 trunk output error: rms {np.sqrt((err ** 2).mean()):.3f} against a feature rms of "
          f"{np.sqrt((feats['view'][probe].astype(np.float32) ** 2).mean()):.3f}", flush=True)
    for tag, s in (("shipped recipe", spec), ("trained with the int8 trunk's error as noise", {**spec, "trunk_noise": sigma})):
        t0 = time.time()
        model, top, _ = tl.train_model(name, s, crops, feats, train_idx)
        r = flips(name, spec, crops, feats, trunk8, model, top, rep)
        print(f"[{name}, {tag}] calibration faces n={r['n']}: full int8 agrees with float32 on "
              f"{r['full_int8_agree']:.3f}, int8 trunk + float32 top on {r['int8_trunk_float_top_agree']:.3f}; mean "
              f"|logit diff| {r['mean_abs_logit_diff_full']:.3f} (trunk only {r['mean_abs_logit_diff_trunk_only']:.3f}); "
              f"float32 AUC calibration {r['float_auc_calibration']:.3f}, validation {r['float_auc_val']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
