"""The frame loop: frame -> faces -> liveness scores -> decisions -> events -> sinks.

Every failure inside the loop (camera, bad frame, model) becomes a fail-closed decision
and the loop goes on; nothing here can turn an exception into ``live``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_app.config import Config
from edge_app.liveness.decision import Decision, DecisionMaker, Observation
from edge_app.frames.detector import Face, FaceDetector, load_detector
from edge_app.hub.events import DecisionEvent, SequenceCounter
from edge_app.liveness.scorer import LivenessScorer, load_scorer
from edge_app.frames.sources import Frame, FrameSource, SourceError
from edge_app.frames.sources.prefetch import Prefetcher

log = logging.getLogger(__name__)

EventSink = Callable[[dict], None]


@dataclass
class Stats:
    """Running counters and stage latencies for health reports."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    failures: int = 0
    faces: int = 0
    events: int = 0
    dropped: int = 0  # frames a live source produced while the pipeline was busy
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    frame_done: deque = field(default_factory=lambda: deque(maxlen=256))  # monotonic times

    def add(self, stage: str, ms: float) -> None:
        values = self.stage_ms.setdefault(stage, [])
        values.append(ms)
        if len(values) > 1000:
            del values[:500]

    def recent_fps(self) -> float:
        """Frames per second over the last (up to) 256 frames, not since start."""
        done = self.frame_done
        if len(done) < 2 or done[-1] <= done[0]:
            return 0.0
        return (len(done) - 1) / (done[-1] - done[0])

    def summary(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "frames": self.frames,
            "failures": self.failures,
            "faces": self.faces,
            "events": self.events,
            "dropped": self.dropped,
            "fps": round(self.recent_fps(), 2),
            "fps_since_start": round(self.frames / elapsed, 2),
            "stage_ms": {k: {"p50": round(float(np.percentile(v, 50)), 3), "p95": round(float(np.percentile(v, 95)), 3)}
                         for k, v in self.stage_ms.items() if v},
        }


def load_models(cfg: Config) -> tuple[FaceDetector, LivenessScorer]:
    """The detector and the liveness models the config names, verified; raises ModelError."""
    models_dir = cfg.resolved_models_dir()
    detector = load_detector(models_dir, cfg.detector.threads, cfg.detector.min_score, cfg.detector.model,
                             cfg.detector.closeup_retry)
    return detector, load_scorer(models_dir, cfg.liveness.models, cfg.liveness.threads)


def _scale_face(face: Face, sx: float, sy: float) -> Face:
    kps = tuple((x * sx, y * sy) for x, y in face.keypoints)
    return Face(face.x * sx, face.y * sy, face.w * sx, face.h * sy, face.score, kps)


class Pipeline:
    def __init__(self, cfg: Config, detector: FaceDetector, scorer: LivenessScorer, device_id: str,
                 sinks: list[EventSink] | None = None, next_seq: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self.detector = detector
        self.scorer = scorer
        self.device_id = device_id
        self.sinks = list(sinks or [])
        self.next_seq = next_seq or SequenceCounter().next
        self.decisions = DecisionMaker(cfg.decision, scorer.threshold)
        self.stats = Stats()
        self.frame_hooks: list[Callable[[], None]] = []  # e.g. the systemd watchdog
        # called with (frame, faces, events) after each processed frame, e.g. review snapshots
        self.frame_observers: list[Callable[[Frame, list[Face], list[dict]], None]] = []
        self._latest: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    # -- one frame -----------------------------------------------------------------
    def detect(self, frame: Frame) -> list[Face]:
        image = frame.lores if frame.lores is not None else frame.rgb
        faces = self.detector.detect(image)
        if frame.lores is not None:
            sy = frame.rgb.shape[0] / frame.lores.shape[0]
            sx = frame.rgb.shape[1] / frame.lores.shape[1]
            faces = [_scale_face(f, sx, sy) for f in faces]
        min_w = self.cfg.detector.min_face_fraction * frame.rgb.shape[1]
        faces = [f for f in faces if f.w >= min_w]
        faces.sort(key=lambda f: f.w * f.h, reverse=True)
        return faces[: self.cfg.detector.max_faces]

    def observe(self, frame: Frame, face: Face, stale_reason: str, timing: dict) -> Observation:
        box = face.box()
        if stale_reason:
            return Observation(box, None, frame_seq=frame.seq, reason=stale_reason)
        t0 = time.perf_counter()
        try:
            result = self.scorer.score(frame.rgb, face)
        except Exception as exc:  # any model failure must fail closed, never propagate as live
            log.error("frame %d: liveness model failed: %s", frame.seq, exc)
            return Observation(box, None, frame_seq=frame.seq, reason=f"model error: {exc}")
        elapsed = time.perf_counter() - t0
        for name, ms in result.timing_ms.items():
            timing[f"model_{name}"] = timing.get(f"model_{name}", 0.0) + ms
        timing["liveness"] = timing.get("liveness", 0.0) + elapsed * 1e3
        if not elapsed <= self.cfg.liveness.timeout_s:  # written so that a NaN limit fails closed
            return Observation(box, None, frame_seq=frame.seq,
                               reason=f"liveness timeout ({elapsed * 1e3:.0f} ms > {self.cfg.liveness.timeout_s * 1e3:.0f} ms)")
        return Observation(box, result.fused, result.scores, frame.seq)

    def process(self, frame: Frame) -> list[dict]:
        """Score one frame; returns the events it produced (already sent to the sinks)."""
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        faces = self.detect(frame)
        timing["detect"] = (time.perf_counter() - t0) * 1e3
        age = time.monotonic() - frame.captured_at
        # written so that a NaN limit (or clock) marks the frame stale rather than fresh
        stale = "" if age <= self.cfg.decision.max_frame_age_s else f"stale frame ({age:.2f} s old)"
        observations = [self.observe(frame, face, stale, timing) for face in faces]
        self.stats.frames += 1
        self.stats.frame_done.append(time.monotonic())
        self.stats.faces += len(faces)
        decisions = self.decisions.frame(observations)
        timing["capture_to_decision"] = (time.monotonic() - frame.captured_at) * 1e3
        for stage, ms in timing.items():
            self.stats.add(stage, ms)
        # a files source names the image each decision's last frame came from
        events = self.emit(decisions, timing, source=frame.origin if self.cfg.source.kind == "files" else None)
        for observer in self.frame_observers:
            try:
                observer(frame, faces, events)
            except Exception:  # an observer must not stop decisions
                log.exception("frame observer %r failed", observer)
        return events

    def fail(self, reason: str) -> list[dict]:
        self.stats.failures += 1
        return self.emit(self.decisions.failure(reason), {})

    def emit(self, decisions: list[Decision], timing: dict, source: str | None = None) -> list[dict]:
        events = []
        for d in decisions:
            event = DecisionEvent(
                decision=d.decision, device_id=self.device_id, seq=self.next_seq(), score=d.score,
                scores=d.scores, threshold=d.threshold, models=self.scorer.versions(),
                box=list(d.box) if d.box else None, track_id=d.track_id, frames=d.frames, reason=d.reason,
                timing_ms=timing, frame_seq=d.frame_seq, source=source,
            ).to_dict()
            with self._lock:
                self._latest = (time.monotonic(), event)
            for sink in self.sinks:
                try:
                    sink(event)
                except Exception:  # a failing sink must not stop decisions reaching the others
                    log.exception("event sink %r failed", sink)
            events.append(event)
        self.stats.events += len(events)
        return events

    def unfinished(self) -> list[tuple[int, int]]:
        """(track id, frames so far) of each face whose decision window was still filling:
        frames that produced no decision (e.g. a few stills, or a run stopped mid-window)."""
        return [(t.id, t.since_decision) for t in self.decisions.tracks if t.since_decision > 0]

    def latest(self, max_age_s: float) -> dict:
        """The latest decision if it is fresh, else a fail-closed ``uncertain`` (for verify)."""
        with self._lock:
            latest = self._latest
        if latest is not None and time.monotonic() - latest[0] <= max_age_s:
            return latest[1]
        return DecisionEvent(decision="uncertain", device_id=self.device_id, seq=self.next_seq(),
                             threshold=self.scorer.threshold, models=self.scorer.versions(),
                             reason=f"no decision in the last {max_age_s:.1f} s").to_dict()

    # -- the loop ------------------------------------------------------------------
    def run(self, source: FrameSource, max_frames: int = 0, stop: threading.Event | None = None,
            health: Callable[[dict], None] | None = None) -> Stats:
        stop = stop or threading.Event()
        reader: FrameSource = source
        if self.cfg.source.prefetch:
            live = self.cfg.source.kind == "picamera2" or self.cfg.source.fps > 0
            reader = Prefetcher(source, depth=2, drop_stale=live)
        try:
            return self._loop(reader, max_frames, stop, health)
        finally:
            if reader is not source:
                reader.stop()
                self.stats.dropped = reader.dropped

    def _loop(self, source: FrameSource, max_frames: int, stop: threading.Event,
              health: Callable[[dict], None] | None) -> Stats:
        interval = self.cfg.mqtt.health_interval_s
        next_health = time.monotonic() + interval
        attempts = 0
        consecutive_failures = 0
        repeated = _RepeatedErrors()
        while not stop.is_set() and (not max_frames or attempts < max_frames):
            attempts += 1
            try:
                frame = source.read()
            except SourceError as exc:
                consecutive_failures += 1
                repeated.log(f"frame source {getattr(source, 'name', '?')}: {exc}")
                self.fail(str(exc))
                # back off on a dead camera instead of spinning, but keep the loop (and watchdog) alive;
                # by hand, not tenacity/backoff: those retry one call, this loop must decide on every failure
                stop.wait(min(5.0, 0.05 * 2 ** min(consecutive_failures, 7)) if consecutive_failures > 1 else 0)
                self._hooks()
                continue
            if frame is None:
                log.info("frame source %s ended", getattr(source, "name", "?"))
                break
            consecutive_failures = 0
            try:
                self.process(frame)
            except Exception as exc:  # e.g. a malformed frame: report, fail closed, go on
                log.exception("frame %d could not be processed", frame.seq)
                self.fail(f"frame processing failed: {exc}")
            self._hooks()
            if health and time.monotonic() >= next_health:
                next_health = time.monotonic() + interval
                health(self.stats.summary())
        return self.stats

    def _hooks(self) -> None:
        for hook in self.frame_hooks:
            hook()


class _RepeatedErrors:
    """Logs an error, and the same error again only once a minute with how often it came:
    a camera that stays broken fills the journal with one line a minute, not one per retry."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.last = ""
        self.logged_at = 0.0
        self.suppressed = 0

    def log(self, message: str) -> None:
        now = time.monotonic()
        if message == self.last and now - self.logged_at < self.every_s:
            self.suppressed += 1
            return
        again = f" (and {self.suppressed} more time(s) since the last report)" if message == self.last and self.suppressed else ""
        log.error("%s%s", message, again)
        self.last, self.logged_at, self.suppressed = message, now, 0
