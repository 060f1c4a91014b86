"""picamera2 that cannot be imported (the Pi's numpy mismatch, or no picamera2 at all): one line
with cause and fix, fail-closed error events, no crash, and doctor says the same.

The picamera2 package here is a stand-in for the camera stack (a fake only for the Pi camera
hardware): it fails on import exactly as apt's picamera2 does when a pip numpy 2 shadows the
OS's numpy 1.24 (simplejpeg's Cython type-size check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_app.frames.sources.picamera2_import import CameraImportError, explain, import_picamera2

SIMPLEJPEG_ERROR = ("numpy.dtype size changed, may indicate binary incompatibility. "
                    "Expected 96 from C header, got 88 from PyObject")


def broken_picamera2(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakecam" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise ValueError({SIMPLEJPEG_ERROR!r})\n")
    return pkg.parent


def test_numpy_mismatch_names_both_numpys_and_the_fix():
    msg = explain(ValueError(SIMPLEJPEG_ERROR), system=("1.24.2", "/usr/lib/python3/dist-packages"),
                  loaded=("2.2.6", "/opt/edge-app/venv/lib/python3.11/site-packages"), prefix="/opt/edge-app/venv")
    assert "\n" not in msg
    assert "numpy.dtype size changed" in msg
    assert "found numpy 2.2.6 from /opt/edge-app/venv/lib/python3.11/site-packages" in msg
    assert "expected the system's numpy 1.24.2" in msg
    assert "/opt/edge-app/venv/bin/pip uninstall numpy" in msg and "numpy==1.24.2" in msg


def test_numpy_2_import_error_is_also_a_mismatch_and_other_failures_are_not():
    multi = ImportError("\nA module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.2.6 as it may crash.")
    msg = explain(multi, system=("1.24.2", "/usr/lib/python3/dist-packages"), loaded=("2.2.6", "/x"), prefix="/v")
    assert "numpy mismatch" in msg and "\n" not in msg
    other = explain(OSError("libcamera.so.0.1: cannot open shared object file"), system=None, loaded=None)
    assert "numpy" not in other and "libcamera.so.0.1" in other and "apt install --reinstall python3-picamera2" in other
    missing = ModuleNotFoundError("No module named 'picamera2'", name="picamera2")
    assert "sudo apt install python3-picamera2" in explain(missing)


def test_import_failure_becomes_a_camera_import_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_picamera2(tmp_path)))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    try:
        import_picamera2()
    except CameraImportError as exc:
        assert "numpy mismatch" in str(exc) and f"found numpy {np.__version__}" in str(exc)
    else:
        raise AssertionError("the broken picamera2 imported")


def _env_with(path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_run_reports_one_line_and_fail_closed_error_events_without_crashing(tmp_path):
    env = _env_with(broken_picamera2(tmp_path))
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--source", "picamera2", "--no-mqtt",
                        "--max-frames", "3", "--print-events"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert events and all(e["decision"] == "error" for e in events)
    assert "numpy mismatch" in events[0]["reason"] and "numpy.dtype size changed" in events[0]["reason"]
    logged = [line for line in r.stderr.splitlines() if "numpy mismatch" in line]
    assert logged and all("fix:" in line for line in logged)


def test_doctor_says_the_same(tmp_path):
    env = _env_with(broken_picamera2(tmp_path))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[source]\nkind = "picamera2"\n[mqtt]\nenabled = false\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "doctor", "-c", str(cfg), "--json", "--skip", "models"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 1
    camera = [x for x in json.loads(r.stdout)["results"] if x["check"] == "camera"]
    assert [x["status"] for x in camera] == ["FAIL"]
    assert "numpy mismatch" in camera[0]["detail"] and "crashed" not in camera[0]["detail"]
    assert f"found numpy {np.__version__}" in camera[0]["detail"]
