"""The JSON-ready result of one analysed image: verdict, scores, regions (boxes and run-length
masks in the original's pixels), heatmap summary, evidence per detector, notes, timing.
"""

from __future__ import annotations

import numpy as np

from edge_app.forensics.analyzer import DETECTORS, Analysis, ForensicsAnalyzer
from edge_app.forensics.loading import LoadedImage


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
