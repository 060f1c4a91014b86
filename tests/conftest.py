"""Shared fixtures: the repository's real models, the research data sets, sample frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# tests/hub needs a real Home Assistant (scripts/setup_hub.sh): only `make test-hub` runs it
collect_ignore = [] if os.environ.get("EDGE_APP_TEST_HUB") == "1" else ["hub"]
MODELS = REPO / "models"
DATASETS = Path(os.environ.get("EDGE_APP_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def restore_logging():
    """Commands run in-process configure the root logger; each test gets it back as it was."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS / "face_detection_short_range.tflite").is_file():
        pytest.fail("models/face_detection_short_range.tflite missing: run scripts/setup.sh (make test does)")
    return MODELS


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not (DATASETS / "nuaa" / "manifest.csv").is_file():
        pytest.skip(f"research data sets not found at {DATASETS} (set EDGE_APP_DATASETS)")
    return DATASETS


@pytest.fixture(scope="session")
def detector(models_dir):
    from edge_app.config import Config
    from edge_app.frames.detector import load_detector

    return load_detector(models_dir, min_score=Config().detector.min_score)


@pytest.fixture(scope="session")
def scorer(models_dir):
    from edge_app.config import Config
    from edge_app.liveness.scorer import load_scorer

    return load_scorer(models_dir, Config().liveness.models)


@pytest.fixture
def rgb_of():
    from edge_app.images import load_rgb

    return load_rgb


def nuaa_rows(datasets: Path, subjects: tuple[str, ...], label: str, every: int = 1) -> list[Path]:
    import csv

    with open(datasets / "nuaa" / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["subject"] in subjects and r["label"] == label]
    return [datasets / "nuaa" / r["path"] for r in rows[::every]]


def blank_frame(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(90, 110, (h, w, 3), dtype=np.uint8)


def textured_casia_test_photos(box: tuple[int, int, int, int], count: int) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` held-out authentic CASIA v1 photos (384x256, by name) with texture
    (grey-level std > 25) inside ``box`` = (y0, y1, x0, x1): where a test copies a region from."""
    if not (DATASETS / "casia1" / "manifest.csv").is_file():
        pytest.skip(f"CASIA v1 not found at {DATASETS / 'casia1'} (set EDGE_APP_DATASETS)")
    from convert.forensics_data import load_rgb, split_items

    items, _ = split_items()
    y0, y1, x0, x1 = box
    out = []
    for it in sorted((i for i in items if i.split == "test" and i.label == 0), key=lambda i: i.name):
        rgb = load_rgb(it.path)
        if rgb.shape[:2] == (256, 384) and rgb[y0:y1, x0:x1].std() > 25:
            out.append((it.name, rgb))
            if len(out) == count:
                return out
    pytest.fail(f"fewer than {count} textured authentic test photos found")
