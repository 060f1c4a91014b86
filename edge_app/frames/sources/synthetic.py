"""Synthetic frames for tests: a face image pasted on a noisy background, or none.

It exercises the real detector and models without a camera, and can simulate the
failures a camera has (errors, stalls) so fail-closed behaviour is testable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edge_app.config import SourceConfig
from edge_app.frames.sources import Frame, Pacer, SourceError


@dataclass
class SyntheticSource:
    width: int = 640
    height: int = 480
    face: np.ndarray | None = None  # RGB image of a face to paste; None: empty scene
    face_height_fraction: float = 0.75
    frames: int = 0  # 0: endless
    fail_at: tuple[int, ...] = ()  # frame numbers that raise SourceError
    age_s: float = 0.0  # report frames as captured this long ago (stale-frame tests)
    fps: float = 0.0
    seed: int = 0
    name: str = "synthetic"
    _seq: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)
    _face: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._pacer = Pacer(self.fps)
        if self.face is not None:
            side = int(self.height * self.face_height_fraction)
            scale = side / self.face.shape[0]
            size = (max(1, int(self.face.shape[1] * scale)), side)
            self._face = np.asarray(Image.fromarray(self.face).resize(size, Image.BILINEAR))

    def read(self) -> Frame | None:
        if self.frames and self._seq >= self.frames:
            return None
        self._pacer.wait()
        self._seq += 1
        if self._seq in self.fail_at:
            raise SourceError(f"{self.name}: simulated camera failure at frame {self._seq}")
        frame = self._rng.integers(90, 110, (self.height, self.width, 3), dtype=np.uint8)
        if self._face is not None:
            fh, fw = self._face.shape[:2]
            jitter = self._rng.integers(-4, 5, 2)
            y = max(0, min(self.height - fh, (self.height - fh) // 2 + int(jitter[0])))
            x = max(0, min(self.width - fw, (self.width - fw) // 2 + int(jitter[1])))
            frame[y : y + fh, x : x + fw] = self._face[: self.height - y, : self.width - x]
        return Frame(rgb=frame, seq=self._seq, captured_at=time.monotonic() - self.age_s, origin=self.name)

    def close(self) -> None:
        pass


def sample_head() -> np.ndarray:
    """Head and shoulders of the built-in sample portrait, for pasting into synthetic scenes."""
    from edge_app.frames.sources.sample import sample_image

    return sample_image("live")[0:300, 160:430]


def open_source(cfg: SourceConfig) -> SyntheticSource:
    return SyntheticSource(width=cfg.width, height=cfg.height, face=sample_head(), fps=cfg.fps)
