"""The forensics analyzer: the shipped model plus the parameters and thresholds its metadata
fixes, every detector's evidence on one image, and the verdict from it.

    image (loading.py)
          -> copy-move search on a fixed-size analysis image (copy_move_search.py):
             block and keypoint matching propose transforms, each verified pixel by pixel
             (copy_move_verify.py); evidence = verified area, a fraction of the image
          -> [when the metadata puts it in the score] recompress at a common JPEG quality ->
             ELA + wavelet residual (features.py) -> int8 patch CNN -> a share-of-patches statistic
    each detector's statistic -> calibrated score (scores.py), 0.5 exactly at its own threshold
    image score = the highest calibrated score; manipulated when >= threshold (0.5)
    regions = where a detector over its threshold marked the image (masks and boxes)

Every threshold was chosen on authentic photos of several kinds (camera frames, phone and
web photos, PNGs, repeated objects and text, flat walls and sky, up to 12 MP) for a stated
false-alarm rate; ``convert/calibrate_forensics.py`` writes them into the model's metadata
and models/reports/forensics.md reports the rates on held-out photos of each kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.forensics.copy_move import CopyMove
from edge_app.forensics.copy_move_search import CopyMoveEvidence, SearchParams, find_copy_moves
from edge_app.forensics.features import FEATURES, prepare, relative_features
from edge_app.forensics.keypoint_copy_move import KeypointCopyMove
from edge_app.forensics.patches import assemble_heatmap, ela_patch_statistic, patch_grid
from edge_app.forensics.scores import aggregate, calibrated, calibrated_prob, sigmoid

MODEL_NAME = "forensics_cnn"
TASK = "image_forensics"


@dataclass
class Evidence:
    """What every detector measured on one image, before any threshold."""

    patch_scores: np.ndarray | None  # CNN patch scores (None when the CNN is not run)
    coords: list[tuple[int, int]]
    ela_patch: np.ndarray | None  # plain statistic per patch: mean relative ELA (the ablation's baseline)
    copy_moves: CopyMoveEvidence
    shape: tuple[int, int]  # (H, W) of the analysed image
    timing_ms: dict = field(default_factory=dict)


@dataclass
class Analysis:
    score: float
    verdict: str  # authentic / manipulated
    threshold: float
    patch_scores: np.ndarray | None
    coords: list[tuple[int, int]]
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], the analysed image's size; >= 0.5: over a detector's threshold
    pixel_threshold: float
    timing_ms: dict = field(default_factory=dict)
    cnn_score: float | None = None  # the CNN's calibrated score (0.5 at its threshold), None when not run
    cnn_raw: float | None = None  # the CNN's aggregate of patch scores
    cnn_in_score: bool = False
    copy_moves: CopyMoveEvidence | None = None
    copy_move_score: float = 0.0  # block matching, verified (0.5 at its area threshold)
    keypoint_copy_move_score: float = 0.0  # keypoint matching, verified
    masks: dict = field(default_factory=dict)  # detector -> bool (H, W): where it is over its threshold

    @property
    def copy_move(self) -> CopyMove | None:
        return None if self.copy_moves is None else self.copy_moves.block_raw

    @property
    def keypoint_copy_move(self) -> KeypointCopyMove | None:
        return None if self.copy_moves is None else self.copy_moves.keypoint_raw


DETECTORS = ("cnn", "block_copy_move", "keypoint_copy_move")


class ForensicsAnalyzer:
    """The shipped forensics model plus the parameters and thresholds its metadata fixes.
    Not thread-safe (one interpreter); ``check_image_bytes`` serialises calls with a lock."""

    def __init__(self, model, threshold: float | None = None) -> None:
        meta = model.metadata
        if meta.get("task") != TASK:
            raise ValueError(f"{model.path.name}: task is {meta.get('task')!r}, not {TASK!r}")
        spec = meta["input"]
        if spec.get("features") != FEATURES:
            raise ValueError(f"{model.path.name}: input features {spec.get('features')} differ from this "
                             f"runtime's {FEATURES}")
        self.model = model
        self.patch = int(spec["patch"]["size"])
        self.stride = int(spec["patch"]["stride"])
        self.recompress_quality = int(spec["recompress_quality"])
        self.relative = bool(spec.get("relative", False))
        det = meta["detectors"]
        self.cnn_in_score = bool(det["cnn"]["in_score"])
        self.aggregation = str(det["cnn"]["aggregation"])
        self.cnn_threshold = float(det["cnn"]["threshold"])
        self.block_area = float(det["block_copy_move"]["threshold_area"])
        self.keypoint_area = float(det["keypoint_copy_move"]["threshold_area"])
        self.search = SearchParams.from_dict(meta.get("copy_move_search", {}))
        override = threshold is not None and threshold > 0
        self.threshold = float(threshold if override else meta["threshold"])
        self.pixel_threshold = float(meta.get("pixel_threshold", 0.5))
        if model.input.shape != (1, self.patch, self.patch, len(FEATURES)):
            raise ValueError(f"{model.path.name}: input shape {model.input.shape} does not fit patch "
                             f"{self.patch} with {len(FEATURES)} features")
        self._x = np.zeros(model.input.shape, np.float32)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    def patch_scores(self, feats: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Patch scores of a ``prepare`` feature map (made relative first when the model's
        metadata says ``input.relative``)."""
        if self.relative:
            feats = relative_features(feats)
        h, w = feats.shape[:2]
        coords = patch_grid(h, w, self.patch, self.stride)
        logits = np.empty(len(coords), np.float32)
        p, x = self.patch, self._x
        for i, (y0, x0) in enumerate(coords):
            x[0] = feats[y0:y0 + p, x0:x0 + p]
            logits[i] = self.model.run(x)[0].ravel()[0]
        return sigmoid(logits).astype(np.float32), coords

    def evidence(self, rgb: np.ndarray, cnn: bool | None = None, progress=None) -> Evidence:
        """Every detector's raw measurement; the CNN (and the ELA statistic) only when
        ``cnn`` is true (default: when the CNN is part of the score). ``progress(stage)`` is
        called before each slow stage."""
        cnn = self.cnn_in_score if cnn is None else cnn
        say = progress or (lambda stage: None)
        timing: dict = {}
        scores, coords, ela = None, [], None
        if cnn:
            say("features (recompress, ELA, wavelet residual)")
            t0 = time.perf_counter()
            feats = prepare(rgb, self.recompress_quality)
            t1 = time.perf_counter()
            say(f"patch CNN ({len(patch_grid(rgb.shape[0], rgb.shape[1], self.patch, self.stride))} patches)")
            scores, coords = self.patch_scores(feats)
            ela = ela_patch_statistic(feats, coords, self.patch)
            t2 = time.perf_counter()
            timing.update(features=round((t1 - t0) * 1e3, 2), model=round((t2 - t1) * 1e3, 2), patches=len(coords))
        say("copy-move search (blocks, keypoints, dense verification)")
        t3 = time.perf_counter()
        cms = find_copy_moves(rgb, self.search)
        timing["copy_move"] = round((time.perf_counter() - t3) * 1e3, 2)
        return Evidence(scores, coords, ela, cms, rgb.shape[:2], timing)

    def decide(self, ev: Evidence) -> Analysis:
        """Scores, verdict, heatmap and masks from ``Evidence``, at the calibrated thresholds."""
        t0 = time.perf_counter()
        h, w = ev.shape
        heat = np.zeros((h, w), np.float32)
        masks: dict[str, np.ndarray] = {}
        cnn_raw = cnn_score = None
        parts = []
        if ev.patch_scores is not None:
            cnn_raw = aggregate(ev.patch_scores, self.aggregation)
            cnn_score = float(calibrated_prob(cnn_raw, self.cnn_threshold))
            if self.cnn_in_score:
                parts.append(cnn_score)
                cal = calibrated_prob(ev.patch_scores, self.cnn_threshold).astype(np.float32)
                cnn_heat = assemble_heatmap(cal, ev.coords, h, w, self.patch)
                np.maximum(heat, cnn_heat, out=heat)
                masks["cnn"] = cnn_heat >= 0.5
                del cnn_heat
        cms = ev.copy_moves
        blk = calibrated(cms.block.area, self.block_area)
        kp = calibrated(cms.keypoint.area, self.keypoint_area)
        parts += [blk, kp]
        for name, s, which in (("block_copy_move", blk, "block"), ("keypoint_copy_move", kp, "keypoint")):
            if s > 0:
                m = cms.mask(which, h, w)
                # in place and only where the mask is: the same values as
                # max(heat, m * s) (heat is never negative) without two float32
                # copies of the image (16 MB each at 4 MP; issue 15)
                np.maximum(heat, np.float32(s), out=heat, where=m)
                if s >= 0.5:
                    masks[name] = m
        score = max(parts) if parts else 0.0
        timing = dict(ev.timing_ms, decide=round((time.perf_counter() - t0) * 1e3, 2))
        return Analysis(score=score, verdict="manipulated" if score >= self.threshold else "authentic",
                        threshold=self.threshold, patch_scores=ev.patch_scores, coords=ev.coords, heatmap=heat,
                        pixel_threshold=self.pixel_threshold, timing_ms=timing, cnn_score=cnn_score,
                        cnn_raw=cnn_raw, cnn_in_score=self.cnn_in_score, copy_moves=cms,
                        copy_move_score=blk, keypoint_copy_move_score=kp, masks=masks)

    def analyze(self, rgb: np.ndarray, jpeg_source: bool = True, progress=None) -> Analysis:
        """Score an RGB image (``jpeg_source`` is kept for callers; the thresholds were
        calibrated on JPEG and lossless photos together)."""
        return self.decide(self.evidence(rgb, progress=progress))


def load_analyzer(models_dir: str | Path, name: str = MODEL_NAME, threads: int = 1,
                  threshold: float | None = None) -> ForensicsAnalyzer:
    """Load and verify ``<models_dir>/<name>.json`` (sha256, input spec); ModelError if unusable."""
    from edge_app.forensics.keypoint_copy_move import INSTALL_HINT, available
    from edge_app.tflite_model import ModelError, load_model

    # Copy-move search and its dense verification run on OpenCV (resampling, warps, box filters):
    # the optional extra. The door terminal never needs it; without it forensics says so.
    if not available():
        raise ModelError(f"still-image forensics is not available: {INSTALL_HINT}")
    model = load_model(Path(models_dir) / f"{name}.json", num_threads=threads)
    try:
        return ForensicsAnalyzer(model, threshold)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{Path(models_dir) / (name + '.json')}: not a usable forensics model ({exc})") from None
