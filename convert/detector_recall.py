"""Face detector recall against face size: real photos rescaled so the face is 5-100% of the
width of a 1280x720 frame; writes models/reports/detector.md, detector.json and one PNG plot
per detector configuration.

    python -m convert.detector_recall [--datasets ../shared/datasets] [--per-source 60]

How a test frame is made: a real photo (NUAA live webcam frames, 640x480, faces about a
third of the width; UTKFace aligned crops, 200x200, the face fills most of it) has a
reference face box: the short-range detector's answer on the photo as it is (the
full-range one's where it finds none) (UTKFace crops are shrunk inside a border first, as they are close-ups). The photo is
scaled so that box is ``f`` x 1280 pixels wide and laid into a 1280x720 frame around the
face: a small photo lands on a real empty scene (the built-in sample's background), a large
one is cropped by the frame, so at 60-100% the face is cut by the frame's edges like a
tight close-up. A face counts as found when a detected box overlaps the expected one
(clipped to the frame) with IoU >= 0.3. Photos without a reference face are left out and
counted. False faces are counted on CASIA v1 photos of buildings, textures and nature
(Au_arc, Au_txt, Au_nat) that hold no people.

Detection runs on the 1280x720 frame as the files source gives it (the detector letterboxes
any frame to its 128 or 192 pixel input, so a camera's low-resolution stream sees the same
face fraction). Detection threshold: the config default ``detector.min_score``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convert.datasets import datasets_root
from edge_app.config import Config
from edge_app.frames.detector import CLOSEUP_ZOOM_OUT, Face, load_detector, short_range_trusted
from edge_app.frames.sources.sample import sample_image
from edge_app.liveness.decision import iou

FRAME_W, FRAME_H = 1280, 720
FRACTIONS = (0.05, 0.06, 0.07, 0.08, 0.10, 0.125, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60, 0.80, 1.00)
CONFIGS = ("short", "full", "both", "short+retry", "full+retry", "both+retry")
REPO = Path(__file__).resolve().parents[1]


def photos(datasets: Path, per_source: int) -> list[tuple[str, str, np.ndarray]]:
    """(source, name, rgb): NUAA live frames spread over its 15 people, and UTKFace crops."""
    out = []
    with open(datasets / "nuaa" / "manifest.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "live"]
    by_subject: dict[str, list[dict]] = {}
    for r in rows:
        by_subject.setdefault(r["subject"], []).append(r)
    picked = []
    k = 0
    while len(picked) < per_source and any(by_subject.values()):
        for subject in sorted(by_subject):
            group = by_subject[subject]
            if k < len(group) and len(picked) < per_source:
                picked.append(group[(k * 37) % len(group)])
        k += 1
    for r in picked:
        out.append(("nuaa", r["path"], np.asarray(Image.open(datasets / "nuaa" / r["path"]).convert("RGB"))))
    with open(datasets / "utkface" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // per_source)
    for r in rows[::step][:per_source]:
        out.append(("utkface", r["path"], np.asarray(Image.open(datasets / "utkface" / r["path"]).convert("RGB"))))
    return out


def reference_box(short, full, rgb: np.ndarray, closeup: bool) -> tuple[float, float, float, float] | None:
    zoom = CLOSEUP_ZOOM_OUT if closeup else 1.0
    faces = short.detect(rgb, zoom) or full.detect(rgb, zoom)
    if not faces:
        return None
    f = max(faces, key=lambda f: f.w * f.h)
    return f.x, f.y, f.w, f.h


def compose(rgb: np.ndarray, ref, fraction: float, background: Image.Image, seed: int):
    """(1280x720 frame, expected face box clipped to the frame) with the face ``fraction`` x 1280 wide."""
    x, y, w, h = ref
    s = fraction * FRAME_W / w
    H, W = rgb.shape[:2]
    sw, sh = max(1, round(W * s)), max(1, round(H * s))
    photo = Image.fromarray(rgb).resize((sw, sh), Image.BILINEAR if s > 1 else Image.LANCZOS, reducing_gap=None)
    cx, cy = (x + w / 2) * s, (y + h / 2) * s
    rng = np.random.default_rng(seed)
    tx = FRAME_W / 2 + rng.uniform(-0.25, 0.25) * max(0, FRAME_W - w * s)
    ty = FRAME_H / 2 + rng.uniform(-0.25, 0.25) * max(0, FRAME_H - h * s)
    ox, oy = tx - cx, ty - cy

    def clamp(o: float, size: int, frame: int) -> float:
        # a photo larger than the frame covers it; a smaller one lies wholly inside it
        return min(0.0, max(frame - size, o)) if size >= frame else min(frame - size, max(0.0, o))

    ox, oy = round(clamp(ox, sw, FRAME_W)), round(clamp(oy, sh, FRAME_H))
    frame = background.copy()
    frame.paste(photo, (ox, oy))
    bx, by = x * s + ox, y * s + oy
    x1, y1 = max(0.0, bx), max(0.0, by)
    x2, y2 = min(float(FRAME_W), bx + w * s), min(float(FRAME_H), by + h * s)
    return np.asarray(frame), (x1, y1, x2 - x1, y2 - y1)


def found(faces: list[Face], expected) -> bool:
    return any(iou((f.x, f.y, f.w, f.h), expected) >= 0.3 for f in faces)


def configs_for(short, full, frame: np.ndarray) -> dict[str, list[Face]]:
    """Each configuration's faces for one frame (each model run at most twice)."""
    s1, f1 = short.detect(frame), full.detect(frame)
    # as MultiDetector: full-range's faces where short-range's are not trusted alone
    both = s1 if short_range_trusted(s1, frame.shape[1]) else (f1 or s1)
    out = {"short": s1, "full": f1, "both": both}
    retry = None
    for name, first in (("short", s1), ("full", f1), ("both", both)):
        if first:
            out[f"{name}+retry"] = first
        else:
            retry = retry if retry is not None else short.detect(frame, CLOSEUP_ZOOM_OUT)
            out[f"{name}+retry"] = retry
    return out


def plot(recall: dict[str, list[float]], names: list[str], path: Path, title: str) -> None:
    """Recall against face width, one line per name, drawn with Pillow."""
    W, H, L, R, T, B = 900, 520, 70, 200, 40, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:
        font = ImageFont.load_default()
    lx = np.log(np.array(FRACTIONS))
    def px(i: int) -> float:
        return L + (lx[i] - lx[0]) / (lx[-1] - lx[0]) * (W - L - R)
    def py(v: float) -> float:
        return T + (1 - v) * (H - T - B)
    for v in np.linspace(0, 1, 11):
        d.line([(L, py(v)), (W - R, py(v))], fill=(225, 225, 225))
        d.text((L - 40, py(v) - 7), f"{v:.1f}", fill="black", font=font)
    for i, f in enumerate(FRACTIONS):
        d.line([(px(i), T), (px(i), H - B)], fill=(235, 235, 235))
        d.text((px(i) - 12, H - B + 6), f"{f * 100:g}", fill="black", font=font)
    d.line([(L, py(0.95)), (W - R, py(0.95))], fill=(150, 150, 150), width=1)
    i8 = FRACTIONS.index(0.08)
    d.line([(px(i8), T), (px(i8), H - B)], fill=(150, 150, 150), width=1)
    d.text((W / 2 - 170, H - 30), "face width, % of a 1280x720 frame's width (log scale)", fill="black", font=font)
    d.text((L, 10), title, fill="black", font=font)
    palette = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
    for k, name in enumerate(names):
        pts = [(px(i), py(v)) for i, v in enumerate(recall[name])]
        d.line(pts, fill=palette[k % len(palette)], width=3)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=palette[k % len(palette)])
        d.line([(W - R + 15, T + 20 + 22 * k), (W - R + 45, T + 20 + 22 * k)], fill=palette[k % len(palette)], width=3)
        d.text((W - R + 52, T + 12 + 22 * k), name, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def markdown(r: dict, bench: dict | None = None) -> str:
    """The report: method, recall table per configuration, by source, false faces, cost."""
    configs = list(r["recall"])
    n = sum(r["photos"].values())
    lines = [
        "# Face detector: recall by face size, and cost",
        "",
        f"Made by `python -m convert.detector_recall` (figures in `detector.json`; plots "
        f"`detector_recall_<configuration>.png`, all in one: `detector_recall.png`). {n} real photos: "
        f"{r['photos']['nuaa']} NUAA live webcam frames (15 people) and {r['photos']['utkface']} UTKFace crops "
        f"({sum(r['without_reference_face'].values())} left out for want of a reference face), each rescaled so "
        f"its face is the given share of the width of a {r['frame'][0]}x{r['frame'][1]} frame (small photos lie on "
        "a real empty scene; large ones are cropped by the frame, so from about 60% the face is cut at the top "
        "and bottom, a tight close-up). Found: a detected box with IoU >= 0.3 against the expected one, at "
        f"`detector.min_score` {r['min_score']}. Method and its limits: the module docstring of "
        "`convert/detector_recall.py`.",
        "",
        "Configurations (`[detector] model`, `closeup_retry`): **short** = BlazeFace short-range (128x128 input), "
        "**full** = full-range (192x192), **both** = short-range, and full-range on frames where it finds no face of "
        "at least 20% of the width, or 10% with a score of 0.75 (`short_range_trusted` in edge_app/frames/detector.py; then its faces, the short-range ones if it finds none); **+retry** = a frame "
        "where they find nothing is looked at again by the short-range model, shrunk to half inside a black border.",
        "",
        "| face width | " + " | ".join(configs) + " |",
        "|---:|" + "---:|" * len(configs),
    ]
    for i, f in enumerate(r["fractions"]):
        lines.append(f"| {f * 100:g}% | " + " | ".join(f"{r['recall'][c][i]:.3f}" for c in configs) + " |")
    i8 = r["fractions"].index(0.08)
    def wilson(p: float) -> str:
        z, k = 1.96, round(p * n)
        centre = (k + z * z / 2) / (n + z * z)
        half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
        return f"{p:.3f} [{max(0.0, centre - half):.3f}, {min(1.0, centre + half):.3f}]"

    lines += ["", f"Recall at 8% of the width (the target is >= 0.95), with 95% Wilson intervals over the {n} "
              "photos: " + ", ".join(f"{c} {wilson(r['recall'][c][i8])}" for c in configs) + ".",
              "", "By source (short / full / both+retry):", "",
              "| face width | NUAA short | NUAA full | NUAA both+retry | UTKFace short | UTKFace full | UTKFace both+retry |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    bs = r["recall_by_source"]
    for i, f in enumerate(r["fractions"]):
        lines.append(f"| {f * 100:g}% | " + " | ".join(f"{bs[src][c][i]:.2f}" for src in ("nuaa", "utkface")
                                                       for c in ("short", "full", "both+retry")) + " |")
    ff = r["false_faces"]
    lines += ["", f"False faces: of {ff['images']} CASIA v1 photos without people (40 each of architecture, "
              "texture and nature), the frames where a face was reported: "
              + ", ".join(f"{c} {k}" for c, k in ff["frames_with_a_face"].items()) + ". (Letting the full-range "
              "model retry on the shrunk frame as well raised its count from 1 to 7 of the same 120 photos, "
              "measured once by hand before this script, so only the short-range model retries.)"]
    if bench:
        lines += ["", "## Cost", "", bench.get("note", ""), "", "| case | min ms | median ms | p95 ms |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['min_ms']:.2f} | {v['median_ms']:.2f} | {v['p95_ms']:.2f} |" for k, v in bench["detectors"].items()]
        loop = bench.get("detector_frame_loop_640x480", {})
        if loop:
            lines += ["", "| detector.model | frame loop fps, 640x480, one face, unpaced | p50 ms | p95 ms |",
                      "|---|---:|---:|---:|"]
            lines += [f"| {k} | {f['fps']} | {f['p50_ms']} | {f['p95_ms']} |" for k, f in loop.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=datasets_root(), help="default: ../shared/datasets or $EDGE_APP_DATASETS")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--per-source", type=int, default=60, help="photos from NUAA and from UTKFace each (default 60)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "reports")
    ap.add_argument("--report-only", action="store_true",
                    help="write detector.md from the detector.json already there (and --bench FILE) without measuring")
    ap.add_argument("--bench", type=Path, metavar="FILE",
                    help="an `edge-app bench --json FILE` result whose detector costs go into the report")
    args = ap.parse_args(argv)
    bench = None
    if args.bench:
        data = json.loads(args.bench.read_text())
        env = data.get("environment", {})
        bench = {"detectors": data["detectors"], "detector_frame_loop_640x480": data.get("detector_frame_loop_640x480", {}),
                 "note": f"From `edge-app bench` ({env.get('cpus', '?')} CPUs, {env.get('processor', '')}, load "
                         f"average {env.get('load_average_at_start', [0])[0]:.1f} at start: a shared, busy machine; "
                         "read the ratios between rows, taken side by side in one run, more than the absolute "
                         "times). Detection time per frame, one thread. The frame-loop rows below use the sample's face "
                         "(14% of the width, short-range score 0.85: trusted, so 'both' runs the short-range model "
                         "only); a far face or an empty scene costs both runs (the 'far face' and 'no face' rows), "
                         "and no liveness model runs without a face. Command: `edge-app bench --frames 200 --repeat 40 "
                         "--json FILE`, then `python -m convert.detector_recall --report-only --bench FILE`; this run's figures: "
                         "`detector_bench.json`."}
    if args.report_only:
        (args.out / "detector.md").write_text(markdown(json.loads((args.out / "detector.json").read_text()), bench))
        return 0
    min_score = Config().detector.min_score
    short = load_detector(args.models_dir, 1, min_score, "short")
    full = load_detector(args.models_dir, 1, min_score, "full")
    background = Image.fromarray(sample_image("empty")).resize((FRAME_W, FRAME_H), Image.BILINEAR)

    t0 = time.time()
    hits = {src: {c: np.zeros(len(FRACTIONS), int) for c in CONFIGS} for src in ("nuaa", "utkface")}
    counted = {"nuaa": 0, "utkface": 0}
    skipped = {"nuaa": 0, "utkface": 0}
    for source, name, rgb in photos(args.datasets, args.per_source):
        ref = reference_box(short, full, rgb, closeup=source == "utkface")
        if ref is None:
            skipped[source] += 1
            continue
        counted[source] += 1
        seed = zlib.crc32(name.encode())
        for i, fraction in enumerate(FRACTIONS):
            frame, expected = compose(rgb, ref, fraction, background, seed)
            for config, faces in configs_for(short, full, frame).items():
                hits[source][config][i] += found(faces, expected)

    paths = sorted((args.datasets / "casia1" / "Au").glob("Au_arc_*.jpg"))[:40] + \
        sorted((args.datasets / "casia1" / "Au").glob("Au_txt_*.jpg"))[:40] + \
        sorted((args.datasets / "casia1" / "Au").glob("Au_nat_*.jpg"))[:40]
    false_faces = {c: 0 for c in CONFIGS}
    for p in paths:
        for config, faces in configs_for(short, full, np.asarray(Image.open(p).convert("RGB"))).items():
            false_faces[config] += bool(faces)

    total = {c: hits["nuaa"][c] + hits["utkface"][c] for c in CONFIGS}
    n = counted["nuaa"] + counted["utkface"]
    recall = {c: (total[c] / max(n, 1)).tolist() for c in CONFIGS}
    by_source = {src: {c: (hits[src][c] / max(counted[src], 1)).tolist() for c in CONFIGS} for src in hits}
    results = {"fractions": list(FRACTIONS), "frame": [FRAME_W, FRAME_H], "min_score": min_score,
               "photos": counted, "without_reference_face": skipped, "recall": recall, "recall_by_source": by_source,
               "false_faces": {"images": len(paths), "frames_with_a_face": false_faces},
               "seconds": round(time.time() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detector.json").write_text(json.dumps(results, indent=2) + "\n")
    for config in CONFIGS:
        plot(recall, [config], args.out / f"detector_recall_{config.replace('+', '_')}.png",
             f"detector recall, {config}: {n} real photos")
    plot(recall, list(CONFIGS), args.out / "detector_recall.png", f"detector recall by face width: {n} real photos")
    (args.out / "detector.md").write_text(markdown(results, bench))
    print(json.dumps({c: [round(v, 3) for v in recall[c]] for c in CONFIGS}, indent=1))
    print(f"photos {counted}, without reference face {skipped}, false faces {false_faces} of {len(paths)}, "
          f"{results['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
