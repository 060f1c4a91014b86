"""Compare copy-move search settings on validation copies, each at the thresholds the calibration rule gives it.

    python -m convert.compare_copy_move                    # the shipped settings against those tried for issue 17
    python -m convert.compare_copy_move '{"keypoint": {"ratio": 0.8}}' ...

Each argument is a JSON object of ``SearchParams`` fields to change (nested per part: ``block``,
``keypoint``, ``verify``) on top of the shipped settings; ``{}`` is the shipped settings themselves.

Data, validation and calibration only (the report's test parts are never read here):

- per photo one scaled or rotated copy and one plain (moved only) copy
  (``convert.forensics_data.make_manipulation``, ``separate=True``, drawn until the transform is of
  that kind), made from 40 CASIA v1 validation-split authentic photos and 40 NUAA
  calibration-person frames, JPEG q90;
- the calibration part of every authentic kind (``convert.forensics_authentic``; ``scenes`` is
  CASIA v1's validation-split authentic photos).

Per setting: both matchers on every image, the area thresholds by the rule the shipped thresholds
are chosen by (``convert.forensics_report.copy_move_thresholds``), the share of calibration photos
flagged, recall on the copies, and the milliseconds per image (one process; the machine's load
inflates them alike).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time

import numpy as np

from convert.forensics_common import log

# the changes compared for issue 17: 124-128 of 160 validation copies against the shipped 126
TRIED = [{"keypoint": {"contrast_threshold": 0.01, "ratio": 0.7, "min_scale": 0.67},
          "verify": {"resample_sigma": 0.7, "resample_scale": 1.0, "loose_repeats_rigid_only": True}},
         {"keypoint": {"contrast_threshold": 0.01, "min_scale": 0.67},
          "verify": {"resample_sigma": 0.7, "resample_scale": 1.0, "loose_repeats_rigid_only": True}},
         {"keypoint": {"min_scale": 0.67}},
         {"verify": {"resample_sigma": 0.7, "resample_scale": 1.0}}]


def settings(change: dict):
    """The shipped ``SearchParams`` with ``change`` applied (nested per part)."""
    from edge_app.forensics.copy_move_search import SearchParams

    d = SearchParams().to_dict()
    for k, v in change.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return SearchParams.from_dict(d)


def validation_images(n: int = 80, seed: int = 56) -> tuple[list[dict], list[dict]]:
    """(validation copies, calibration authentic photos), each at analysis size."""
    from PIL import Image

    from convert import forensics_data as fd
    from convert.forensics_authentic import authentic_items, camera_items
    from edge_app.forensics.copy_move_search import SearchParams, analysis_image
    from edge_app.forensics.loading import open_image

    pixels = SearchParams().analysis_pixels

    def small(src, name):
        return analysis_image(open_image(src, 40_000_000, 4_000_000, "downscale", name).rgb, pixels)[0]

    items, _ = fd.split_items()
    rng = np.random.default_rng(seed)
    bases = [i.path for i in items if i.split == "val" and i.label == 0][: n // 2]
    bases += [it.load() for it in camera_items() if it.role == "cal"][: n - len(bases)]
    copies = []
    for k, p in enumerate(bases):
        rgb = fd.load_rgb(p)
        for plain in (False, True):  # one scaled or rotated copy, one plain (moved only) copy
            made = None
            for _ in range(50):
                made = fd.make_manipulation(rgb, None, rng, separate=True)
                if made is not None and (made[2]["transform"] == "none") == plain:
                    break
            img, _, info = made
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            copies.append({"name": f"copy_{k}_{info['transform']}", "transform": info["transform"],
                           "small": small(buf.getvalue(), f"copy_{k}")})
    authentic = [{"name": it.name, "kind": it.kind, "small": small(it.load(), it.name)}
                 for it in authentic_items() if it.role == "cal"]
    return copies, authentic


def compare(params, copies: list[dict], authentic: list[dict]) -> dict:
    """Thresholds by the calibration rule on ``authentic``, then recall on ``copies``."""
    from convert.forensics_report import copy_move_thresholds
    from edge_app.forensics.copy_move_search import find_copy_moves

    t0 = time.perf_counter()
    pos = [find_copy_moves(r["small"], params) for r in copies]
    neg = [find_copy_moves(r["small"], params) for r in authentic]
    ms = (time.perf_counter() - t0) * 1e3 / (len(pos) + len(neg))
    cal = [{"kind": r["kind"], "block_area": e.block.area, "keypoint_area": e.keypoint.area}
           for r, e in zip(authentic, neg)]
    t = copy_move_thresholds(cal, params.verify.min_area)
    flag = lambda e: e.block.area >= t["block"] or e.keypoint.area >= t["keypoint"]  # noqa: E731
    hit = np.array([flag(e) for e in pos])

    def by(how: str) -> str:
        sel = np.array([r["transform"].startswith(how) for r in copies])
        return f"{int(hit[sel].sum())}/{int(sel.sum())}"

    return {"thresholds": t, "calibration_flagged": float(np.mean([flag(e) for e in neg])),
            "recall": float(hit.mean()), "found": int(hit.sum()), "n": len(hit),
            "scaled": by("scale"), "rotated": by("rotate"), "plain": by("none"), "ms_per_image": round(ms, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.compare_copy_move", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("changes", nargs="*", help="JSON objects of SearchParams changes ({} = shipped)")
    args = ap.parse_args(argv)
    changes = [json.loads(c) for c in args.changes] or [{}] + TRIED
    log("validation copies and calibration photos ...")
    copies, authentic = validation_images()
    for change in changes:
        label = json.dumps(change) if change else "shipped"
        r = compare(settings(change), copies, authentic)
        print(f"{label}: recall {r['recall']:.3f} ({r['found']}/{r['n']}; scaled {r['scaled']}, rotated {r['rotated']}, "
              f"plain {r['plain']}) at block >= {r['thresholds']['block']:.4f}, keypoint >= "
              f"{r['thresholds']['keypoint']:.4f}; calibration photos flagged {r['calibration_flagged']:.3f}; "
              f"{r['ms_per_image']} ms/image", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
