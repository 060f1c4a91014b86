"""Cut a face out of a frame at a given context scale, without padding.

A box that would cross the frame edge is shrunk to fit and then shifted inward rather
than padded: black padding looks like a screen bezel, and a model learns it as a cue.
This is the same recipe the MiniFASNet teachers were trained with.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge_app.frames.detector import Face


def context_box(face: Face, frame_w: int, frame_h: int, scale: float) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the face box enlarged by ``scale``, kept inside the frame."""
    scale = min((frame_h - 1) / max(face.h, 1.0), (frame_w - 1) / max(face.w, 1.0), scale)
    new_w, new_h = face.w * scale, face.h * scale
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    left, top = cx - new_w / 2, cy - new_h / 2
    right, bottom = cx + new_w / 2, cy + new_h / 2
    # shift inward at the edges instead of padding
    if left < 0:
        right -= left
        left = 0.0
    if top < 0:
        bottom -= top
        top = 0.0
    if right > frame_w - 1:
        left -= right - frame_w + 1
        right = frame_w - 1.0
    if bottom > frame_h - 1:
        top -= bottom - frame_h + 1
        bottom = frame_h - 1.0
    return max(0.0, left), max(0.0, top), right, bottom


def crop_face(rgb: np.ndarray, face: Face, scale: float, size: int) -> np.ndarray:
    """(size, size, 3) uint8 crop of ``face`` with ``scale`` times its box as context."""
    h, w = rgb.shape[:2]
    left, top, right, bottom = context_box(face, w, h, scale)
    # Hand Pillow only the region the resize reads (the box plus the filter's reach), not
    # the whole frame: fromarray copies what it is given, 2.7 MB per crop at 1280x720.
    # The result equals resizing the full frame with the same box to within one level (the
    # box's sub-pixel offset rounds differently in Pillow's filter weights).
    reach = int(np.ceil(max(right - left, bottom - top) / size)) + 2
    x0, y0 = max(0, int(left) - reach), max(0, int(top) - reach)
    x1, y1 = min(w, int(np.ceil(right)) + reach), min(h, int(np.ceil(bottom)) + reach)
    region = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    box = (left - x0, top - y0, right - x0, bottom - y0)
    return np.asarray(region.resize((size, size), Image.BILINEAR, box=box))
