"""Liveness of still images through the same detection, crop, feature and model code as
the frame loop. Each image is one frame; its decision uses the same fail-closed rule."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from edge_app.config import Config
from edge_app.frames.detector import FaceDetector
from edge_app.frames.sources import Frame
from edge_app.image_paths import expand_paths, printable
from edge_app.images import ImageLoadError, load_rgb
from edge_app.liveness.decision import Decision, DecisionMaker
from edge_app.liveness.scorer import LivenessScorer
from edge_app.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class StillResult:
    path: str
    face_found: bool
    score: float | None
    decision: str  # live / attack / uncertain / no_face / error
    message: str = ""
    scores: dict | None = None
    box: tuple[int, int, int, int] | None = None  # the scored face, x, y, w, h
    missing: bool = False  # the path does not exist or is a folder without images
    image: object = None  # the decoded RGB array, kept only when asked for (annotation)
    faces: tuple = ()  # every face found, best first


def score_still(pipeline: Pipeline, path: Path, keep_image: bool = False) -> StillResult:
    try:
        rgb = load_rgb(path)
    except ImageLoadError as exc:
        return StillResult(str(path), False, None, "error", str(exc))
    kept = rgb if keep_image else None
    frame = Frame(rgb=rgb, seq=0, origin=str(path))
    faces = pipeline.detect(frame)
    if not faces:
        return StillResult(str(path), False, None, "no_face", "no face found", image=kept)
    # a still is a single frame: a fresh one-frame window for the largest face
    maker = DecisionMaker(replace(pipeline.cfg.decision, window=1, min_frames=1), pipeline.scorer.threshold)
    obs = pipeline.observe(frame, faces[0], "", {})
    decision: Decision = maker.frame([obs])[0]
    return StillResult(str(path), True, decision.score, decision.decision, decision.reason, decision.scores,
                       box=faces[0].box(), image=kept, faces=tuple(faces))


def score_stills(cfg: Config, detector: FaceDetector, scorer: LivenessScorer,
                 paths: Iterable[str | Path], keep_images: bool = False) -> Iterator[StillResult]:
    pipeline = Pipeline(cfg, detector, scorer, device_id=cfg.resolved_device_id())
    for path, problem in expand_paths(paths):
        if problem:
            log.warning("%s", printable(problem))
            yield StillResult(str(path), False, None, "error", problem, missing=True)
            continue
        yield score_still(pipeline, path, keep_images)
