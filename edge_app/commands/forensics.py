"""``edge-app forensics PATH...``: is a photo manipulated, and where?"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

from edge_app.commands import add_common, config_from_args
from edge_app.forensics.analyzer import load_analyzer
from edge_app.forensics.check import check_image
from edge_app.forensics.heatmap import region_mask, render_heatmap
from edge_app.image_paths import expand_paths, printable
from edge_app.tflite_model import ModelError


def register(sub) -> None:
    p = sub.add_parser(
        "forensics",
        help="check still images (files or directories) for manipulation",
        description="Image forensics on still images: is a region copied within the image (block and keypoint "
        "matching, each candidate verified pixel by pixel), and, where the model's metadata puts it in the score, "
        "do compression traces differ (ELA + wavelet residual, int8 patch CNN)? Every detector's threshold is "
        "calibrated for a stated false-alarm rate on authentic photos of several kinds (models/reports/forensics.md). "
        "Prints one line per image: path, verdict (authentic / manipulated / error), score (>= threshold: "
        "manipulated), and notes. Bad files are reported and the run goes on.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories (searched recursively)")
    p.add_argument("--csv", metavar="FILE", help="also write path,score,verdict to FILE")
    p.add_argument("--heatmap", metavar="DIR", type=Path,
                   help="write <DIR>/<name>_forensics.png per image (regions over threshold tinted, legend | ELA "
                        "scaled to show) and <DIR>/<name>_mask.png (white: the regions)")
    p.add_argument("--json", action="store_true",
                   help="print each result as one JSON line instead (regions with boxes and run-length masks)")
    p.add_argument("--threshold", type=float, help="override the calibrated image threshold (forensics.threshold)")
    add_common(p)
    p.set_defaults(func=run)


def _heatmap_name(path: Path, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "image"
    name, k = f"{stem}_forensics.png", 1
    while name in used:
        k += 1
        name = f"{stem}_{k}_forensics.png"
    used.add(name)
    return name


SLOW_PIXELS = 2_000_000  # images over this many pixels report their progress on stderr


def _progress_for(path: Path):
    """A progress callback that prints each stage for a large image (stderr), else None."""
    from edge_app.images import open_image_file, probe

    try:
        # the strict opener: a FIFO or a device is refused here without blocking
        with open_image_file(path) as fp:
            w, h, _ = probe(fp, str(path))
    except Exception:  # the analysis reports the problem itself
        return None
    if w * h <= SLOW_PIXELS:
        return None
    t0 = time.perf_counter()
    print(f"# {path}: {w}x{h} ({w * h / 1e6:.1f} MP), analysing ...", file=sys.stderr, flush=True)
    return lambda stage: print(f"#   {time.perf_counter() - t0:5.1f}s {stage}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    fc = cfg.forensics
    threshold = args.threshold if args.threshold is not None else (fc.threshold or None)
    if threshold is not None and not 0 < threshold < 1:  # float("nan") parses; no comparison with it holds
        print(f"edge-app forensics: --threshold {args.threshold}: must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        analyzer = load_analyzer(cfg.resolved_models_dir(), fc.model, fc.threads, threshold)
    except ModelError as exc:
        print(f"edge-app forensics: {exc}", file=sys.stderr)
        return 2
    # an unwritable output is one line naming the option and the path, not a traceback
    out = None
    for option, target in (("--heatmap", args.heatmap), ("--csv", args.csv)):
        if not target:
            continue
        try:
            if option == "--heatmap":
                target.mkdir(parents=True, exist_ok=True)
            else:
                out = open(target, "w", newline="")
        except OSError as exc:
            print(f"edge-app forensics: {option} {target}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(["path", "score", "verdict"])
    counts: dict[str, int] = {}
    used: set[str] = set()
    missing = 0
    try:
        for path, problem in expand_paths(args.paths):
            missing += bool(problem)
            if problem:
                result, img, analysis = {"verdict": "error", "error": problem, "score": None}, None, None
            else:
                result, img, analysis = check_image(path, analyzer, max_pixels=fc.max_pixels,
                                                    analysis_max_pixels=fc.analysis_max_pixels,
                                                    oversize=fc.oversize, progress=_progress_for(path))
            verdict = result["verdict"]
            if args.heatmap and analysis is not None:
                target = args.heatmap / _heatmap_name(path, used)
                try:
                    render_heatmap(img.rgb, analysis).save(target)
                    result["heatmap_png"] = str(target)
                    mask_target = target.with_name(target.name[: -len("_forensics.png")] + "_mask.png")
                    region_mask(analysis, img).save(mask_target)
                    result["mask_png"] = str(mask_target)
                except OSError as exc:
                    result.setdefault("notes", []).append(f"heatmap not written: {exc}")
            counts[verdict] = counts.get(verdict, 0) + 1
            score = "" if result.get("score") is None else f"{result['score']:.4f}"
            if args.json:
                print(json.dumps({"path": str(path), **result}), flush=True)
            else:
                if verdict == "error":
                    detail = result["error"]
                else:
                    parts = []
                    for region in result["regions"]:
                        parts.append(f"{region['detector']} {region['area_fraction']:.1%} bbox "
                                     + ",".join(map(str, region["bbox"])))
                    for key in ("copy_move", "keypoint_copy_move"):
                        cm = result["evidence"].get(key)
                        if cm and cm.get("shift") and cm["score"] >= analyzer.threshold:
                            parts.append(f"{key}: shift {cm['shift'][0]},{cm['shift'][1]} (dy,dx), scale "
                                         f"{cm['scale']:.2f}, rotation {cm['rotation_deg']:.0f} deg")
                    detail = "; ".join(parts) if parts else "no region over threshold"
                    src = result["source"]
                    if src.get("jpeg_history"):
                        detail += f"; JPEG q~{src['jpeg_quality_estimate']}"
                    for note in result["notes"]:
                        detail += f"; {note}"
                print(f"{printable(path)}\t{verdict}\t{score or '-'}\t{printable(detail)}", flush=True)
            if writer:
                writer.writerow([str(path), score, verdict])
    finally:
        if out:
            out.close()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"# {sum(counts.values())} image(s): {summary or 'none'}; threshold {analyzer.threshold:.4f} "
          f"({analyzer.name} v{analyzer.version})", file=sys.stderr)
    if missing:
        print(f"edge-app forensics: {missing} path(s) missing or without images (see above)", file=sys.stderr)
        return 1
    return 0
