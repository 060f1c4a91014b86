"""What a person reads: one short line per decision and a periodic status line.

Both go through logging (stderr), so ``journalctl -u edge-app -f`` on a Pi and the terminal
of ``make demo`` show the same lines; the JSON events stay the machines' format (MQTT and
``--print-events``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from edge_app.hub.events import DECISIONS

log = logging.getLogger("edge_app.decisions")
status_log = logging.getLogger("edge_app.status")


def describe(event: dict) -> str:
    """One line for a decision event, e.g.
    ``live       score 0.934 >= 0.289  track 4  box 212,96,180,220  5 frames``."""
    decision = event["decision"]
    parts = [f"{decision:<9}"]
    score, threshold = event.get("score"), event.get("threshold")
    if score is not None and threshold is not None:
        parts.append(f"score {score:.3f} {'>=' if score >= threshold else '<'} {threshold:.3f}")
    if event.get("track_id") is not None:
        parts.append(f"track {event['track_id']}")
    if event.get("box"):
        parts.append("box " + ",".join(str(v) for v in event["box"]))
    if event.get("frames"):
        parts.append(f"{event['frames']} frame{'s' if event['frames'] != 1 else ''}")
    if event.get("source"):
        parts.append(f"file {Path(event['source']).name}")
    if event.get("reason"):
        parts.append(f"({event['reason']})")
    return "  ".join(parts)


class DecisionLog:
    """An event sink that logs each decision as one line and counts decisions by kind."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self.counts = {d: 0 for d in DECISIONS}

    def __call__(self, event: dict) -> None:
        self.counts[event["decision"]] = self.counts.get(event["decision"], 0) + 1
        # INFO for every kind (the decision word leads the line); the failures behind an
        # error decision are logged at ERROR where they happen
        self.logger.info("%s", describe(event))

    def tally(self) -> str:
        """``3 live, 2 attack, 0 uncertain, 1 no_face, 0 error``."""
        return ", ".join(f"{n} {d}" for d, n in self.counts.items())


def status_line(stats, counts: dict[str, int], publisher=None) -> str:
    """fps, frames, faces, decisions by kind, spool depth and broker state in one line."""
    s = stats.summary()
    line = (f"status: {s['fps']:.1f} fps, {s['frames']} frames ({s['failures']} failed), {s['faces']} faces seen, "
            f"decisions: {', '.join(f'{n} {d}' for d, n in counts.items())}")
    if publisher is None:
        return line + "; MQTT off"
    return line + f"; spool {publisher.spool_depth()} unsent; broker {'connected' if publisher.connected else 'NOT connected'}"


class StatusTicker:
    """A frame hook that logs ``status_line`` every ``interval_s`` (0: never)."""

    def __init__(self, interval_s: float, line: Callable[[], str], logger: logging.Logger = status_log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.line = line
        self.logger = logger
        self.clock = clock
        self.next_at = clock() + interval_s

    def __call__(self) -> None:
        if self.interval_s <= 0:
            return
        now = self.clock()
        if now >= self.next_at:
            self.next_at = now + self.interval_s
            self.logger.info("%s", self.line())
