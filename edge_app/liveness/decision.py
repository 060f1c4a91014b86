"""From per-frame face scores to decisions, failing closed.

A face is followed across frames by box overlap; its decision aggregates a window of
consecutive frames. ``live`` needs enough valid, fresh frames and a mean fused score at
or above the threshold, with no failed frame in the window. Anything else (no face, a
stale frame, a model error or timeout, too few frames) is never ``live``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_app.config import DecisionConfig


@dataclass
class Observation:
    """One face in one frame; ``fused`` is None when the frame cannot be trusted."""

    box: tuple[int, int, int, int]
    fused: float | None
    scores: dict[str, float] = field(default_factory=dict)
    frame_seq: int = 0
    reason: str = ""  # why fused is None


@dataclass
class Decision:
    decision: str  # live / attack / uncertain / no_face / error
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    box: tuple[int, int, int, int] | None = None
    track_id: int | None = None
    frames: int = 0
    reason: str = ""
    frame_seq: int | None = None


def decide(window: list[Observation], threshold: float, min_frames: int, margin: float) -> Decision:
    """The decision for one face over ``window`` (oldest first)."""
    last = window[-1]
    base = dict(threshold=threshold, box=last.box, frames=len(window), frame_seq=last.frame_seq)
    # Every comparison with NaN is false, so each number is checked before any comparison and
    # `live` is reached only through comparisons that hold: a bad number ends in `error`.
    valid = [o for o in window if o.fused is not None]
    failed = [o for o in window if o.fused is None]
    if not valid:
        reasons = sorted({o.reason for o in failed if o.reason})
        return Decision("error", reason="; ".join(reasons) or "no valid frame", **base)
    if not (_is_number(threshold) and 0.0 < threshold < 1.0):
        return Decision("error", reason=f"threshold {threshold!r} is not a probability", **base)
    if not (_is_number(margin) and margin >= 0.0) or not (isinstance(min_frames, int) and min_frames >= 1):
        return Decision("error", reason=f"bad decision settings (margin {margin!r}, min_frames {min_frames!r})", **base)
    bad = [o for o in valid if not _is_probability(o.fused) or not all(map(_is_probability, o.scores.values()))]
    if bad:
        return Decision("error", reason=f"{len(bad)} frame(s) with a score that is not a finite probability", **base)
    mean = float(np.mean([o.fused for o in valid]))
    names = valid[0].scores.keys()
    scores = {n: float(np.mean([o.scores[n] for o in valid if n in o.scores])) for n in names}
    if _logit(mean) < _logit(threshold) - margin and len(valid) >= min_frames:
        return Decision("attack", mean, scores, **base)
    if len(valid) < min_frames:
        reason = f"{len(valid)} valid frame(s) of {min_frames} needed"
    elif failed:
        reason = "failed frame(s) in window: " + "; ".join(sorted({o.reason for o in failed}))
    elif mean >= threshold:
        return Decision("live", mean, scores, **base)
    else:
        reason = f"score {mean:.4g} within the uncertain margin below threshold {threshold:.4g}"
    return Decision("uncertain", mean, scores, reason=reason, **base)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _is_probability(x) -> bool:
    return _is_number(x) and 0.0 <= x <= 1.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: tuple[int, int, int, int]
    window: deque
    since_decision: int = 0
    missed: int = 0


class DecisionMaker:
    """Keeps face tracks and turns each frame's observations into decisions."""

    def __init__(self, cfg: DecisionConfig, threshold: float) -> None:
        self.cfg = cfg
        self.threshold = threshold
        self.tracks: list[_Track] = []
        self._ids = itertools.count(1)
        self._state = ""  # last frame-level state reported: "faces", "no_face" or "error"

    def frame(self, observations: list[Observation]) -> list[Decision]:
        """Observations of one frame (possibly none): the decisions due now."""
        decisions = []
        unmatched = list(self.tracks)
        for obs in observations:
            best = max(unmatched, key=lambda t: iou(t.box, obs.box), default=None)
            if best is not None and iou(best.box, obs.box) >= self.cfg.track_iou:
                unmatched.remove(best)
                track = best
            else:
                track = _Track(next(self._ids), obs.box, deque(maxlen=self.cfg.window))
                self.tracks.append(track)
            track.box, track.missed = obs.box, 0
            track.window.append(obs)
            track.since_decision += 1
            if track.since_decision >= self.cfg.window:
                track.since_decision = 0
                d = decide(list(track.window), self.threshold, self.cfg.min_frames, self.cfg.uncertain_margin)
                d.track_id = track.id
                decisions.append(d)
        for track in unmatched:
            track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed < self.cfg.lost_after_frames]
        if observations:
            self._state = "faces"
        elif not self.tracks and self._state != "no_face":
            # report "nobody there" once on the transition, not on every empty frame
            self._state = "no_face"
            decisions.append(Decision("no_face", threshold=self.threshold, reason="no face in view"))
        return decisions

    def failure(self, reason: str) -> list[Decision]:
        """The frame could not be read or processed: every face track restarts, and an
        ``error`` decision is reported once per run of failures."""
        for track in self.tracks:
            track.window.clear()
            track.since_decision = 0
        if self._state == "error":
            return []
        self._state = "error"
        return [Decision("error", threshold=self.threshold, reason=reason)]
