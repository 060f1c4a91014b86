"""Review snapshots, off by default: the subject's face sharp, everything else blurred.

When ``[snapshots] enabled = true``, a frame whose decision is in ``decisions`` (by default
only ``attack``) is saved for later review, redacted first:

- only the subject's face box, grown by ``face_margin`` on each side, keeps its pixels;
- the rest of the frame is reduced to a 32-pixel-wide thumbnail and scaled back (a smear
  in which no face can be recognised);
- every other detected face (a bystander) is reduced to 3x3 pixels, even where it overlaps
  the subject's margin.

Files are ``snap-<epoch ms>-<decision>-<event id>.jpg`` with a ``.json`` beside it (the
decision event: scores and boxes, no image data), mode 0600 in a 0700 folder, and they are
deleted once older than ``retention_hours``: at start and every ``purge_interval_s``, also
when snapshots have since been disabled. The clock is injectable so tests need not wait.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from edge_app.config import SnapshotConfig
from edge_app.liveness.decision import iou
from edge_app.frames.detector import Face
from edge_app.frames.sources import Frame

log = logging.getLogger(__name__)

NAME = re.compile(r"^snap-(\d{10,16})-[a-z_]+-[0-9a-f]+\.(jpg|json)$")
BACKGROUND_SIDE = 32  # the longest side of what is left of the background
BYSTANDER_SIDE = 3  # what is left of a bystander's face
JPEG_QUALITY = 90

Box = tuple[int, int, int, int]  # x, y, w, h


class SnapshotError(OSError):
    """The snapshot folder is unusable; the message names it and why."""


def grow(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of ``box`` grown by ``margin`` times its size on each side, clipped."""
    x, y, w, h = box
    dx, dy = w * margin, h * margin
    x0, y0 = max(0, int(np.floor(x - dx))), max(0, int(np.floor(y - dy)))
    x1, y1 = min(width, int(np.ceil(x + w + dx))), min(height, int(np.ceil(y + h + dy)))
    return x0, y0, max(x0, x1), max(y0, y1)


def _shrink_and_back(region: np.ndarray, side: int) -> np.ndarray:
    h, w = region.shape[:2]
    if h == 0 or w == 0:
        return region.copy()
    scale = side / max(h, w)
    small = Image.fromarray(region).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BOX)
    return np.array(small.resize((w, h), Image.BILINEAR))  # a writable copy


def redact(rgb: np.ndarray, keep: Box, others: Iterable[Box], margin: float) -> np.ndarray:
    """A copy of ``rgb`` in which only ``keep`` (grown by ``margin``) is sharp and every box in
    ``others`` (grown likewise) is reduced to a few pixels."""
    height, width = rgb.shape[:2]
    out = _shrink_and_back(rgb, BACKGROUND_SIDE)
    x0, y0, x1, y1 = grow(keep, margin, width, height)
    out[y0:y1, x0:x1] = rgb[y0:y1, x0:x1]
    for box in others:
        bx0, by0, bx1, by1 = grow(box, margin, width, height)
        out[by0:by1, bx0:bx1] = _shrink_and_back(rgb[by0:by1, bx0:bx1], BYSTANDER_SIDE)
    return out


def snapshot_dir(cfg: SnapshotConfig, state_dir: str | Path) -> Path:
    return Path(cfg.dir).expanduser() if cfg.dir else Path(state_dir) / "snapshots"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class SnapshotWriter:
    """A pipeline frame observer ``(frame, faces, events)`` that writes redacted snapshots.

    ``clock`` returns wall-clock seconds (``time.time``); tests pass a fake one.
    """

    def __init__(self, cfg: SnapshotConfig, state_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.dir = snapshot_dir(cfg, state_dir)
        self.clock = clock
        self.written = 0
        self._next_purge = float("-inf")
        self._last_write = float("-inf")
        self._failed = False

    # -- folder and retention --------------------------------------------------------
    def start(self) -> None:
        """Create the folder (when enabled) and purge expired snapshots; raises SnapshotError
        when snapshots are enabled but the folder cannot be made private."""
        if self.cfg.enabled:
            self._ensure_dir()
        self.purge()

    def _ensure_dir(self) -> None:
        try:
            if self.dir.is_symlink():
                raise SnapshotError(f"snapshots.dir {self.dir}: is a symbolic link; refusing to write through it")
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except SnapshotError:
            raise
        except OSError as exc:
            raise SnapshotError(f"snapshots.dir {self.dir}: cannot create a private folder ({exc.strerror or exc})") from None

    def purge(self, now: float | None = None) -> list[Path]:
        """Delete snapshots older than the retention (or dated implausibly far in the future,
        e.g. written while the clock was wrong), then the oldest beyond ``max_files``."""
        now = self.clock() if now is None else now
        self._next_purge = now + self.cfg.purge_interval_s
        if not self.dir.is_dir():
            return []
        retention = self.cfg.retention_hours * 3600.0
        dated: list[tuple[float, Path]] = []
        removed: list[Path] = []
        try:
            entries = list(self.dir.iterdir())
        except OSError as exc:
            log.error("snapshots: cannot list %s: %s", self.dir, exc)
            return []
        for path in entries:
            match = NAME.match(path.name)
            if not match:
                continue  # not ours: never delete what this module did not write
            taken = int(match.group(1)) / 1000.0
            if abs(now - taken) > retention:
                if self._unlink(path):
                    removed.append(path)
            else:
                dated.append((taken, path))
        images = sorted((t, p) for t, p in dated if p.suffix == ".jpg")
        for _, path in images[: max(0, len(images) - self.cfg.max_files)]:
            for victim in (path, path.with_suffix(".json")):
                if self._unlink(victim):
                    removed.append(victim)
        if removed:
            log.info("snapshots: deleted %d file(s) past the %.0f h retention or the %d-file cap",
                     len(removed), self.cfg.retention_hours, self.cfg.max_files)
        return removed

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("snapshots: cannot delete %s: %s", path, exc)
            return False

    # -- the frame observer ------------------------------------------------------------
    def __call__(self, frame: Frame, faces: list[Face], events: list[dict]) -> None:
        now = self.clock()
        if now >= self._next_purge:
            self.purge(now)
        if not self.cfg.enabled:
            return
        for event in events:
            if event.get("decision") not in self.cfg.decisions or not event.get("box"):
                continue
            if now - self._last_write < self.cfg.min_interval_s:
                log.debug("snapshots: skipping %s, last one %.1f s ago", event.get("event_id"), now - self._last_write)
                continue
            try:
                self.save(frame.rgb, tuple(event["box"]), [f.box() for f in faces], event, now)
                self._last_write = now
                self._failed = False
            except OSError as exc:
                if not self._failed:  # a full disk would otherwise log on every frame
                    log.error("snapshots: cannot write to %s: %s", self.dir, exc)
                self._failed = True

    def save(self, rgb: np.ndarray, subject: Box, face_boxes: list[Box], event: dict, now: float | None = None) -> Path:
        """Write the redacted snapshot of ``subject`` (one of ``face_boxes`` or not) and its
        event; returns the image path."""
        now = self.clock() if now is None else now
        self._ensure_dir()
        # the subject is the detected face that best matches the event's box; all others are bystanders
        best = max(face_boxes, key=lambda b: iou(b, subject), default=None)
        others = [b for b in face_boxes if b is not best or iou(b, subject) < 0.5]
        image = redact(rgb, subject, others, self.cfg.face_margin)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=JPEG_QUALITY)
        decision = re.sub(r"[^a-z_]", "", str(event.get("decision", "unknown"))) or "unknown"
        event_id = re.sub(r"[^0-9a-f]", "", str(event.get("event_id", ""))) or f"{int(now * 1e6):x}"
        stem = f"snap-{int(now * 1000)}-{decision}-{event_id}"
        path = self.dir / f"{stem}.jpg"
        _write_private(path, buf.getvalue())
        meta = {"event": event, "kept_box": list(grow(subject, self.cfg.face_margin, rgb.shape[1], rgb.shape[0])),
                "bystanders_blurred": len(others), "delete_after_epoch_s": round(now + self.cfg.retention_hours * 3600)}
        _write_private(self.dir / f"{stem}.json", json.dumps(meta).encode())
        self.written += 1
        log.info("snapshots: wrote %s (%s decision, %d bystander face(s) blurred)", path.name, decision, len(others))
        if self.cfg.max_files:
            count = sum(1 for p in self.dir.glob("snap-*.jpg"))
            if count > self.cfg.max_files:
                self.purge(now)
        return path


def is_private_dir(path: Path) -> bool:
    """True when ``path`` is a directory that only its owner can read (for ``doctor``)."""
    st = os.stat(path)
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o077
