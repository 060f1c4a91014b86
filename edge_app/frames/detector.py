"""Face detection with MediaPipe's BlazeFace models: short-range (128x128, 896 anchors,
faces within about 2 m) and full-range (192x192, 2304 anchors, up to about 5 m).

Anchors follow MediaPipe's SsdAnchorsCalculator with each model's options (kept in its
metadata JSON, written by convert/fetch_detector.py); decoding and weighted non-max
suppression follow its TensorsToDetections and NonMaxSuppression calculators. Both models
share the output layout (box + 6 keypoints per anchor, one logit), so one decoder serves.

``detector.model`` chooses short, full or both (short-range first, full-range on frames
where the short-range faces are not trusted alone). A face that fills the frame and is cut
by its edges is often missed by both; when a frame gives no face, ``closeup_retry`` looks
once more at the frame shrunk inside a black border, where such a face looks whole again.

The decoding is written here rather than taken from the ``mediapipe`` package: that would bring
its whole graph runtime onto the Pi for two small models and two calculators.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_app.tflite_model import Model, load_model

INPUT_SIZE = 128


@dataclass(frozen=True)
class Face:
    """A detected face in frame pixel coordinates."""

    x: float
    y: float
    w: float
    h: float
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()

    def box(self) -> tuple[int, int, int, int]:
        return (int(round(self.x)), int(round(self.y)), int(round(self.w)), int(round(self.h)))


def ssd_anchors(input_size: int = INPUT_SIZE, strides=(8, 16, 16, 16), offset: float = 0.5,
                per_layer: int = 2) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1]; layers that share a stride share a grid."""
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        per_cell = 0
        # MediaPipe merges consecutive layers with the same stride; each layer adds
        # ``per_layer`` anchors per cell: aspect ratio 1.0, plus the interpolated scale when
        # the model has one (short-range: 2; full-range: 1)
        while i < len(strides) and strides[i] == stride:
            per_cell += per_layer
            i += 1
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def letterbox(rgb: np.ndarray, size: int = INPUT_SIZE, zoom_out: float = 1.0) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping aspect ratio into a size x size canvas; returns (image, scale, pad_x, pad_y).

    pad_x/pad_y are the normalised padding on each side, needed to map boxes back.
    ``zoom_out`` > 1 shrinks the image that much further inside a black border.
    """
    h, w = rgb.shape[:2]
    scale = size / (max(h, w) * zoom_out)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # reducing_gap: a box-filter reduce by an integer factor first, then a small bilinear
    # resize; half the cost of a plain bilinear resize from 640x480, same detections
    resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR, reducing_gap=2.0))
    canvas = np.zeros((size, size, 3), np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas[oy : oy + nh, ox : ox + nw] = resized
    return canvas, scale, ox / size, oy / size


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float = 0.3):
    """MediaPipe's weighted NMS: overlapping candidates are averaged by score, not dropped.

    boxes are (N, 4) x1, y1, x2, y2. Returns a list of (box, score, keypoints).
    """
    order = np.argsort(-scores)
    remaining = order
    kept = []
    while remaining.size:
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining])
        group = remaining[overlap > iou_threshold]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, float(scores[top]), kps))
        remaining = remaining[overlap <= iou_threshold]
    return kept


@dataclass
class FaceDetector:
    model: Model
    min_score: float = 0.5
    iou_threshold: float = 0.3
    min_size: float = 0.0  # faces narrower than this fraction of the frame are ignored

    def __post_init__(self) -> None:
        spec = self.model.metadata.get("anchors", {})
        self.size = int(self.model.input.shape[1])
        self.anchors = ssd_anchors(self.size, tuple(spec.get("strides", (8, 16, 16, 16))),
                                   float(spec.get("anchor_offset", 0.5)), int(spec.get("anchors_per_layer", 2)))
        n = self.model.outputs[0].shape[1]
        if self.anchors.shape[0] != n:
            from edge_app.tflite_model import ModelError

            raise ModelError(f"{self.model.path.name}: {n} boxes in the output but {self.anchors.shape[0]} anchors "
                             "from its metadata's anchor options")
        self._input = np.empty((1, self.size, self.size, 3), np.float32)

    @property
    def name(self) -> str:
        return self.model.name

    def detect(self, rgb: np.ndarray, zoom_out: float = 1.0) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB frame, best first, in frame pixel coordinates;
        ``zoom_out`` > 1 looks at the frame shrunk that much inside a black border."""
        h, w = rgb.shape[:2]
        size = self.size
        canvas, _, pad_x, pad_y = letterbox(rgb, size, zoom_out)
        np.multiply(canvas, 1.0 / 127.5, out=self._input[0], casting="unsafe")
        self._input -= 1.0
        regressors, logits = self.model.run(self._input)
        raw = regressors[0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -80.0, 80.0)))
        candidates = np.nonzero(scores >= self.min_score)[0]
        if candidates.size == 0:
            return []
        reg = raw[candidates] / size
        anc = self.anchors[candidates]
        cx = reg[:, 0] + anc[:, 0]
        cy = reg[:, 1] + anc[:, 1]
        bw, bh = reg[:, 2], reg[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = reg[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
        faces = []
        # undo the letterbox: normalised canvas coords -> frame pixels
        span_x, span_y = 1.0 - 2 * pad_x, 1.0 - 2 * pad_y
        for box, score, kp in weighted_nms(boxes, scores[candidates], kps, self.iou_threshold):
            x1 = (box[0] - pad_x) / span_x * w
            y1 = (box[1] - pad_y) / span_y * h
            x2 = (box[2] - pad_x) / span_x * w
            y2 = (box[3] - pad_y) / span_y * h
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(w), x2), min(float(h), y2)
            if x2 - x1 < 2 or y2 - y1 < 2 or (x2 - x1) < self.min_size * w:
                continue
            points = tuple((float((p[0] - pad_x) / span_x * w), float((p[1] - pad_y) / span_y * h)) for p in kp)
            faces.append(Face(float(x1), float(y1), float(x2 - x1), float(y2 - y1), score, points))
        return faces


# "both": when the short-range model's answer is trusted alone. Below ~15% of the frame
# width it misses most faces, and what it does report there is often the right face in a box
# about twice too large that itself measures 15-20% of the width, always with a low score
# (0.60-0.69 on 120 photos). So a short-range face is trusted when it is 20% of the width or
# more, or 10% or more with a score of at least 0.75; otherwise the full-range model looks
# too. On those photos (convert/detector_recall.py) this kept recall at 8% at full-range's
# 0.975 (trusting any short-range face: 0.925) while the full-range model ran on 13% of the
# frames with a 15% face and on none from 20% up.
HANDOVER_FRACTION = 0.20
TRUSTED_FRACTION, TRUSTED_SCORE = 0.10, 0.75


def short_range_trusted(faces: list[Face], width: int) -> bool:
    """Whether short-range faces in a frame ``width`` pixels wide are trusted without the full-range model."""
    return any(f.w >= HANDOVER_FRACTION * width or (f.w >= TRUSTED_FRACTION * width and f.score >= TRUSTED_SCORE)
               for f in faces)


# the frame shrunk to half inside a black border for the close-up retry: a face cut by the
# frame's edges then sits whole-looking in the model's view (measured in
# models/reports/detector.md)
CLOSEUP_ZOOM_OUT = 2.0


@dataclass
class MultiDetector:
    """Detectors tried in turn, and the close-up retry (``detector.model = "both"``, or
    ``closeup_retry``).

    "both" is short-range first; the full-range model looks only when the short-range
    faces are not trusted alone (``short_range_trusted``: no face, or only small or
    low-scoring ones).
    A near face costs one short-range run and keeps the short-range box the liveness models
    were trained on (full-range boxes of the same faces came out ~3% larger and ~6% of their
    height higher on NUAA frames); a far face costs both runs and gets the full-range boxes
    (the short-range ones where full-range finds nothing). A far face beside a near one is
    not looked for: the door serves the nearest person.

    The close-up retry: a frame where they find nothing is looked at once more by the
    short-range model, shrunk inside a black border, where a face cut by the frame's edges
    looks whole. Only the short-range model retries: the full-range one, shown a shrunk
    frame, found faces in textures (models/reports/detector.md)."""

    detectors: list[FaceDetector]
    retry: FaceDetector | None = None

    @property
    def name(self) -> str:
        return " then ".join(d.name for d in self.detectors) + (" (close-up retry)" if self.retry else "")

    def detect(self, rgb: np.ndarray) -> list[Face]:
        fallback: list[Face] = []
        for detector in self.detectors:
            faces = detector.detect(rgb)
            if faces and (detector is self.detectors[-1] or short_range_trusted(faces, rgb.shape[1])):
                return faces
            fallback = fallback or faces
        if fallback:
            return fallback
        return self.retry.detect(rgb, CLOSEUP_ZOOM_OUT) if self.retry is not None else []


SHORT_RANGE = "face_detection_short_range"
DETECTOR_MODELS = {"short": ("face_detection_short_range",), "full": ("face_detection_full_range",),
                   "both": ("face_detection_short_range", "face_detection_full_range")}


def load_detector(models_dir: str | Path, num_threads: int = 1, min_score: float = 0.5, model: str = "short",
                  closeup_retry: bool = False) -> FaceDetector | MultiDetector:
    """The detector(s) ``model`` names (short, full or both), each verified by its metadata;
    with ``closeup_retry`` the short-range one also looks again at face-less frames."""
    def one(name: str) -> FaceDetector:
        return FaceDetector(load_model(Path(models_dir) / f"{name}.json", num_threads=num_threads), min_score=min_score)

    dets = {name: one(name) for name in DETECTOR_MODELS[model]}
    if len(dets) == 1 and not closeup_retry:
        return next(iter(dets.values()))
    retry = None
    if closeup_retry:
        retry = dets.get(SHORT_RANGE) or one(SHORT_RANGE)
    return MultiDetector(list(dets.values()), retry)
