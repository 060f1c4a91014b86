#!/usr/bin/env python3
"""Benchmark ELA and the wavelet residual against the JPEG codec floor.

Runs every variant round-robin in one process (each repetition times each
variant once, so machine noise hits all alike) and prints min and median
milliseconds and the ratios the design brief asks for:

  floor       Pillow encode + decode only: a ready PIL image -> im.save(BytesIO,
              "JPEG", quality) -> Image.open(...).load(). No numpy conversions.
  floor+io    the same plus numpy in and out (Image.fromarray, np.asarray):
              numpy -> numpy through Pillow's public calls, no ELA arithmetic.
  naive       the usual Python ELA: fromarray, save, reopen, ImageChops.difference
              (exact), + getextrema and ImageEnhance.Brightness (display).
  ours        edge_app.features.ela.error_level / error_level_display on the codec backend
              ELA picks here (turbojpeg where libturbojpeg is installed, else pillow),
              with its default threads: frames of 480x360 and up are coded in strips
              on up to 4 cores, crops in the calling thread;
  ours 1t     the same on one thread, beside it when the default uses more, since the
              floor and naive use one core;
  ours pillow the Pillow backend beside it when the default is another.

Before timing it checks that ours and naive give identical maps.

    edge-app bench ela [--image PATH] [--repeat N] [--quality Q] [--json FILE] [--only frames|crop] [--report FILE]
    python bench/ela.py [--image PATH] [--repeat N] [--quality Q] [--json FILE] [--only crop]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pywt
from PIL import Image, ImageChops, ImageEnhance

from edge_app.bench import default_repeat, fmt_ratio, interleaved, ratio
from edge_app.features.ela import ElaWorkspace, error_level, error_level_display
from edge_app.features.wavelet import noise_residual

ROOT = Path(__file__).resolve().parents[2]

SIZES = [(640, 480), (1280, 720), (1920, 1080)]
CROP = 128


# ---------------------------------------------------------------- sources


def _datasets_dir() -> Path:
    env = os.environ.get("EDGE_APP_DATASETS")
    return Path(env) if env else ROOT.parent / "shared" / "datasets"


def _synthetic(w: int = 1920, h: int = 1080) -> Image.Image:
    """Smooth shading plus edges and fine texture, so JPEG has work everywhere."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 128 + 60 * np.sin(xx / 97) * np.cos(yy / 71)
    rings = 40 * (np.hypot(xx - w / 2, yy - h / 2) % 120 < 60)
    texture = 12 * np.sin(xx / 3.1) * np.sin(yy / 2.3)
    img = base[..., None] + rings[..., None] + texture[..., None] * [1.0, 0.6, 0.3]
    img += rng.normal(0, 3, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def load_photo(path: str | None) -> tuple[Image.Image, str]:
    if path:
        return Image.open(path).convert("RGB"), path
    nuaa = _datasets_dir() / "nuaa" / "ClientRaw"
    if nuaa.is_dir():
        first = next(iter(sorted(nuaa.rglob("*.jpg"))), None)
        if first is not None:
            return Image.open(first).convert("RGB"), str(first)
    try:
        from skimage import data  # optional

        return Image.fromarray(data.astronaut()), "skimage.data.astronaut"
    except ImportError:
        pass
    return _synthetic(), "synthetic textured image"


def center_crop(photo: Image.Image, side: int) -> Image.Image:
    """A face-crop stand-in: the central square (NUAA frames have the face there)."""
    w, h = photo.size
    s = min(w, h) // 2
    box = ((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)
    return photo.resize((side, side), Image.LANCZOS, box=box)


# ---------------------------------------------------------------- variants


def naive_exact(rgb: np.ndarray, q: int) -> np.ndarray:
    im = Image.fromarray(rgb)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return np.asarray(ImageChops.difference(im, Image.open(buf)))


def naive_display(rgb: np.ndarray, q: int) -> np.ndarray:
    im = Image.fromarray(rgb)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    diff = ImageChops.difference(im, Image.open(buf))
    max_diff = max(hi for _, hi in diff.getextrema()) or 1
    return np.asarray(ImageEnhance.Brightness(diff).enhance(255.0 / max_diff))


def floor(im: Image.Image, q: int) -> None:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    Image.open(buf).load()


def floor_io(rgb: np.ndarray, q: int) -> np.ndarray:
    im = Image.fromarray(rgb)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return np.asarray(Image.open(buf))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="photo to use (default: first NUAA ClientRaw frame, "
                    "else skimage astronaut, else a synthetic textured image)")
    ap.add_argument("--repeat", type=int, help="rounds per size (default: by size, 30-400)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    ap.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    ap.add_argument("--only", choices=["frames", "crop"],
                    help="time only the three frame sizes, or only the 128x128 crop")
    args = ap.parse_args(argv)
    q = args.quality

    photo, source = load_photo(args.image)
    print(f"image: {source} {photo.size[0]}x{photo.size[1]}, quality {q}")
    default_ws = ElaWorkspace()
    codec = default_ws.codec.name
    threads = getattr(default_ws.codec, "threads", 1)
    print(f"python {platform.python_version()}, numpy {np.__version__}, Pillow {Image.__version__}, "
          f"PyWavelets {pywt.__version__}, {platform.machine()} x{os.cpu_count()}; "
          f"ELA codec: {codec}, up to {threads} thread(s) per image")
    print("times in ms, min / median over interleaved rounds; ratios min / median\n")

    cases = []
    if args.only != "crop":
        cases += [(f"{w}x{h}", photo.resize((w, h), Image.LANCZOS)) for w, h in SIZES]
    if args.only != "frames":
        cases.append((f"{CROP}x{CROP} crop", center_crop(photo, CROP)))

    report: dict = {"image": source, "quality": q, "python": platform.python_version(),
                    "numpy": np.__version__, "pillow": Image.__version__,
                    "pywavelets": pywt.__version__, "cpus": os.cpu_count(), "ela_codec": codec,
                    "ela_threads": threads,
                    "ela": {}, "wavelet": {}}
    all_equal = True
    header = (f"{'size':>14} {'variant':>14} {'min':>8} {'median':>8}")
    for label, im in cases:
        rgb = np.array(im)
        ws = ElaWorkspace()
        same_exact = np.array_equal(error_level(rgb, q, workspace=ws), naive_exact(rgb, q))
        same_display = np.array_equal(error_level_display(rgb, q, workspace=ws), naive_display(rgb, q))
        ws_1t = ElaWorkspace(threads=1) if threads > 1 else None
        if ws_1t is not None:
            same_exact &= np.array_equal(error_level(rgb, q, workspace=ws_1t), naive_exact(rgb, q))
            same_display &= np.array_equal(error_level_display(rgb, q, workspace=ws_1t),
                                           naive_display(rgb, q))
        ws_pil = ElaWorkspace("pillow") if codec != "pillow" else None
        if ws_pil is not None:
            same_exact &= np.array_equal(error_level(rgb, q, workspace=ws_pil), naive_exact(rgb, q))
        all_equal &= same_exact and same_display
        variants = {
            "floor": lambda: floor(im, q),
            "floor+io": lambda: floor_io(rgb, q),
            "naive exact": lambda: naive_exact(rgb, q),
            "naive display": lambda: naive_display(rgb, q),
            "ours exact": lambda: error_level(rgb, q, workspace=ws),
            "ours display": lambda: error_level_display(rgb, q, workspace=ws),
        }
        if ws_1t is not None:
            variants["ours exact 1t"] = lambda: error_level(rgb, q, workspace=ws_1t)
            variants["ours display 1t"] = lambda: error_level_display(rgb, q, workspace=ws_1t)
        if ws_pil is not None:
            variants["ours pillow"] = lambda: error_level(rgb, q, workspace=ws_pil)
        n = args.repeat or default_repeat(rgb.shape[0] * rgb.shape[1])
        res = interleaved(variants, n)
        ratios = {
            "exact/floor": ratio(res, "ours exact", "floor"),
            "display/floor": ratio(res, "ours display", "floor"),
            "exact/floor+io": ratio(res, "ours exact", "floor+io"),
            "naive exact/ours exact": ratio(res, "naive exact", "ours exact"),
            "naive display/ours display": ratio(res, "naive display", "ours display"),
            "naive display/ours exact": ratio(res, "naive display", "ours exact"),
        }
        if ws_1t is not None:
            ratios["exact 1t/floor"] = ratio(res, "ours exact 1t", "floor")
            ratios["display 1t/floor"] = ratio(res, "ours display 1t", "floor")
            ratios["naive display/ours display 1t"] = ratio(res, "naive display", "ours display 1t")
        if ws_pil is not None:
            ratios["ours pillow/floor"] = ratio(res, "ours pillow", "floor")
        report["ela"][label] = {"rounds": n, "times": res, "ratios": ratios,
                                "identical_exact": same_exact, "identical_display": same_display}
        print(header)
        for name, r in res.items():
            print(f"{label:>14} {name:>15} {r['min_ms']:8.3f} {r['median_ms']:8.3f}")
        for name, r in ratios.items():
            print(f"{'':>14} {name:>28}  {fmt_ratio(r)}")
        print(f"{'':>14} maps identical to naive: exact {'OK' if same_exact else 'MISMATCH'}, "
              f"display {'OK' if same_display else 'MISMATCH'}  ({n} rounds)\n")

    # Wavelet residual: gray and RGB at crop and frame size.
    crop = np.array(center_crop(photo, CROP))
    frame = np.array(photo.resize((640, 480), Image.LANCZOS))
    wv = {"128x128 gray": crop[..., 1].copy(), "128x128 RGB": crop}
    if args.only != "crop":
        wv.update({"640x480 gray": frame[..., 1].copy(), "640x480 RGB": frame})
    for label, arr in wv.items():
        n = args.repeat or (300 if arr.shape[0] <= CROP else 30)
        res = interleaved({"residual": lambda a=arr: noise_residual(a)}, n)["residual"]
        report["wavelet"][label] = {"rounds": n, **res}
        print(f"wavelet residual db4 L3 {label:>13}: {res['min_ms']:7.3f} / {res['median_ms']:7.3f} ms ({n} rounds)")

    # Targets from the design brief, judged on both the min and the median ratio.
    print("\ntargets (min / median ratio):")
    checks = []
    for label, entry in report["ela"].items():
        r = entry["ratios"]
        if "crop" not in label:
            checks.append((f"{label} exact <= 1.15x floor", r["exact/floor"], lambda v: v <= 1.15))
            checks.append((f"{label} display <= 1.3x floor", r["display/floor"], lambda v: v <= 1.3))
        checks.append((f"{label} naive display >= 2x ours display",
                       r["naive display/ours display"], lambda v: v >= 2))
        if "exact 1t/floor" in r and "crop" not in label:
            # the same targets on one core, where the floor and naive run
            checks.append((f"{label} 1 thread: exact <= 1.15x floor", r["exact 1t/floor"],
                           lambda v: v <= 1.15))
            checks.append((f"{label} 1 thread: display <= 1.3x floor", r["display 1t/floor"],
                           lambda v: v <= 1.3))
            checks.append((f"{label} 1 thread: naive display >= 2x ours",
                           r["naive display/ours display 1t"], lambda v: v >= 2))
    for label, r, ok in checks:
        verdict = "met" if ok(r["min"]) and ok(r["median"]) else (
            "met on one of min/median" if ok(r["min"]) or ok(r["median"]) else "MISSED")
        print(f"  {label:<44} {fmt_ratio(r):>13}  {verdict}")
    crop_gray = report["wavelet"]["128x128 gray"]
    crop_rgb = report["wavelet"]["128x128 RGB"]
    for label, r in (("128x128 gray", crop_gray), ("128x128 RGB", crop_rgb)):
        verdict = "met" if r["median_ms"] < 1 else ("met on min" if r["min_ms"] < 1 else "MISSED")
        print(f"  {'wavelet residual ' + label + ' < 1 ms':<44} "
              f"{r['min_ms']:5.2f} / {r['median_ms']:5.2f}  {verdict}")

    print(f"\nall ELA maps identical to the naive implementation: {'OK' if all_equal else 'MISMATCH'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
