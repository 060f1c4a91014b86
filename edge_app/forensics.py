"""Still-image forensics: is this photo manipulated, and where?

    image -> size guard (refuse over max_pixels, downscale over analysis_max_pixels)
          -> copy-move search on a fixed-size analysis image (edge_app.copy_move_search):
             block and keypoint matching propose transforms, each verified pixel by pixel
             (edge_app.copy_move_verify); evidence = verified area, a fraction of the image
          -> [when the metadata puts it in the score] recompress at a common JPEG quality ->
             ELA + wavelet residual -> int8 patch CNN -> a share-of-patches statistic
    each detector's statistic -> calibrated score, 0.5 exactly at its own threshold
    image score = the highest calibrated score; manipulated when >= threshold (0.5)
    regions = where a detector over its threshold marked the image (masks and boxes)

Every threshold was chosen on authentic photos of several kinds (camera frames, phone and
web photos, PNGs, repeated objects and text, flat walls and sky, up to 12 MP) for a stated
false-alarm rate; ``convert/calibrate_forensics.py`` writes them into the model's metadata
and models/reports/forensics.md reports the rates on held-out photos of each kind.

Why the recompression before the CNN: a data set (CASIA v1 above all) can save authentic
and tampered images at different JPEG qualities, and an ELA model then learns the
quantization table instead of the tampering; re-encoding every image at one quality
(``input.recompress_quality``) leaves the traces of its earlier history only.

``check_image_bytes`` is the entry point for the MQTT layer: it never raises for bad input.
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
from PIL import Image, ImageDraw, ImageFont

from edge_app.copy_move import CopyMove
from edge_app.copy_move_search import CopyMoveEvidence, SearchParams, find_copy_moves
from edge_app.keypoint_copy_move import KeypointCopyMove
from edge_app.images import MAX_PIXELS, ImageLoadError, decode_image, open_image_file, probe, rgb_array
from edge_app.features.ela import ELA_CLIP_LEVEL, ELA_QUALITY, ELA_SCALE, ElaWorkspace, error_level, error_level_normalized
from edge_app.features.wavelet import WAVELET, WAVELET_LEVEL, noise_residual_normalized

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
    """Image score from patch scores: ``max``, ``topK`` (mean of the K highest),
    ``qtopP`` (mean of the highest P percent, at least one patch), ``pP`` (the P-th
    percentile) or ``ctopK`` (contrast: sigmoid of the mean of the K highest patch logits
    minus the image's median patch logit).

    ``qtopP`` and ``pP`` do not grow with the image's size: an authentic photo's patch
    scores are one distribution, and the top 5% of it is the same for a crop and the
    whole, while the top 3 patches of 700 reach further up that distribution than the top 3
    of 77 (the cause of v0.4.0's false alarms on large photos)."""
    s = np.sort(np.asarray(patch_scores, np.float64))[::-1]
    if how.startswith("qtop"):
        k = max(1, int(round(float(how[4:]) / 100 * len(s))))
        return float(s[:k].mean())
    if how.startswith("p") and how[1:].replace(".", "").isdigit():
        return float(np.percentile(s, float(how[1:])))
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
            im, fmt, quantization = decode_image(fp, label, max_pixels)
        # the array is made once, at the size analysed: over the analysis limit straight
        # from the decoded image (a 12 MP RGB array is 36 MB that was only ever resized)
        try:
            if w * h > analysis_max_pixels:
                f = (analysis_max_pixels / (w * h)) ** 0.5
                size = max(MIN_SIDE, int(w * f)), max(MIN_SIDE, int(h * f))
                im = _lanczos_by_passes(im, size)
            rgb = rgb_array(im, label)
        finally:
            im.close()
    except ImageLoadError as exc:
        raise ForensicsError(str(exc)) from None
    except MemoryError:
        raise ForensicsError(f"{label}: not enough memory to decode and downscale it") from None
    q = estimate_jpeg_quality(quantization) if fmt == "JPEG" else None
    loaded = LoadedImage(rgb, w, h, fmt, q[0] if q else None, q[1] if q else None)
    if w * h > analysis_max_pixels:
        loaded.downscaled_from = (w, h)
    if min(loaded.rgb.shape[:2]) < MIN_SIDE:
        raise ForensicsError(f"{label}: image is {w}x{h}; forensics needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return loaded


def _lanczos_by_passes(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im.convert("RGB").resize(size, LANCZOS)``, the same pixels with less memory at once.

    Pillow resamples in two passes, horizontal first into an 8-bit image, then vertical;
    the horizontal pass treats every row on its own. Run here as separate calls (the
    horizontal one strip by strip, then the source closed before the vertical one), the
    result is bit-identical (tests/test_forensics.py compares) while a 12 MP source, its
    4000x3000 -> 2309x3000 intermediate and the output are never all held together:
    48 + 28 + 16 MB at once became at most 48 + 28 MB (issue 15). ``im`` is consumed.
    """
    w, h = im.size
    nw, nh = size
    try:
        if im.mode != "RGB":
            # LANCZOS on RGBA/LA premultiplies alpha: convert first, as the array path did
            rgb = im.convert("RGB")
            im.close()
            im = rgb
        if nw == w or nh == h:  # one pass only: Pillow does exactly this
            return im.resize(size, Image.Resampling.LANCZOS)
        temp = Image.new("RGB", (nw, h))
        for y in range(0, h, 256):
            strip = im.crop((0, y, w, min(h, y + 256)))
            temp.paste(strip.resize((nw, strip.height), Image.Resampling.LANCZOS), (0, y))
            strip.close()
        im.close()
        out = temp.resize(size, Image.Resampling.LANCZOS)
        temp.close()
        return out
    finally:
        im.close()


# --------------------------------------------------------------------------- model


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


def calibrated(raw: float, threshold: float) -> float:
    """A detector's raw statistic as a score that is 0.5 exactly at its calibrated threshold:
    for probabilities (CNN) the logit shifted by the threshold's, for areas a / (a + t)."""
    if raw <= 0:
        return 0.0
    return float(raw / (raw + threshold))


def calibrated_prob(p, threshold: float):
    """Probabilities shifted so that ``threshold`` maps to 0.5 (logit difference)."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return _sigmoid(np.log(p / (1 - p)) - np.log(t / (1 - t)))


def ela_patch_statistic(feats: np.ndarray, coords: list[tuple[int, int]], patch: int) -> np.ndarray:
    """Per patch: the mean |relative ELA| over its pixels (3 channels), from 8x8 block means."""
    rel = relative_features(feats)
    h, w = rel.shape[:2]
    hh, ww = h // 8 * 8, w // 8 * 8
    blocks = np.abs(rel[:hh, :ww, :3]).mean(axis=2).reshape(hh // 8, 8, ww // 8, 8).mean(axis=(1, 3))
    k = patch // 8
    return np.array([blocks[y // 8:y // 8 + k, x // 8:x // 8 + k].mean() for y, x in coords], np.float32)


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
        return _sigmoid(logits).astype(np.float32), coords

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
    from edge_app.keypoint_copy_move import INSTALL_HINT, available
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


# --------------------------------------------------------------------------- results


def _notes(img: LoadedImage, analysis: Analysis | None = None) -> list[str]:
    notes = []
    if img.format != "JPEG" and analysis is not None and analysis.cnn_in_score:
        kind = "lossless" if img.lossless else "non-JPEG"
        notes.append(f"{kind} source ({img.format}): no JPEG history of its own; the compression-trace CNN has "
                     "little power on never-compressed images (see models/reports/forensics.md)")
    if img.downscaled_from:
        w, h = img.downscaled_from
        notes.append(f"size guard: {w}x{h} ({w * h / 1e6:.1f} MP) is over the analysis limit, downscaled to "
                     f"{img.rgb.shape[1]}x{img.rgb.shape[0]} for analysis; regions are in the original's pixels")
    if analysis is not None and analysis.copy_moves is not None and analysis.copy_moves.factor > 1:
        aw, ah = analysis.copy_moves.analysis_size
        notes.append(f"copy-move search ran at {aw}x{ah} (fixed analysis size): copies smaller than about "
                     f"{100 * analyzer_min_area(analysis):.2f}% of the image are not claimed")
    return notes


def analyzer_min_area(analysis: Analysis) -> float:
    return analysis.copy_moves.min_area


def mask_rle(mask: np.ndarray, max_side: int = 256) -> dict:
    """A bool mask as a run-length code on a grid of at most ``max_side`` pixels a side:
    ``counts`` alternate runs of 0 and 1 in row-major order, starting with 0s;
    ``size`` is the grid's [width, height]; one grid cell covers ``cell`` image pixels a side."""
    h, w = mask.shape
    cell = max(1, -(-max(h, w) // max_side))
    gh, gw = -(-h // cell), -(-w // cell)
    pad = np.zeros((gh * cell, gw * cell), bool)
    pad[:h, :w] = mask
    grid = pad.reshape(gh, cell, gw, cell).any(axis=(1, 3)).ravel()
    change = np.flatnonzero(np.diff(grid.astype(np.int8))) + 1
    edges = np.concatenate([[0], change, [grid.size]])
    counts = np.diff(edges).tolist()
    if grid.size and grid[0]:
        counts = [0] + counts
    return {"size": [int(gw), int(gh)], "cell": int(cell), "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """The grid mask (bool, (height, width) of ``rle['size']``) back from ``mask_rle``."""
    gw, gh = rle["size"]
    flat = np.zeros(gw * gh, bool)
    pos, val = 0, False
    for c in rle["counts"]:
        flat[pos:pos + c] = val
        pos += c
        val = not val
    return flat.reshape(gh, gw)


def _box(mask: np.ndarray, fx: float, fy: float) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min() * fx), int(ys.min() * fy), int(np.ceil((xs.max() + 1) * fx)), int(np.ceil((ys.max() + 1) * fy))]


def _regions(img: LoadedImage, analysis: Analysis) -> list[dict]:
    """Per detector over its threshold: bbox in the original's pixels, area, RLE mask."""
    h, w = analysis.heatmap.shape
    fx, fy = img.width / w, img.height / h
    out = []
    for name in DETECTORS:
        m = analysis.masks.get(name)
        if m is None or not m.any():
            continue
        out.append({"detector": name, "bbox": _box(m, fx, fy), "area_fraction": round(float(m.mean()), 4),
                    "mask_rle": mask_rle(m)})
    return out


def _evidence(analysis: Analysis) -> dict:
    """What the score is made of: each detector's calibrated score (0.5 = its threshold)."""
    out = {"cnn_score": None if analysis.cnn_score is None else round(float(analysis.cnn_score), 4),
           "cnn_in_score": analysis.cnn_in_score}
    cms = analysis.copy_moves
    if cms is not None:
        out["copy_move"] = {"score": round(float(analysis.copy_move_score), 4), **cms.describe("block")}
        out["keypoint_copy_move"] = {"score": round(float(analysis.keypoint_copy_move_score), 4),
                                     **cms.describe("keypoint")}
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
        "regions": _regions(img, analysis),
        "evidence": _evidence(analysis),
        "notes": _notes(img, analysis),
        "model": {"name": analyzer.name, "version": analyzer.version},
        "timing_ms": analysis.timing_ms,
    }


def error_dict(message: str) -> dict:
    return {"verdict": "error", "error": message, "score": None}


def check_image(source: str | Path | bytes, analyzer: ForensicsAnalyzer, *, max_pixels: int = MAX_PIXELS,
                analysis_max_pixels: int = 4_000_000, oversize: str = "downscale",
                name: str = "", progress=None) -> tuple[dict, LoadedImage | None, Analysis | None]:
    """(result dict, image, analysis); bad input gives verdict "error" and Nones."""
    try:
        img = open_image(source, max_pixels, analysis_max_pixels, oversize, name)
    except ForensicsError as exc:
        return error_dict(str(exc)), None, None
    try:
        analysis = analyzer.analyze(img.rgb, jpeg_source=img.format == "JPEG", progress=progress)
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


# detector -> (tint colour, legend text); source and copy of a copy-move share a colour
LEGEND = {
    "block_copy_move": ((255, 0, 255), "copy-move found by block matching (source and copy)"),
    "keypoint_copy_move": ((0, 200, 255), "copy-move found by keypoints (source and copy)"),
    "cnn": ((255, 40, 40), "compression/noise traces (patch CNN)"),
}
OVERLAY_ALPHA = 0.4


def overlay(rgb: np.ndarray, masks: dict[str, np.ndarray], alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The image with each detector's region (over its threshold) tinted in its colour at
    ``alpha``, the region's outline drawn solid; the image stays readable underneath."""
    import cv2

    # only the tinted pixels go through float32 (the whole image at 4 MP was 48 MB): the
    # same arithmetic per pixel, tints compounding in float32 where regions overlap
    shown = [(name, m) for name, m in masks.items() if m is not None and m.any()]
    out = rgb.copy()
    if shown:
        union = np.zeros(rgb.shape[:2], bool)
        for _, m in shown:
            union |= m
        vals = rgb[union].astype(np.float32)
        for name, m in shown:
            sel = m[union]
            colour = np.array(LEGEND[name][0], np.float32)
            vals[sel] = vals[sel] * (1 - alpha) + colour * alpha
        out[union] = np.clip(vals + 0.5, 0, 255).astype(np.uint8)
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for name, m in masks.items():
        if m is None or not m.any():
            continue
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, LEGEND[name][0], thick)
    return out


_MCU_ROWS = 16  # 4:2:0 JPEG: one MCU row is 16 pixel rows
_PANEL_STRIP_ROWS = 256


def _error_level_by_strips(rgb: np.ndarray) -> np.ndarray:
    """``error_level(rgb, ELA_QUALITY)`` coded 256 rows at a time, each with one MCU row of
    context on its inner sides (the plan the turbojpeg backend codes large images by, which
    its self-check holds to Pillow's whole-image maps): the codec's buffers then stay a
    strip's size (a 4 MP image kept 25 MB of them after the picture was drawn)."""
    h = rgb.shape[0]
    out = np.empty(rgb.shape, np.uint8)
    ws = ElaWorkspace(threads=1)  # this call's alone: its buffers go with it
    for keep0 in range(0, h, _PANEL_STRIP_ROWS):
        keep1 = min(h, keep0 + _PANEL_STRIP_ROWS)
        start, stop = max(0, keep0 - _MCU_ROWS), min(h, keep1 + _MCU_ROWS)
        out[keep0:keep1] = error_level(rgb[start:stop], ELA_QUALITY, workspace=ws)[keep0 - start:keep1 - start]
    return out


def ela_panel(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(ELA at quality 90 as a grey picture that shows, its scale in grey levels): the
    mean over R, G, B (colour speckle from chroma subsampling says little to a person),
    divided by its own 99.5th percentile (not its maximum, which one bright edge sets),
    gamma 0.6."""
    grey, scale = _ela_grey(rgb)
    return np.repeat(grey[..., None], 3, axis=2), scale


def _ela_grey(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """``ela_panel``'s picture as one uint8 channel (its three are equal)."""
    levels = _error_level_by_strips(np.ascontiguousarray(rgb))
    # The picture is a function of each pixel's clipped level sum: the mean of three
    # min(level / 32, 1) is float32(k / 32) / 3 for k = the sum of min(level, 32) (0..96;
    # the float32 sum of three multiples of 1/32 below 1 is exact). So a uint8 map of k and
    # 97-entry tables give the same pixels as the float32 maps (16 MB each at 4 MP, and
    # three of them at once with the percentile's copy; issue 15).
    clip = int(ELA_CLIP_LEVEL)
    k = np.zeros(levels.shape[:2], np.uint8)
    for c in range(3):
        k += np.minimum(levels[..., c], np.uint8(clip))
    del levels
    table = (np.arange(3 * clip + 1, dtype=np.float32) * np.float32(ELA_SCALE)) / np.float32(3)
    ela = table[k]
    top = float(np.percentile(ela, 99.5, overwrite_input=True))
    del ela
    disp = np.clip(table / max(top, 1e-6), 0, 1) ** 0.6
    grey = (disp * 255 + 0.5).astype(np.uint8)[k]
    return grey, top * 32


def region_mask(analysis: Analysis, img: LoadedImage) -> Image.Image:
    """An 8-bit mask at the original image's size: 255 where a detector over its threshold
    marked the region (nothing on an ``authentic`` verdict)."""
    h, w = analysis.heatmap.shape
    m = np.zeros((h, w), bool)
    if analysis.verdict == "manipulated":
        for mask in analysis.masks.values():
            m |= mask
    out = Image.fromarray(m.astype(np.uint8) * 255)
    return out if (w, h) == (img.width, img.height) else out.resize((img.width, img.height), Image.Resampling.NEAREST)


def render_heatmap(rgb: np.ndarray, analysis: Analysis, title: str = "") -> Image.Image:
    """Side by side: the image with each detector's region over its threshold tinted (with a
    legend saying which detector marked what) | its ELA, scaled to show. An ``authentic``
    verdict draws no region."""
    h, w = rgb.shape[:2]
    shown = {n: m for n, m in analysis.masks.items() if m.any()} if analysis.verdict == "manipulated" else {}
    # panels at a size a person reads: small images enlarged, huge ones reduced; each panel
    # is reduced as soon as it is drawn, so that a 4 MP image's full-size panels (16 MB
    # each as Pillow images, beside their arrays) are never all held at once (issue 15)
    zoom = min(1600 / w, max(1.0, 480 / w))
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    resample = Image.Resampling.NEAREST if zoom > 1 else Image.Resampling.LANCZOS

    def shown_size(arr: np.ndarray) -> Image.Image:
        im = Image.fromarray(arr)
        return im if zoom == 1.0 else im.resize(size, resample)

    left = shown_size(overlay(rgb, shown))
    # the ELA panel is grey: reduced as one channel, then made RGB (resampling treats each
    # channel alike, so the pixels are those of the RGB panel reduced)
    right_grey, top = _ela_grey(rgb)
    right = shown_size(right_grey).convert("RGB")
    del right_grey
    w, h = left.size
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the bitmap font
        font = ImageFont.load_default()
    lines = [title or f"{analysis.verdict.upper()}  score {analysis.score:.3f} (threshold {analysis.threshold:.3f})"]
    cms = analysis.copy_moves
    if cms is not None:
        for name, which in (("block_copy_move", "block"), ("keypoint_copy_move", "keypoint")):
            if name in shown:
                d = cms.describe(which)
                lines.append(f"{LEGEND[name][1]}: shift {d['shift'][0]},{d['shift'][1]} (dy,dx), scale "
                             f"{d['scale']:.2f}, rotation {d['rotation_deg']:.0f} deg, "
                             f"{100 * d['verified_area']:.1f}% of the image verified pixel by pixel")
    bar = 6 + 14 * len(lines)
    legend_rows = [(LEGEND[n][0], LEGEND[n][1]) for n in DETECTORS if n in shown]
    if not legend_rows:
        legend_rows = [(None, "no region is over its detector's threshold: nothing is marked")]
    legend_rows.append((None, f"right: ELA q{ELA_QUALITY}, scaled to its 99.5th percentile ({top:.1f} grey levels) "
                              "- bright = changes more on re-saving (edges, texture, or a pasted region)"))
    foot = 6 + 14 * len(legend_rows)
    canvas = Image.new("RGB", (2 * w + 8, h + bar + foot), (0, 0, 0))
    canvas.paste(left, (0, bar))
    canvas.paste(right, (w + 8, bar))
    d = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        d.text((4, 3 + 14 * i), line, fill=(255, 255, 255), font=font)
    y = h + bar + 4
    for colour, text in legend_rows:
        x = 4
        if colour is not None:
            d.rectangle([x, y + 1, x + 10, y + 11], fill=colour)
            x += 16
        d.text((x, y), text, fill=(230, 230, 230), font=font)
        y += 14
    return canvas
