"""The built-in sample: a live face, then the same face as a printed photo, then nobody.

Frames come from ``edge_app/sample/*.jpg`` (made by ``convert/make_sample.py`` from a
public-domain NASA portrait), each shown for a run of frames with small shifts and
sensor noise, so the whole pipeline has something real to decide on without a camera.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from edge_app.config import PACKAGE_DIR, SourceConfig
from edge_app.images import load_rgb
from edge_app.frames.sources import Frame, Pacer

SAMPLE_DIR = PACKAGE_DIR / "sample"
SCENES = (("live", 20), ("print", 20), ("empty", 8))


@lru_cache(maxsize=None)
def sample_image(name: str) -> np.ndarray:
    return load_rgb(SAMPLE_DIR / f"{name}.jpg")


class SampleSource:
    name = "sample"

    def __init__(self, loop: bool = True, fps: float = 0.0, seed: int = 0) -> None:
        self.loop = loop
        self.rng = np.random.default_rng(seed)
        self.pacer = Pacer(fps)
        self.schedule = [name for name, count in SCENES for _ in range(count)]
        self.seq = 0

    def read(self) -> Frame | None:
        if self.seq >= len(self.schedule) and not self.loop:
            return None
        name = self.schedule[self.seq % len(self.schedule)]
        self.pacer.wait()
        self.seq += 1
        base = sample_image(name)
        dy, dx = (int(v) for v in self.rng.integers(-3, 4, 2))
        frame = np.roll(base, (dy, dx), axis=(0, 1))
        noise = self.rng.integers(-2, 3, frame.shape, dtype=np.int16)
        frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return Frame(rgb=frame, seq=self.seq, captured_at=time.monotonic(), origin=f"sample:{name}")

    def close(self) -> None:
        pass


def open_source(cfg: SourceConfig) -> SampleSource:
    return SampleSource(loop=cfg.loop, fps=cfg.fps)
