"""Presentation-attack simulation: turn a live face image into a print or screen replay.

A print loses gamut and contrast, picks up halftone and paper texture, bends, and shows
its edge and the fingers holding it; a screen replay adds the pixel grid, moiré from
resampling, backlight gamma, glare, a bezel and the display's own JPEG. Each step is a
plain function of an RGB uint8 array and a numpy Generator, so every training script
gets the same attacks from the same seed.

Two ways of presenting the medium to the camera:

- ``present``: the print or phone is held up in a scene; its border, tilt and the
  fingers holding it are in view (an easy cue for a model with context).
- ``present_full``: the medium fills the whole frame, no edge, bezel or finger in view
  (a print or a tablet held close to the camera). These are the attacks that get
  through a model that only learned edges; only the medium's own look gives them away.

``camera`` is the terminal's camera (exposure, white balance, defocus, sensor noise,
its JPEG); live composed frames (``compose_live``) and attacks go through the same
camera model so that the camera is never a cue for the class.

The medium is rendered at the frame's resolution: periodic patterns finer than two
pixels (print dot screens, display pixel pitch) are evaluated at pixel centres and
alias into the low-frequency moiré a camera records.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ATTACK_STYLES = ("print_edge", "print_full", "replay_edge", "replay_full")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _grid_cached(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return _grid_cached(int(h), int(w))


def _smooth_noise(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a small random grid upsampled bicubically."""
    gh, gw = max(2, int(cells * h / max(h, w))), max(2, int(cells * w / max(h, w)))
    small = rng.normal(0.0, 1.0, (gh, gw)).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, np.float32)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    return np.random.default_rng(20240611).standard_normal(1 << 22, dtype=np.float32)


def _normal_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Standard normal noise of ``shape``: a random window of a fixed bank (fast, seeded)."""
    n = int(np.prod(shape))
    bank = _noise_bank()
    if n > bank.size // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, bank.size - n))
    return bank[start : start + n].reshape(shape).copy()


def _tables(fn) -> list[int]:
    """A Pillow ``point`` table (3 x 256 entries) from ``fn(level in [0, 1], channel) -> [0, 1]``."""
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.concatenate([np.clip(fn(v, c) * 255 + 0.5, 0, 255) for c in range(3)]).astype(np.uint8).tolist()


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


# --------------------------------------------------------------------------- media


def print_look(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on paper: reduced contrast and gamut, dot gain, halftone, paper texture, sheen."""
    h, w = rgb.shape[:2]
    im = Image.fromarray(rgb)
    if rng.random() < 0.5:  # printed from a smaller picture or at a low printer resolution
        f = rng.uniform(0.35, 0.8)
        im = im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize((w, h), Image.BICUBIC)
    # tone as one table per channel: dot gain darkens midtones, ink black is not black,
    # paper white is not white and has its own tint
    gamma, lo, hi = rng.uniform(1.0, 1.35), rng.uniform(0.05, 0.16), rng.uniform(0.78, 0.94)
    paper = (1.0, rng.uniform(0.95, 1.0), rng.uniform(0.86, 0.98))
    im = im.point(_tables(lambda v, c: (lo + v ** gamma * (hi - lo)) * paper[c]))
    x = np.asarray(im, np.float32) * np.float32(1 / 255)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * np.float32(rng.uniform(0.5, 0.9))  # printers reproduce less saturation
    yy, xx = _grid(h, w)
    strength = rng.uniform(0.0, 0.09) if rng.random() < 0.8 else 0.0
    if strength > 0:  # a rotated dot screen; periods near 2 px alias into moiré
        period = np.float32(rng.uniform(1.6, 4.0))
        a = np.deg2rad(rng.uniform(0, 90))
        k = np.float32(2 * np.pi) / period
        u = (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))) * k
        v = (-xx * np.float32(np.sin(a)) + yy * np.float32(np.cos(a))) * k
        dots = np.cos(u) * np.cos(v) * np.float32(strength * 0.5)
        x += dots[..., None] * np.array([rng.uniform(0.6, 1.0) for _ in range(3)], np.float32)
    fibre = _smooth_noise(h, w, int(rng.integers(40, 120)), rng)
    x += (fibre * np.float32(rng.uniform(0.01, 0.035)))[..., None]
    x += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(0.003, 0.015))  # paper grain
    if rng.random() < 0.5:  # glossy photo paper: a soft sheen washes out part of the picture
        gx, gy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.2, 0.6) * max(h, w)
        sheen = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / np.float32(2 * r * r))
        x += (sheen * np.float32(rng.uniform(0.05, 0.3)))[..., None]
    return _u8(x * 255)


def screen_look(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image shown on a display: its JPEG, pixel grid and subpixels, gamma, tint, glare."""
    shown = Image.fromarray(_jpeg(rgb, int(rng.integers(50, 90))))
    h, w = rgb.shape[:2]
    # backlight gamma, brightness and black level, displays run cool: one table per channel
    gamma, gain, black = rng.uniform(0.7, 1.0), rng.uniform(0.85, 1.1), rng.uniform(0.02, 0.1)
    tint = (rng.uniform(0.88, 1.0), rng.uniform(0.94, 1.02), rng.uniform(1.0, 1.12))
    shown = shown.point(_tables(lambda v, c: (v ** gamma * gain + black) * tint[c]))
    x = np.asarray(shown, np.float32) * np.float32(1 / 255)
    sat = np.float32(rng.uniform(0.9, 1.3))
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * sat
    yy, xx = _grid(h, w)
    pitch = np.float32(rng.uniform(1.3, 4.5))  # display pixel pitch in camera pixels
    a = np.float32(rng.uniform(-0.25, 0.25))
    u = (xx * np.cos(a) + yy * np.sin(a)) / pitch
    v = (-xx * np.sin(a) + yy * np.cos(a)) / pitch
    depth = np.float32(rng.uniform(0.08, 0.35))
    # black matrix between pixels, and R, G, B stripes within each pixel
    rows = np.float32(1) - depth * np.float32(0.5) * (np.float32(1) + np.cos(np.float32(2 * np.pi) * v))
    for c in range(3):
        stripe = np.float32(0.5) * (np.float32(1) + np.cos(np.float32(2 * np.pi) * (u - np.float32(c / 3))))
        x[..., c] *= (np.float32(1) - depth + depth * stripe * np.float32(1.5)) * rows
    if rng.random() < 0.3:  # refresh / PWM banding
        band = np.cos(yy * np.float32(2 * np.pi / rng.uniform(20, 120)) + np.float32(rng.uniform(0, 6.3)))
        x *= (np.float32(1) + np.float32(rng.uniform(0.01, 0.05)) * band)[..., None]
    gx, gy = rng.uniform(0, w), rng.uniform(0, h)
    r = rng.uniform(0.15, 0.5) * max(h, w)
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / np.float32(2 * r * r))
    x += (glare * np.float32(rng.uniform(0.03, 0.3)))[..., None]
    if rng.random() < 0.4:  # reflection of the room on the glass
        ghost = _smooth_noise(h, w, int(rng.integers(4, 12)), rng)
        x += (ghost * np.float32(rng.uniform(0.02, 0.06)))[..., None]
    return _u8(x * 255)


# --------------------------------------------------------------------- presentation


def _bend(card: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    """A curved sheet: rows displaced sideways along a sine, with shading across the bend."""
    x = np.asarray(card, np.float32)
    h, w = x.shape[:2]
    phase = rng.uniform(0, np.pi)
    cols = np.arange(w, dtype=np.float32)
    shade = 1.0 + amount * np.sin(np.pi * cols / w * rng.uniform(0.8, 1.5) + phase).astype(np.float32)
    return Image.fromarray(_u8(x * shade[None, :, None]))


def _fingers(draw: ImageDraw.ImageDraw, x: int, y: int, cw: int, ch: int, sh: int, rng: np.random.Generator) -> None:
    r = rng.uniform(140, 235)
    g = r * rng.uniform(0.65, 0.85)
    skin = np.array([r, g, g * rng.uniform(0.75, 0.95)])
    r = int(max(4, rng.uniform(0.025, 0.045) * sh))
    side = rng.integers(0, 3)  # 0: bottom edge, 1: left edge, 2: right edge
    for _ in range(int(rng.integers(1, 5))):
        shade = tuple(int(v) for v in np.clip(skin * rng.uniform(0.85, 1.05), 0, 255))
        if side == 0:
            fx, fy = x + int(rng.uniform(0.1, 0.9) * cw), y + ch - int(rng.uniform(0.0, 0.08) * ch)
            box = (fx - r, fy - int(2.5 * r), fx + r, fy + int(3.5 * r))
        else:
            fy = y + int(rng.uniform(0.2, 0.9) * ch)
            fx = x + (int(rng.uniform(0.0, 0.06) * cw) if side == 1 else cw - int(rng.uniform(0.0, 0.06) * cw))
            box = (fx - int(3.5 * r), fy - r, fx + int(2.5 * r), fy + r)
        draw.rounded_rectangle(box, radius=r, fill=shade)


def present(medium: np.ndarray, scene: np.ndarray, rng: np.random.Generator, kind: str,
            fill: float | None = None) -> np.ndarray:
    """Hold ``medium`` (the print or screen image) up in ``scene``: border, tilt, fingers.

    ``fill`` is the medium's height as a share of the scene; near 1 the edges leave the
    frame (the full-frame attacks that are hardest to catch).
    """
    sh, sw = scene.shape[:2]
    fill = fill if fill is not None else rng.uniform(0.55, 1.15)
    mh = max(8, int(sh * fill))
    mw = max(8, int(mh * medium.shape[1] / medium.shape[0]))
    if kind == "print":
        border = int(mh * rng.uniform(0.0, 0.08))
        paper = rng.uniform(0.85, 0.97)
        colour = tuple(int(255 * paper * v) for v in (1.0, rng.uniform(0.96, 1.0), rng.uniform(0.9, 0.98)))
    else:
        border = int(mh * rng.uniform(0.03, 0.1))
        colour = tuple(int(v) for v in rng.integers(5, 45, 3))
    card = Image.new("RGB", (mw + 2 * border, mh + 2 * border), colour)
    card.paste(Image.fromarray(medium).resize((mw, mh), Image.BILINEAR), (border, border))
    if kind == "print" and rng.random() < 0.6:
        card = _bend(card, rng, rng.uniform(0.03, 0.15))
    # perspective: a mild random quad warp
    cw, ch = card.size
    d = rng.uniform(0.0, 0.08, 8) * np.array([cw, ch] * 4)
    quad = (d[0], d[1], d[2], ch - d[3], cw - d[4], ch - d[5], cw - d[6], d[7])
    card = card.transform(card.size, Image.QUAD, quad, Image.BILINEAR)
    mask = Image.new("L", card.size, 255).transform(card.size, Image.QUAD, quad, Image.NEAREST)
    out = Image.fromarray(scene).copy()
    x = int((sw - cw) / 2 + rng.uniform(-0.15, 0.15) * sw)
    y = int((sh - ch) / 2 + rng.uniform(-0.1, 0.1) * sh)
    out.paste(card, (x, y), mask)
    if rng.random() < 0.7:  # fingers holding the medium at an edge
        _fingers(ImageDraw.Draw(out), x, y, cw, ch, sh, rng)
    return np.asarray(out)


def present_full(medium: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, kind: str) -> np.ndarray:
    """The medium fills the whole frame of ``shape`` (h, w): no edge, bezel or finger in view."""
    h, w = shape
    mh, mw = medium.shape[:2]
    zoom = rng.uniform(1.02, 1.3)
    s = max(h / mh, w / mw) * zoom
    nh, nw = int(np.ceil(mh * s)), int(np.ceil(mw * s))
    big = Image.fromarray(medium).resize((nw, nh), Image.BILINEAR)
    ox, oy = int(rng.uniform(0, nw - w + 1)), int(rng.uniform(0, nh - h + 1))
    # a slight keystone that stays inside the enlarged medium (so no edge enters the frame)
    m = min(ox, oy, nw - w - ox, nh - h - oy)
    d = rng.uniform(0, max(m, 0), 8)
    quad = (ox + d[0], oy + d[1], ox + d[2], oy + h - d[3], ox + w - d[4], oy + h - d[5], ox + w - d[6], oy + d[7])
    frame = big.transform((w, h), Image.QUAD, quad, Image.BILINEAR)
    if kind == "print" and rng.random() < 0.6:
        frame = _bend(frame, rng, rng.uniform(0.03, 0.12))
    x = np.asarray(frame, np.float32)
    # light falls unevenly on a flat sheet / screen held close
    yy, xx = _grid(h, w)
    gx, gy = rng.normal(0, 0.25, 2)
    ramp = 1.0 + np.float32(gx) * (xx / w - 0.5) + np.float32(gy) * (yy / h - 0.5)
    return _u8(x * ramp[..., None])


# --------------------------------------------------------------- camera and scenes


def camera(rgb: np.ndarray, rng: np.random.Generator, jpeg: bool | None = None) -> np.ndarray:
    """The terminal's camera: exposure, white balance, defocus, sensor noise, maybe its JPEG."""
    im = Image.fromarray(rgb)
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        im = im.filter(ImageFilter.GaussianBlur(sigma))
    # exposure, white balance and tone curve as one table per channel
    gain = np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.9, 1.1)]) * rng.uniform(0.75, 1.25)
    gamma = rng.uniform(0.85, 1.15)
    x = np.asarray(im.point(_tables(lambda v, c: np.clip(v * gain[c], 0, 1) ** gamma)))
    # sensor noise: read noise plus shot noise growing with the signal
    read, shot = rng.uniform(0.8, 4.0), rng.uniform(0.0, 0.5)
    sigma_of = np.sqrt(read * read + shot * shot * np.arange(256, dtype=np.float32)).astype(np.float32)
    noisy = _normal_noise(x.shape, rng)
    noisy *= sigma_of[x]
    noisy += x
    out = _u8(noisy)
    if jpeg if jpeg is not None else rng.random() < 0.7:
        out = _jpeg(out, int(rng.integers(70, 96)))
    return out


def recapture(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The camera looking at the attack: slight defocus and sensor noise."""
    im = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    x = np.asarray(im).astype(np.float32) + rng.normal(0, rng.uniform(1.0, 3.0), rgb.shape)
    return _u8(x)


def _soft(im: Image.Image, factor: float) -> Image.Image:
    """Defocus by resampling down by ``factor`` and back up (cheaper than a wide Gaussian)."""
    w, h = im.size
    small = im.resize((max(4, int(w / factor)), max(4, int(h / factor))), Image.BILINEAR)
    return small.resize((w, h), Image.BILINEAR)


def synthetic_scene(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A wall with a light gradient and a few door/shelf-like rectangles."""
    sh, sw = h // 4, w // 4  # drawn at a quarter of the size: upsampling is the defocus
    yy, xx = _grid(sh, sw)
    base = rng.uniform(70, 200) + rng.uniform(-50, 50) * (xx / sw) + rng.uniform(-40, 40) * (yy / sh)
    tint = rng.uniform(0.85, 1.1, 3).astype(np.float32)
    im = Image.fromarray(_u8(base[..., None] * tint))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 5))):
        x0, y0 = int(rng.uniform(-0.2, 1.0) * sw), int(rng.uniform(-0.2, 1.0) * sh)
        x1, y1 = x0 + int(rng.uniform(0.05, 0.5) * sw), y0 + int(rng.uniform(0.1, 0.9) * sh)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(20, 235, 3)))
    x = np.asarray(im.resize((w, h), Image.BILINEAR), np.float32)
    x += _smooth_noise(h, w, 30, rng)[..., None] * np.float32(rng.uniform(2, 8))
    return _u8(x)


def photo_scene(photo: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A photograph (e.g. a CASIA authentic image) cut and scaled to an (h, w) background."""
    ph, pw = photo.shape[:2]
    s = max(h / ph, w / pw) * rng.uniform(1.0, 1.4)
    nh, nw = int(np.ceil(ph * s)), int(np.ceil(pw * s))
    big = Image.fromarray(photo).resize((nw, nh), Image.BILINEAR)
    ox, oy = int(rng.uniform(0, nw - w + 1)), int(rng.uniform(0, nh - h + 1))
    im = big.crop((ox, oy, ox + w, oy + h))
    if rng.random() < 0.5:  # the background is out of the camera's focus plane
        im = _soft(im, rng.uniform(1.5, 4.0))
    return np.asarray(im)


def compose_live(face: np.ndarray, scene: np.ndarray, rng: np.random.Generator,
                 height: float | None = None) -> np.ndarray:
    """A person in front of the camera, from an aligned face image pasted into ``scene``.

    The face image is scaled to ``height`` (share of the frame height) and blended in
    with a feathered ellipse, so no rectangular edge (a print cue) enters a live frame.
    """
    sh, sw = scene.shape[:2]
    height = height if height is not None else rng.uniform(0.35, 1.05)
    fh = max(16, int(sh * height))
    fw = max(16, int(fh * face.shape[1] / face.shape[0]))
    big = np.asarray(Image.fromarray(face).resize((fw, fh), Image.BICUBIC), np.float32)
    yy, xx = _grid(fh, fw)
    # a rounded-square (superellipse) mask keeps hair and chin; its wide feather leaves no edge
    p = np.float32(rng.uniform(2.5, 4.0))
    r = (np.abs((xx - fw / 2) / (fw * 0.5)) ** p + np.abs((yy - fh / 2) / (fh * 0.5)) ** p) ** (1 / p)
    alpha = np.clip((1.0 - r) / np.float32(rng.uniform(0.2, 0.35)), 0.0, 1.0)  # feathered edge
    alpha = alpha * alpha * (3 - 2 * alpha)
    cx = int(rng.uniform(0.3, 0.7) * sw)
    cy = int(rng.uniform(0.35, 0.6) * sh)
    x0, y0 = cx - fw // 2, cy - fh // 2
    out = scene.astype(np.float32).copy()
    # clip the pasted region to the frame
    fx0, fy0 = max(0, -x0), max(0, -y0)
    fx1, fy1 = min(fw, sw - x0), min(fh, sh - y0)
    if fx1 <= fx0 or fy1 <= fy0:
        return scene.copy()
    region = out[y0 + fy0 : y0 + fy1, x0 + fx0 : x0 + fx1]
    a = alpha[fy0:fy1, fx0:fx1, None]
    region[...] = region * (1 - a) + big[fy0:fy1, fx0:fx1] * a
    return _u8(out)


def make_medium(face_rgb: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "print":
        return print_look(face_rgb, rng)
    if kind == "replay":
        return screen_look(face_rgb, rng)
    raise ValueError(f"unknown attack kind {kind!r}; use 'print' or 'replay'")


def simulate(face_rgb: np.ndarray, scene: np.ndarray, kind: str, rng: np.random.Generator,
             fill: float | None = None) -> np.ndarray:
    """A camera frame of ``face_rgb`` presented as a ``kind`` ('print' or 'replay') attack."""
    medium = make_medium(face_rgb, kind, rng)
    return recapture(present(medium, scene, rng, kind, fill), rng)


def simulate_full(frame_rgb: np.ndarray, kind: str, rng: np.random.Generator,
                  shape: tuple[int, int] | None = None) -> np.ndarray:
    """A camera frame of a print or screen showing ``frame_rgb`` that fills the whole view.

    ``frame_rgb`` is a picture of a person (e.g. a live frame): printed or shown on a
    display, held close so that nothing but the medium is seen, and recaptured.
    """
    shape = shape or frame_rgb.shape[:2]
    medium = make_medium(frame_rgb, kind, rng)
    return camera(present_full(medium, shape, rng, kind), rng)


def simulate_style(face_rgb: np.ndarray, scene: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """One of ``ATTACK_STYLES``: ``<kind>_edge`` held up in ``scene``, ``<kind>_full`` filling the view.

    For ``_full`` styles ``face_rgb`` is shown as is (pass a frame of a person in a scene);
    for ``_edge`` styles it is the picture on the print or screen.
    """
    kind, how = style.split("_")
    if how == "full":
        return simulate_full(face_rgb, kind, rng, scene.shape[:2])
    medium = make_medium(face_rgb, kind, rng)
    return camera(present(medium, scene, rng, kind), rng)
