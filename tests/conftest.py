"""Shared fixtures: the repository's real models, the research data sets, sample frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
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
    from edge_app.detector import load_detector

    return load_detector(models_dir, min_score=Config().detector.min_score)


@pytest.fixture(scope="session")
def scorer(models_dir):
    from edge_app.config import Config
    from edge_app.liveness import load_scorer

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
