"""CASIA v1 for forensics: file-name parsing, ground-truth masks, a scene-disjoint split,
self-made manipulations with known masks, and cached feature maps.

    python -m convert.forensics_data [--quality Q]     # build the feature cache, print counts

**Names.** ``Sp_D_CND_A_pla0005_pla0023_0281.jpg``: D = spliced from a different image,
S = copy-move within one image; ``pla0005`` and ``pla0023`` are the source Au images
(category + number, ``Au/Au_pla_0005.jpg``); 0281 is the image id.

**Masks.** ``masks/{Sp,CM}/<name>_gt.png``. Most names match ``Sp/``; the rest are fixed by
``masks/FileNameCorrection.xlsx`` (read here with the standard library: an .xlsx is a zip of
XML, so the pipeline needs no openpyxl) or differ only in the order of the two sources or a
D/S swap, so images and masks are matched on (fields, id, set of sources). One file
(``Sp_D_NRN_A_sce0011_cha0011_0542``) is, per the correction sheet, identical to
``Au_cha_0011``: it is left out.

**Split.** An Au image and every tampered image that uses it as a source are one group
(union-find over shared sources); whole groups go to train / val / test, so no source scene
of a test image occurs in training. The threshold is chosen on val; test is only reported.

**Quality bias.** Every image is re-encoded at one JPEG quality before features are taken
(``edge_app.forensics.features.prepare``, the device's code). Self-made images are saved with the
quantization tables and chroma subsampling of a real CASIA image (authentic or tampered), and
each has an authentic control saved with the same tables, so their compression history is
the same on both sides.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import re
import sys
import time
import zipfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, JpegImagePlugin

from convert.datasets import REPO, datasets_root
from convert.forensics_common import RECOMPRESS_QUALITY, SPLIT_SEED
from edge_app.forensics.copy_move import find_copy_move
from edge_app.forensics.features import FEATURES, prepare
from edge_app.forensics.jpeg_quality import estimate_jpeg_quality
from edge_app.forensics.keypoint_copy_move import find_keypoint_copy_move

DATASET = "casia1"
CACHE = REPO / ".cache" / "forensics"
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
CACHE_VERSION = 5  # bump when the cached content changes (4: copy-move result in extra; 5: keypoint copy-move)

_NAME = re.compile(r"^Sp_([DS])_([A-Z]{3})_([A-Z])_([a-z]{3})(\d{4})_([a-z]{3})(\d{4})[_.](\d{4})$")
# typos in CASIA v1 source fields (a source category that does not exist)
_CATEGORY_FIXES = {"ant": "nat"}
EXCLUDED = {
    "Sp_D_NRN_A_sce0011_cha0011_0542": "identical to Au_cha_0011 (masks/FileNameCorrection.xlsx)",
}


@dataclass
class Item:
    name: str  # file stem as stored
    path: Path
    label: int  # 0 authentic, 1 manipulated
    kind: str  # authentic / splicing / copy-move (CASIA, corrected) ; self-made kinds too
    sources: tuple[str, ...]  # Au ids like "ani0049" this image derives from
    mask: Path | None = None
    split: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- names, masks


def read_xlsx_rows(path: Path) -> list[list[str]]:
    """Cell values of the first sheet of an .xlsx (shared strings and cached formula
    values), row by row; enough for FileNameCorrection.xlsx without openpyxl."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:
        strings = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns):
                strings.append("".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")))
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = {}
        for c in row.findall("m:c", ns):
            v = c.find("m:v", ns)
            if v is None or v.text is None:
                continue
            col = re.match(r"[A-Z]+", c.get("r", "A")).group(0)
            cells[col] = strings[int(v.text)] if c.get("t") == "s" else v.text
        if cells:
            width = max(ord(k[-1]) - ord("A") for k in cells) + 1
            rows.append([cells.get(chr(ord("A") + i), "") for i in range(width)])
    return rows


def name_corrections(root: Path) -> dict[str, str]:
    """Original stem -> corrected stem from masks/FileNameCorrection.xlsx (columns B, C)."""
    path = root / "masks" / "FileNameCorrection.xlsx"
    if not path.is_file():
        return {}
    fixes = {}
    for row in read_xlsx_rows(path):
        if len(row) >= 3 and row[1].lower().endswith(".jpg") and row[2].lower().endswith(".jpg"):
            fixes[row[1][:-4]] = row[2][:-4]
    return fixes


def parse_tampered(stem: str) -> dict | None:
    m = _NAME.match(stem)
    if not m:
        return None
    d_or_s, ops, place, c1, n1, c2, n2, num = m.groups()
    sources = tuple(_CATEGORY_FIXES.get(c, c) + n for c, n in ((c1, n1), (c2, n2)))
    return {"type": d_or_s, "ops": ops, "place": place, "sources": sources, "id": num}


def _match_key(info: dict) -> tuple:
    return (info["ops"], info["place"], info["id"], frozenset(info["sources"]))


def casia_items(root: Path | None = None) -> tuple[list[Item], dict]:
    """Every CASIA v1 image as an Item with corrected kind, sources and mask; plus notes."""
    root = root or datasets_root() / DATASET
    if not (root / "manifest.csv").is_file():
        raise FileNotFoundError(f"{root}/manifest.csv: CASIA v1 not found (set EDGE_APP_DATASETS)")
    fixes = name_corrections(root)
    masks = {}
    for sub in ("Sp", "CM"):
        folder = root / "masks" / sub
        for p in sorted(folder.glob("*_gt.png")) if folder.is_dir() else []:
            info = parse_tampered(p.name[:-7])
            if info:
                masks[_match_key(info)] = p
    items, notes = [], {"excluded": {}, "no_mask": [], "renamed": {}}
    import csv

    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        path = root / row["path"]
        stem = path.stem
        if row["label"] == "authentic":
            m = re.match(r"Au_([a-z]{3})_(\d{4})", stem)
            items.append(Item(stem, path, 0, "authentic", (m.group(1) + m.group(2),)))
            continue
        if stem in EXCLUDED:
            notes["excluded"][stem] = EXCLUDED[stem]
            continue
        fixed = fixes.get(stem, stem)
        if fixed != stem:
            notes["renamed"][stem] = fixed
        info = parse_tampered(fixed)
        if info is None:
            notes["excluded"][stem] = "file name does not parse"
            continue
        kind = "copy-move" if info["type"] == "S" else "splicing"
        mask = masks.get(_match_key(info))
        if mask is None:
            notes["no_mask"].append(stem)
        items.append(Item(stem, path, 1, kind, tuple(dict.fromkeys(info["sources"])), mask,
                          extra={"manifest_manipulation": row["manipulation"], "ops": info["ops"]}))
    return items, notes


def scene_split(items: list[Item], seed: int = SPLIT_SEED) -> dict:
    """Assign ``item.split`` so that groups sharing a source image stay together.

    Union-find over (image, its sources); groups are dealt, largest first, to the split
    furthest below its share of images. Returns a summary of the groups."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    for it in items:
        for s in it.sources:
            union("img:" + it.name, "src:" + s)
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[find("img:" + it.name)].append(it)
    rng = np.random.default_rng(seed)
    keys = sorted(groups)
    order = rng.permutation(len(keys))
    ordered = sorted((keys[i] for i in order), key=lambda k: -len(groups[k]))  # stable: random among equal sizes
    total = len(items)
    counts = dict.fromkeys(SPLIT_FRACTIONS, 0)
    for k in ordered:
        split = min(SPLIT_FRACTIONS, key=lambda s: counts[s] / (SPLIT_FRACTIONS[s] * total))
        for it in groups[k]:
            it.split = split
        counts[split] += len(groups[k])
    return {"groups": len(groups), "largest_group": max(len(g) for g in groups.values()), "images": counts}


def check_disjoint(items: list[Item]) -> None:
    """Raise if any source image occurs in two splits."""
    where: dict[str, set] = defaultdict(set)
    for it in items:
        for s in it.sources:
            where[s].add(it.split)
    leaks = {s: sorted(v) for s, v in where.items() if len(v) > 1}
    if leaks:
        raise AssertionError(f"sources in more than one split: {dict(list(leaks.items())[:5])}")


# --------------------------------------------------------------------------- images


def jpeg_history(path: Path) -> dict:
    """Estimated quality, standard-table flag and chroma subsampling of a JPEG file."""
    with Image.open(path) as im:
        q = estimate_jpeg_quality(getattr(im, "quantization", None))
        sampling = JpegImagePlugin.get_sampling(im) if im.format == "JPEG" else -1
        qtables = {k: list(v) for k, v in im.quantization.items()} if im.format == "JPEG" else None
    return {"quality": q[0] if q else None, "standard": q[1] if q else None,
            "subsampling": {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(sampling, "other"),
            "sampling": sampling, "qtables": qtables}


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    with Image.open(path) as im:
        m = np.asarray(im.convert("L")) > 127
    return m if m.shape == shape else None


def save_like(rgb: np.ndarray, history: dict) -> bytes:
    """JPEG bytes of ``rgb`` with another file's quantization tables and subsampling."""
    buf = io.BytesIO()
    sampling = history["sampling"] if history["sampling"] in (0, 1, 2) else 2
    Image.fromarray(rgb).save(buf, format="JPEG", qtables=history["qtables"], subsampling=sampling)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- self-made


def random_region(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float32 alpha (h, w): a polygon, ellipse or rectangle of 3-20% of the image,
    hard-edged or feathered by 1-3 pixels."""
    area = rng.uniform(0.03, 0.20) * h * w
    aspect = rng.uniform(0.5, 2.0)
    bh = int(min(h - 8, max(16, (area / aspect) ** 0.5)))
    bw = int(min(w - 8, max(16, (area * aspect) ** 0.5)))
    y0 = int(rng.integers(0, h - bh + 1))
    x0 = int(rng.integers(0, w - bw + 1))
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    kind = rng.choice(["polygon", "ellipse", "rect"], p=[0.5, 0.3, 0.2])
    if kind == "polygon":
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.55, 1.0, n)
        cx, cy = x0 + bw / 2, y0 + bh / 2
        pts = [(cx + r * bw / 2 * np.cos(a), cy + r * bh / 2 * np.sin(a)) for a, r in zip(ang, rad)]
        draw.polygon(pts, fill=255)
    elif kind == "ellipse":
        draw.ellipse([x0, y0, x0 + bw, y0 + bh], fill=255)
    else:
        draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=255)
    if rng.random() < 0.4:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0))))
    return np.asarray(canvas, np.float32) / 255.0


def _bbox(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.where(alpha > 0)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _transform(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Resample the donor sometimes (scale or rotation), as editors do."""
    r = rng.random()
    im = Image.fromarray(rgb)
    if r < 0.25:
        s = float(rng.uniform(0.75, 1.35))
        im = im.resize((max(64, int(im.width * s)), max(64, int(im.height * s))), Image.Resampling.BICUBIC)
        return np.asarray(im), f"scale {s:.2f}"
    if r < 0.40:
        a = float(rng.uniform(-25, 25))
        return np.asarray(im.rotate(a, Image.Resampling.BICUBIC)), f"rotate {a:.0f}"
    return rgb, "none"


def _centre_in_original(how: str, original: tuple[int, int], resampled: tuple[int, int],
                        y: float, x: float) -> tuple[float, float]:
    """(y, x) in the original image of the point (y, x) of its ``_transform``-ed version."""
    (h, w), (rh, rw) = original, resampled
    if how.startswith("scale"):
        return y * h / rh, x * w / rw
    if how.startswith("rotate"):
        # PIL's rotate turns counter-clockwise about the centre, keeping the size
        a = np.radians(float(how.split()[1]))
        dx, dy = x - w / 2, y - h / 2
        return h / 2 + np.sin(a) * dx + np.cos(a) * dy, w / 2 + np.cos(a) * dx - np.sin(a) * dy
    return y, x


def make_manipulation(target: np.ndarray, donor: np.ndarray | None, rng: np.random.Generator,
                      separate: bool = False) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Splice (donor given) or copy-move (donor None): (image, mask, info) or None.

    A copy-move's source must lie half the region's size away from where it is pasted, so
    that the image holds two instances. With ``separate`` that holds for a scaled or rotated
    copy too (its source measured in the original's coordinates); without it (the rule the
    forensics CNN's training data was drawn with) a resampled copy may land on its own
    source, overwriting it: a region resampled in place, not a copy-move."""
    h, w = target.shape[:2]
    alpha = random_region(h, w, rng)
    y0, x0, y1, x1 = _bbox(alpha)
    bh, bw = y1 - y0, x1 - x0
    src, how = _transform(target if donor is None else donor, rng)
    sh, sw = src.shape[:2]
    if sh < bh or sw < bw:
        return None
    for _ in range(20):
        sy = int(rng.integers(0, sh - bh + 1))
        sx = int(rng.integers(0, sw - bw + 1))
        if donor is not None or (how != "none" and not separate):
            break
        oy, ox = _centre_in_original(how, (h, w), (sh, sw), sy + bh / 2, sx + bw / 2)
        if abs(oy - (y0 + bh / 2)) + abs(ox - (x0 + bw / 2)) >= max(bh, bw) // 2:
            break
    else:
        return None
    patch = src[sy:sy + bh, sx:sx + bw].astype(np.float32)
    a = alpha[y0:y1, x0:x1, None]
    out = target.astype(np.float32).copy()
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - a) + patch * a
    info = {"kind": "self-splice" if donor is not None else "self-copy-move", "transform": how,
            "feathered": bool(((alpha > 0) & (alpha < 1)).any()), "area": round(float((alpha >= 0.5).mean()), 4)}
    if donor is None:  # (y, x) centres, original pixels: where the copy came from and where it went
        info["source_centre"] = [round(float(v), 1) for v in _centre_in_original(how, (h, w), (sh, sw),
                                                                                  sy + bh / 2, sx + bw / 2)]
        info["paste_centre"] = [round(y0 + bh / 2, 1), round(x0 + bw / 2, 1)]
        info["region_size"] = max(bh, bw)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), alpha >= 0.5, info


# --------------------------------------------------------------------------- cached sets


@dataclass
class Sample:
    """One image ready for training/evaluation: features of the recompressed image."""

    name: str
    label: int
    kind: str
    split: str
    feats: np.ndarray  # float16 (H, W, C)
    mask: np.ndarray | None  # bool (H, W) or None
    quality: int | None  # estimated source JPEG quality
    subsampling: str = ""
    extra: dict = field(default_factory=dict)


def _sample_from_rgb(name, label, kind, split, rgb, mask, history, q, extra=None) -> Sample:
    feats = prepare(rgb, q).astype(np.float16)
    # copy-move runs on the pixels as decoded, before the common recompression, as on the device
    extra = dict(extra or {}, copy_move=find_copy_move(rgb), keypoint_copy_move=find_keypoint_copy_move(rgb))
    return Sample(name, label, kind, split, feats, mask, history.get("quality"), history.get("subsampling", ""),
                  extra)


def _cache_path(tag: str, q: int) -> Path:
    return CACHE / f"v{CACHE_VERSION}_q{q}" / f"{tag}.pkl"


def _cached(tag: str, q: int, build) -> list[Sample]:
    path = _cache_path(tag, q)
    if path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    t0 = time.time()
    samples = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(samples, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    print(f"  cached {len(samples)} {tag} images at q{q} in {time.time() - t0:.0f}s -> {path}", file=sys.stderr,
          flush=True)
    return samples


def split_items() -> tuple[list[Item], dict]:
    items, notes = casia_items()
    notes["split"] = scene_split(items)
    check_disjoint(items)
    return items, notes


def casia_set(items: list[Item], split: str, q: int) -> list[Sample]:
    def build():
        out = []
        for it in (i for i in items if i.split == split):
            rgb = load_rgb(it.path)
            mask = load_mask(it.mask, rgb.shape[:2]) if it.mask else None
            hist = jpeg_history(it.path)
            out.append(_sample_from_rgb(it.name, it.label, it.kind, split, rgb, mask, hist, q,
                                        {"has_mask": mask is not None, "standard_tables": hist["standard"]}))
        return out

    return _cached(f"casia_{split}", q, build)


def _histories(items: list[Item], split: str, label: int | None = None) -> list[dict]:
    return [jpeg_history(i.path) | {"from": i.name} for i in items
            if i.split == split and (label is None or i.label == label)]


def _manipulations(au: list[Item], load, rng: np.random.Generator, separate: bool = False):
    """Per authentic image: one splice (donor drawn from the same list) and one copy-move,
    yielded as (item, its pixels, kind, manipulated pixels, mask, info). The caller may draw
    from ``rng`` between yields; the order of draws is part of the data set's seed. ``separate``:
    see ``make_manipulation``."""
    for it in au:
        target = load(it.path)
        for kind in ("splice", "copy-move"):
            donor = None
            if kind == "splice":
                d = au[int(rng.integers(len(au)))]
                if d is it:
                    continue
                donor = load(d.path)
            made = make_manipulation(target, donor, rng, separate)
            if made is not None:
                yield (it, target, kind, *made)


def selfmade_set(items: list[Item], split: str, q: int, seed: int = 7) -> list[Sample]:
    """Per Au image of the split: one self-made splice (donor from the same split), one
    copy-move, and two authentic controls, each pair saved with the tables of a random
    CASIA image of the split (authentic or tampered)."""

    def build():
        rng = np.random.default_rng(seed + {"train": 0, "val": 1, "test": 2}[split])
        au = [i for i in items if i.split == split and i.label == 0]
        hists = _histories(items, split)
        out = []
        for it, target, kind, img, mask, info in _manipulations(au, load_rgb, rng):
            hist = hists[int(rng.integers(len(hists)))]
            fake = decode(save_like(img, hist))
            ctrl = decode(save_like(target, hist))
            tag = f"{it.name}_{kind}"
            out.append(_sample_from_rgb(tag, 1, info["kind"], split, fake, mask, hist, q,
                                        info | {"tables_from": hist["from"]}))
            out.append(_sample_from_rgb(tag + "_control", 0, "self-control", split, ctrl, None, hist, q,
                                        {"tables_from": hist["from"]}))
        return out

    return _cached(f"selfmade_{split}", q, build)


def requality_set(items: list[Item], split: str, q: int) -> list[Sample]:
    """Authentic images of the split re-saved with the tables (and subsampling) of a
    tampered image, one per tampered quality class: if a model reads the quantization
    table, these look 'tampered' to it."""

    def build():
        rng = np.random.default_rng(99)
        tampered = _histories(items, split, label=1)
        by_class: dict[tuple, list[dict]] = defaultdict(list)
        for h in tampered:
            by_class[(h["quality"], h["subsampling"])].append(h)
        out = []
        for it in (i for i in items if i.split == split and i.label == 0):
            rgb = load_rgb(it.path)
            for cls in sorted(by_class, key=str):
                hs = by_class[cls]
                hist = hs[int(rng.integers(len(hs)))]
                again = decode(save_like(rgb, hist))
                out.append(_sample_from_rgb(f"{it.name}_as_q{cls[0]}_{cls[1]}", 0, "authentic-requality", split,
                                            again, None, hist, q, {"tables_from": hist["from"]}))
        return out

    return _cached(f"requality_{split}", q, build)


def _reduced(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").reduce(2))


def lossless_set(items: list[Item], split: str, q: int, limit: int | None = None) -> list[Sample]:
    """Authentic images with no JPEG history left in their pixels, as a PNG straight from
    a lossless source would give them: each image reduced 2x by box averaging (which
    wipes out the 8x8 block grid) and kept as pixels (``prepare`` then recompresses them
    like every input). A PNG made *from* a JPEG keeps the JPEG's pixels and scores exactly
    like the JPEG, so it needs no test set of its own."""

    def build():
        out = []
        au = [i for i in items if i.split == split and i.label == 0][:limit]
        for it in au:
            rgb = _reduced(it.path)
            out.append(_sample_from_rgb(it.name + "_png", 0, "authentic-lossless", split, rgb, None,
                                        {"quality": None, "subsampling": "png"}, q))
        return out

    return _cached(f"lossless_{split}", q, build)


def lossless_selfmade_set(items: list[Item], split: str, q: int, seed: int = 11) -> list[Sample]:
    """Self-made splices and copy-moves between the 2x-reduced (never-JPEG) authentic
    images of the split, kept as pixels: manipulations of a lossless source."""

    def build():
        rng = np.random.default_rng(seed + {"train": 0, "val": 1, "test": 2}[split])
        au = [i for i in items if i.split == split and i.label == 0]
        out = []
        for it, _, kind, img, mask, info in _manipulations(au, _reduced, rng):
            out.append(_sample_from_rgb(f"{it.name}_{kind}_png", 1, info["kind"] + "-lossless", split, img, mask,
                                        {"quality": None, "subsampling": "png"}, q, info))
        return out

    return _cached(f"lossless_selfmade_{split}", q, build)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", type=int, default=None, help="recompression quality (default: forensics_common.RECOMPRESS_QUALITY)")
    args = parser.parse_args(argv)
    q = args.quality or RECOMPRESS_QUALITY
    # run through the imported module, not __main__, so cached pickles name
    # convert.forensics_data.Sample
    from convert import forensics_data as fd

    items, notes = fd.split_items()
    print(json.dumps({k: v for k, v in notes.items() if k != "renamed"}, indent=1, default=str)[:3000])
    c = Counter((i.split, i.kind, i.mask is not None) for i in items)
    for k in sorted(c):
        print(k, c[k])
    for split in ("train", "val", "test"):
        fd.casia_set(items, split, q)
        fd.selfmade_set(items, split, q)
    fd.requality_set(items, "test", q)
    for split in ("val", "test"):
        fd.lossless_set(items, split, q)
        fd.lossless_selfmade_set(items, split, q)
    print(f"features: {FEATURES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
