"""``edge-app liveness PATH...``: score still images with the device's own code."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from edge_app.commands import add_common, config_from_args
from edge_app.image_paths import printable
from edge_app.liveness.annotate import AnnotateError, Annotator, Mark, decision_label
from edge_app.liveness.stills import score_stills
from edge_app.pipeline import load_models
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
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write each image to DIR with its face boxes, scores and decision drawn on it")
    add_common(p)
    p.set_defaults(func=run)


def _annotate(annotator: Annotator, r, threshold: float) -> None:
    marks = [Mark(f.box(), f"face {f.score:.2f}") for f in r.faces[1:]]  # found, not scored (not the largest)
    if r.box is not None:
        marks.append(Mark(r.box, decision_label(r.decision, r.score, threshold), r.decision))
    caption = f"{Path(r.path).name}: {r.decision}" + (f" ({r.message})" if r.message and r.decision != "live" else "")
    annotator.write(r.image, marks, Path(r.path).stem, caption=caption)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        detector, scorer = load_models(cfg)
    except ModelError as exc:
        print(f"edge-app liveness: {exc}", file=sys.stderr)
        return 2
    try:
        annotator = Annotator(args.annotate) if args.annotate else None
        out = open(args.csv, "w", newline="") if args.csv else None
    except (AnnotateError, OSError) as exc:
        what = exc if isinstance(exc, AnnotateError) else f"--csv {args.csv}: cannot write ({exc.strerror or exc})"
        print(f"edge-app liveness: {what}", file=sys.stderr)
        return 2
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(["path", "face_found", "score", "decision"])
    counts: dict[str, int] = {}
    missing = 0
    try:
        for r in score_stills(cfg, detector, scorer, args.paths, keep_images=annotator is not None):
            counts[r.decision] = counts.get(r.decision, 0) + 1
            missing += r.missing
            if annotator and r.image is not None:
                try:
                    _annotate(annotator, r, scorer.threshold)
                except AnnotateError as exc:
                    print(f"edge-app liveness: {exc}", file=sys.stderr)
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
    if annotator:
        print(f"# annotated images in {annotator.folder}", file=sys.stderr)
    if missing:
        print(f"edge-app liveness: {missing} path(s) missing or without images (see above)", file=sys.stderr)
        return 1
    return 0
