import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_app.cli import main
from tests.conftest import nuaa_rows


@pytest.fixture
def sample_dir(datasets, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for p in nuaa_rows(datasets, ("0003",), "live", every=8)[:3] + nuaa_rows(datasets, ("0003",), "print", every=50)[:3]:
        shutil.copy(p, d / p.name)
    return d


def test_liveness_csv_decisions_follow_the_metadata_threshold(sample_dir, scorer, detector, rgb_of, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["liveness", str(sample_dir), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r for r in rows] and list(rows[0]) == ["path", "face_found", "score", "decision"]
    assert len(rows) == 6
    for row in rows:
        assert row["face_found"] == "true"
        score = float(row["score"])
        expected = scorer.score(rgb_of(row["path"]), detector.detect(rgb_of(row["path"]))[0]).fused
        assert score == pytest.approx(expected, abs=1e-4)
        thr, z = scorer.threshold, np.log(expected / (1 - expected))
        attack_below = np.log(thr / (1 - thr)) - 0.5  # the default uncertain margin, in logit units
        assert row["decision"] == ("live" if expected >= thr else "attack" if z < attack_below else "uncertain")
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 6


def test_bad_inputs_are_named_and_the_run_continues(sample_dir, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    good = next(sample_dir.iterdir())
    corrupt.write_bytes(good.read_bytes()[:2000])  # a JPEG cut off mid-scan
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "rows.csv"
    code = main(["liveness", str(corrupt), str(text), str(empty), str(missing), str(good), "--csv", str(out)])
    assert code == 1  # the run goes on, but a missing path or an empty folder is a non-zero exit
    rows = {r["path"]: r for r in csv.DictReader(out.open())}
    assert rows[str(corrupt)]["decision"] == "error"
    assert rows[str(text)]["decision"] == "error"
    assert rows[str(empty)]["decision"] == "error"
    assert rows[str(missing)]["decision"] == "error"
    assert rows[str(good)]["decision"] in ("live", "attack", "uncertain")  # the good one still scored
    printed = capsys.readouterr().out
    assert "corrupt or truncated" in printed
    assert "not an image file" in printed
    assert "directory holds no images" in printed
    assert "no such file" in printed


def test_image_without_a_face_is_no_face_never_live(tmp_path, capsys):
    from PIL import Image

    from tests.conftest import blank_frame

    p = tmp_path / "wall.jpg"
    Image.fromarray(blank_frame()).save(p)
    out = tmp_path / "r.csv"
    assert main(["liveness", str(p), "--csv", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    assert row == {"path": str(p), "face_found": "false", "score": "", "decision": "no_face"}


def test_console_script_help_and_missing_model(tmp_path):
    exe = [sys.executable, "-m", "edge_app"]
    help_text = subprocess.run(exe + ["liveness", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--csv" in help_text and "PATH" in help_text
    r = subprocess.run(exe + ["liveness", "--models-dir", str(tmp_path), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "face_detection_short_range.json" in r.stderr and "not found" in r.stderr
