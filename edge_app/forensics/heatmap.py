"""Pictures of a result: the image with each detector's region tinted beside its ELA
(``render_heatmap``), and the region mask at the original's size (``region_mask``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_app.features.ela import ELA_CLIP_LEVEL, ELA_QUALITY, ELA_SCALE, ElaWorkspace, error_level
from edge_app.forensics.analyzer import DETECTORS, Analysis
from edge_app.forensics.loading import LoadedImage


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
