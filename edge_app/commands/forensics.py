"""``edge-app forensics PATH...``: is a photo manipulated, and where?"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from edge_app.commands import add_common, config_from_args
from edge_app.forensics import check_image, load_analyzer, render_heatmap
from edge_app.stills import expand_paths, printable
from edge_app.tflite_model import ModelError


def register(sub) -> None:
    p = sub.add_parser(
        "forensics",
        help="check still images (files or directories) for manipulation",
        description="Image forensics on still images, e.g. enrollment photos before they are accepted: the image "
        "is re-encoded at a common JPEG quality, ELA and wavelet-residual features feed an int8 patch CNN, and "
        "patch scores give an image score and a heatmap. Prints one line per image: path, verdict "
        "(authentic / manipulated / error), score, and notes. Bad files are reported and the run goes on.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories (searched recursively)")
    p.add_argument("--csv", metavar="FILE", help="also write path,score,verdict to FILE")
    p.add_argument("--heatmap", metavar="DIR", type=Path,
                   help="write <DIR>/<name>_forensics.png per image: suspected regions overlaid | ELA map")
    p.add_argument("--json", action="store_true", help="print each result as one JSON line instead")
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
    if args.heatmap:
        args.heatmap.mkdir(parents=True, exist_ok=True)
    out = open(args.csv, "w", newline="") if args.csv else None
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(["path", "score", "verdict"])
    counts: dict[str, int] = {}
    used: set[str] = set()
    try:
        for path, problem in expand_paths(args.paths):
            if problem:
                result, img, analysis = {"verdict": "error", "error": problem, "score": None}, None, None
            else:
                result, img, analysis = check_image(path, analyzer, max_pixels=fc.max_pixels,
                                                    analysis_max_pixels=fc.analysis_max_pixels,
                                                    oversize=fc.oversize)
            verdict = result["verdict"]
            if args.heatmap and analysis is not None:
                target = args.heatmap / _heatmap_name(path, used)
                try:
                    render_heatmap(img.rgb, analysis).save(target)
                    result["heatmap_png"] = str(target)
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
                    hm = result["heatmap"]
                    detail = f"suspect {hm['suspect_fraction']:.1%}"
                    if hm["bbox"]:
                        detail += " bbox " + ",".join(map(str, hm["bbox"]))
                    cm = result["evidence"].get("copy_move")
                    if cm and cm["shift"] and cm["score"] >= 0.5:
                        detail += f"; copy-move: {cm['pairs']} block pairs at shift {cm['shift'][0]},{cm['shift'][1]}"
                    kp = result["evidence"].get("keypoint_copy_move")
                    if kp and kp["shift"] and kp["score"] >= 0.5:
                        detail += (f"; copy-move: {kp['inliers']} keypoints, scale {kp['scale']:.2f}, "
                                   f"rotation {kp['rotation_deg']:.0f} deg")
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
    return 0
