"""Decision events: the JSON every subscriber reads (schema in ``edge_app/schemas/``).

Events carry decisions, scores, boxes and timings only: never images or embeddings.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

SCHEMA_VERSION = 1
DECISIONS = ("live", "attack", "uncertain", "no_face", "error")


@dataclass
class DecisionEvent:
    decision: str
    device_id: str
    seq: int
    score: float | None = None  # fused P(live) over the decision window
    scores: dict[str, float] = field(default_factory=dict)  # per model, same window
    threshold: float | None = None
    models: dict[str, str] = field(default_factory=dict)  # model name -> version
    box: list[int] | None = None  # x, y, w, h in frame pixels
    track_id: int | None = None
    frames: int = 0  # frames the decision aggregates
    reason: str = ""  # why a decision is not live/attack (no face, stale frame, error ...)
    timing_ms: dict[str, float] = field(default_factory=dict)
    frame_seq: int | None = None
    source: str | None = None  # the image file a files-source frame came from; absent for cameras
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision {self.decision!r} is not one of {DECISIONS}")

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "event_id": self.event_id,
            "device_id": self.device_id,
            "timestamp": self.timestamp,
            "seq": self.seq,
            "decision": self.decision,
            "score": None if self.score is None else round(float(self.score), 6),
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "threshold": self.threshold,
            "models": dict(self.models),
            "box": self.box,
            "track_id": self.track_id,
            "frames": self.frames,
            "reason": self.reason,
            "frame_seq": self.frame_seq,
            "timing_ms": {k: round(float(v), 3) for k, v in self.timing_ms.items()},
            **({"source": self.source} if self.source is not None else {}),
        }


class SequenceCounter:
    """Monotonic event sequence; starts from the wall clock so a restart never goes back."""

    def __init__(self, start: int | None = None) -> None:
        self._counter = itertools.count(start if start is not None else int(time.time() * 1000))

    def next(self) -> int:
        return next(self._counter)
