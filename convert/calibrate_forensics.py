"""Calibrate ``edge-app forensics`` on authentic photos of every kind, run the ablation,
and write the report and the thresholds into the model's metadata.

    python -m convert.calibrate_forensics [--models-dir models] [--limit-selfmade N]

Every image goes through the device's own code (``edge_app.forensics.loading.open_image`` with its
size guard, then ``ForensicsAnalyzer.evidence``): each detector's raw measurement is cached
per image under ``.cache/forensics/calibration_v2/<model sha256>/``, so thresholds and the report can be
recomputed without rescoring.

Roles: authentic images are split into a ``cal`` part (thresholds) and a ``test`` part
(reported false-alarm rates), per kind (``convert.forensics_authentic``). Tampered images
come from CASIA v1's scene-disjoint split (``convert.forensics_data``): the validation split
decides what enters the score (aggregation, CNN in or out), the test split is reported only.

Thresholds (``convert.forensics_report``): the copy-move area thresholds are the lowest at
which the two detectors together flag at most 2% of all calibration authentic photos and at
most 2.5% of any one kind's (5% of repeated objects and text), at least
``VerifyParams.min_area``; the CNN (when in the score) flags at most ``forensics_report.CNN_FPR`` of each
kind's calibration part.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import io
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from convert.datasets import REPO
from convert.forensics_common import log
from convert.forensics_report import calibrate_and_report

CACHE_ROOT = REPO / ".cache" / "forensics" / "calibration_v2"  # bump when the evidence code changes


# --------------------------------------------------------------------------- evidence


def _record(analyzer, source, meta: dict) -> dict:
    from edge_app.forensics.errors import ForensicsError
    from edge_app.forensics.loading import open_image

    t0 = time.perf_counter()
    try:
        img = open_image(source, 40_000_000, 4_000_000, "downscale", meta["name"])
    except ForensicsError as exc:
        return dict(meta, error=str(exc))
    ev = analyzer.evidence(img.rgb, cnn=True)
    cms = ev.copy_moves
    return dict(meta, width=img.width, height=img.height, format=img.format,
                patch_scores=ev.patch_scores.astype(np.float32), ela_patch=ev.ela_patch.astype(np.float32),
                block_area=cms.block.area, keypoint_area=cms.keypoint.area,
                block_periodic=cms.block.periodic_area, keypoint_periodic=cms.keypoint.periodic_area,
                block_pairs=cms.block_raw.pairs, keypoint_inliers=cms.keypoint_raw.inliers,
                timing_ms=dict(ev.timing_ms, total=(time.perf_counter() - t0) * 1e3))


_CACHE_KEY = {"model": "unknown"}  # the model's sha256: a retrained CNN gives other patch scores


def _cached(tag: str, build) -> list[dict]:
    path = CACHE_ROOT / _CACHE_KEY["model"][:12] / f"{tag}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    t0 = time.time()
    recs = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(recs, protocol=pickle.HIGHEST_PROTOCOL))
    log(f"  {tag}: {len(recs)} images in {time.time() - t0:.0f}s -> {path}")
    return recs


def authentic_records(analyzer) -> list[dict]:
    from convert.forensics_authentic import authentic_items

    def build():
        out = []
        for i, it in enumerate(authentic_items()):
            if i % 25 == 0:
                log(f"  authentic {i} ...")
            meta = {"name": it.name, "kind": it.kind, "source": it.source, "role": it.role, "label": 0}
            try:
                out.append(_record(analyzer, it.load(), meta))
            except Exception as exc:  # a sample that cannot be made is reported, not fatal
                out.append(dict(meta, error=f"{type(exc).__name__}: {exc}"))
        return out

    return _cached("authentic", build)


def _jpeg_like(rgb: np.ndarray, hist: dict) -> bytes:
    from convert.forensics_data import save_like

    return save_like(rgb, hist)


def textured_share(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Share of the copy's pixels textured enough for copy-move verification to count them
    (local std >= ``VerifyParams.min_texture``): a copy of flat sky or wall is not claimed."""
    from edge_app.forensics.copy_move_verify import VerifyParams, _local_std

    p = VerifyParams()
    std = _local_std(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32), p.window)
    return round(float((std[mask] >= p.min_texture).mean()), 3) if mask.any() else 0.0


def selfmade_records(analyzer, items, split: str, limit: int) -> list[dict]:
    """Self-made splices and copy-moves with same-table authentic controls (CASIA ``split``)."""
    from convert import forensics_data as fd

    def build():
        rng = np.random.default_rng(7 + {"val": 1, "test": 2}[split])
        au = [i for i in items if i.split == split and i.label == 0][:limit]
        hists = fd._histories(items, split)
        out = []
        for it, target, kind, img, mask, info in fd._manipulations(au, fd.load_rgb, rng, separate=True):
            hist = hists[int(rng.integers(len(hists)))]
            base = {"source": "casia_selfmade", "role": split}
            data = _jpeg_like(img, hist)
            out.append(_record(analyzer, data, dict(base, name=f"{it.name}_{kind}", label=1, kind=info["kind"],
                                                    transform=info["transform"],
                                                    textured=textured_share(fd.decode(data), mask))))
            out.append(_record(analyzer, _jpeg_like(target, hist), dict(base, name=f"{it.name}_{kind}_control",
                                                                         label=0, kind="self-control")))
        return out

    return _cached(f"selfmade_{split}_{limit}", build)


def casia_records(analyzer, items, split: str, every: int = 2) -> list[dict]:
    """CASIA v1 images of ``split`` from their files, and each authentic one re-saved once
    with the tables of a random tampered image of the split (the quality-matched control)."""
    from convert import forensics_data as fd

    def build():
        rng = np.random.default_rng(99)
        tampered = fd._histories(items, split, label=1)
        out = []
        for it in [i for i in items if i.split == split][::every]:
            out.append(_record(analyzer, it.path, {"name": it.name, "label": it.label, "kind": it.kind,
                                                   "source": "casia", "role": split}))
            if it.label == 0:
                hist = tampered[int(rng.integers(len(tampered)))]
                out.append(_record(analyzer, _jpeg_like(fd.load_rgb(it.path), hist),
                                   {"name": it.name + "_requality", "label": 0, "kind": "authentic-requality",
                                    "source": "casia_requality", "role": split}))
        return out

    return _cached(f"casia_{split}_every{every}", build)


def transformed_copy_records(analyzer, items, n: int = 40) -> list[dict]:
    """Copy-moves whose copy is scaled and/or rotated, made from held-out photos (CASIA test
    authentic images and NUAA test-person frames), JPEG q90."""
    from convert import forensics_data as fd
    from convert.forensics_authentic import camera_items

    def build():
        rng = np.random.default_rng(55)
        bases = [i.path for i in items if i.split == "test" and i.label == 0][: n // 2]
        bases += [it.load() for it in camera_items() if it.role == "test"][: n - len(bases)]
        out = []
        for k, p in enumerate(bases):
            rgb = fd.load_rgb(p)
            made = None
            for _ in range(50):  # draw until the copy is scaled or rotated
                made = fd.make_manipulation(rgb, None, rng, separate=True)
                if made is not None and made[2]["transform"] != "none":
                    break
            img, mask, info = made
            buf = io.BytesIO()
            from PIL import Image

            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            out.append(_record(analyzer, buf.getvalue(), {"name": f"transformed_copy_{k}", "label": 1,
                                                          "kind": "copy-move", "transform": info["transform"],
                                                          "textured": textured_share(fd.decode(buf.getvalue()), mask),
                                                          "source": "transformed_copies", "role": "test"}))
        return out

    return _cached(f"transformed_copies_{n}", build)


# --------------------------------------------------------------------------- main

PROVISIONAL = {"cnn": {"in_score": True, "aggregation": "qtop5", "threshold": 0.9},
               "block_copy_move": {"threshold_area": 0.002}, "keypoint_copy_move": {"threshold_area": 0.002}}


def provisional_analyzer(models_dir: Path):
    """The shipped model with the current copy-move search and placeholder thresholds: the
    evidence it measures does not depend on any threshold."""
    from edge_app.forensics.analyzer import MODEL_NAME, ForensicsAnalyzer
    from edge_app.forensics.copy_move_search import SearchParams
    from edge_app.tflite_model import load_model

    model = load_model(models_dir / f"{MODEL_NAME}.json")
    _CACHE_KEY["model"] = str(model.metadata["sha256"])
    model.metadata = dict(model.metadata, detectors=PROVISIONAL, threshold=0.5,
                          copy_move_search=SearchParams().to_dict())
    return ForensicsAnalyzer(model)


def recheck(analyzer, recs: list[dict], n: int) -> dict:
    """Measure ``n`` cached authentic images again with the code as it is now: the cached
    evidence must be what this code computes (the same verified areas)."""
    from convert.forensics_authentic import authentic_items

    items = {it.name: it for it in authentic_items()}
    ok = [r for r in recs if "error" not in r and r["name"] in items]
    pick = [ok[i] for i in np.linspace(0, len(ok) - 1, min(n, len(ok))).round().astype(int)]
    same = 0
    diffs = []
    for r in pick:
        new = _record(analyzer, items[r["name"]].load(), {"name": r["name"]})
        d = max(abs(new["block_area"] - r["block_area"]), abs(new["keypoint_area"] - r["keypoint_area"]))
        same += d < 1e-9
        if d >= 1e-9:
            diffs.append((r["name"], round(d, 5)))
    return {"n": len(pick), "identical": same, "differences": diffs}


def all_records(analyzer, limit_val: int, limit_test: int) -> dict[str, list[dict]]:
    from convert import forensics_data as fd

    items, _ = fd.split_items()
    log("authentic photos ...")
    out = {"authentic": authentic_records(analyzer)}
    log("self-made validation ...")
    out["selfmade_val"] = selfmade_records(analyzer, items, "val", limit_val)
    log("self-made test ...")
    out["selfmade_test"] = selfmade_records(analyzer, items, "test", limit_test)
    log("CASIA v1 test ...")
    out["casia_test"] = casia_records(analyzer, items, "test")
    log("scaled/rotated copies ...")
    out["transformed"] = transformed_copy_records(analyzer, items)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--limit-val", type=int, default=30, help="CASIA validation authentic images for self-made pairs")
    parser.add_argument("--limit-test", type=int, default=60, help="CASIA test authentic images for self-made pairs")
    parser.add_argument("--evidence-only", action="store_true", help="build the evidence caches and stop")
    parser.add_argument("--recheck", type=int, default=0,
                        help="measure this many cached authentic images again and compare (cache vs current code)")
    parser.add_argument("--bench", type=Path, help="JSON from 'edge-app bench forensics --json FILE' for the speed table")
    args = parser.parse_args(argv)
    analyzer = provisional_analyzer(args.models_dir)
    recs = all_records(analyzer, args.limit_val, args.limit_test)
    if args.evidence_only:
        return 0
    bench = json.loads(args.bench.read_text()) if args.bench else None
    checked = recheck(analyzer, recs["authentic"], args.recheck) if args.recheck else None
    if checked:
        log(f"recheck: {checked}")
    return calibrate_and_report(recs, analyzer, args.models_dir, bench, checked)


if __name__ == "__main__":
    sys.exit(main())
