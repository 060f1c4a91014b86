"""Frame sources. Each is one module with ``open_source(cfg) -> FrameSource``.

A source yields ``Frame``s until it ends (``read`` returns None) and raises
``SourceError`` when the camera or file fails; the pipeline turns that into a
fail-closed decision and keeps going. Adding a source is adding a module and naming it
in ``SOURCES``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_app.config import SourceConfig

SOURCES = {
    "sample": "edge_app.frames.sources.sample",
    "files": "edge_app.frames.sources.files",
    "synthetic": "edge_app.frames.sources.synthetic",
    "picamera2": "edge_app.frames.sources.picamera2",
}


class SourceError(RuntimeError):
    """The source could not deliver a frame; the message names the source and why."""


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8, full resolution: crops and features come from here
    seq: int
    captured_at: float = field(default_factory=time.monotonic)  # time.monotonic() at capture
    origin: str = ""  # file path or camera name, for logs
    lores: np.ndarray | None = None  # low-resolution RGB for detection, when the source has one


class FrameSource(Protocol):
    name: str

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def open_source(cfg: SourceConfig) -> FrameSource:
    module = importlib.import_module(SOURCES[cfg.kind])
    return module.open_source(cfg)


class Pacer:
    """Sleeps so frames come no faster than ``fps`` (0: no pacing)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.period
