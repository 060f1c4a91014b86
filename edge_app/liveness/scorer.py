"""Liveness scoring of one face: crop, features, every model, score-level fusion.

Scores are P(live) in [0, 1]. With several models the fusion in ``models/fusion.json``
(fitted on validation data by ``convert/``) combines their logits and carries the
calibrated threshold; with one model, that model's own threshold applies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.frames.crop import crop_face
from edge_app.frames.detector import Face
from edge_app.features.inputs import feature_channels, model_input
from edge_app.tflite_model import Model, ModelError, load_model, read_sealed_json


# Ranges the metadata must respect: anything outside is a damaged or tampered file, refused at
# load, because every number here can move a decision towards `live`.
OUTPUT_KINDS = ("live_logit", "live_probability")
CROP_SCALE_RANGE = (1.0, 6.0)
CROP_SIZE_RANGE = (16, 512)
THRESHOLD_RANGE = (0.001, 0.999)
MAX_WEIGHT = 20.0  # fusion weights are positive: a negated weight turns attacks into live
MAX_ABS_BIAS = 20.0


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise ModelError(f"{what} is not a finite number ({x})")
    return x


def sigmoid(z: float) -> float:
    """NaN in, NaN out (never 1.0): the decision refuses non-finite scores."""
    if math.isnan(z):
        return math.nan
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def logit(p: float) -> float:
    if math.isnan(p):
        return math.nan
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _in_range(path, key: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{path}: {key} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ModelError(f"{path}: {key} = {value!r} is outside [{lo}, {hi}]")
    return value


@dataclass
class LivenessModel:
    model: Model
    features: list[str]
    crop_scale: float
    crop_size: int
    threshold: float
    output_kind: str = "live_logit"

    @property
    def name(self) -> str:
        return self.model.name

    def score(self, rgb: np.ndarray, face: Face) -> float:
        crop = crop_face(rgb, face, self.crop_scale, self.crop_size)
        out = _finite(float(self.model.run(model_input(crop, self.features))[0].ravel()[0]),
                      f"{self.name}: model output")
        p = sigmoid(out) if self.output_kind == "live_logit" else out
        if not 0.0 <= p <= 1.0:
            raise ModelError(f"{self.name}: score {p!r} is not a probability")
        return p


@dataclass
class Fusion:
    """fused = sigmoid(bias + sum_i weight_i * logit(score_i))."""

    weights: dict[str, float]
    bias: float
    threshold: float
    source: str = ""

    def fuse(self, scores: dict[str, float]) -> float:
        """The fused P(live); ModelError for a missing or non-finite score, never a guess."""
        z = self.bias
        for name, w in self.weights.items():
            if name not in scores:
                raise ModelError(f"fusion: no score from {name}")
            z += w * _finite(logit(scores[name]), f"fusion: logit of the {name} score")
        return _finite(sigmoid(_finite(z, "fusion: fused logit")), "fusion: fused score")


@dataclass
class FaceScore:
    scores: dict[str, float]
    fused: float
    timing_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class LivenessScorer:
    models: list[LivenessModel]
    fusion: Fusion

    @property
    def threshold(self) -> float:
        return self.fusion.threshold

    def versions(self) -> dict[str, str]:
        return {m.name: m.model.version for m in self.models}

    def score(self, rgb: np.ndarray, face: Face) -> FaceScore:
        scores, timing = {}, {}
        for m in self.models:
            t0 = time.perf_counter()
            scores[m.name] = m.score(rgb, face)
            timing[m.name] = (time.perf_counter() - t0) * 1e3
        return FaceScore(scores, self.fusion.fuse(scores), timing)


def load_liveness_model(json_path: Path, num_threads: int = 1) -> LivenessModel:
    model = load_model(json_path, num_threads=num_threads)
    meta = model.metadata
    try:
        features = list(meta["input"]["features"])
        crop = meta["input"]["crop"]
        threshold = _in_range(json_path, "threshold", meta["threshold"], *THRESHOLD_RANGE)
        scale = _in_range(json_path, "input.crop.scale", crop["scale"], *CROP_SCALE_RANGE)
        size = _in_range(json_path, "input.crop.size", crop["size"], *CROP_SIZE_RANGE)
        if size != int(size):
            raise ModelError(f"{json_path}: input.crop.size must be an integer, got {crop['size']!r}")
        kind = meta["output"]["kind"]
        if kind not in OUTPUT_KINDS:
            raise ModelError(f"{json_path}: output.kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
        if feature_channels(features) != model.input.shape[-1]:
            raise ModelError(f"{json_path}: features {features} make {feature_channels(features)} channels, "
                             f"the model takes {model.input.shape[-1]}")
        return LivenessModel(model, features, scale, int(size), threshold, kind)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{json_path}: liveness metadata incomplete or malformed ({exc!r})") from None


def load_scorer(models_dir: str | Path, names: list[str], num_threads: int = 1) -> LivenessScorer:
    models_dir = Path(models_dir)
    models = [load_liveness_model(models_dir / f"{name}.json", num_threads) for name in names]
    if len(models) == 1:
        only = models[0]
        fusion = Fusion({only.name: 1.0}, 0.0, only.threshold, source=f"{only.name}.json threshold")
    else:
        path = models_dir / "fusion.json"
        if not path.exists():
            raise ModelError(f"{path}: several liveness models configured but no fusion file")
        fusion = load_fusion(path, {m.name: m.model.metadata["sha256"] for m in models})
    return LivenessScorer(models, fusion)


def load_fusion(path: Path, model_sha256: dict[str, str]) -> Fusion:
    """``fusion.json``, sealed, range-checked and fitted on exactly the models configured."""
    meta = read_sealed_json(path, "fusion metadata")
    try:
        weights = {str(k): _in_range(path, f"weights.{k}", v, 0.0, MAX_WEIGHT) for k, v in meta["weights"].items()}
        bias = _in_range(path, "bias", meta["bias"], -MAX_ABS_BIAS, MAX_ABS_BIAS)
        threshold = _in_range(path, "threshold", meta["threshold"], *THRESHOLD_RANGE)
        fitted = dict(meta["models"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: malformed fusion metadata ({exc!r})") from None
    if not any(w > 0 for w in weights.values()):
        raise ModelError(f"{path}: every fusion weight is 0: the decision would ignore the models")
    if set(weights) != set(model_sha256):
        raise ModelError(f"{path}: fusion weights name {sorted(weights)}, the configured models are "
                         f"{sorted(model_sha256)}")
    for name, sha in model_sha256.items():
        if fitted.get(name) != sha:
            raise ModelError(f"{path}: fitted on {name} with sha256 {str(fitted.get(name))[:12]}..., the installed "
                             f"model is {sha[:12]}...: the fusion belongs to other models")
    return Fusion(weights, bias, threshold, source=path.name)
