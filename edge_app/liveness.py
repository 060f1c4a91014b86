"""Liveness scoring of one face: crop, features, every model, score-level fusion.

Scores are P(live) in [0, 1]. With several models the fusion in ``models/fusion.json``
(fitted on validation data by ``convert/``) combines their logits and carries the
calibrated threshold; with one model, that model's own threshold applies.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.crop import crop_face
from edge_app.detector import Face
from edge_app.features import feature_channels, model_input
from edge_app.tflite_model import Model, ModelError, load_model


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


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
        out = float(self.model.run(model_input(crop, self.features))[0].ravel()[0])
        return sigmoid(out) if self.output_kind == "live_logit" else out


@dataclass
class Fusion:
    """fused = sigmoid(bias + sum_i weight_i * logit(score_i))."""

    weights: dict[str, float]
    bias: float
    threshold: float
    source: str = ""

    def fuse(self, scores: dict[str, float]) -> float:
        return sigmoid(self.bias + sum(w * logit(scores[name]) for name, w in self.weights.items()))


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
        threshold = float(meta["threshold"])
        if feature_channels(features) != model.input.shape[-1]:
            raise ModelError(f"{json_path}: features {features} make {feature_channels(features)} channels, "
                             f"the model takes {model.input.shape[-1]}")
        return LivenessModel(model, features, float(crop["scale"]), int(crop["size"]), threshold,
                             meta.get("output", {}).get("kind", "live_logit"))
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
        try:
            meta = json.loads(path.read_text())
            fusion = Fusion({k: float(v) for k, v in meta["weights"].items()}, float(meta["bias"]),
                            float(meta["threshold"]), source=path.name)
        except FileNotFoundError:
            raise ModelError(f"{path}: several liveness models configured but no fusion file") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: malformed fusion metadata ({exc!r})") from None
        missing = set(fusion.weights) - {m.name for m in models}
        if missing:
            raise ModelError(f"{path}: fusion weights name models that are not configured: {sorted(missing)}")
    return LivenessScorer(models, fusion)
