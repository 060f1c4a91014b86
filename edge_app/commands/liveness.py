"""``edge-app liveness PATH...``: score still images with the device's own code."""

from __future__ import annotations

import argparse
import csv
import sys

from edge_app.commands import add_common, config_from_args
from edge_app.pipeline import load_models
from edge_app.stills import printable, score_stills
from edge_app.tflite_model import ModelError


def register(sub) -> None:
    p = sub.add_parser(
        "liveness",
        help="score still images (files or directories) for liveness",
        description="Score still images through the same detection, cropping, feature and model code as "
        "'edge-app run'. Prints one line per image; decisions are live, attack, uncertain, no_face or error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories (searched recursively)")
    p.add_argument("--csv", metavar="FILE", help="also write path,face_found,score,decision to FILE")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        detector, scorer = load_models(cfg)
    except ModelError as exc:
        print(f"edge-app liveness: {exc}", file=sys.stderr)
        return 2
    out = open(args.csv, "w", newline="") if args.csv else None
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(["path", "face_found", "score", "decision"])
    counts: dict[str, int] = {}
    try:
        for r in score_stills(cfg, detector, scorer, args.paths):
            counts[r.decision] = counts.get(r.decision, 0) + 1
            score = "" if r.score is None else f"{r.score:.4f}"
            per_model = " ".join(f"{k}={v:.4f}" for k, v in (r.scores or {}).items())
            detail = r.message if r.decision in ("error", "no_face", "uncertain") else per_model
            # names and messages escaped: a file name must not forge a line or a column
            print(f"{printable(r.path)}\t{r.decision}\t{score or '-'}\t{printable(detail)}".rstrip(), flush=True)
            if writer:
                writer.writerow([r.path, str(r.face_found).lower(), score, r.decision])
    finally:
        if out:
            out.close()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"# {sum(counts.values())} image(s): {summary or 'none'}; threshold {scorer.threshold:.4f}", file=sys.stderr)
    return 0
