"""Still-image forensics: is this photo manipulated, and where?

    image -> recompress at a common JPEG quality -> ELA + wavelet residual
          -> int8 patch CNN on overlapping patches -> patch scores
          -> image score (aggregate) + heatmap (patch scores averaged per pixel)
    image -> copy-move block matching (edge_app.copy_move) -> pairs at one shift
    image -> copy-move keypoint matching (edge_app.keypoint_copy_move) -> inliers of one
             similarity transform (finds scaled and rotated copies)
    image score = max(CNN score, copy-move scores); heatmap = max of the maps

Why the recompression: a data set (CASIA v1 above all) can save authentic and tampered
images at different JPEG qualities, and an ELA model then learns the quantization table
instead of the tampering. Every image, in training and here, is first re-encoded at one
quality (``input.recompress_quality`` in the model metadata), so the last compression is
the same for all; what is left are the traces of the image's earlier history: pasted
regions whose 8x8 block grid or quantization differs from the rest, resampled or smoothed
regions, boundaries.

Everything a model needs to know (patch size, stride, recompression quality, how patch
scores become an image score, thresholds) comes from the model's metadata JSON, which
``convert/train_forensics.py`` writes. ``check_image_bytes`` is the entry point for the
MQTT layer: it never raises for bad input.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edge_app.copy_move import CopyMove, CopyMoveParams, copy_move_score, find_copy_move
from edge_app.keypoint_copy_move import (KeypointCopyMove, KeypointParams, find_keypoint_copy_move,
                                         keypoint_copy_move_score)
from edge_app.images import MAX_PIXELS, ImageLoadError, decode, open_image_file, probe
from edge_app.ela import ELA_QUALITY, error_level_display, error_level_normalized
from edge_app.wavelet import WAVELET, WAVELET_LEVEL, noise_residual_normalized

log = logging.getLogger(__name__)

MODEL_NAME = "forensics_cnn"
TASK = "image_forensics"
FEATURES = ["ela_r", "ela_g", "ela_b", "wavelet_residual_luma"]
MIN_SIDE = 64  # smaller images cannot hold one patch
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# IJG (libjpeg) standard luminance table at quality 50, natural (row-major) order as
# Pillow's ``im.quantization`` gives it.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.int64)


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])  # row q-1


class ForensicsError(ValueError):
    """An input that cannot be analysed; the message says which and why."""


# --------------------------------------------------------------------------- features


def estimate_jpeg_quality(quantization: dict | None) -> tuple[int, bool] | None:
    """(IJG quality 1..100 whose luminance table is nearest, exact match?) or None.

    Photoshop and cameras use their own tables; the nearest IJG quality (least mean
    absolute difference over the 64 entries) is then an estimate, flagged not exact.
    """
    if not quantization or 0 not in quantization:
        return None
    lum = np.asarray(quantization[0], np.int64).ravel()
    if lum.size != 64:
        return None
    err = np.abs(_IJG_TABLES - lum[None, :]).mean(axis=1)
    q = int(np.argmin(err))
    return q + 1, bool(err[q] == 0)


def recompress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 after one JPEG encode + decode at ``quality`` (Pillow, 4:2:0, accurate DCT)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def features(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W, 4): ELA at quality 90 (3 channels, [0, 1]) and the wavelet noise
    residual of the luma (1 channel, [-1, 1]), both from the ``edge_app`` feature code.

    The residual of a JPEG-compressed image is small (often under 0.3 grey levels, i.e.
    under 0.02 after ``noise_residual_normalized``), below one int8 step of a [-1, 1]
    input; a signed square root, ``sign(r) * sqrt(|r|)``, spreads it over the int8 range
    while keeping sign and order (0.1 grey level -> 0.08, 1 -> 0.25, 16 -> 1).
    """
    h, w = rgb.shape[:2]
    out = np.empty((h, w, len(FEATURES)), np.float32)
    out[..., :3] = error_level_normalized(rgb, ELA_QUALITY)
    luma = rgb.astype(np.float32) @ _LUMA
    r = noise_residual_normalized(luma, WAVELET, WAVELET_LEVEL)
    out[..., 3] = np.copysign(np.sqrt(np.abs(r)), r)
    return out


def prepare(rgb: np.ndarray, recompress_quality: int) -> np.ndarray:
    """The model's feature map for an image: recompress first, then features."""
    return features(recompress(rgb, recompress_quality))


# relative (per-image) normalisation: each channel divided by the image's own robust level
# (median over its 8x8 JPEG blocks of the block-mean |value|), times these factors, floored
RELATIVE_FACTORS = np.array([8.0, 8.0, 8.0, 4.0], np.float32)
RELATIVE_FLOORS = np.array([0.004, 0.004, 0.004, 0.01], np.float32)


def image_levels(feats: np.ndarray) -> np.ndarray:
    """Per channel: the median over the image's 8x8 blocks of the block mean of |value|."""
    h, w, c = feats.shape
    hh, ww = h // 8 * 8, w // 8 * 8
    blocks = np.abs(feats[:hh, :ww].astype(np.float32)).reshape(hh // 8, 8, ww // 8, 8, c).mean(axis=(1, 3))
    return np.median(blocks.reshape(-1, c), axis=0)


def relative_features(feats: np.ndarray) -> np.ndarray:
    """Features relative to the image itself: each channel divided by ``RELATIVE_FACTORS``
    times the image's own level (``image_levels``, floored at ``RELATIVE_FLOORS``) and
    clipped to [-1, 1]. A region whose compression/noise statistics differ from the rest of
    the image stands out; a level shared by the whole image (its quantization history,
    its overall noise) is divided away."""
    scale = RELATIVE_FACTORS * np.maximum(image_levels(feats), RELATIVE_FLOORS)
    return np.clip(feats.astype(np.float32) / scale, -1.0, 1.0)


def _axis_starts(n: int, patch: int, stride: int) -> list[int]:
    # starts on multiples of 8 keep every patch on the JPEG block grid the model saw in
    # training; the last start is the 8-aligned one nearest the far edge
    last = ((n - patch) // 8) * 8
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def patch_grid(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of overlapping patches covering the image."""
    if height < patch or width < patch:
        raise ForensicsError(f"image is {width}x{height}, smaller than one {patch}x{patch} analysis patch")
    return [(y, x) for y in _axis_starts(height, patch, stride) for x in _axis_starts(width, patch, stride)]


def assemble_heatmap(scores: np.ndarray, coords: list[tuple[int, int]], height: int, width: int,
                     patch: int) -> np.ndarray:
    """Per-pixel mean of the scores of all patches covering it, float32 (H, W)."""
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    for s, (y, x) in zip(scores, coords):
        total[y:y + patch, x:x + patch] += s
        count[y:y + patch, x:x + patch] += 1
    covered = count > 0
    heat = np.zeros_like(total)
    heat[covered] = total[covered] / count[covered]
    if not covered.all():
        # a border thinner than 8 pixels beyond the last aligned patch: nearest value
        ys = np.where(covered.any(axis=1))[0]
        xs = np.where(covered.any(axis=0))[0]
        inner = heat[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        heat = np.pad(inner, ((ys[0], height - ys[-1] - 1), (xs[0], width - xs[-1] - 1)), mode="edge")
    return heat


def aggregate(patch_scores: np.ndarray, how: str) -> float:
    """Image score from patch scores: ``max``, ``topK`` (mean of the K highest) or
    ``ctopK`` (contrast: sigmoid of the mean of the K highest patch logits minus the
    image's median patch logit; 0.5 when the image is uniform, towards 1 when a few
    patches stand out from the rest of the same image)."""
    s = np.sort(np.asarray(patch_scores, np.float64))[::-1]
    if how == "max":
        return float(s[0])
    if how.startswith("ctop"):
        k = max(1, min(int(how[4:]), len(s)))
        p = np.clip(s, 1e-4, 1 - 1e-4)
        logit = np.log(p / (1 - p))
        return float(_sigmoid(logit[:k].mean() - np.median(logit)))
    if how.startswith("top"):
        k = max(1, min(int(how[3:]), len(s)))
        return float(s[:k].mean())
    raise ValueError(f"unknown aggregation {how!r}")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def heatmap_summary(heat: np.ndarray, threshold: float, cell: int = 8, max_regions: int = 5) -> dict:
    """Fraction over ``threshold``, its bounding box and the largest connected regions
    (4-connected on ``cell``-pixel cells), boxes as [x0, y0, x1, y1] in image pixels."""
    h, w = heat.shape
    hit = heat >= threshold
    summary = {"threshold": round(float(threshold), 4), "max": round(float(heat.max()), 4),
               "suspect_fraction": round(float(hit.mean()), 4), "bbox": None, "regions": []}
    if not hit.any():
        return summary
    ys, xs = np.where(hit)
    summary["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = hit
    cells = padded.reshape(gh, cell, gw, cell).any(axis=(1, 3))
    seen = np.zeros_like(cells)
    regions = []
    for cy, cx in zip(*np.where(cells)):
        if seen[cy, cx]:
            continue
        stack, members = [(cy, cx)], []
        seen[cy, cx] = True
        while stack:
            y, x = stack.pop()
            members.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < gh and 0 <= nx < gw and cells[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        m = np.array(members)
        y0, x0 = m.min(axis=0) * cell
        y1, x1 = (m.max(axis=0) + 1) * cell
        box = [int(x0), int(y0), int(min(x1, w)), int(min(y1, h))]
        region = heat[box[1]:box[3], box[0]:box[2]]
        regions.append({"bbox": box, "area_fraction": round(float((region >= threshold).sum()) / (h * w), 4),
                        "peak": round(float(region.max()), 4)})
    regions.sort(key=lambda r: r["area_fraction"], reverse=True)
    summary["regions"] = regions[:max_regions]
    return summary


# --------------------------------------------------------------------------- input


@dataclass
class LoadedImage:
    rgb: np.ndarray
    width: int  # as stored, before any downscaling
    height: int
    format: str
    jpeg_quality: int | None = None  # estimated from the quantization tables
    standard_tables: bool | None = None
    downscaled_from: tuple[int, int] | None = None

    @property
    def lossless(self) -> bool:
        return self.format in ("PNG", "BMP", "TIFF", "PPM", "GIF")

    @property
    def source_info(self) -> dict:
        info = {"format": self.format, "jpeg_history": self.format == "JPEG"}
        if self.format == "JPEG":
            info["jpeg_quality_estimate"] = self.jpeg_quality
            info["standard_ijg_tables"] = self.standard_tables
        return info


def open_image(source: str | Path | bytes, max_pixels: int, analysis_max_pixels: int,
               oversize: str = "downscale", name: str = "") -> LoadedImage:
    """Decode a file or bytes to RGB, with the format and JPEG quality, size-checked.

    Over ``max_pixels`` the image is refused before decoding. Over
    ``analysis_max_pixels`` it is downscaled (``oversize="downscale"``) or refused.
    Every problem is a ``ForensicsError`` naming the input.
    """
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "image data")
    # the strict reader and decoder of edge_app.images: regular files only, header-checked
    # dimensions, decoder warnings as errors, every decoder exception a per-image error
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ForensicsError(f"{label}: empty (0 bytes)")
            opened = contextlib.nullcontext(io.BytesIO(bytes(source)))
        else:
            opened = open_image_file(source)
        with opened as fp:
            w, h, fmt = probe(fp, label)
            if w * h > max_pixels:
                raise ForensicsError(f"{label}: image is {w}x{h} ({w * h / 1e6:.1f} MP), over the "
                                     f"{max_pixels / 1e6:.1f} MP limit; refused")
            if w * h > analysis_max_pixels and oversize == "refuse":
                raise ForensicsError(f"{label}: image is {w}x{h} ({w * h / 1e6:.1f} MP), over the analysis "
                                     f"limit of {analysis_max_pixels / 1e6:.1f} MP (forensics.oversize = refuse)")
            decoded = decode(fp, label, max_pixels)
    except ImageLoadError as exc:
        raise ForensicsError(str(exc)) from None
    q = estimate_jpeg_quality(decoded.quantization) if fmt == "JPEG" else None
    loaded = LoadedImage(decoded.rgb, w, h, fmt, q[0] if q else None, q[1] if q else None)
    if w * h > analysis_max_pixels:
        f = (analysis_max_pixels / (w * h)) ** 0.5
        nw, nh = max(MIN_SIDE, int(w * f)), max(MIN_SIDE, int(h * f))
        loaded.rgb = np.asarray(Image.fromarray(decoded.rgb).resize((nw, nh), Image.Resampling.LANCZOS))
        loaded.downscaled_from = (w, h)
    if min(loaded.rgb.shape[:2]) < MIN_SIDE:
        raise ForensicsError(f"{label}: image is {w}x{h}; forensics needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return loaded


# --------------------------------------------------------------------------- model


@dataclass
class Analysis:
    score: float
    verdict: str  # authentic / manipulated
    threshold: float
    patch_scores: np.ndarray
    coords: list[tuple[int, int]]
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], the analysed image's size
    pixel_threshold: float
    timing_ms: dict = field(default_factory=dict)
    cnn_score: float | None = None  # the CNN's own image score, before the copy-move evidence
    copy_move: CopyMove | None = None  # None when the model's metadata has no copy_move section
    copy_move_score: float = 0.0
    keypoint_copy_move: KeypointCopyMove | None = None  # None without a keypoint_copy_move section
    keypoint_copy_move_score: float = 0.0


class ForensicsAnalyzer:
    """The shipped forensics model plus the parameters its metadata fixes. Not thread-safe
    (one interpreter); ``check_image_bytes`` serialises calls with a lock."""

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
        self.aggregation = str(meta["output"]["image_score"]["aggregation"])
        self.relative = bool(spec.get("relative", False))
        override = threshold is not None and threshold > 0
        self.threshold = float(threshold if override else meta["threshold"])
        # files with no JPEG history of their own (PNG, BMP, ...): never-compressed pixels
        # look like pasted material to the model, so they get their own, higher threshold,
        # chosen on validation for the same false-alarm rate as JPEGs
        self.lossless_threshold = float(threshold if override else meta.get("lossless_threshold", self.threshold))
        self.pixel_threshold = float(meta["pixel_threshold"])
        # copy-move evidence joins the CNN's only when the metadata says how to weigh it
        cm = meta.get("copy_move")
        self.copy_move_half_pairs = float(cm["half_pairs"]) if cm else None
        self.copy_move_params = CopyMoveParams(**cm.get("params", {})) if cm else None
        kp = meta.get("keypoint_copy_move")
        self.keypoint_half_inliers = float(kp["half_inliers"]) if kp else None
        self.keypoint_params = KeypointParams(**kp.get("params", {})) if kp else None
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
        return _sigmoid(logits).astype(np.float32), coords

    def analyze(self, rgb: np.ndarray, jpeg_source: bool = True) -> Analysis:
        """Score an RGB image; ``jpeg_source`` False (PNG and other non-JPEG files) uses the
        threshold for sources without JPEG history."""
        t0 = time.perf_counter()
        feats = prepare(rgb, self.recompress_quality)
        t1 = time.perf_counter()
        scores, coords = self.patch_scores(feats)
        t2 = time.perf_counter()
        heat = assemble_heatmap(scores, coords, rgb.shape[0], rgb.shape[1], self.patch)
        cnn_score = aggregate(scores, self.aggregation)
        t3 = time.perf_counter()
        cm = None if self.copy_move_params is None else find_copy_move(rgb, self.copy_move_params)
        t4 = time.perf_counter()
        kp = None if self.keypoint_params is None else find_keypoint_copy_move(rgb, self.keypoint_params)
        t5 = time.perf_counter()
        score, cm_score, kp_score, heat = with_copy_move(cnn_score, heat, cm, self.copy_move_half_pairs,
                                                         kp, self.keypoint_half_inliers)
        threshold = self.threshold if jpeg_source else self.lossless_threshold
        return Analysis(
            score=score,
            verdict="manipulated" if score >= threshold else "authentic",
            threshold=threshold,
            patch_scores=scores,
            coords=coords,
            heatmap=heat,
            pixel_threshold=self.pixel_threshold,
            timing_ms={"features": round((t1 - t0) * 1e3, 2), "model": round((t2 - t1) * 1e3, 2),
                       "heatmap": round((t3 - t2) * 1e3, 2), "copy_move": round((t4 - t3) * 1e3, 2),
                       "keypoint_copy_move": round((t5 - t4) * 1e3, 2), "patches": len(coords)},
            cnn_score=cnn_score,
            copy_move=cm,
            copy_move_score=cm_score,
            keypoint_copy_move=kp,
            keypoint_copy_move_score=kp_score,
        )


def with_copy_move(cnn_score: float, heat: np.ndarray, cm: CopyMove | None, half_pairs: float | None,
                   kp: KeypointCopyMove | None = None, half_inliers: float | None = None
                   ) -> tuple[float, float, float, np.ndarray]:
    """(image score, block copy-move score, keypoint copy-move score, heatmap) once the
    copy-move evidence joins the CNN's: the highest of the scores, and each detector's
    matched regions drawn into the heatmap at its score. A detector that is None (or has
    no weight) adds nothing."""
    cm_score = 0.0 if cm is None or half_pairs is None else copy_move_score(cm.pairs, half_pairs)
    if cm_score > 0:
        heat = np.maximum(heat, cm.mask(*heat.shape).astype(np.float32) * np.float32(cm_score))
    kp_score = 0.0 if kp is None or half_inliers is None else keypoint_copy_move_score(kp.inliers, half_inliers)
    if kp_score > 0:
        heat = np.maximum(heat, kp.mask(*heat.shape).astype(np.float32) * np.float32(kp_score))
    return max(cnn_score, cm_score, kp_score), cm_score, kp_score, heat


def load_analyzer(models_dir: str | Path, name: str = MODEL_NAME, threads: int = 1,
                  threshold: float | None = None) -> ForensicsAnalyzer:
    """Load and verify ``<models_dir>/<name>.json`` (sha256, input spec); ModelError if unusable."""
    from edge_app.tflite_model import ModelError, load_model

    model = load_model(Path(models_dir) / f"{name}.json", num_threads=threads)
    try:
        return ForensicsAnalyzer(model, threshold)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{Path(models_dir) / (name + '.json')}: not a usable forensics model ({exc})") from None


# --------------------------------------------------------------------------- results


def _notes(img: LoadedImage) -> list[str]:
    notes = []
    if img.format != "JPEG":
        kind = "lossless" if img.lossless else "non-JPEG"
        notes.append(f"{kind} source ({img.format}): no JPEG history of its own; judged with the higher "
                     "threshold for non-JPEG files, and the model has little power on never-compressed images "
                     "(see models/reports/forensics.md): treat the verdict as unverified")
    if img.downscaled_from:
        w, h = img.downscaled_from
        notes.append(f"downscaled from {w}x{h} to {img.rgb.shape[1]}x{img.rgb.shape[0]} for analysis: "
                     "resampling weakens compression traces, so the score is less reliable")
    return notes


def _evidence(analysis: Analysis) -> dict:
    """What the score is made of: the CNN's patch traces and the copy-move matching."""
    out = {"cnn_score": None if analysis.cnn_score is None else round(float(analysis.cnn_score), 4)}
    cm = analysis.copy_move
    if cm is not None:
        out["copy_move"] = {"score": round(float(analysis.copy_move_score), 4), "pairs": cm.pairs,
                            "shift": list(cm.shift) if cm.shift else None}
    kp = analysis.keypoint_copy_move
    if kp is not None:
        out["keypoint_copy_move"] = {
            "score": round(float(analysis.keypoint_copy_move_score), 4), "inliers": kp.inliers,
            "shift": list(kp.shift) if kp.shift else None,
            "scale": None if kp.scale is None else round(kp.scale, 3),
            "rotation_deg": None if kp.rotation_deg is None else round(kp.rotation_deg, 1)}
    return out


def result_dict(img: LoadedImage, analysis: Analysis, analyzer: ForensicsAnalyzer) -> dict:
    return {
        "verdict": analysis.verdict,
        "score": round(float(analysis.score), 4),
        "threshold": round(float(analysis.threshold), 4),
        "width": img.width,
        "height": img.height,
        "analyzed_size": [int(img.rgb.shape[1]), int(img.rgb.shape[0])],
        "source": img.source_info,
        "heatmap": heatmap_summary(analysis.heatmap, analysis.pixel_threshold),
        "evidence": _evidence(analysis),
        "notes": _notes(img),
        "model": {"name": analyzer.name, "version": analyzer.version},
        "timing_ms": analysis.timing_ms,
    }


def error_dict(message: str) -> dict:
    return {"verdict": "error", "error": message, "score": None}


def check_image(source: str | Path | bytes, analyzer: ForensicsAnalyzer, *, max_pixels: int = MAX_PIXELS,
                analysis_max_pixels: int = 4_000_000, oversize: str = "downscale",
                name: str = "") -> tuple[dict, LoadedImage | None, Analysis | None]:
    """(result dict, image, analysis); bad input gives verdict "error" and Nones."""
    try:
        img = open_image(source, max_pixels, analysis_max_pixels, oversize, name)
    except ForensicsError as exc:
        return error_dict(str(exc)), None, None
    try:
        analysis = analyzer.analyze(img.rgb, jpeg_source=img.format == "JPEG")
    except (ForensicsError, ValueError, OSError, MemoryError) as exc:
        label = name or (str(source) if isinstance(source, (str, Path)) else "image data")
        return error_dict(f"{label}: analysis failed ({exc})"), img, None
    return result_dict(img, analysis, analyzer), img, analysis


_shared: dict = {}
_shared_lock = threading.Lock()


def _shared_analyzer(models_dir, name, threads, threshold) -> ForensicsAnalyzer:
    from edge_app.config import default_models_dir

    key = (str(models_dir or default_models_dir()), name, threads, threshold)
    if key not in _shared:
        _shared[key] = load_analyzer(key[0], name, threads, threshold)
    return _shared[key]


def check_image_bytes(data: bytes, *, config=None, models_dir: str | Path | None = None,
                      analyzer: ForensicsAnalyzer | None = None, name: str = "image data") -> dict:
    """Forensics of one encoded image (JPEG, PNG, ...) for the MQTT layer; never raises.

    Returns a JSON-ready dict: ``verdict`` authentic / manipulated / error, ``score``
    (P(manipulated) aggregated over patches) and ``threshold``, ``width``/``height``,
    ``source`` (format, estimated JPEG quality), ``heatmap`` (suspect fraction, bbox
    [x0, y0, x1, y1] and largest regions at the pixel threshold), ``notes`` (lossless
    source, downscaled), ``model`` and ``timing_ms``. On bad input or an unusable model:
    ``{"verdict": "error", "error": "...", "score": None}``.

    ``config`` is an ``edge_app.config.Config`` (its ``forensics`` section; defaults when
    None). The model is loaded once per (models dir, name, threads, threshold) and calls
    are serialised, so it is safe to call from a network thread.
    """
    t0 = time.perf_counter()
    try:
        from edge_app.config import Config

        fc = (config or Config()).forensics
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return error_dict(f"{name}: expected bytes, got {type(data).__name__}")
        if len(data) > fc.max_bytes:
            return error_dict(f"{name}: {len(data)} bytes, over the {fc.max_bytes}-byte limit; refused")
        with _shared_lock:
            if analyzer is None:
                models = models_dir or (config.resolved_models_dir() if config is not None else None)
                analyzer = _shared_analyzer(models, fc.model, fc.threads, fc.threshold or None)
            result, _, _ = check_image(bytes(data), analyzer, max_pixels=fc.max_pixels,
                                       analysis_max_pixels=fc.analysis_max_pixels, oversize=fc.oversize, name=name)
    except Exception as exc:  # the MQTT layer must always get an answer
        log.exception("forensics failed")
        return error_dict(f"{name}: forensics failed ({type(exc).__name__}: {exc})")
    result["elapsed_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return result


# --------------------------------------------------------------------------- pictures


def overlay(rgb: np.ndarray, heat: np.ndarray, threshold: float) -> np.ndarray:
    """The image with suspected regions (heat >= threshold) tinted red, stronger where
    the score is higher, and everything else slightly darkened."""
    img = rgb.astype(np.float32)
    hit = heat >= threshold
    alpha = np.where(hit, 0.35 + 0.45 * np.clip((heat - threshold) / max(1e-6, 1 - threshold), 0, 1), 0.0)
    red = np.array([255, 0, 0], np.float32)
    out = img * np.where(hit, 1.0, 0.8)[..., None]
    out = out * (1 - alpha[..., None]) + red * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_heatmap(rgb: np.ndarray, analysis: Analysis, title: str = "") -> Image.Image:
    """Side by side: the image with the suspected regions overlaid | its ELA (display form)."""
    h, w = rgb.shape[:2]
    left = Image.fromarray(overlay(rgb, analysis.heatmap, analysis.pixel_threshold))
    summary = heatmap_summary(analysis.heatmap, analysis.pixel_threshold)
    draw = ImageDraw.Draw(left)
    for region in summary["regions"]:
        draw.rectangle(region["bbox"], outline=(255, 255, 0), width=max(1, w // 300))
    right = Image.fromarray(error_level_display(np.ascontiguousarray(rgb), ELA_QUALITY))
    lines = [title or f"{analysis.verdict} score {analysis.score:.3f} (threshold {analysis.threshold:.3f})"]
    cm = analysis.copy_move
    if not title and cm is not None and cm.shift and analysis.copy_move_score >= 0.5:
        lines.append(f"copy-move: {cm.pairs} block pairs at shift {cm.shift[0]},{cm.shift[1]} (dy,dx)")
    kp = analysis.keypoint_copy_move
    if not title and kp is not None and kp.shift and analysis.keypoint_copy_move_score >= 0.5:
        lines.append(f"copy-move: {kp.inliers} keypoints, scale {kp.scale:.2f}, rotation {kp.rotation_deg:.0f} deg, "
                     f"shift {kp.shift[0]},{kp.shift[1]} (dy,dx)")
    bar = 4 + 14 * len(lines)
    canvas = Image.new("RGB", (2 * w + 8, h + bar), (0, 0, 0))
    canvas.paste(left, (0, bar))
    canvas.paste(right, (w + 8, bar))
    d = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        d.text((4, 3 + 14 * i), line, fill=(255, 255, 255))
    d.text((w + 12, 3), f"ELA q{ELA_QUALITY} (display scale)", fill=(255, 255, 255))
    return canvas
