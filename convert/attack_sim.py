"""Presentation-attack simulation: turn a live face image into a print or screen replay.

A print loses gamut and contrast, picks up halftone and paper texture, bends, and shows
its edge and the fingers holding it; a screen replay adds the pixel grid, moiré from
resampling, backlight gamma, glare, a bezel and the display's own JPEG. Each step is a
plain function of an RGB uint8 array and a numpy Generator, so the device's own code
and any training script get the same attacks from the same seed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


def print_look(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on paper: reduced contrast and gamut, warm paper white, halftone dots, texture."""
    x = rgb.astype(np.float32) / 255.0
    grey = x.mean(axis=2, keepdims=True)
    sat = rng.uniform(0.55, 0.85)
    x = grey + (x - grey) * sat  # printers reproduce less saturation
    lo, hi = rng.uniform(0.06, 0.14), rng.uniform(0.82, 0.93)
    x = lo + x * (hi - lo)  # ink black is not black, paper white is not white
    paper = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.97)], np.float32)
    x = x * paper
    h, w = x.shape[:2]
    period = rng.uniform(2.2, 3.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    screen = 0.5 + 0.5 * np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    x = x + (screen[..., None] - 0.5) * rng.uniform(0.04, 0.10)
    texture = np.asarray(Image.fromarray(_u8(rng.normal(128, 40, (h // 2 + 1, w // 2 + 1)))).resize((w, h), Image.BILINEAR))
    x = x + (texture[..., None].astype(np.float32) - 128) / 255.0 * rng.uniform(0.03, 0.07)
    return _u8(x * 255)


def screen_look(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image shown on a display: its JPEG, subpixel grid, gamma and glare."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(rng.integers(55, 85)))
    x = np.asarray(Image.open(buf).convert("RGB")).astype(np.float32) / 255.0
    h, w = x.shape[:2]
    x = np.power(x, rng.uniform(0.75, 0.95)) * rng.uniform(0.9, 1.05) + rng.uniform(0.02, 0.08)  # backlight
    pitch = rng.uniform(2.5, 4.5)
    angle = rng.uniform(-0.3, 0.3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    grid = 0.5 + 0.25 * np.cos(2 * np.pi * u / pitch) + 0.25 * np.cos(2 * np.pi * v / pitch)  # beats -> moiré
    x = x * (1 - rng.uniform(0.05, 0.15) * (1 - grid[..., None]))
    gx, gy = rng.uniform(0, w), rng.uniform(0, h)
    glare = np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (rng.uniform(0.15, 0.4) * w) ** 2)))
    x = x + glare[..., None] * rng.uniform(0.05, 0.25)
    return _u8(x * 255)


def present(medium: np.ndarray, scene: np.ndarray, rng: np.random.Generator, kind: str,
            fill: float | None = None) -> np.ndarray:
    """Hold ``medium`` (the print or screen image) up in ``scene``: border, tilt, fingers.

    ``fill`` is the medium's height as a share of the scene; near 1 the edges leave the
    frame (the full-frame attacks that are hardest to catch).
    """
    sh, sw = scene.shape[:2]
    fill = fill if fill is not None else rng.uniform(0.55, 1.15)
    mh = int(sh * fill)
    mw = int(mh * medium.shape[1] / medium.shape[0])
    border = int(mh * (rng.uniform(0.03, 0.08) if kind == "print" else rng.uniform(0.04, 0.1)))
    colour = (235, 232, 222) if kind == "print" else tuple(int(v) for v in rng.integers(5, 40, 3))
    card = Image.new("RGB", (mw + 2 * border, mh + 2 * border), colour)
    card.paste(Image.fromarray(medium).resize((mw, mh), Image.BILINEAR), (border, border))
    # perspective / bending: a mild random quad warp
    cw, ch = card.size
    d = rng.uniform(0.0, 0.08, 8) * np.array([cw, ch] * 4)
    quad = (d[0], d[1], d[2], ch - d[3], cw - d[4], ch - d[5], cw - d[6], d[7])
    card = card.transform(card.size, Image.QUAD, quad, Image.BILINEAR)
    mask = Image.new("L", card.size, 255).transform(card.size, Image.QUAD, quad, Image.NEAREST)
    out = Image.fromarray(scene).copy()
    x = int((sw - cw) / 2 + rng.uniform(-0.15, 0.15) * sw)
    y = int((sh - ch) / 2 + rng.uniform(-0.1, 0.1) * sh)
    out.paste(card, (x, y), mask)
    if rng.random() < 0.7:  # fingers holding the medium at its lower edge
        draw = ImageDraw.Draw(out)
        skin = tuple(int(v) for v in rng.integers([150, 100, 80], [230, 180, 150]))
        for k in range(int(rng.integers(1, 4))):
            fx = x + int(rng.uniform(0.1, 0.9) * cw)
            fy = y + ch - int(rng.uniform(0.0, 0.1) * ch)
            r = int(max(4, 0.035 * sh))
            draw.rounded_rectangle((fx - r, fy - 3 * r, fx + r, fy + 3 * r), radius=r, fill=skin)
    return np.asarray(out)


def recapture(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The camera looking at the attack: slight defocus and sensor noise."""
    im = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    x = np.asarray(im).astype(np.float32) + rng.normal(0, rng.uniform(1.0, 3.0), rgb.shape)
    return _u8(x)


def simulate(face_rgb: np.ndarray, scene: np.ndarray, kind: str, rng: np.random.Generator,
             fill: float | None = None) -> np.ndarray:
    """A camera frame of ``face_rgb`` presented as a ``kind`` ('print' or 'replay') attack."""
    if kind == "print":
        medium = print_look(face_rgb, rng)
    elif kind == "replay":
        medium = screen_look(face_rgb, rng)
    else:
        raise ValueError(f"unknown attack kind {kind!r}; use 'print' or 'replay'")
    return recapture(present(medium, scene, rng, kind, fill), rng)
