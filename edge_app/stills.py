"""Liveness of still images through the same detection, crop, feature and model code as
the frame loop. Each image is one frame; its decision uses the same fail-closed rule."""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from edge_app.config import Config
from edge_app.liveness.decision import Decision, DecisionMaker
from edge_app.frames.detector import FaceDetector
from edge_app.images import IMAGE_SUFFIXES, ImageLoadError, load_rgb
from edge_app.liveness.scorer import LivenessScorer
from edge_app.pipeline import Pipeline
from edge_app.frames.sources import Frame

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


def expand_paths(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str]]:
    """(path, problem) pairs: files as given, directories expanded to their images.

    A problem is reported for a directory with no images, one that cannot be read, a path
    that does not exist and a symlink loop, each said as what it is, so the caller can list
    it and go on with the rest. Whether a file is a regular file is the loader's check.
    """
    for p in map(Path, paths):
        try:
            st = p.stat()
        except FileNotFoundError:
            yield p, (f"{p}: broken symbolic link (its target does not exist)" if p.is_symlink()
                      else f"{p}: no such file or directory")
            continue
        except PermissionError:
            yield p, f"{p}: cannot be reached (permission denied on a folder above it)"
            continue
        except OSError as exc:
            why = "symbolic link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            yield p, f"{p}: {why}"
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield p, ""
            continue
        images, problems = [], []

        def unreadable(exc: OSError) -> None:
            why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            problems.append(f"{exc.filename}: folder cannot be read ({why})")

        for root, dirs, files in os.walk(p, onerror=unreadable):
            dirs.sort()
            images += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        for problem in problems:
            yield p, problem
        if not images and not problems:
            yield p, f"{p}: directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        for f in sorted(images):
            yield f, ""


def printable(text: str) -> str:
    """``text`` for one line of human output: control characters and unpaired surrogates
    escaped, so a file name cannot forge lines or columns (a newline, a tab)."""
    out = []
    for ch in str(text):
        cp = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif cp < 0x20 or 0x7F <= cp < 0xA0 or 0xD800 <= cp < 0xE000 or ch in "\u2028\u2029":
            out.append(repr(ch)[1:-1] if cp < 0x10000 and ch.isascii() else f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)


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
