"""Issue 15, item 1: no number on the way to a decision can make it `live` by being NaN, infinite
or out of range. Each test here reproduces one red-team finding on the real models."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.config import Config, ConfigError, load_config
from edge_app.liveness.decision import Observation, decide
from edge_app.liveness.scorer import load_scorer, sigmoid
from edge_app.pipeline import Pipeline
from edge_app.frames.sources.synthetic import SyntheticSource, sample_head
from edge_app.tflite_model import SEAL_KEY, ModelError, load_model, read_sealed_json, write_metadata

REPO = Path(__file__).resolve().parents[1]
PRINT = REPO / "edge_app" / "sample" / "print.jpg"
NAMES = Config().liveness.models


@pytest.fixture
def models_copy(models_dir, tmp_path) -> Path:
    out = tmp_path / "models"
    out.mkdir()
    for name in [*NAMES, "face_detection_short_range", "face_detection_full_range", "forensics_cnn"]:
        for suffix in (".json", ".tflite"):
            shutil.copy(models_dir / f"{name}{suffix}", out / f"{name}{suffix}")
    shutil.copy(models_dir / "fusion.json", out / "fusion.json")
    return out


def edit_json(path: Path, change, reseal: bool) -> None:
    """Edit a metadata file as an attacker or a careless operator would: by hand (``reseal``
    False, the seal no longer matches) or with the seal recomputed (the range checks must hold)."""
    meta = json.loads(path.read_text())
    change(meta)
    if reseal:
        # as write_metadata does, but NaN allowed (write_metadata refuses it): an attacker's seal
        body = {k: v for k, v in meta.items() if k != SEAL_KEY}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        body[SEAL_KEY] = hashlib.sha256(text.encode()).hexdigest()
        path.write_text(json.dumps(body, indent=2))
    else:
        path.write_text(json.dumps(meta, indent=2))


FUSION_EDITS = {
    "bias NaN": lambda m: m.update(bias=float("nan")),
    "bias +50": lambda m: m.update(bias=50.0),
    "threshold NaN": lambda m: m.update(threshold=float("nan")),
    "threshold 0": lambda m: m.update(threshold=0.0),
    "threshold -1": lambda m: m.update(threshold=-1.0),
    "negated weights": lambda m: m.update(weights={k: -v for k, v in m["weights"].items()}),
    "weights as text": lambda m: m.update(weights={k: "1" for k in m["weights"]}),
}
MODEL_EDITS = {
    "threshold NaN": lambda m: m.update(threshold=float("nan")),
    "threshold 0": lambda m: m.update(threshold=0.0),
    "crop scale 0": lambda m: m["input"]["crop"].update(scale=0.0),
    "crop size 100000": lambda m: m["input"]["crop"].update(size=100000),
    "output kind unknown": lambda m: m["output"].update(kind="probability_of_attack"),
}


@pytest.mark.parametrize("reseal", [False, True], ids=["hand-edited", "resealed"])
@pytest.mark.parametrize("edit", list(FUSION_EDITS))
def test_a_tampered_fusion_file_is_refused(models_copy, edit, reseal):
    edit_json(models_copy / "fusion.json", FUSION_EDITS[edit], reseal)
    with pytest.raises(ModelError, match="fusion.json"):
        load_scorer(models_copy, NAMES)


@pytest.mark.parametrize("reseal", [False, True], ids=["hand-edited", "resealed"])
@pytest.mark.parametrize("edit", list(MODEL_EDITS))
def test_tampered_model_metadata_is_refused(models_copy, edit, reseal):
    edit_json(models_copy / f"{NAMES[0]}.json", MODEL_EDITS[edit], reseal)
    with pytest.raises(ModelError, match=NAMES[0]):
        load_scorer(models_copy, NAMES)


def test_fusion_fitted_on_other_models_is_refused(models_copy):
    edit_json(models_copy / "fusion.json", lambda m: m["models"].update({NAMES[0]: "0" * 64}), reseal=True)
    with pytest.raises(ModelError, match="belongs to other models"):
        load_scorer(models_copy, NAMES)


def test_the_shipped_metadata_is_sealed_and_a_nan_literal_is_not_json(models_dir, tmp_path):
    for path in [*models_dir.glob("*.json")]:
        assert SEAL_KEY in read_sealed_json(path)
    p = tmp_path / "m.json"
    p.write_text('{"threshold": NaN}')
    with pytest.raises(ModelError, match="not valid JSON"):
        read_sealed_json(p)
    with pytest.raises(ValueError):
        write_metadata(p, {"threshold": float("nan")})


def test_convert_write_model_records_the_seal(models_dir, tmp_path):
    """The converter's own writer seals what it writes, so a re-trained model loads as is."""
    from convert.tflite_export import write_model

    meta = json.loads((models_dir / f"{NAMES[0]}.json").read_text())
    meta.pop(SEAL_KEY)
    write_model(tmp_path, "retrained", (models_dir / f"{NAMES[0]}.tflite").read_bytes(), meta)
    assert load_model(tmp_path / "retrained.json").name == "retrained"


def test_cli_and_doctor_refuse_a_nan_bias(models_copy, tmp_path):
    """The red team's reproduction: fusion bias NaN turned print.jpg into `live 1.0000`."""
    edit_json(models_copy / "fusion.json", FUSION_EDITS["bias NaN"], reseal=True)
    r = subprocess.run([sys.executable, "-m", "edge_app", "liveness", str(PRINT), "--models-dir", str(models_copy)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "live" not in r.stdout and "fusion.json" in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n[liveness]\nmodels_dir = "{models_copy}"\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "doctor", "-c", str(cfg), "--skip",
                        "camera,broker,disk,temperature,throttling,indicator,snapshots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "FAIL" in r.stdout and "fusion.json" in r.stdout


def test_sigmoid_of_nan_is_not_one():
    assert math.isnan(sigmoid(float("nan")))


@pytest.mark.parametrize("fused,threshold", [(float("nan"), 0.5), (0.9, float("nan")), (float("inf"), 0.5),
                                             (1.5, 0.5), (0.9, 0.0), (0.9, -1.0)])
def test_decide_never_says_live_for_bad_numbers(fused, threshold):
    window = [Observation((0, 0, 10, 10), fused, {"m": 0.9}, i) for i in range(3)]
    d = decide(window, threshold, min_frames=1, margin=0.5)
    assert d.decision == "error"


def test_decide_refuses_a_nan_per_model_score():
    window = [Observation((0, 0, 10, 10), 0.9, {"m": float("nan")}, i) for i in range(3)]
    assert decide(window, 0.5, 1, 0.5).decision == "error"


def test_a_model_that_outputs_nan_never_gives_live(detector, scorer, monkeypatch):
    cfg = Config()
    cfg.decision.window, cfg.decision.min_frames = 3, 1
    events: list[dict] = []
    pipe = Pipeline(cfg, detector, scorer, device_id="t", sinks=[events.append])
    model = scorer.models[0].model
    monkeypatch.setattr(model, "run", lambda x: [np.array([[np.nan]], dtype=np.float32)])
    pipe.run(SyntheticSource(face=sample_head(), frames=9))
    decisions = [e["decision"] for e in events if e["decision"] != "no_face"]
    assert decisions and all(d == "error" for d in decisions)
    assert "not a finite number" in events[0]["reason"]


@pytest.mark.parametrize("key,value", [("decision.max_frame_age_s", "nan"), ("decision.max_frame_age_s", "inf"),
                                       ("liveness.timeout_s", "nan"), ("liveness.timeout_s", "inf")])
def test_config_refuses_non_finite_time_limits(tmp_path, key, value):
    section, name = key.split(".")
    p = tmp_path / "c.toml"
    p.write_text(f"[{section}]\n{name} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number"):
        load_config(p)


@pytest.mark.parametrize("attr", ["max_frame_age_s", "timeout_s"])
def test_nan_limits_set_in_code_still_fail_closed(detector, scorer, attr):
    """Even past the config's checks, a NaN limit marks frames stale / timed out, never fresh."""
    cfg = Config()
    cfg.decision.window, cfg.decision.min_frames = 3, 1
    if attr == "max_frame_age_s":
        cfg.decision.max_frame_age_s = float("nan")
    else:
        cfg.liveness.timeout_s = float("nan")
    events: list[dict] = []
    pipe = Pipeline(cfg, detector, scorer, device_id="t", sinks=[events.append])
    pipe.run(SyntheticSource(face=sample_head(), frames=9, age_s=5.0 if attr == "max_frame_age_s" else 0.0))
    decisions = [e["decision"] for e in events if e["decision"] != "no_face"]
    assert decisions and set(decisions) == {"error"}


def test_forensics_cli_refuses_a_nan_threshold():
    r = subprocess.run([sys.executable, "-m", "edge_app", "forensics", "--threshold", "nan", str(PRINT)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--threshold nan" in r.stderr and r.stdout == ""


def test_tampered_forensics_metadata_is_refused_by_doctor_and_check_image(models_copy, tmp_path):
    from edge_app.forensics.check import check_image_bytes

    edit_json(models_copy / "forensics_cnn.json", lambda m: m.update(threshold=0.999999), reseal=False)
    result = check_image_bytes(PRINT.read_bytes(), models_dir=models_copy)
    assert result["verdict"] == "error" and "forensics_cnn.json" in result["error"]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n[liveness]\nmodels_dir = "{models_copy}"\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "doctor", "-c", str(cfg), "--skip",
                        "camera,broker,disk,temperature,throttling,indicator,snapshots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "forensics_cnn.json" in r.stdout and "metadata_sha256" in r.stdout
