"""Liveness training and evaluation data: camera-like frames -> device detector -> face crops.

    python -m convert.liveness_data [--workers 2]      # builds the cache (train, val, test)

Every sample is a 640x480 camera frame that goes through the device's own detector
(``edge_app.detector``, min score from ``edge_app.config``) and crop code
(``edge_app.crop.crop_face``: shift inward, no padding). Sources, all split by the unit
that must not cross a split:

- ``nuaa``: NUAA frames as recorded (live, real prints), split by subject
  (``convert.datasets.NUAA_SPLIT``).
- ``nuaa_sim``: print and screen-replay attacks simulated from NUAA live frames
  (``convert.attack_sim``), in the split of the subject they were made from.
- ``utk``: UTKFace faces pasted into scenes (``attack_sim.compose_live``, then the camera
  model) as live frames, and print / replay attacks simulated from the same image, both
  in that image's split. UTKFace has no identity label: each image is its own identity.

Scenes are CASIA v1 authentic photographs (split by file as well) or synthetic walls.
Attack styles (``attack_sim.ATTACK_STYLES``): ``print_edge`` / ``replay_edge`` show the
medium's border, bezel or fingers; ``print_full`` / ``replay_full`` fill the whole view.

Per frame the cache holds crops for both models at their nominal scale and at one
random "jitter" scale (tight and wide framing, for training), the face box, and the
MiniFASNet teachers' P(live) (ensemble of the 2.7 and 4.0 models, soft targets for
distillation and the reference row of the evaluation; never used at run time).
Everything is seeded: the same command gives the same cache.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from convert import attack_sim
from convert.datasets import NUAA_SPLIT, REPO, datasets_root, read_manifest

CACHE = REPO / ".cache"
VERSION = "lv1"
SEED = 20240611
FRAME_H, FRAME_W = 480, 640
SIZE = 80
# nominal crop scales of the two models and the random range of the extra training crop
SCALES = {"cnn": 1.6, "attn": 2.7}
JITTER = {"cnn": (1.15, 2.4), "attn": (1.8, 4.0)}
TEACHER_DIR = REPO.parent / "shared" / "teachers" / "minifasnet"
TEACHERS = {2.7: "2.7_80x80_MiniFASNetV2.tflite", 4.0: "4_0_0_80x80_MiniFASNetV1SE.tflite"}
UTK_SPLIT = {"train": 3000, "val": 1000, "test": 1000}
CASIA_SPLIT = {"train": 500, "val": 150, "test": 150}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Job:
    index: int
    source: str  # nuaa | nuaa_sim | utk
    split: str
    group: str  # NUAA subject or UTKFace file: the unit of the split
    label: int  # 1 live, 0 attack
    attack: str  # none | nuaa_print | print_edge | print_full | replay_edge | replay_full
    path: str  # the image it is made from
    scene: str  # CASIA photo path, or "" for a synthetic wall
    extra: tuple = ()  # (gender, age, race) for UTKFace


def _splits_by_index(n: int, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name in SPLITS:
        out[name] = np.sort(order[start : start + sizes[name]])
        start += sizes[name]
    return out


def jobs_for(split: str) -> list[Job]:
    """The deterministic list of frames of one split."""
    rng = np.random.default_rng([SEED, SPLITS.index(split)])
    casia = sorted((s for s in read_manifest("casia1") if s.label == "authentic"), key=lambda s: str(s.path))
    scenes = [str(casia[i].path) for i in _splits_by_index(len(casia), CASIA_SPLIT, SEED + 1)[split]]

    def scene() -> str:
        return str(scenes[int(rng.integers(len(scenes)))]) if rng.random() < 0.6 else ""

    def attack_styles() -> list[str]:
        if split == "train":  # one attack per live image, any style
            return [attack_sim.ATTACK_STYLES[int(rng.integers(4))]]
        # held-out data: one print and one replay per live image, edge or full at random
        return [f"print_{'full' if rng.random() < 0.5 else 'edge'}", f"replay_{'full' if rng.random() < 0.5 else 'edge'}"]

    jobs: list[Job] = []

    def add(**kw) -> None:
        jobs.append(Job(index=len(jobs), split=split, **kw))

    subjects = set(NUAA_SPLIT[split])
    for s in read_manifest("nuaa"):
        if s.group not in subjects:
            continue
        add(source="nuaa", group=s.group, label=int(s.label == "live"),
            attack="none" if s.label == "live" else "nuaa_print", path=str(s.path), scene="")
        if s.label == "live":
            for style in attack_styles():
                add(source="nuaa_sim", group=s.group, label=0, attack=style, path=str(s.path), scene=scene())
    utk = read_manifest("utkface")
    for i in _splits_by_index(len(utk), UTK_SPLIT, SEED + 2)[split]:
        s = utk[int(i)]
        extra = (s.extra["gender"], int(s.extra["age"]), s.extra["race"])
        add(source="utk", group=s.path.name, label=1, attack="none", path=str(s.path), scene=scene(), extra=extra)
        for style in attack_styles():
            add(source="utk", group=s.path.name, label=0, attack=style, path=str(s.path), scene=scene(), extra=extra)
    return jobs


# ------------------------------------------------------------------ frame synthesis


def _load(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def make_scene(scene: str, rng: np.random.Generator) -> np.ndarray:
    if scene:
        return attack_sim.photo_scene(_load(scene), FRAME_H, FRAME_W, rng)
    return attack_sim.synthetic_scene(FRAME_H, FRAME_W, rng)


def make_frame(job: Job, detect) -> np.ndarray:
    """The camera frame of ``job`` (``detect(rgb)`` finds the face in NUAA frames for sims)."""
    rng = np.random.default_rng([SEED, SPLITS.index(job.split), job.index])
    src = _load(job.path)
    if job.source == "nuaa":
        return src  # recorded by NUAA's webcam, used as is
    scene = make_scene(job.scene, rng)
    if job.source == "utk":
        if job.label == 1:
            return attack_sim.camera(attack_sim.compose_live(src, scene, rng), rng)
        if job.attack.endswith("_full"):  # a picture of the person in a scene, filling the view
            picture = attack_sim.compose_live(src, make_scene(job.scene, rng), rng, rng.uniform(0.5, 1.05))
            return attack_sim.simulate_style(picture, scene, job.attack, rng)
        return attack_sim.simulate_style(src, scene, job.attack, rng)
    # nuaa_sim: a full-frame attack shows the whole live frame, an edge attack a portrait cut from it
    if job.attack.endswith("_full"):
        return attack_sim.simulate_style(src, scene, job.attack, rng)
    face = detect(src)
    if face is not None:
        from edge_app.crop import context_box

        left, top, right, bottom = context_box(face, src.shape[1], src.shape[0], rng.uniform(1.8, 3.2))
        src = src[int(top) : int(bottom), int(left) : int(right)]
    return attack_sim.simulate_style(src, scene, job.attack, rng)


# ------------------------------------------------------------------------- workers

_W: dict = {}


def _teacher(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def teacher_live_prob(interpreters: dict, rgb: np.ndarray, face) -> float:
    """MiniFASNet ensemble P(live): mean softmax index 1 of the 2.7 and 4.0 models (BGR 0-255)."""
    from edge_app.crop import crop_face

    probs = []
    for scale, it in interpreters.items():
        crop = crop_face(rgb, face, scale, 80)[..., ::-1].astype(np.float32)[None]
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(crop))
        it.invoke()
        z = it.get_tensor(it.get_output_details()[0]["index"]).ravel().astype(np.float64)
        e = np.exp(z - z.max())
        probs.append(e / e.sum())
    return float(np.mean(probs, axis=0)[1])


def _init_worker(models_dir: str) -> None:
    from edge_app.config import Config
    from edge_app.detector import load_detector

    _W["detector"] = load_detector(models_dir, 1, Config().detector.min_score)
    _W["teachers"] = {s: _teacher(TEACHER_DIR / f) for s, f in TEACHERS.items()}


def _largest(rgb: np.ndarray):
    faces = _W["detector"].detect(rgb)
    return max(faces, key=lambda f: f.w * f.h) if faces else None


def _process(job: Job) -> dict:
    from edge_app.crop import crop_face

    rgb = make_frame(job, _largest)
    face = _largest(rgb)
    out = {"index": job.index, "face": face is not None}
    if face is None:
        return out
    rng = np.random.default_rng([SEED, 99, SPLITS.index(job.split), job.index])
    for model, scale in SCALES.items():
        lo, hi = JITTER[model]
        jitter = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        out[f"{model}"] = crop_face(rgb, face, scale, SIZE)
        out[f"{model}_jitter"] = crop_face(rgb, face, jitter, SIZE)
        out[f"{model}_jitter_scale"] = jitter
    out["teacher"] = teacher_live_prob(_W["teachers"], rgb, face)
    out["box"] = np.array([face.x / rgb.shape[1], face.y / rgb.shape[0], face.w / rgb.shape[1], face.h / rgb.shape[0]], np.float32)
    return out


ARRAYS = ("cnn", "cnn_jitter", "attn", "attn_jitter")


def cache_path(split: str) -> Path:
    return CACHE / f"liveness_{VERSION}_{split}.npz"


def build(split: str, workers: int = 2, models_dir: Path = REPO / "models") -> Path:
    jobs = jobs_for(split)
    n = len(jobs)
    print(f"[{split}] {n} frames to synthesise and crop with {workers} worker(s)", file=sys.stderr, flush=True)
    arrays = {k: np.zeros((n, SIZE, SIZE, 3), np.uint8) for k in ARRAYS}
    face = np.zeros(n, bool)
    teacher = np.full(n, np.nan, np.float32)
    box = np.zeros((n, 4), np.float32)
    jitter = np.zeros((n, 2), np.float32)
    t0 = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(models_dir),)) as pool:
        for k, r in enumerate(pool.imap_unordered(_process, jobs, chunksize=16)):
            i = r["index"]
            face[i] = r["face"]
            if r["face"]:
                for key in ARRAYS:
                    arrays[key][i] = r[key]
                teacher[i] = r["teacher"]
                box[i] = r["box"]
                jitter[i] = (r["cnn_jitter_scale"], r["attn_jitter_scale"])
            if (k + 1) % 1000 == 0 or k + 1 == n:
                print(f"  [{split}] {k + 1}/{n} frames, {int((~face).sum()) - (n - k - 1)} without a face, "
                      f"{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    records = [
        {"source": j.source, "group": j.group, "label": j.label, "attack": j.attack,
         "path": str(Path(j.path).relative_to(datasets_root())), "scene": Path(j.scene).name if j.scene else "synthetic",
         **({"gender": j.extra[0], "age": j.extra[1], "race": j.extra[2]} if j.extra else {})}
        for j in jobs
    ]
    CACHE.mkdir(exist_ok=True)
    path = cache_path(split)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, face=face, teacher=teacher, box=box, jitter=jitter, records=np.array(json.dumps(records)), **arrays)
    tmp.replace(path)
    return path


@dataclass
class Split:
    """One split, frames with a detected face only (``no_face`` counts the rest per kind)."""

    name: str
    records: list[dict]
    crops: dict[str, np.ndarray]  # cnn, cnn_jitter, attn, attn_jitter: uint8 (N, 80, 80, 3)
    teacher: np.ndarray
    label: np.ndarray
    no_face: dict[str, dict]

    def mask(self, source: str | tuple | None = None, attack: str | tuple | None = None, label: int | None = None) -> np.ndarray:
        m = np.ones(len(self.records), bool)
        if source is not None:
            src = (source,) if isinstance(source, str) else tuple(source)
            m &= np.array([r["source"] in src for r in self.records])
        if attack is not None:
            att = (attack,) if isinstance(attack, str) else tuple(attack)
            m &= np.array([r["attack"] in att for r in self.records])
        if label is not None:
            m &= self.label == label
        return m


def load(split: str, workers: int = 2) -> Split:
    path = cache_path(split)
    if not path.is_file():
        build(split, workers)
    data = np.load(path)
    records = json.loads(str(data["records"]))
    face = data["face"]
    no_face: dict[str, dict] = {}
    for r, f in zip(records, face):
        key = f"{r['source']}:{r['attack']}"
        entry = no_face.setdefault(key, {"frames": 0, "no_face": 0})
        entry["frames"] += 1
        entry["no_face"] += int(not f)
    keep = np.nonzero(face)[0]
    recs = [records[i] for i in keep]
    crops = {k: data[k][keep] for k in ARRAYS}
    return Split(split, recs, crops, data["teacher"][keep], np.array([r["label"] for r in recs], np.int64), no_face)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    for split in args.splits:
        if args.rebuild or not cache_path(split).is_file():
            build(split, args.workers)
        s = load(split)
        kinds: dict[str, int] = {}
        for r in s.records:
            k = f"{r['source']}:{r['attack']}"
            kinds[k] = kinds.get(k, 0) + 1
        print(f"{split}: {len(s.records)} crops; " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        lost = {k: v["no_face"] for k, v in s.no_face.items() if v["no_face"]}
        print(f"  without a detected face: {lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
