"""Real presentation-attack data: one manifest, de-duplicated, and face crops at several framings.

    python -m convert.pad_data extract --clones DIR --cache CACHE   # git archive the listed commits
    python -m convert.pad_data build --cache CACHE [--workers 2]     # manifest + crops under .cache/pad/

``CACHE`` holds one folder per part of ``../shared/datasets/pad_sources.tsv``
(``convert.pad_sources``); NUAA (``../shared/datasets/nuaa``) joins them as one more domain.

Manifest (``.cache/pad/manifest.csv``): path, part, source, domain, group (person or video),
label, attack kind, capture device, licence, sha256, a 64-bit difference hash, image size and
``dropped`` (why a row is not used). Exact duplicates (same bytes) and near duplicates (difference
hash within ``NEAR_BITS`` bits: re-saved copies, brightness-augmented copies, consecutive video
frames) keep their first row only; a near duplicate across labels drops both.

Shortcuts the sources carry (``traps`` in pad_sources.tsv: 640x640 images only among one
source's attacks, smaller attack crops in another, tight crops vs frames with context) are taken
out by one geometry for every image, whatever its class: the face found by the device's detector
is cut with ``k`` times its box as context (``k`` drawn from ``VIEW_CONTEXT``, the same range for
both classes, clamped by the image as the device clamps) and that view is resampled to
``VIEW_SIZE`` pixels. Size, resolution and class-dependent context no longer tell the class apart.
NUAA frames are real 640x480 camera frames of one webcam for both classes and stay as recorded.

Framings per image, all cut by the device's crop code (``edge_app.frames.crop.crop_face``) at the two
models' scales (``SCALES``), 80x80:

- ``view``: the normalised view as the frame (tight selfies clamp at its border);
- ``canvas_a`` / ``canvas_b``: the view placed into a 640x480 camera frame at a random size (the
  face 12-60% of the frame width) on a different fill (a CASIA v1 authentic photo, a flat wall, or a
  blurred copy of the view itself).

The face box is the device detector's, found once on the picture as captured (a second look on a
blurred margin when the face is cut by the border) and moved with the pixels into each framing.

The MiniFASNet teachers' raw logits are stored for every crop of the ``view`` framing: the peer
row of the evaluation on exactly the same images and boxes, and soft targets for distillation.
Everything is seeded: the same command on the same cache gives the same arrays.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from convert.datasets import REPO, datasets_root, read_manifest
from convert.pad_sources import PARTS, Row, scan

OUT = REPO / ".cache" / "pad"
SEED = 20261203
SIZE = 80
SCALES = (2.7, 4.0)
FRAMINGS = ("view", "canvas_a", "canvas_b")
VIEW_CONTEXT = (1.5, 3.2)
VIEW_SIZE = 192
CANVAS_H, CANVAS_W = 480, 640
FACE_FRACTION = (0.12, 0.60)
NEAR_BITS = 3
NEAR_CORR = 0.97
SAME_CORR = 0.995
TEACHER_DIR = REPO.parent / "shared" / "teachers" / "minifasnet"
TEACHERS = {2.7: "2.7_80x80_MiniFASNetV2.tflite", 4.0: "4_0_0_80x80_MiniFASNetV1SE.tflite"}
FIELDS = ("path", "part", "source", "domain", "group", "label", "attack", "device", "licence",
          "sha256", "dhash", "width", "height", "dropped")


# ------------------------------------------------------------------------------- manifest

def nuaa_rows() -> list[Row]:
    root = datasets_root() / "nuaa"
    return [Row(str(s.path), "nuaa", "nuaa", "nuaa", f"nuaa:{s.group}", "live" if s.label == "live" else "attack",
                "none" if s.label == "live" else "print", "webcam 640x480", "NUAA, non-commercial research")
            for s in read_manifest("nuaa") if s.path.is_relative_to(root)]


def dhash(im: Image.Image) -> int:
    """64-bit difference hash: brightness gradients of a 9x8 thumbnail (robust to re-saving and gain)."""
    g = np.asarray(im.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(im: Image.Image) -> np.ndarray:
    """32x32 grey thumbnail, zero mean and unit norm: its dot product with another is their correlation."""
    g = np.asarray(im.convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float32).ravel()
    g -= g.mean()
    return (g / max(float(np.linalg.norm(g)), 1e-6)).astype(np.float16)


def _describe(path: str) -> tuple[str, int, int, int, np.ndarray]:
    data = Path(path).read_bytes()
    with Image.open(Path(path)) as im:
        w, h = im.size
        return hashlib.sha256(data).hexdigest(), dhash(im), w, h, thumbnail(im)


def near_duplicates(hashes: np.ndarray, bits: int = NEAR_BITS) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most ``bits`` bits (bands of a pigeonhole index)."""
    bands = bits + 1
    width = 64 // bands
    pairs: set[tuple[int, int]] = set()
    for b in range(bands):
        key = (hashes >> np.uint64(b * width)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        sk = key[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        ends = np.r_[starts[1:], len(sk)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            idx = np.sort(order[s:e])
            if e - s > 400:  # a flat-image bucket: compare only neighbours in file order
                cand = zip(idx[:-1], idx[1:])
            else:
                cand = ((int(a), int(c)) for k, a in enumerate(idx) for c in idx[k + 1:])
            for i, j in cand:
                if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= bits:
                    pairs.add((int(i), int(j)))
    return sorted(pairs)


def build_manifest(cache: Path, workers: int = 2) -> list[dict]:
    rows = list(scan(cache)) + nuaa_rows()
    paths = [str(cache / r.path) if not Path(r.path).is_absolute() else r.path for r in rows]
    t0 = time.time()
    with mp.Pool(workers) as pool:
        described = []
        for i, d in enumerate(pool.imap(_describe, paths, chunksize=64)):
            described.append(d)
            if (i + 1) % 5000 == 0 or i + 1 == len(paths):
                print(f"  hashed {i + 1}/{len(paths)} images ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    out = []
    thumbs = np.stack([d[4] for d in described]).astype(np.float32)
    for r, (sha, dh, w, h, _) in zip(rows, described):
        d = {k: getattr(r, k) for k in FIELDS if hasattr(r, k)}
        d.update(sha256=sha, dhash=f"{dh:016x}", width=w, height=h, dropped="")
        out.append(d)
    first_by_sha: dict[str, int] = {}
    for i, d in enumerate(out):
        j = first_by_sha.setdefault(d["sha256"], i)
        if j != i:
            d["dropped"] = f"exact duplicate of {out[j]['path']}"
    # The 64-bit hash only proposes pairs (faces centred in a crop share coarse gradients);
    # a pair counts when the thumbnails correlate at NEAR_CORR or more. A replay of a live frame
    # is meant to look like it, so across labels only a near-identical copy (SAME_CORR) is a
    # labelling conflict, and both rows go.
    hashes = np.array([int(d["dhash"], 16) for d in out], dtype=np.uint64)
    for i, j in near_duplicates(hashes):
        a, b = out[i], out[j]
        corr = float(thumbs[i] @ thumbs[j])
        if a["label"] != b["label"]:
            if corr >= SAME_CORR:
                for d, other in ((a, b), (b, a)):
                    if not d["dropped"]:
                        d["dropped"] = f"near duplicate with the other label: {other['path']}"
        elif corr >= NEAR_CORR and a["domain"] == b["domain"] and not b["dropped"] \
                and not a["dropped"].startswith("near duplicate with the other"):
            b["dropped"] = f"near duplicate of {a['path']}"
    return out


def write_manifest(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(rows)


def read_rows(path: Path = OUT / "manifest.csv") -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------- framings

_W: dict = {}


def _init_worker(models_dir: str, scenes: list[str]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edge_app.config import Config
    from edge_app.frames.detector import load_detector

    _W["detector"] = load_detector(models_dir, 1, Config().detector.min_score)
    _W["teachers"] = {}
    for scale, name in TEACHERS.items():
        it = Interpreter(model_path=str(TEACHER_DIR / name), num_threads=1)
        it.allocate_tensors()
        _W["teachers"][scale] = it
    _W["scenes"] = scenes


def _largest(rgb: np.ndarray):
    faces = _W["detector"].detect(rgb)
    return max(faces, key=lambda f: f.w * f.h) if faces else None


def teacher_logits(crop: np.ndarray, scale: float) -> np.ndarray:
    it = _W["teachers"][scale]
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(crop[..., ::-1], np.float32)[None])
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).ravel().astype(np.float32)


def normalised_view(rgb: np.ndarray, face, k: float):
    """(view, face in view): ``k`` x the face box as context (clamped, shifted inward), resampled to VIEW_SIZE."""
    from edge_app.frames.crop import context_box
    from edge_app.frames.detector import Face

    left, top, right, bottom = context_box(face, rgb.shape[1], rgb.shape[0], k)
    side = min(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    view = np.asarray(Image.fromarray(rgb).resize((VIEW_SIZE, VIEW_SIZE), Image.BILINEAR,
                                                  box=(x0, y0, x0 + side, y0 + side)))
    f = VIEW_SIZE / side
    return view, Face((face.x - x0) * f, (face.y - y0) * f, face.w * f, face.h * f, face.score)


def canvas_frame(view: np.ndarray, vface, rng: np.random.Generator):
    """(frame, face in frame): ``view`` placed into a 640x480 frame, the face FACE_FRACTION of its width, on a random fill."""
    from edge_app.frames.detector import Face

    target = math.exp(rng.uniform(*np.log(FACE_FRACTION)))
    side = int(np.clip(target * CANVAS_W * view.shape[1] / max(vface.w, 1.0), 48, CANVAS_H))
    kind = rng.integers(3)
    if kind == 0 and _W["scenes"]:
        with Image.open(_W["scenes"][int(rng.integers(len(_W["scenes"])))]) as im:
            fill = im.convert("RGB").resize((CANVAS_W, CANVAS_H), Image.BILINEAR)
    elif kind == 1:
        fill = Image.new("RGB", (CANVAS_W, CANVAS_H), tuple(int(v) for v in rng.integers(30, 230, 3)))
    else:
        fill = Image.fromarray(view).resize((CANVAS_W, CANVAS_H), Image.BILINEAR).filter(ImageFilter.GaussianBlur(12))
    x = int(rng.integers(0, CANVAS_W - side + 1))
    y = int(rng.integers(0, CANVAS_H - side + 1))
    fill.paste(Image.fromarray(view).resize((side, side), Image.BILINEAR), (x, y))
    f = side / view.shape[1]
    return np.asarray(fill), Face(x + vface.x * f, y + vface.y * f, vface.w * f, vface.h * f, vface.score)


def detect_with_margin(rgb: np.ndarray):
    """The device detector's largest face; for a face cut by the image border (a tight selfie crop),
    a second look at the image centred on a blurred 1.6x canvas, mapped back."""
    from edge_app.frames.detector import Face

    face = _largest(rgb)
    if face is not None:
        return face
    h, w = rgb.shape[:2]
    W, H = int(w * 1.6), int(h * 1.6)
    im = Image.fromarray(rgb)
    canvas = im.resize((W, H), Image.BILINEAR).filter(ImageFilter.GaussianBlur(20))
    ox, oy = (W - w) // 2, (H - h) // 2
    canvas.paste(im, (ox, oy))
    f = _largest(np.asarray(canvas))
    if f is None:
        return None
    x0, y0 = max(0.0, f.x - ox), max(0.0, f.y - oy)
    x1, y1 = min(float(w), f.x + f.w - ox), min(float(h), f.y + f.h - oy)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return Face(x0, y0, x1 - x0, y1 - y0, f.score)


def _process(job: tuple[int, str, str]) -> dict:
    from edge_app.frames.crop import crop_face

    index, path, domain = job
    rng = np.random.default_rng([SEED, index])
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    face = detect_with_margin(rgb)
    out = {"index": index, "ok": False, "face_frac": 0.0}
    if face is None:
        return out
    out["face_frac"] = face.w / rgb.shape[1]
    # The detector ran on the picture as captured; the framings below move that box with the
    # pixels (a crop-and-resize, a paste) rather than detecting again, so no framing loses faces.
    if domain == "nuaa":
        frames = {"view": (rgb, face)}  # a real camera frame for both classes: kept as recorded
        base = normalised_view(rgb, face, VIEW_CONTEXT[1])
    else:
        base = normalised_view(rgb, face, rng.uniform(*VIEW_CONTEXT))
        frames = {"view": base}
    for name in FRAMINGS[1:]:
        frames[name] = canvas_frame(base[0], base[1], rng)
    for name, (frame, f) in frames.items():
        for scale in SCALES:
            out[f"{name}@{scale}"] = crop_face(frame, f, scale, SIZE)
    out["teacher"] = np.stack([teacher_logits(out[f"view@{s}"], s) for s in SCALES])
    out["ok"] = True
    return out


def build_crops(rows: list[dict], cache: Path, workers: int = 2, models_dir: Path = REPO / "models") -> Path:
    keep = [i for i, r in enumerate(rows) if not r["dropped"]]
    jobs = [(i, r["path"] if Path(r["path"]).is_absolute() else str(cache / r["path"]), rows[i]["domain"])
            for i in keep for r in [rows[i]]]
    casia = sorted(str(s.path) for s in read_manifest("casia1") if s.label == "authentic")
    n = len(jobs)
    arrays = {f"{fr}@{s}": np.zeros((n, SIZE, SIZE, 3), np.uint8) for fr in FRAMINGS for s in SCALES}
    teacher = np.zeros((n, len(SCALES), 3), np.float32)
    ok = np.zeros(n, bool)
    face_frac = np.zeros(n, np.float32)
    t0 = time.time()
    with mp.Pool(workers, _init_worker, (str(models_dir), casia)) as pool:
        for k, res in enumerate(pool.imap(_process, jobs, chunksize=32)):
            ok[k] = res["ok"]
            face_frac[k] = res["face_frac"]
            if res["ok"]:
                for key in arrays:
                    arrays[key][k] = res[key]
                teacher[k] = res["teacher"]
            if (k + 1) % 2000 == 0 or k + 1 == n:
                print(f"  framed {k + 1}/{n} images, {int((~ok[: k + 1]).sum())} without a face "
                      f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    path = OUT / "crops.npz"
    np.savez(path, row=np.array(keep), ok=ok, face_frac=face_frac, teacher=teacher, **arrays)
    return path


class Crops:
    """The crop cache joined to its manifest rows; ``mask`` selects rows by column values."""

    def __init__(self, path: Path = OUT / "crops.npz", manifest: Path = OUT / "manifest.csv"):
        z = np.load(path)
        ok = z["ok"]
        manifest_rows = read_rows(manifest)
        self.rows = [manifest_rows[i] for i, k in zip(z["row"], ok) if k]
        self.arrays = {k: z[k][ok] for k in z.files if "@" in k}
        self.teacher = z["teacher"][ok]
        self.face_frac = z["face_frac"][ok]
        self.label = np.array([r["label"] == "live" for r in self.rows], np.float32)
        self.domain = np.array([r["domain"] for r in self.rows])
        self.group = np.array([r["group"] for r in self.rows])
        self.attack = np.array([r["attack"] for r in self.rows])

    def __len__(self) -> int:
        return len(self.rows)


# ------------------------------------------------------------------------------- commands

def extract(clones: Path, cache: Path) -> None:
    """``git archive`` each listed commit's paths from ``clones/<owner>+<name>`` (or ``<name>``) into ``cache``."""
    for part in PARTS:
        candidates = [clones / part.repo.replace("/", "+"), clones / part.repo.split("/")[1]]
        clone = next((c for c in candidates if c.exists()), None)
        if clone is None:
            raise SystemExit(f"{clones}: no clone of {part.repo} (looked for {', '.join(map(str, candidates))})")
        git_dir = clone / ".git" if (clone / ".git").exists() else clone / "repo" if (clone / "repo").exists() else clone
        dest = cache / part.folder
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", part.commit, *part.paths],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        print(f"{part.repo}@{part.commit[:7]}: extracted {', '.join(part.paths)} -> {dest}")


def summary(rows: list[dict]) -> str:
    from collections import Counter

    kept = Counter((r["domain"], r["label"]) for r in rows if not r["dropped"])
    dropped = Counter((r["domain"], r["dropped"].split(" of ")[0].split(":")[0]) for r in rows if r["dropped"])
    lines = ["domain | live kept | attack kept | dropped (why)"]
    for dom in sorted({r["domain"] for r in rows}):
        why = ", ".join(f"{k[1]}: {v}" for k, v in sorted(dropped.items()) if k[0] == dom) or "-"
        lines.append(f"{dom} | {kept[(dom, 'live')]} | {kept[(dom, 'attack')]} | {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.pad_data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="git archive the listed commits from local clones into the cache")
    ex.add_argument("--clones", type=Path, required=True, help="folder with one clone per repository")
    ex.add_argument("--cache", type=Path, required=True, help="where the parts are extracted")
    bd = sub.add_parser("build", help="manifest (hashes, duplicates) and the crop cache under .cache/pad/")
    bd.add_argument("--cache", type=Path, required=True, help="folder holding the extracted parts")
    bd.add_argument("--workers", type=int, default=2)
    bd.add_argument("--manifest-only", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        extract(args.clones, args.cache)
        return 0
    rows = build_manifest(args.cache, args.workers)
    write_manifest(rows, OUT / "manifest.csv")
    print(summary(rows))
    print(f"manifest: {OUT / 'manifest.csv'} ({len(rows)} rows, {sum(not r['dropped'] for r in rows)} kept)")
    if not args.manifest_only:
        print(f"crops: {build_crops(rows, args.cache, args.workers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
