"""What a person at the terminal or in the journal reads: a line per decision, a status line, a
tally, annotated pictures, clear exit codes and one-line errors."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from edge_app.config import Config, ConfigError, load_config
from edge_app.frames.sources import SourceError
from edge_app.frames.sources.reopen import ReopeningSource
from edge_app.liveness.annotate import COLOURS
from edge_app.liveness.decision_log import DecisionLog, StatusTicker, describe, status_line
from edge_app.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "edge_app" / "sample"
SCHEMA = json.loads((REPO / "edge_app" / "schemas" / "event.schema.json").read_text())


def edge_app(*args: str, cwd: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_app", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_a_decision_line_says_decision_score_threshold_track_box_and_reason():
    live = {"decision": "live", "score": 0.934, "threshold": 0.2888, "track_id": 4, "box": [212, 96, 180, 220],
            "frames": 5, "reason": ""}
    assert describe(live) == "live       score 0.934 >= 0.289  track 4  box 212,96,180,220  5 frames"
    unsure = dict(live, decision="uncertain", score=0.21, reason="score 0.21 within the uncertain margin")
    assert "score 0.210 < 0.289" in describe(unsure) and "(score 0.21 within the uncertain margin)" in describe(unsure)
    error = {"decision": "error", "score": None, "threshold": 0.29, "track_id": None, "box": None, "frames": 0,
             "reason": "picamera2:0: capture failed", "source": "/data/door/img_7.jpg"}
    assert describe(error) == "error      file img_7.jpg  (picamera2:0: capture failed)"


def test_the_status_line_ticks_at_its_interval(detector, scorer, caplog):
    pipe = Pipeline(Config(), detector, scorer, "d")
    pipe.stats.frames, pipe.stats.failures, pipe.stats.faces = 120, 2, 95
    counts = DecisionLog().counts | {"live": 3, "attack": 1}
    line = status_line(pipe.stats, counts)
    assert "120 frames (2 failed)" in line and "95 faces seen" in line and "3 live, 1 attack" in line
    assert line.endswith("MQTT off")
    now = [0.0]
    ticker = StatusTicker(60.0, lambda: line, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="edge_app.status"):
        for t in (1.0, 59.0, 60.5, 61.0, 119.0, 121.0):
            now[0] = t
            ticker()
    assert [r.getMessage() for r in caplog.records if r.name == "edge_app.status"] == [line, line]


def test_a_negative_status_interval_is_refused(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[log]\nstatus_interval_s = -1\n")
    with pytest.raises(ConfigError, match="log.status_interval_s"):
        load_config(cfg)


def test_run_logs_a_line_per_decision_and_a_tally_and_prints_json_only_when_asked():
    r = edge_app("run", "--no-mqtt", "--once")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # no JSON without --print-events
    lines = [line.split("edge_app.decisions: ", 1)[1] for line in r.stderr.splitlines() if "edge_app.decisions: " in line]
    assert lines and all(line.split()[0] in ("live", "attack", "uncertain", "no_face", "error") for line in lines)
    assert all(len(line) < 120 for line in lines)
    tally = next(line for line in r.stderr.splitlines() if "edge_app.run: decisions: " in line)
    kinds = {"live", "attack", "uncertain", "no_face", "error"}
    counted = {k: int(n) for n, k in (part.split() for part in tally.split("decisions: ")[1].split(", ")) if k in kinds}
    assert sum(counted.values()) == len(lines)
    assert counted["no_face"] == sum(line.startswith("no_face") for line in lines)

    r = edge_app("run", "--no-mqtt", "--once", "--print-events")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(events) == len(lines)


def test_a_few_stills_report_the_unfinished_window_and_events_name_their_file(tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(2):
        shutil.copy(SAMPLE / "live.jpg", few / f"door_{i}.jpg")
    r = edge_app("run", "--no-mqtt", "--once", "--print-events", "--path", str(few))
    assert r.returncode == 0 and r.stdout == ""
    assert "decision window was unfinished" in r.stderr and "(2 of 5 frames)" in r.stderr

    for i in range(2, 5):
        shutil.copy(SAMPLE / "live.jpg", few / f"door_{i}.jpg")
    r = edge_app("run", "--no-mqtt", "--once", "--print-events", "--path", str(few))
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(events) == 1 and events[0]["source"] == str(few / "door_4.jpg")
    jsonschema.Draft202012Validator(SCHEMA).validate(events[0])
    assert "file door_4.jpg" in r.stderr
    assert "unfinished" not in r.stderr
    # a camera's events carry no source field
    r = edge_app("run", "--no-mqtt", "--once", "--print-events", "--max-frames", "10")
    assert all("source" not in json.loads(line) for line in r.stdout.splitlines())


def test_a_camera_that_stays_broken_is_logged_once_not_per_retry(detector, scorer, caplog):
    def opener():
        raise SourceError("picamera2:0: camera could not be started (no cameras available)")

    events = []
    pipe = Pipeline(Config(), detector, scorer, "d", sinks=[events.append])
    with caplog.at_level(logging.ERROR, logger="edge_app.pipeline"):
        stats = pipe.run(ReopeningSource(opener, "picamera2:0"), max_frames=4)
    assert stats.failures == 4
    assert len([r for r in caplog.records if "could not be started" in r.getMessage()]) == 1
    assert [e["decision"] for e in events] == ["error"]  # and it fails closed


def _colour_fraction(img: Image.Image, box, colour) -> float:
    """Share of the box's top edge drawn in ``colour``."""
    a = np.asarray(img).astype(int)
    x, y, w, _ = box
    edge = a[y, x: x + w]
    return float(np.mean(np.abs(edge - np.array(colour)).sum(axis=1) < 60))


def test_liveness_annotate_draws_boxes_in_the_decisions_colours(tmp_path, detector):
    out = tmp_path / "annotated"
    r = edge_app("liveness", str(SAMPLE / "live.jpg"), str(SAMPLE / "print.jpg"), str(SAMPLE / "empty.jpg"),
                 "--annotate", str(out))
    assert r.returncode == 0, r.stderr
    decisions = {Path(line.split("\t")[0]).stem: line.split("\t")[1] for line in r.stdout.splitlines()}
    assert sorted(p.name for p in out.iterdir()) == ["empty_annotated.jpg", "live_annotated.jpg", "print_annotated.jpg"]
    for stem in ("live", "print"):
        img = Image.open(out / f"{stem}_annotated.jpg").convert("RGB")
        face = detector.detect(np.asarray(Image.open(SAMPLE / f"{stem}.jpg").convert("RGB")))[0]
        assert _colour_fraction(img, face.box(), COLOURS[decisions[stem]]) > 0.8, stem
        original = np.asarray(Image.open(SAMPLE / f"{stem}.jpg").convert("RGB")).astype(int)
        assert _colour_fraction(Image.fromarray(original.astype(np.uint8)), face.box(), COLOURS[decisions[stem]]) < 0.2
    empty = np.asarray(Image.open(out / "empty_annotated.jpg").convert("RGB")).astype(int)
    assert empty.shape == np.asarray(Image.open(SAMPLE / "empty.jpg")).shape


def test_run_annotate_writes_the_frames_with_decisions(tmp_path):
    out = tmp_path / "frames"
    r = edge_app("run", "--no-mqtt", "--max-frames", "12", "--annotate", str(out))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    decided = len([line for line in r.stderr.splitlines() if "edge_app.decisions: " in line and "no_face" not in line])
    assert decided >= 2 and len(names) >= decided  # decisions, plus the first frame of the second
    assert all(n.endswith("_frame_annotated.jpg") for n in names)


def test_exit_codes_and_usage(tmp_path):
    (tmp_path / "empty").mkdir()
    for args in ([str(tmp_path / "missing.jpg")], [str(tmp_path / "empty")]):
        r = edge_app("liveness", *args)
        assert r.returncode == 1, (args, r.stderr)
        r = edge_app("forensics", *args)
        assert r.returncode == 1, (args, r.stderr)
    for bad in (["--max-frames", "-1"], ["--fps", "-5"]):
        r = edge_app("run", "--no-mqtt", *bad)
        assert r.returncode == 2 and "usage: edge-app run" in r.stderr and bad[0] in r.stderr, r.stderr
    r = edge_app("liveness", str(SAMPLE / "live.jpg"), "--cvs", "out.csv")
    assert r.returncode == 2 and "usage: edge-app liveness" in r.stderr and "--cvs" in r.stderr


def test_unwritable_outputs_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for args in (["liveness", str(SAMPLE / "live.jpg"), "--csv", str(blocker / "x.csv")],
                 ["liveness", str(SAMPLE / "live.jpg"), "--annotate", str(blocker / "dir")],
                 ["forensics", str(SAMPLE / "live.jpg"), "--csv", str(blocker / "x.csv")],
                 ["forensics", str(SAMPLE / "live.jpg"), "--heatmap", str(blocker / "dir")]):
        r = edge_app(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        said = [line for line in r.stderr.splitlines() if line.startswith("edge-app ")]
        assert len(said) == 1 and str(blocker) in said[0] and "cannot write" in said[0], r.stderr


def test_bench_ela_takes_the_options_it_advertises(tmp_path):
    report = tmp_path / "ela.md"
    r = edge_app("bench", "ela", "--only", "crop", "--repeat", "2", "--quality", "85", "--report", str(report),
                 "--json", str(tmp_path / "ela.json"), timeout=300)
    assert r.returncode == 0, r.stderr
    figures = json.loads((tmp_path / "ela.json").read_text())
    assert figures["quality"] == 85 and list(figures["ela"]) == ["128x128 crop"]
    assert "--only crop" in report.read_text() and "128x128 crop" in report.read_text()


def test_local_broker_runs_spool_apart_from_the_device(tmp_path):
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto not installed")
    from broker import free_port

    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {free_port()}\n')
    r = edge_app("run", "-c", str(config), "--local-broker", "--max-frames", "12")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "state" / "local-broker" / "spool.sqlite3").exists()
    assert not (tmp_path / "state" / "spool.sqlite3").exists()  # the device's own spool is untouched
    with sqlite3.connect(tmp_path / "state" / "local-broker" / "spool.sqlite3") as db:
        assert db.execute("select count(*) from sqlite_master").fetchone()[0] > 0
    assert "mosquitto_sub" in r.stderr and "-t 'edge_app/" in r.stderr
