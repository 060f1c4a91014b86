"""Pictures for aiming the camera: face boxes, scores and decisions drawn on the image.

``edge-app liveness --annotate DIR`` writes each still so; ``edge-app run --annotate DIR``
writes the frames that produced a decision. These are full frames on disk: a setup aid the
operator asks for, never written otherwise (see docs/privacy.md).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

COLOURS = {
    "live": (30, 200, 60), "attack": (235, 40, 40), "uncertain": (245, 170, 0),
    "error": (200, 0, 200), "no_face": (170, 170, 170), None: (80, 160, 255),  # None: a face not (yet) decided
}


class AnnotateError(OSError):
    """The folder for annotated images cannot be made or written; the message names it."""


@dataclass(frozen=True)
class Mark:
    box: tuple[int, int, int, int]  # x, y, w, h in image pixels
    label: str
    decision: str | None = None  # live / attack / uncertain / error, or None for a detected face


def _font(height: int):
    size = max(12, height // 36)
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def draw(rgb: np.ndarray, marks: list[Mark], caption: str = "") -> Image.Image:
    """The image with each mark's box and label, and a caption line at the top."""
    img = Image.fromarray(rgb).convert("RGB")
    pen = ImageDraw.Draw(img)
    font = _font(img.height)
    width = max(2, img.width // 320)
    for m in marks:
        colour = COLOURS.get(m.decision, COLOURS[None])
        x, y, w, h = m.box
        pen.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        left, top, right, bottom = pen.textbbox((0, 0), m.label, font=font)
        tw, th = right - left, bottom - top
        ty = y - th - 2 * width if y - th - 2 * width >= 0 else y + h + width  # above the box, else below
        pen.rectangle([x, ty, x + tw + 2 * width, ty + th + 2 * width], fill=colour)
        pen.text((x + width - left, ty + width - top), m.label, fill=(0, 0, 0), font=font)
    if caption:
        left, top, right, bottom = pen.textbbox((0, 0), caption, font=font)
        pen.rectangle([0, 0, right - left + 8, bottom - top + 8], fill=(0, 0, 0))
        pen.text((4 - left, 4 - top), caption, fill=(255, 255, 255), font=font)
    return img


def decision_label(decision: str, score: float | None, threshold: float | None) -> str:
    if score is None:
        return decision
    return f"{decision} {score:.2f}" + (f" (thr {threshold:.2f})" if threshold is not None else "")


class Annotator:
    """Writes annotated JPEGs into one folder, each under a distinct, safe name."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".edge-app-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise AnnotateError(f"--annotate {self.folder}: cannot write there ({exc.strerror or exc})") from None
        self.used: set[str] = set()

    def name_for(self, stem: str, seq: int | None = None) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"
        base = f"{seq:06d}_{stem}" if seq is not None else stem
        name, k = f"{base}_annotated.jpg", 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}_annotated.jpg"
        self.used.add(name)
        return name

    def write(self, rgb: np.ndarray, marks: list[Mark], stem: str, seq: int | None = None, caption: str = "") -> Path:
        target = self.folder / self.name_for(stem, seq)
        try:
            draw(rgb, marks, caption).save(target, "JPEG", quality=90)
        except OSError as exc:
            raise AnnotateError(f"{target}: not written ({exc.strerror or exc})") from None
        return target

    def frame_observer(self, threshold: float, every_s: float = 1.0):
        """For ``Pipeline.frame_observers``: each frame that produced a decision, and one frame
        every ``every_s`` seconds besides (0: every frame), with every face the detector found
        (blue, its detection score) and each decision's box in its decision's colour."""
        last = [float("-inf")]

        def observe(frame, faces, events) -> None:
            decided = [e for e in events if e.get("box")]
            now = time.monotonic()
            if not decided and now - last[0] < every_s:
                return
            last[0] = now
            marks = [Mark(f.box(), f"face {f.score:.2f}") for f in faces]
            marks += [Mark(tuple(e["box"]), decision_label(e["decision"], e.get("score"), threshold) +
                           (f" #{e['track_id']}" if e.get("track_id") is not None else ""), e["decision"])
                      for e in decided]
            stem = Path(frame.origin).stem if frame.origin and Path(frame.origin).suffix else "frame"
            try:
                self.write(frame.rgb, marks, stem, frame.seq, caption=f"frame {frame.seq}  {frame.origin}")
            except AnnotateError as exc:  # a full disk must not stop decisions
                log.error("%s", exc)

        return observe
