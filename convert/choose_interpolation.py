"""Choose how far the shipped models move from the teacher's weights (``INTERPOLATION`` in train_liveness).

    python -m convert.train_liveness --loso --alphas 0 0.25 0.5 0.75 1   # every fold, every alpha
    python -m convert.choose_interpolation                              # reads runs/loso_alpha/

Each fold's models were fine-tuned once; ``alpha`` puts the top's weights that far from the
teacher's start (0) towards the fine-tuned weights (1), and the fold's fusion and threshold are
refitted at each alpha by the usual rule. The choice is made on the calibration source
(``kaggle``): phone captures that trained no model in any fold and whose rates the report never
presents as a test. The rule: the alpha with the highest mean fused ROC AUC on it over the folds;
within 0.002 of the best, the one closer to the teacher. The validation people of the training
sources and the held-out sources are printed beside it for the record, not used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convert import metrics, pad_data
from convert import train_liveness as tl

TIE = 0.002


def fold_aucs(path: Path, crops: pad_data.Crops) -> dict[str, float]:
    """Fused ROC AUC of one saved fold on the calibration source, the validation rows and the held-out source."""
    z = np.load(path)
    out = {}
    for key, idx_key, score_key in (("calibration", "cal_idx", "fused|cal"), ("validation", "val_idx", "fused|val"),
                                    ("held_out", "test_idx", "fused|test_view")):
        y = crops.label[z[idx_key]] == 1
        s = z[score_key]
        out[key] = metrics.auc(s[y], s[~y]) if y.any() and (~y).any() else float("nan")
    return out


def choose(table: dict[float, dict[str, float]]) -> float:
    """The rule of the module docstring over {alpha: mean AUCs}."""
    best = max(v["calibration"] for v in table.values())
    return min(a for a, v in table.items() if v["calibration"] >= best - TIE)


def alpha_table(alpha_dir: Path, crops: pad_data.Crops) -> tuple[dict, dict]:
    """({alpha: mean AUCs}, {alpha: {held-out source: AUCs}}) of the folds under ``alpha_dir``; empty without any."""
    dirs = sorted((d for d in alpha_dir.glob("*") if d.is_dir()), key=lambda d: float(d.name)) if alpha_dir.is_dir() else []
    folds = {float(d.name): {p.stem: fold_aucs(p, crops) for p in sorted(d.glob("*.npz"))} for d in dirs}
    table = {a: {k: float(np.nanmean([f[k] for f in per.values()])) for k in ("calibration", "validation", "held_out")}
             for a, per in folds.items()}
    return table, folds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.choose_interpolation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=tl.alpha_dir(0).parent, help="folder of the per-alpha folds")
    args = ap.parse_args(argv)
    if not any(d.is_dir() for d in args.dir.glob("*")):
        print(f"{args.dir}: no folds (run python -m convert.train_liveness --loso --alphas ...)", file=sys.stderr)
        return 1
    table, folds = alpha_table(args.dir, pad_data.Crops())
    doms = sorted(set.intersection(*(set(f) for f in folds.values())))
    print(f"alpha | mean {tl.CALIBRATION} AUC (chooses) | mean validation AUC | mean held-out AUC | "
          + " | ".join(doms))
    for a, v in table.items():
        print(f"{a:g} | {v['calibration']:.4f} | {v['validation']:.4f} | {v['held_out']:.4f} | "
              + " | ".join(f"{folds[a][d]['held_out']:.3f}" for d in doms))
    chosen = choose(table)
    print(json.dumps({"chosen_alpha": chosen, "rule": "highest mean calibration-source AUC; within "
                      f"{TIE} of it, the alpha closest to the teacher", "folds": len(doms)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
