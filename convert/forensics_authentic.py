"""Authentic images of every kind, for calibrating the forensics thresholds and for
reporting false alarms: each item is read in place (never copied into the project) or made
here from a seed, and belongs to the ``cal`` (threshold) or ``test`` (report) part.

Kinds (what a user may hand ``edge-app forensics``):

- ``camera``: NUAA webcam frames (640x480 JPEG), split by person (subjects 1-8 cal, 9+ test).
- ``phone_web``: UTKFace crops and the live images of the real presentation-attack sources
  (phone, webcam and web photos, JPEG), split by file-name hash (by person folder where the
  source has them).
- ``lossless``: PNG files: the live PNG crops of one PAD source, scikit-image's sample photos.
- ``repeated_text``: repeated objects, periodic texture and text: scikit-image's coins,
  brick, text, page, checkerboard; rendered pages of text and screenshot-like lists; tiled
  walls; several near-identical objects in one scene (each instance photographed slightly
  differently: scale, turn, light, its own sensor noise), as JPEG or PNG.
- ``flat``: walls and sky: smooth gradients and low-frequency shading with sensor noise,
  some with a small object, JPEG.
- ``large``: camera and phone photos of the same part upscaled to 2, 6 and 12 MP, and 2x2
  collages of different photos, JPEG.
- ``scenes``: CASIA v1's authentic photos (animals, architecture, art, characters, indoor,
  nature, plants, scenes, texture; 384x256 JPEG), split as ``convert.forensics_data`` splits
  them by scene: the validation split calibrates, the test split is reported. Facades, fabrics
  and foliage repeat at slightly different scales and angles: the look-alikes a scaled-copy
  search must not take for copies.

scikit-image's ``grass`` and ``gravel`` are left out: they are synthesised textures, and
synthesis copies patches (the matchers find 2-3% of ``grass`` copied, verified).
"""

from __future__ import annotations

import glob
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from convert.datasets import datasets_root

PADCACHE = Path("/work/padcache")


@dataclass
class AuthItem:
    name: str
    kind: str
    source: str
    role: str  # cal / test
    load: Callable[[], bytes | Path]  # a file path, or encoded image bytes


def _role(key: str, test_share: float = 0.5) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_share else "cal"


def _spread(files: list, n: int) -> list:
    if len(files) <= n:
        return files
    idx = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in idx]


def _encode(rgb: np.ndarray, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=int(quality))
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def _path_items(kind, source, files, role_key, n_per_role) -> list[AuthItem]:
    by_role = {"cal": [], "test": []}
    for f in files:
        by_role[_role(role_key(f))].append(f)
    out = []
    for role, fs in by_role.items():
        for f in _spread(sorted(fs), n_per_role):
            out.append(AuthItem(f"{source}/{Path(f).name}", kind, source, role, (lambda p=f: Path(p))))
    return out


def _images(pattern: str) -> list[str]:
    return [f for f in glob.glob(pattern) if f.lower().endswith((".jpg", ".jpeg", ".png"))]


def camera_items(n: int = 40) -> list[AuthItem]:
    files = _images(str(datasets_root() / "nuaa" / "ClientRaw" / "*" / "*"))
    by_role = {"cal": [f for f in files if int(Path(f).parent.name) <= 8],
               "test": [f for f in files if int(Path(f).parent.name) > 8]}
    return [AuthItem(f"nuaa/{Path(f).name}", "camera", "nuaa", role, (lambda p=f: Path(p)))
            for role, fs in by_role.items() for f in _spread(sorted(fs), n)]


def phone_web_items(n: int = 14) -> list[AuthItem]:
    out = _path_items("phone_web", "utkface", _images(str(datasets_root() / "utkface" / "faces" / "*")),
                      lambda f: Path(f).name, 2 * n)
    pad = [
        ("vt_thuy_trang", "VT-Thuy-Trang+Face_Liveness_Detection@3b29173/data/*/real/*/*", lambda f: Path(f).parent.name),
        ("oulu_live", "JonathanSuryaS+Anti-Spoofing-@c79789f/data/processed_cropped/test_oulu/live/*", lambda f: Path(f).name[:6]),
        ("kaggle_live", "JonathanSuryaS+Anti-Spoofing-@c79789f/data/processed_cropped/test_kaggle/live/*", lambda f: Path(f).name),
        ("vinay_real", "VinayBR03+Face-Liveness-Detection@661b55e/data/test/real/*", lambda f: Path(f).name),
        ("reynara_live", "ReynaraEzra+Liveness-Detection@ff79a15/Dataset/Live/*", lambda f: Path(f).name),
    ]
    for source, pattern, key in pad:
        files = _images(str(PADCACHE / pattern))
        if files:
            out += _path_items("phone_web", source, files, key, n)
    return out


_SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "clock",
                   "hubble_deep_field", "immunohistochemistry", "retina", "moon")
_SKIMAGE_REPEATED = ("coins", "brick", "text", "page", "checkerboard", "cell", "logo", "colorwheel")


def _skimage(name: str) -> np.ndarray:
    import skimage.data as sd

    x = getattr(sd, name)()
    if x.ndim == 2:
        x = np.stack([x] * 3, -1)
    x = x[..., :3]
    if x.dtype != np.uint8:
        x = (255 * (x.astype(np.float64) / max(1e-9, float(x.max())))).astype(np.uint8)
    return np.ascontiguousarray(x)


def lossless_items(n: int = 20) -> list[AuthItem]:
    out = _path_items("lossless", "aksultan_real_png",
                      _images(str(PADCACHE / "AksultanMukhanbet+recognize_with_python@07ae905/dataset/real/*")),
                      lambda f: Path(f).name, n)
    for i, name in enumerate(_SKIMAGE_PHOTOS):
        out.append(AuthItem(f"skimage/{name}.png", "lossless", "skimage", "cal" if i % 2 else "test",
                            (lambda nm=name: _encode(_skimage(nm), "PNG"))))
    return out


# --------------------------------------------------------------------------- made here


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


_WORDS = ("the door camera sends each decision over mqtt to the hub and a person reads the heatmap when a photo "
          "looks wrong invoice total amount page section report figure table threshold access granted denied "
          "name date signature address phone email account balance transfer").split()


def text_page(seed: int) -> bytes:
    """A rendered document or screenshot: lines of words, some repeated UI rows."""
    rng = np.random.default_rng(seed)
    w, h = int(rng.choice([800, 1024, 1280])), int(rng.choice([600, 768, 1000]))
    bg = tuple(int(v) for v in rng.integers(225, 256, 3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    size = int(rng.integers(12, 26))
    font = _font(size)
    y = int(rng.integers(10, 40))
    ui = rng.random() < 0.5
    while y < h - size:
        if ui and rng.random() < 0.35:  # a row of identical buttons / icons
            x = 20
            label = str(rng.choice(_WORDS))
            for _ in range(int(rng.integers(3, 7))):
                d.rounded_rectangle([x, y, x + 110, y + size + 10], 6, fill=(70, 120, 200))
                d.text((x + 10, y + 4), label, fill=(255, 255, 255), font=font)
                x += 130
            y += size + 22
            continue
        line = " ".join(rng.choice(_WORDS, int(rng.integers(4, 14))))
        d.text((20, y), line, fill=tuple(int(v) for v in rng.integers(0, 60, 3)), font=font)
        y += int(size * rng.uniform(1.3, 1.8))
    rgb = np.asarray(im)
    if rng.random() < 0.5:
        return _encode(rgb, "PNG")
    return _encode(rgb, "JPEG", int(rng.integers(80, 96)))


def tiles(seed: int) -> bytes:
    """A tiled wall or floor photographed: a grid of tiles, uneven light, sensor noise, JPEG."""
    rng = np.random.default_rng(seed)
    w, h = 800, 600
    t = int(rng.integers(24, 80))
    base = rng.integers(60, 220, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    grout = ((yy % t) < 3) | ((xx % t) < 3)
    img[grout] = base * 0.5
    pattern = rng.random() < 0.5
    if pattern:  # a printed motif repeated on every tile
        motif = ((np.sin(xx * 2 * np.pi / t * 2) * np.cos(yy * 2 * np.pi / t * 2)) > 0.3)
        img[motif & ~grout] *= 0.75
    light = 0.75 + 0.35 * (xx / w) * (1 - 0.4 * yy / h)
    img *= light[..., None]
    img += rng.normal(0, float(rng.uniform(1, 4)), img.shape)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    return _encode(rgb, "JPEG", int(rng.integers(80, 96)))


def repeated_objects(seed: int, objects: list[Path]) -> bytes:
    """Several instances of one object in a scene (products on a shelf), each one
    photographed slightly differently: scale, turn, light and its own sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = 960, 640
    bg = np.asarray(Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(90, 200, 3))), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = bg * (0.8 + 0.3 * (xx / w))[..., None]
    obj = Image.open(objects[int(rng.integers(len(objects)))]).convert("RGB")
    side = int(rng.integers(140, 220))
    obj = obj.resize((side, side), Image.Resampling.BICUBIC)
    count = int(rng.integers(3, 6))
    gap = (w - 40) // count
    for i in range(count):
        inst = obj.resize((int(side * rng.uniform(0.96, 1.04)),) * 2, Image.Resampling.BICUBIC)
        inst = inst.rotate(float(rng.uniform(-3, 3)), Image.Resampling.BICUBIC, expand=False)
        a = np.asarray(inst, np.float32) * float(rng.uniform(0.9, 1.1))
        y0 = int(h / 2 - a.shape[0] / 2 + rng.integers(-20, 20))
        x0 = 20 + i * gap + int(rng.integers(0, max(1, gap - a.shape[1])))
        y1, x1 = min(h, y0 + a.shape[0]), min(w, x0 + a.shape[1])
        bg[y0:y1, x0:x1] = a[: y1 - y0, : x1 - x0]
    bg += rng.normal(0, float(rng.uniform(1.5, 3.5)), bg.shape)  # one exposure: every pixel its own noise
    rgb = np.clip(bg, 0, 255).astype(np.uint8)
    rgb = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(0.6)))
    if rng.random() < 0.3:
        return _encode(rgb, "PNG")
    return _encode(rgb, "JPEG", int(rng.integers(80, 96)))


def flat_scene(seed: int, objects: list[Path]) -> bytes:
    """A wall or sky: smooth gradient, low-frequency shading, sensor noise; sometimes a
    small object in it; JPEG."""
    rng = np.random.default_rng(seed)
    w, h = [(640, 480), (1024, 768), (1600, 1200)][int(rng.integers(3))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top = rng.integers(120, 255, 3).astype(np.float32)
    bottom = rng.integers(100, 255, 3).astype(np.float32)
    g = (yy / h)[..., None]
    img = top * (1 - g) + bottom * g
    low = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                     np.float32)
    img += ((low - 128) / 128 * float(rng.uniform(2, 12)))[..., None]
    if rng.random() < 0.5:
        obj = Image.open(objects[int(rng.integers(len(objects)))]).convert("RGB").resize((w // 6, w // 6))
        y0, x0 = int(rng.integers(0, h - w // 6)), int(rng.integers(0, w - w // 6))
        img[y0:y0 + w // 6, x0:x0 + w // 6] = np.asarray(obj, np.float32)
    img += rng.normal(0, float(rng.uniform(0.5, 3)), img.shape)
    return _encode(np.clip(img, 0, 255).astype(np.uint8), "JPEG", int(rng.integers(75, 96)))


def _rgb_of(item: AuthItem) -> np.ndarray:
    src = item.load()
    with Image.open(src if isinstance(src, Path) else io.BytesIO(src)) as im:
        return np.asarray(im.convert("RGB"))


def upscaled(item: AuthItem, megapixels: float) -> bytes:
    rgb = _rgb_of(item)
    h, w = rgb.shape[:2]
    f = (megapixels * 1e6 / (h * w)) ** 0.5
    im = Image.fromarray(rgb).resize((int(w * f), int(h * f)), Image.Resampling.LANCZOS)
    return _encode(np.asarray(im), "JPEG", 90)


def collage(items: list[AuthItem], side: int = 640) -> bytes:
    """2x2 different photos, each resized to side x 3/4 side, one JPEG."""
    hh = side * 3 // 4
    canvas = np.zeros((2 * hh, 2 * side, 3), np.uint8)
    for i, it in enumerate(items[:4]):
        im = Image.fromarray(_rgb_of(it)).resize((side, hh), Image.Resampling.LANCZOS)
        canvas[(i // 2) * hh:(i // 2 + 1) * hh, (i % 2) * side:(i % 2 + 1) * side] = np.asarray(im)
    return _encode(canvas, "JPEG", 90)


def made_items(n: int = 16) -> list[AuthItem]:
    objects = sorted(Path(f) for f in _images(str(datasets_root() / "utkface" / "faces" / "*")))[::50]
    out = []
    for i, name in enumerate(_SKIMAGE_REPEATED):
        out.append(AuthItem(f"skimage/{name}", "repeated_text", "skimage", "cal" if i % 2 else "test",
                            (lambda nm=name: _encode(_skimage(nm), "PNG"))))
    for i in range(n):
        role = "cal" if i % 2 else "test"
        out.append(AuthItem(f"text_page/{i}", "repeated_text", "rendered_text", role, (lambda s=i: text_page(1000 + s))))
        out.append(AuthItem(f"tiles/{i}", "repeated_text", "tiles", role, (lambda s=i: tiles(2000 + s))))
        out.append(AuthItem(f"repeated_objects/{i}", "repeated_text", "repeated_objects", role,
                            (lambda s=i: repeated_objects(3000 + s, objects))))
        out.append(AuthItem(f"flat/{i}", "flat", "flat_scenes", role, (lambda s=i: flat_scene(4000 + s, objects))))
    return out


def large_items(base: list[AuthItem], per_size: int = 4) -> list[AuthItem]:
    out = []
    for role in ("cal", "test"):
        pool = [b for b in base if b.role == role and b.kind in ("camera", "phone_web")]
        pool = _spread(pool, per_size * 4 + 4)
        for mp_i, mp in enumerate((2, 6, 12)):
            for j in range(per_size):
                b = pool[(mp_i * per_size + j) % len(pool)]
                out.append(AuthItem(f"{b.name}@{mp}MP", "large", f"upscaled_{mp}MP", role,
                                    (lambda it=b, m=mp: upscaled(it, m))))
        for j in range(per_size):
            group = pool[j * 4:(j + 1) * 4]
            out.append(AuthItem(f"collage/{role}/{j}", "large", "collage_2x2", role, (lambda g=group: collage(g))))
    return out


def scene_items() -> list[AuthItem]:
    from convert.forensics_data import split_items

    items, _ = split_items()
    return [AuthItem(f"casia/{i.name}", "scenes", "casia_au", {"val": "cal", "test": "test"}[i.split],
                     (lambda p=i.path: Path(p)))
            for i in items if i.label == 0 and i.split in ("val", "test")]


def authentic_items() -> list[AuthItem]:
    base = camera_items() + phone_web_items() + lossless_items()
    return base + made_items() + large_items(base) + scene_items()
