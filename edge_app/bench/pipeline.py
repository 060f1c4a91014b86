"""End-to-end benchmark of the device path (``edge-app bench``).

Writes a Markdown report and a JSON file of figures. Everything is measured in this one
run on this machine, side by side: per-stage timings round-robin, int8 against float
models at 1 and 2 threads, our ELA against the codec floor and the naive code, the whole
pipeline against a straight sequential implementation of the same steps and against a
MiniFASNet-sized float model, frames per second and latency percentiles from frame
capture to MQTT publish.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_app.bench import interleaved
from edge_app.bench.ela import floor, naive_display
from edge_app.config import Config
from edge_app.frames.crop import crop_face
from edge_app.liveness.decision import DecisionMaker, Observation
from edge_app.frames.detector import load_detector
from edge_app.features.ela import error_level, error_level_display, error_level_normalized
from edge_app.hub.events import DecisionEvent
from edge_app.features.inputs import model_input
from edge_app.interpreters import backend_name, create_interpreter, delegate_partitions
from edge_app.liveness.scorer import sigmoid
from edge_app.pipeline import Pipeline, load_models
from edge_app.frames.sources import Frame, Pacer
from edge_app.frames.sources.sample import sample_image
from edge_app.features.wavelet import noise_residual, noise_residual_normalized

log = logging.getLogger(__name__)

PEER_MODEL = Path(__file__).resolve().parents[2].parent / "shared" / "teachers" / "minifasnet" / "2.7_80x80_MiniFASNetV2.tflite"


# -- frames -------------------------------------------------------------------------
def scene(width: int, height: int, face: bool) -> np.ndarray:
    """The sample scene at a camera resolution: the person (or the empty wall) centred.

    Above 640x480 the head and shoulders fill the frame height, as a person standing at the
    door does for a wider camera; the short-range detector needs a face of ~20% of the
    frame's longer side.
    """
    if (width, height) == (640, 480):
        return sample_image("live" if face else "empty").copy()
    wall = np.asarray(Image.fromarray(sample_image("empty")).resize((width, height), Image.BILINEAR)).copy()
    if face:
        from edge_app.frames.sources.synthetic import sample_head

        head = sample_head()
        w = int(round(head.shape[1] * height / head.shape[0]))
        img = np.asarray(Image.fromarray(head).resize((w, height), Image.BILINEAR))
        x = (width - w) // 2
        wall[:, x : x + w] = img
    return wall


class BenchSource:
    """Pre-rendered frames handed out like a camera: no render cost, fresh capture time.

    A few slightly shifted copies rotate so no step can cache a result by identity.
    """

    def __init__(self, rgb: np.ndarray, frames: int, fps: float = 0.0, name: str = "bench") -> None:
        self.ring = [np.ascontiguousarray(np.roll(rgb, (dy, dx), axis=(0, 1))) for dy, dx in ((0, 0), (1, 2), (-2, 1), (2, -1))]
        self.frames = frames
        self.pacer = Pacer(fps)
        self.seq = 0
        self.name = name

    def read(self) -> Frame | None:
        if self.seq >= self.frames:
            return None
        self.pacer.wait()
        self.seq += 1
        return Frame(rgb=self.ring[self.seq % len(self.ring)], seq=self.seq, captured_at=time.monotonic(), origin=self.name)

    def close(self) -> None:
        pass


# -- environment --------------------------------------------------------------------
def environment() -> dict:
    import PIL
    import pywt

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:
        litert = None
    return {
        "interpreter": backend_name(),
        "ai_edge_litert": litert,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "pywavelets": pywt.__version__,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# -- stages -------------------------------------------------------------------------
def model_variants(models_dir: Path, names: list[str], crops: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Callables timing each model's invoke (int8/float x 1/2 threads) and model facts."""
    variants, facts = {}, {}
    for name in names:
        meta = json.loads((models_dir / f"{name}.json").read_text())
        files = {"int8": meta["file"], "float32": meta.get("float_model")}
        x = model_input(crops[name], meta["input"]["features"])
        for kind, file in files.items():
            if not file:
                continue
            path = models_dir / file
            for threads in (1, 2):
                interp = create_interpreter(path, num_threads=threads)
                detail = interp.get_input_details()[0]
                if kind == "int8":
                    scale, zp = detail["quantization"]
                    tensor = np.clip(np.rint(x / scale) + zp, -128, 127).astype(np.int8)
                else:
                    tensor = x.astype(np.float32)
                index = detail["index"]

                def run(interp=interp, tensor=tensor, index=index):
                    interp.set_tensor(index, tensor)
                    interp.invoke()

                variants[f"{name} {kind} {threads}t"] = run
                if threads == 1:
                    partitions, whole = delegate_partitions(interp)
                    facts[f"{name} {kind}"] = {"file": file, "bytes": path.stat().st_size,
                                               "xnnpack_partitions": partitions, "xnnpack_whole_graph": whole}
    return variants, facts


def peer_variant() -> tuple[dict, dict]:
    """A MiniFASNet-sized float model (the teachers' MiniFASNetV2, 80x80) through the same runtime."""
    if not PEER_MODEL.is_file():
        return {}, {"available": False, "why": f"{PEER_MODEL} not found"}
    interp = create_interpreter(PEER_MODEL, num_threads=1)
    detail = interp.get_input_details()[0]
    x = np.random.default_rng(0).uniform(0, 255, detail["shape"]).astype(np.float32)

    def run():
        interp.set_tensor(detail["index"], x)
        interp.invoke()

    partitions, whole = delegate_partitions(interp)
    return {"peer MiniFASNetV2 float 1t": run}, {"available": True, "file": PEER_MODEL.name,
                                                  "bytes": PEER_MODEL.stat().st_size,
                                                  "xnnpack_partitions": partitions, "xnnpack_whole_graph": whole}


# -- end to end ---------------------------------------------------------------------
@dataclass
class E2E:
    frames: int
    seconds: float
    latencies_ms: list[float]
    dropped: int
    events: int
    faces: int

    def figures(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "fps": round(self.frames / self.seconds, 1),
            "frames": self.frames,
            "dropped": self.dropped,
            "events": self.events,
            "faces": self.faces,
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(np.max(lat)), 2),
        }


def run_pipeline(cfg: Config, detector, scorer, publisher, rgb: np.ndarray, frames: int, fps: float) -> E2E:
    """Our pipeline as the device runs it: prefetch thread, async spool-then-publish."""
    cfg.source.fps = fps
    cfg.source.kind = "picamera2" if fps > 0 else "files"  # live sources drop stale frames
    sinks = [publisher.publish_event] if publisher else []
    pipe = Pipeline(cfg, detector, scorer, "bench", sinks=sinks,
                    next_seq=publisher.next_seq if publisher else None)
    latencies: list[float] = []
    # observers run after the frame's events went to the sinks: capture -> published
    pipe.frame_observers.append(lambda frame, faces, events: latencies.append((time.monotonic() - frame.captured_at) * 1e3))
    t0 = time.perf_counter()
    stats = pipe.run(BenchSource(rgb, frames, fps))
    seconds = time.perf_counter() - t0
    return E2E(stats.frames, seconds, latencies, stats.dropped, stats.events, stats.faces)


def run_sequential(cfg: Config, detector, scorer, publisher, rgb: np.ndarray, frames: int) -> E2E:
    """A straight sequential implementation of the same steps, for comparison.

    One loop, no prefetch thread; ELA and the wavelet residual computed for the whole
    frame and then cut to each model's crop (the way image-level forensic code does it);
    each event published and waited for until the broker acknowledged it. Interpreters
    are created once, as in ours. Its features differ from what the models were trained
    on; only its cost is of interest here.
    """
    decisions = DecisionMaker(cfg.decision, scorer.threshold)
    source = BenchSource(rgb, frames)
    latencies = []
    events = faces_seen = 0
    t0 = time.perf_counter()
    while (frame := source.read()) is not None:
        faces = detector.detect(frame.rgb)
        faces_seen += len(faces)
        obs = []
        if faces:
            ela = error_level_normalized(frame.rgb)
            res = noise_residual_normalized(frame.rgb)
            face = faces[0]
            scores = {}
            for m in scorer.models:
                crop = crop_face(frame.rgb, face, m.crop_scale, m.crop_size)
                planes = []
                for feat in m.features:
                    if feat == "rgb":
                        planes.append(model_input(crop, ["rgb"])[0])
                    else:
                        full = ela if feat == "ela" else res
                        planes.append(_crop_float(full, face, m.crop_scale, m.crop_size))
                x = np.concatenate(planes, axis=-1)[None]
                out = float(m.model.run(x)[0].ravel()[0])
                scores[m.name] = sigmoid(out) if m.output_kind == "live_logit" else out
            obs.append(Observation(face.box(), scorer.fusion.fuse(scores), scores, frame.seq))
        for d in decisions.frame(obs):
            event = DecisionEvent(decision=d.decision, device_id="bench", seq=publisher.next_seq(), score=d.score,
                                  scores=d.scores, threshold=d.threshold, box=list(d.box) if d.box else None).to_dict()
            publisher.publish_event(event)
            deadline = time.monotonic() + 5
            while publisher.spool_depth() and time.monotonic() < deadline:
                time.sleep(0.0002)
            events += 1
        latencies.append((time.monotonic() - frame.captured_at) * 1e3)
    return E2E(frames, time.perf_counter() - t0, latencies, 0, events, faces_seen)


def _crop_float(plane: np.ndarray, face, scale: float, size: int) -> np.ndarray:
    from edge_app.frames.crop import context_box

    h, w = plane.shape[:2]
    box = context_box(face, w, h, scale)
    out = [np.asarray(Image.fromarray(plane[:, :, c]).resize((size, size), Image.BILINEAR, box=box)) for c in range(plane.shape[2])]
    return np.stack(out, axis=-1).astype(np.float32)


# -- the whole suite ----------------------------------------------------------------
def detector_costs(models_dir: Path, min_score: float, repeat: int) -> dict:
    """Detection time per frame of each detector choice, with a face in view and without
    (where the close-up retry runs the short-range model a second time)."""
    dets = {choice: load_detector(models_dir, 1, min_score, choice) for choice in ("short", "full", "both")}
    dets["short + close-up retry"] = load_detector(models_dir, 1, min_score, "short", closeup_retry=True)
    dets["both + close-up retry"] = load_detector(models_dir, 1, min_score, "both", closeup_retry=True)
    cases = {}
    for w, h in ((640, 480), (1280, 720)):
        for what, rgb in (("near face", scene(w, h, True)), ("far face (8% of the width)", far_scene(w, h, 0.08)),
                          ("no face", scene(w, h, False))):
            for name, det in dets.items():
                cases[f"{name}, {w}x{h}, {what}"] = (lambda det=det, rgb=rgb: det.detect(rgb))
    return interleaved(cases, max(20, repeat // 2))


def far_scene(width: int, height: int, fraction: float) -> np.ndarray:
    """The sample's person standing far off: the 640x480 sample scaled so its face is
    ``fraction`` of the frame width (the sample's face is 91 px wide), on the empty wall."""
    wall = Image.fromarray(sample_image("empty")).resize((width, height), Image.BILINEAR)
    s = fraction * width / 91.0
    person = Image.fromarray(sample_image("live")).resize((round(640 * s), round(480 * s)), Image.LANCZOS)
    wall.paste(person, ((width - person.width) // 2, (height - person.height) // 3))
    return np.asarray(wall).copy()


def run_suite(models_dir: Path, frames: int, repeat: int, progress=print) -> dict:
    from edge_app.hub.local_broker import find_or_start
    from edge_app.hub.publisher import MqttPublisher

    cfg = Config()
    cfg.liveness.models_dir = str(models_dir)
    # every face frame ends in a decision event, so every frame's latency includes a publish
    cfg.decision.window = 1
    cfg.decision.min_frames = 1
    cfg.mqtt.health_interval_s = 3600
    results: dict = {"environment": environment(), "settings": {"frames": frames, "repeat": repeat, "decision_window": 1}}
    detector, scorer = load_models(cfg)
    broker = find_or_start("127.0.0.1", 1883)
    state = Path(tempfile.mkdtemp(prefix="edge-app-bench-"))
    publisher = None
    if broker:
        cfg.mqtt.host, cfg.mqtt.port = broker.host, broker.port
        publisher = MqttPublisher(cfg.mqtt, "bench", state, models=scorer.versions())
        publisher.start()
        publisher.wait_connected(5)
    try:
        frame = scene(640, 480, face=True)
        face = detector.detect(frame)[0]
        crops = {m.name: crop_face(frame, face, m.crop_scale, m.crop_size) for m in scorer.models}
        jpeg = io.BytesIO()
        Image.fromarray(frame).save(jpeg, "JPEG", quality=90)
        jpeg_bytes = jpeg.getvalue()
        cnn = scorer.models[0]
        cnn_crop = crops[cnn.name]
        maker = DecisionMaker(cfg.decision, scorer.threshold)
        obs = Observation(face.box(), 0.9, {m.name: 0.9 for m in scorer.models}, 1)
        event = DecisionEvent(decision="live", device_id="bench", seq=1, score=0.9, scores={"m": 0.9}, threshold=0.5,
                              box=list(face.box())).to_dict()

        progress("stages at 640x480 ...")
        stages = {
            "capture/decode (JPEG 640x480)": lambda: Image.open(io.BytesIO(jpeg_bytes)).convert("RGB").load(),
            "face detection": lambda: detector.detect(frame),
            **{f"crop {m.name} ({m.crop_size}px, x{m.crop_scale:g})": (lambda m=m: crop_face(frame, face, m.crop_scale, m.crop_size))
               for m in scorer.models},
            f"ELA of the {cnn.crop_size}px crop": lambda: error_level_normalized(cnn_crop),
            f"wavelet residual of the {cnn.crop_size}px crop": lambda: noise_residual_normalized(cnn_crop),
            **{f"liveness {m.name} (crop+features+int8 model)": (lambda m=m: m.score(frame, face)) for m in scorer.models},
            "fusion": lambda: scorer.fusion.fuse({m.name: 0.9 for m in scorer.models}),
            "decision": lambda: maker.frame([obs]),
            "event JSON": lambda: json.dumps(DecisionEvent(decision="live", device_id="bench", seq=1).to_dict()),
        }
        if publisher:
            stages["publish (spool + hand-off to MQTT)"] = lambda: publisher.publish_event(dict(event, event_id=os.urandom(8).hex()))
        results["stages"] = interleaved(stages, repeat)

        progress("models int8 vs float, 1 and 2 threads ...")
        variants, facts = model_variants(models_dir, [m.name for m in scorer.models], crops)
        peer, peer_facts = peer_variant()
        variants.update(peer)
        short = load_detector(models_dir, 1, cfg.detector.min_score, "short")
        variants["detector float 1t"] = lambda: short.model.run(np.zeros((1, 128, 128, 3), np.float32))
        results["models"] = interleaved(variants, repeat * 2)

        progress("face detectors: short, full, both, close-up retry at 640x480 and 1280x720 ...")
        results["detectors"] = detector_costs(models_dir, cfg.detector.min_score, repeat)
        progress("frame loop at 640x480 with each detector choice (unpaced) ...")
        results["detector_frame_loop_640x480"] = {}
        for choice in ("short", "full", "both"):
            cfg.detector.model = choice
            det, _ = load_models(cfg)
            results["detector_frame_loop_640x480"][choice] = run_pipeline(
                cfg, det, scorer, publisher, scene(640, 480, True), max(100, frames // 2), 0.0).figures()
        cfg.detector.model = Config().detector.model
        results["model_facts"] = facts
        results["peer"] = peer_facts

        progress("ELA against the codec floor and the naive code ...")
        pil_frame = Image.fromarray(frame)
        results["ela_640x480"] = interleaved({
            "codec floor (encode+decode)": lambda: floor(pil_frame, 90),
            "ours exact": lambda: error_level(frame),
            "ours display": lambda: error_level_display(frame),
            "naive PIL display": lambda: naive_display(frame, 90),
        }, repeat)
        from edge_app.features.ela import ElaWorkspace

        codec = ElaWorkspace().codec
        results["ela_codec"] = codec.name
        results["ela_threads"] = getattr(codec, "threads", 1)
        results["wavelet_640x480_gray_ms"] = interleaved({"wavelet 640x480 gray": lambda: noise_residual(frame.mean(axis=2, dtype=np.float32))}, max(10, repeat // 10))

        e2e = {}
        for (w, h) in ((640, 480), (1280, 720)):
            for face_in_view in (True, False):
                rgb = scene(w, h, face_in_view)
                key = f"{w}x{h} {'one face' if face_in_view else 'no face'}"
                progress(f"end to end {key}: camera-paced 60 fps and unpaced ...")
                e2e[key] = {
                    "paced_60fps": run_pipeline(cfg, detector, scorer, publisher, rgb, frames, 60.0).figures(),
                    "unpaced": run_pipeline(cfg, detector, scorer, publisher, rgb, frames, 0.0).figures(),
                }
        results["end_to_end_cases"] = e2e
        if publisher:
            progress("straight sequential implementation (640x480, one face) ...")
            seq = run_sequential(cfg, detector, scorer, publisher, scene(640, 480, True), max(60, frames // 3)).figures()
            ours = e2e["640x480 one face"]["unpaced"]
            results["sequential_640x480_one_face"] = seq
            results["throughput_vs_sequential"] = round(ours["fps"] / seq["fps"], 2)
            # the same pipeline without the prefetch thread: how much of the gain is overlap alone
            progress("our pipeline without the prefetch thread (640x480, one face) ...")
            cfg.source.prefetch = False
            nopf = run_pipeline(cfg, detector, scorer, publisher, scene(640, 480, True), frames, 0.0).figures()
            cfg.source.prefetch = True
            results["no_prefetch_640x480_one_face"] = nopf
            results["throughput_vs_no_prefetch"] = round(ours["fps"] / nopf["fps"], 2)
        main_case = e2e["640x480 one face"]["paced_60fps"]
        results["end_to_end"] = {
            "fps": main_case["fps"],
            "p50_ms": main_case["p50_ms"],
            "p95_ms": main_case["p95_ms"],
            "p99_ms": main_case["p99_ms"],
            "max_unpaced_fps": e2e["640x480 one face"]["unpaced"]["fps"],
            "case": "640x480, one face, camera paced at 60 fps, every frame published",
        }
        results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results["model_files"] = {p.name: p.stat().st_size for p in sorted(models_dir.glob("*.tflite"))}
        results["load_average_at_end"] = list(os.getloadavg())
    finally:
        if publisher:
            publisher.stop()
        if broker:
            broker.stop()
    results["ratios"] = ratios(results)
    return results


def ratios(r: dict) -> dict:
    out = {}
    m = r["models"]
    for key in m:
        if " int8 " in key:
            flt = key.replace(" int8 ", " float32 ")
            if flt in m:
                out[f"{key.replace(' int8', '')}: float32 / int8"] = round(m[flt]["median_ms"] / m[key]["median_ms"], 2)
    e = r["ela_640x480"]
    floor = e["codec floor (encode+decode)"]["median_ms"]
    out["ELA exact / codec floor"] = round(e["ours exact"]["median_ms"] / floor, 2)
    out["ELA display / codec floor"] = round(e["ours display"]["median_ms"] / floor, 2)
    out["naive ELA display / ours display"] = round(e["naive PIL display"]["median_ms"] / e["ours display"]["median_ms"], 2)
    peer = m.get("peer MiniFASNetV2 float 1t")
    if peer:
        ours = sum(v["median_ms"] for k, v in r["stages"].items() if k.startswith("liveness "))
        out["our liveness per face (all models, crop+features) / peer MiniFASNetV2 float invoke"] = round(ours / peer["median_ms"], 2)
        int8_1t = sum(v["median_ms"] for k, v in m.items() if k.endswith(" int8 1t"))
        out["our int8 models per face (invoke only) / peer float invoke"] = round(int8_1t / peer["median_ms"], 2)
    if "throughput_vs_sequential" in r:
        out["pipeline / straight sequential throughput"] = r["throughput_vs_sequential"]
        out["pipeline / same pipeline without the prefetch thread"] = r["throughput_vs_no_prefetch"]
    return out
