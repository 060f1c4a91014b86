"""Privacy by default: snapshots off unless configured; when on, bystanders blurred, files
private, deleted after the retention (fake clock); events carry no image data."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.config import Config, SnapshotConfig
from edge_app.frames.detector import Face
from edge_app.pipeline import Pipeline
from edge_app.device.snapshots import SnapshotWriter, grow, redact
from edge_app.frames.sources import Frame
from edge_app.frames.sources.sample import sample_image
from edge_app.frames.sources.synthetic import SyntheticSource, sample_head

HOUR = 3600.0
T0 = 1_800_000_000.0  # a fixed wall-clock time for the fake clock


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def two_face_frame() -> np.ndarray:
    """Two real faces (the sample portrait's head, twice) side by side on a noisy background."""
    head = sample_image("live")[20:240, 180:400]
    frame = np.random.default_rng(0).integers(90, 110, (480, 640, 3), dtype=np.uint8)
    frame[130:350, 60:280] = head
    frame[130:350, 360:580] = head
    return frame


def sharpness(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian of the grey image inside ``box``: high for detail, ~0 for blur."""
    x, y, w, h = box
    g = rgb[y : y + h, x : x + w].astype(np.float64).mean(axis=2)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def attack_event(box, event_id="ab12cd34", decision="attack") -> dict:
    return {"decision": decision, "box": list(box), "event_id": event_id, "score": 0.01, "scores": {}}


def writer(tmp_path, clock=None, **kw) -> SnapshotWriter:
    cfg = SnapshotConfig(enabled=True, dir=str(tmp_path / "snaps"), min_interval_s=0.0)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return SnapshotWriter(cfg, tmp_path / "state", clock=clock or Clock())


def test_snapshots_are_off_by_default(tmp_path):
    cfg = Config()
    assert cfg.snapshots.enabled is False
    w = SnapshotWriter(cfg.snapshots, tmp_path / "state", clock=Clock())
    w.start()
    frame = Frame(rgb=two_face_frame(), seq=1)
    w(frame, [Face(60, 130, 200, 200, 0.9)], [attack_event((60, 130, 200, 200))])
    assert not (tmp_path / "state").exists()  # not even the folder
    assert w.written == 0


def test_bystander_is_blurred_and_subject_kept(tmp_path, detector):
    rgb = two_face_frame()
    faces = sorted(detector.detect(rgb), key=lambda f: f.x)
    assert len(faces) == 2, "the test frame must hold two detectable faces"
    subject, bystander = faces
    w = writer(tmp_path)
    w.start()
    w(Frame(rgb=rgb, seq=7), faces, [attack_event(subject.box(), "00ff")])
    images = sorted((tmp_path / "snaps").glob("*.jpg"))
    assert len(images) == 1 and images[0].name == f"snap-{int(T0 * 1000)}-attack-00ff.jpg"
    shot = np.asarray(Image.open(images[0]).convert("RGB"))
    assert shot.shape == rgb.shape

    before_s, after_s = sharpness(rgb, subject.box()), sharpness(shot, subject.box())
    before_b, after_b = sharpness(rgb, bystander.box()), sharpness(shot, bystander.box())
    assert before_s > 50 and abs(before_s - before_b) < 0.2 * before_s  # the same face twice
    assert after_s > 0.6 * before_s, (before_s, after_s)  # the subject survives (JPEG q90 only)
    assert after_b < 0.02 * before_b, (before_b, after_b)  # the bystander is gone
    # the background noise is smeared too
    assert sharpness(shot, (0, 0, 50, 480)) < 0.05 * sharpness(rgb, (0, 0, 50, 480))
    # and the detector finds the subject in the snapshot but no longer the bystander
    found = detector.detect(shot)
    assert any(abs(f.x - subject.x) < 15 for f in found)
    assert not any(abs(f.x - bystander.x) < 60 for f in found), found

    meta = json.loads(images[0].with_suffix(".json").read_text())
    assert meta["event"]["event_id"] == "00ff" and meta["bystanders_blurred"] == 1
    assert meta["delete_after_epoch_s"] == round(T0 + 72 * HOUR)


def test_a_bystander_inside_the_subjects_margin_is_still_blurred():
    rgb = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    subject, bystander = (100, 50, 60, 60), (175, 60, 30, 30)  # inside the subject grown by 0.5
    out = redact(rgb, subject, [bystander], margin=0.5)
    assert np.array_equal(out[50:110, 100:160], rgb[50:110, 100:160])  # subject box itself intact
    assert sharpness(out, bystander) < 0.01 * sharpness(rgb, bystander)
    x0, y0, x1, y1 = grow(subject, 0.5, 300, 200)
    assert (x0, y0, x1, y1) == (70, 20, 190, 140)


def test_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        w = writer(tmp_path)
        w.start()
        w.save(two_face_frame(), (60, 130, 200, 200), [(60, 130, 200, 200)], attack_event((60, 130, 200, 200)))
    finally:
        os.umask(old)
    folder = tmp_path / "snaps"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.iterdir())
    assert len(files) == 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_an_existing_loose_folder_is_tightened(tmp_path):
    (tmp_path / "snaps").mkdir(mode=0o755)
    os.chmod(tmp_path / "snaps", 0o755)
    writer(tmp_path).start()
    assert stat.S_IMODE((tmp_path / "snaps").stat().st_mode) == 0o700


def test_default_folder_is_in_the_state_dir(tmp_path):
    cfg = SnapshotConfig(enabled=True)
    w = SnapshotWriter(cfg, tmp_path / "state", clock=Clock())
    w.start()
    assert w.dir == tmp_path / "state" / "snapshots" and w.dir.is_dir()


def test_only_configured_decisions_with_a_box_and_rate_limited(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, decisions=["attack"], min_interval_s=10.0)
    w.start()
    frame = Frame(rgb=two_face_frame(), seq=1)
    face = Face(60, 130, 200, 200, 0.9)
    w(frame, [face], [attack_event(face.box(), "01", "live"), {"decision": "no_face", "box": None}])
    assert w.written == 0
    w(frame, [face], [attack_event(face.box(), "02")])
    clock.t += 5
    w(frame, [face], [attack_event(face.box(), "03")])  # within min_interval_s
    clock.t += 6
    w(frame, [face], [attack_event(face.box(), "04")])
    names = sorted(p.name for p in (tmp_path / "snaps").glob("*.jpg"))
    assert [n.split("-")[-1] for n in names] == ["02.jpg", "04.jpg"]


def test_retention_purge_with_a_fake_clock(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, retention_hours=72.0, purge_interval_s=2 * HOUR)
    w.start()
    rgb = two_face_frame()
    face = Face(60, 130, 200, 200, 0.9)
    frame = Frame(rgb=rgb, seq=1)
    w(frame, [face], [attack_event(face.box(), "aa")])
    clock.t += 24 * HOUR
    w(frame, [face], [attack_event(face.box(), "bb")])
    stranger = tmp_path / "snaps" / "notes.txt"  # not ours: never deleted
    stranger.write_text("keep")
    folder = tmp_path / "snaps"
    assert len(list(folder.glob("snap-*"))) == 4

    clock.t = T0 + 71 * HOUR
    w(frame, [], [])  # a frame without events: the periodic purge runs, nothing is old enough
    assert len(list(folder.glob("snap-*"))) == 4

    clock.t = T0 + 72 * HOUR + 1  # "aa" expired, but the next purge is due at 71 h + 2 h
    w(frame, [], [])
    assert len(list(folder.glob("snap-*"))) == 4
    clock.t = T0 + 73 * HOUR  # due now
    w(frame, [], [])
    left = sorted(p.name for p in folder.glob("snap-*"))
    assert [n.split("-")[-1] for n in left] == ["bb.jpg", "bb.json"]
    assert stranger.exists()

    # a restart long after, with snapshots since disabled: the start-up purge still deletes
    later = SnapshotWriter(SnapshotConfig(enabled=False, dir=str(folder)), tmp_path, clock=Clock(T0 + 200 * HOUR))
    later.start()
    assert not list(folder.glob("snap-*")) and stranger.exists()


def test_snapshots_dated_in_the_future_are_purged(tmp_path):
    clock = Clock(T0 + 500 * HOUR)  # written while the clock was far ahead
    w = writer(tmp_path, clock)
    w.start()
    w.save(two_face_frame(), (60, 130, 200, 200), [], attack_event((60, 130, 200, 200)))
    w2 = writer(tmp_path, Clock(T0))  # clock corrected
    w2.start()
    assert not list((tmp_path / "snaps").glob("snap-*"))


def test_max_files_caps_the_folder(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, max_files=3)
    w.start()
    for i in range(5):
        clock.t += 1
        w.save(two_face_frame(), (60, 130, 200, 200), [], attack_event((60, 130, 200, 200), f"{i:02x}"))
    names = sorted(p.name for p in (tmp_path / "snaps").glob("*.jpg"))
    assert [n.split("-")[-1] for n in names] == ["02.jpg", "03.jpg", "04.jpg"]
    assert len(list((tmp_path / "snaps").glob("*.json"))) == 3


def test_a_symlinked_folder_is_refused(tmp_path):
    from edge_app.device.snapshots import SnapshotError

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "snaps").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SnapshotError, match="symbolic link"):
        writer(tmp_path).start()


# -- events carry no biometric data ------------------------------------------------------------
EVENT_KEYS = {"schema", "event_id", "device_id", "timestamp", "seq", "decision", "score", "scores", "threshold",
              "models", "box", "track_id", "frames", "reason", "frame_seq", "timing_ms",
              "source"}  # optional: the image file of a files source (a path, never image data)


def test_event_keys_are_the_documented_ones():
    schema = Path(__file__).resolve().parents[1] / "edge_app" / "schemas" / "event.schema.json"
    if not schema.is_file():
        pytest.skip("no event schema in this checkout")
    doc = json.loads(schema.read_text())
    assert set(doc["properties"]) == EVENT_KEYS and doc.get("additionalProperties") is False


def _no_image_data(value, path="event") -> None:
    assert not isinstance(value, (bytes, bytearray, memoryview, np.ndarray)), f"{path}: binary data"
    if isinstance(value, dict):
        for k, v in value.items():
            _no_image_data(v, f"{path}.{k}")
    elif isinstance(value, list):
        assert len(value) <= 4 and all(isinstance(v, (int, float)) for v in value), f"{path}: {value!r}"
    elif isinstance(value, str):
        assert len(value) < 300, f"{path}: a long string ({len(value)} chars)"
        if len(value) >= 64:  # base64 of even a tiny crop would be long and alphabet-only
            compact = value.replace("\n", "")
            looks_b64 = all(c.isalnum() or c in "+/=_-" for c in compact)
            assert not looks_b64, f"{path}: base64-like payload"
            with pytest.raises(Exception):
                Image.open(__import__("io").BytesIO(base64.b64decode(compact + "===")))


def test_events_carry_no_image_data(detector, scorer):
    events = []
    pipeline = Pipeline(Config(), detector, scorer, "door-1", sinks=[events.append])
    pipeline.run(SyntheticSource(face=sample_head(), frames=12))
    pipeline.run(SyntheticSource(face=None, frames=4))
    pipeline.run(SyntheticSource(face=sample_head(), frames=3, fail_at=(1, 2, 3)))
    assert {e["decision"] for e in events} >= {"no_face", "error"} and len(events) >= 4
    face_events = [e for e in events if e["box"]]
    assert face_events, "no face decision to check"
    for event in events:
        assert EVENT_KEYS - {"source"} <= set(event) <= EVENT_KEYS, set(event) ^ EVENT_KEYS
        _no_image_data(event)
        assert len(json.dumps(event)) < 2000  # a 640x480 frame or a crop could not fit


def test_main_job_writes_redacted_private_snapshots_when_enabled(tmp_path):
    snaps = tmp_path / "snaps"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                      f'[snapshots]\nenabled = true\ndir = "{snaps}"\n'
                      'decisions = ["live", "attack", "uncertain"]\nmin_interval_s = 0.0\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "-c", str(config), "--no-mqtt", "--once"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    images = list(snaps.glob("snap-*.jpg"))
    assert images, r.stderr
    assert stat.S_IMODE(snaps.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in snaps.iterdir())
    meta = json.loads(images[0].with_suffix(".json").read_text())
    x0, y0, x1, y1 = meta["kept_box"]
    shot = np.asarray(Image.open(images[0]).convert("RGB"))
    outside = np.ones(shot.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    # outside the kept box only a smear is left: neighbouring pixels barely differ
    grey = shot.astype(np.float64).mean(axis=2)
    assert np.abs(np.diff(grey, axis=1))[outside[:, 1:]].mean() < 2.0


def test_main_job_writes_nothing_by_default(tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{state}"\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "-c", str(config), "--no-mqtt", "--once"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    written = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
    assert not [p for p in written if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".npy")], written
