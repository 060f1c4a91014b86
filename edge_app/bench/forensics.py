"""Benchmark ``edge-app forensics`` per image size, variants side by side in one run.

    edge-app bench forensics [--image PATH] [--repeat N] [--json FILE]

Variants, timed round-robin (``edge_app.bench.interleaved``) on one thread (OpenCV, TFLite):

  decode      the JPEG decode alone (``open_image``): the floor every variant pays;
  shipped     ``check_image`` from the JPEG bytes as the device runs it (the detectors the
              model's metadata puts in the score);
  + CNN       the same with the patch CNN run and scored too (what v0.4.0 always paid);
  v0.4.0 matchers  the two matchers as v0.4.0 ran them (up to 1 MP, no verification),
              without the CNN: the cost the fixed analysis size removed.

The image is a photo (default: the built-in sample's live.jpg) resized to each size, with a
region copied elsewhere so the verification has something to confirm, saved as JPEG q90.
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
from PIL import Image

from edge_app.bench import interleaved

SIZES = ((384, 256), (1024, 768), (3000, 2000))


def _photo(path: str | None, w: int, h: int) -> bytes:
    src = Path(path) if path else Path(__file__).resolve().parents[1] / "sample" / "live.jpg"
    with Image.open(src) as im:
        rgb = np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)).copy()
    bh, bw = h // 6, w // 6
    rgb[h // 2:h // 2 + bh, w // 2:w // 2 + bw] = rgb[h // 8:h // 8 + bh, w // 8:w // 8 + bw]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main(argv: list[str] | None = None, models_dir: Path | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="photo to use (default: edge_app/sample/live.jpg)")
    ap.add_argument("--repeat", type=int, default=0, help="rounds per size (default: 40 / 20 / 6 by size)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    import cv2

    from edge_app.config import default_models_dir
    from edge_app.forensics.analyzer import load_analyzer
    from edge_app.forensics.check import check_image
    from edge_app.forensics.copy_move import CopyMoveParams, find_copy_move
    from edge_app.forensics.keypoint_copy_move import KeypointParams, find_keypoint_copy_move
    from edge_app.forensics.loading import open_image

    cv2.setNumThreads(1)
    analyzer = load_analyzer(models_dir or default_models_dir(), threads=1)
    print(f"python {platform.python_version()}, numpy {np.__version__}, OpenCV {cv2.__version__}, "
          f"{platform.machine()} x{os.cpu_count()}; CNN in the score: {analyzer.cnn_in_score}; one thread")
    print("times in ms, min / median over interleaved rounds; ratio = median / shipped median\n")
    old_b, old_k = CopyMoveParams(max_pixels=1_000_000), KeypointParams(max_pixels=1_000_000)
    report: dict = {"cnn_in_score": analyzer.cnn_in_score, "sizes": {}}
    for w, h in SIZES:
        data = _photo(args.image, w, h)
        rgb = open_image(data, 10**9, 10**9).rgb

        def with_cnn():
            img = open_image(data, 40_000_000, 4_000_000)
            return analyzer.decide(analyzer.evidence(img.rgb, cnn=True))

        variants = {
            "decode": lambda: open_image(data, 40_000_000, 4_000_000),
            "shipped": lambda: check_image(data, analyzer),
            "+ CNN": with_cnn,
            "v0.4.0 matchers": lambda: (find_copy_move(rgb, old_b), find_keypoint_copy_move(rgb, old_k)),
        }
        repeat = args.repeat or (40 if w * h < 200_000 else 20 if w * h < 1_000_000 else 6)
        res = interleaved(variants, repeat, warmup=1)
        result, _, _ = check_image(data, analyzer)
        base = res["shipped"]["median_ms"]
        print(f"{w}x{h} ({repeat} rounds; shipped verdict {result['verdict']}, score {result['score']:.3f})")
        for name, r in res.items():
            print(f"  {name:16s} {r['min_ms']:8.1f} / {r['median_ms']:8.1f}   x{r['median_ms'] / base:5.2f}")
        report["sizes"][f"{w}x{h}"] = {"results": res, "verdict": result["verdict"], "score": result["score"]}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
