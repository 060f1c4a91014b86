import json
import subprocess
import sys

import pytest

from edge_app.config import Config
from edge_app.pipeline import Pipeline
from edge_app.frames.sources.sample import SampleSource, sample_image
from edge_app.frames.sources.synthetic import SyntheticSource, sample_head


def make_pipeline(detector, scorer, **decision):
    cfg = Config()
    for k, v in decision.items():
        setattr(cfg.decision, k, v)
    events = []
    return Pipeline(cfg, detector, scorer, "test-device", sinks=[events.append]), events


def test_run_on_the_sample_prints_decision_events():
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--no-mqtt", "--once", "--print-events"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events, r.stderr
    decisions = [e["decision"] for e in events]
    assert set(decisions) <= {"live", "attack", "uncertain", "no_face"}
    assert decisions[-1] == "no_face"  # the sample ends on an empty scene
    face_events = [e for e in events if e["decision"] != "no_face"]
    assert len(face_events) >= 4
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(e["event_id"] for e in events)) == len(events)
    for e in face_events:
        assert e["frames"] == Config().decision.window
        assert set(e["scores"]) == set(Config().liveness.models)
        assert e["box"] and len(e["box"]) == 4
    assert "done: 48 frames (0 failed, 0 dropped while busy)" in r.stderr


def test_camera_failures_are_reported_fail_closed_and_the_loop_goes_on(detector, scorer):
    pipe, events = make_pipeline(detector, scorer, window=3, min_frames=3)
    src = SyntheticSource(face=sample_head(), frames=12, fail_at=(2, 3, 7))
    stats = pipe.run(src)
    assert stats.frames == 9 and stats.failures == 3
    errors = [e for e in events if e["decision"] == "error"]
    assert len(errors) == 2 and "simulated camera failure" in errors[0]["reason"]
    # after each failure the window restarts: no decision mixes frames from before it
    assert all(e["frames"] == 3 for e in events if e["decision"] not in ("error", "no_face"))


def test_stale_frames_are_never_live(detector, scorer):
    pipe, events = make_pipeline(detector, scorer, window=3, min_frames=1)
    pipe.decisions.threshold = 0.0  # even an accept-everything threshold cannot make stale frames live
    pipe.run(SyntheticSource(face=sample_head(), frames=9, age_s=5.0))
    assert events and all(e["decision"] != "live" for e in events)
    assert all("stale frame" in e["reason"] for e in events)


def test_a_failing_model_fails_closed(detector, scorer, monkeypatch):
    pipe, events = make_pipeline(detector, scorer, window=3, min_frames=1)

    def broken(rgb, face):
        raise RuntimeError("interpreter exploded")

    monkeypatch.setattr(pipe.scorer, "score", broken)
    pipe.run(SyntheticSource(face=sample_head(), frames=6))
    assert [e["decision"] for e in events] == ["error", "error"]
    assert "interpreter exploded" in events[0]["reason"]


def test_a_slow_model_is_a_timeout_not_live(detector, scorer):
    pipe, events = make_pipeline(detector, scorer, window=3, min_frames=1)
    pipe.cfg.liveness.timeout_s = 1e-9
    pipe.decisions.threshold = 0.0
    pipe.run(SyntheticSource(face=sample_head(), frames=3))
    assert [e["decision"] for e in events] == ["error"] and "timeout" in events[0]["reason"]


def test_empty_scene_gives_one_no_face(detector, scorer):
    pipe, events = make_pipeline(detector, scorer)
    pipe.run(SyntheticSource(face=None, frames=10))
    assert [e["decision"] for e in events] == ["no_face"]


def test_verify_answer_is_fail_closed_when_nothing_recent(detector, scorer):
    pipe, events = make_pipeline(detector, scorer)
    assert pipe.latest(max_age_s=1.0)["decision"] == "uncertain"
    pipe.run(SampleSource(loop=False), max_frames=5)
    assert pipe.latest(max_age_s=10.0) == events[-1]


def test_files_source_reports_a_bad_file_and_continues(tmp_path, detector, scorer):
    from PIL import Image

    from edge_app.config import SourceConfig
    from edge_app.frames.sources.files import open_source

    Image.fromarray(sample_image("live")).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    Image.fromarray(sample_image("live")).save(tmp_path / "c.jpg")
    pipe, events = make_pipeline(detector, scorer, window=1, min_frames=1)
    stats = pipe.run(open_source(SourceConfig(kind="files", path=str(tmp_path), loop=False)))
    assert stats.frames == 2 and stats.failures == 1
    assert [e["decision"] for e in events][1] == "error" and "b.jpg" in events[1]["reason"]


def test_missing_files_source_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--no-mqtt", "--path", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "no images found" in r.stderr


def test_prefetch_keeps_order_and_errors_for_unpaced_sources(detector, scorer):
    from edge_app.frames.sources.prefetch import Prefetcher

    reader = Prefetcher(SyntheticSource(face=None, frames=6, fail_at=(3,)), depth=2, drop_stale=False)
    seen = []
    while True:
        try:
            frame = reader.read()
        except Exception as exc:
            seen.append(type(exc).__name__)
            continue
        if frame is None:
            break
        seen.append(frame.seq)
    reader.close()
    assert seen == [1, 2, "SourceError", 4, 5, 6] and reader.dropped == 0


def test_prefetch_drops_stale_frames_of_a_live_source_instead_of_lagging():
    import time

    from edge_app.frames.sources.prefetch import Prefetcher

    reader = Prefetcher(SyntheticSource(face=None, frames=400, fps=400), depth=2, drop_stale=True)
    first = reader.read()
    time.sleep(0.5)  # a slow consumer: up to 200 frames arrive meanwhile
    nxt = reader.read()
    reader.close()
    assert nxt.seq - first.seq > 10  # it skipped ahead to recent frames
    assert reader.dropped > 10


def test_a_camera_that_fails_to_open_is_retried_and_never_live(detector, scorer):
    from edge_app.frames.sources import SourceError
    from edge_app.frames.sources.reopen import ReopeningSource

    attempts = []

    def opener():
        attempts.append(1)
        if len(attempts) <= 2:
            raise SourceError("picamera2:0: camera could not be started (no cameras available)")
        return SyntheticSource(face=sample_head(), frames=6)

    pipe, events = make_pipeline(detector, scorer, window=3, min_frames=3)
    stats = pipe.run(ReopeningSource(opener, "picamera2:0"), max_frames=10)
    assert len(attempts) == 3 and stats.failures == 2 and stats.frames == 6
    assert events[0]["decision"] == "error" and "no cameras available" in events[0]["reason"]
    # after it came back, decisions resumed on full windows of fresh frames
    assert [e["frames"] for e in events[1:]] == [3, 3]


def test_a_camera_that_dies_mid_run_is_reopened(detector, scorer):
    from edge_app.frames.sources.reopen import ReopeningSource

    made = []

    def opener():
        src = SyntheticSource(face=None, frames=0, fail_at=(3,) if not made else ())
        made.append(src)
        return src

    pipe, events = make_pipeline(detector, scorer)
    stats = pipe.run(ReopeningSource(opener, "picamera2:0"), max_frames=8)
    assert len(made) == 2 and stats.failures == 1 and stats.frames == 7


def test_prefetch_does_not_hammer_a_failing_camera():
    import time

    from edge_app.frames.sources import SourceError
    from edge_app.frames.sources.prefetch import Prefetcher
    from edge_app.frames.sources.reopen import ReopeningSource

    attempts = []

    def opener():
        attempts.append(time.monotonic())
        raise SourceError("no camera")

    reader = Prefetcher(ReopeningSource(opener, "picamera2:0"), depth=2, drop_stale=True)
    time.sleep(0.3)  # nobody consumes: the reader must wait, not retry thousands of times
    assert len(attempts) <= 2
    for _ in range(3):
        try:
            reader.read()
        except SourceError:
            pass
    reader.close()
    assert len(attempts) <= 5
