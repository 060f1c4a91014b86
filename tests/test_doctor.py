"""``edge-app doctor``: real model files, a real mosquitto with a password file, loopback only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.commands import doctor as doctor_mod

USER, PASSWORD = "door1", "s3cret-pass"




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A mosquitto on a free loopback port that accepts only USER/PASSWORD."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    tool = shutil.which("mosquitto_passwd")
    if not exe or not tool:
        pytest.skip("mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)")
    d = tmp_path_factory.mktemp("broker")
    subprocess.run([tool, "-b", "-c", str(d / "passwd"), USER, PASSWORD], check=True, capture_output=True, timeout=30)
    port = free_port()
    import pwd

    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"persistence false\nlog_dest file {d / 'log'}\nuser {pwd.getpwuid(os.getuid()).pw_name}\n")
    proc = subprocess.Popen([exe, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {proc.stderr.read().decode()}")
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(10)


def write_config(tmp_path: Path, port: int, password: str | None = PASSWORD, user: str = USER, extra: str = "") -> Path:
    pw = tmp_path / "mqtt-password"
    if password is not None:
        pw.write_text(password + "\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "{user}"\npassword_file = "{pw}"\n'
                   f'[doctor]\nbroker_timeout_s = 3.0\n' + extra)
    return cfg


def doctor(capsys, *args: str) -> tuple[int, list[tuple[str, str, str]]]:
    rc = main(["doctor", *args])
    out = capsys.readouterr().out
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("PASS", "WARN", "FAIL", "SKIP"):
            rows.append((parts[0], parts[1], parts[2]))
    assert out.rstrip().splitlines()[-1].startswith("doctor: "), out
    return rc, rows


def statuses(rows, check: str) -> list[str]:
    return [s for s, c, _ in rows if c == check]


def detail(rows, check: str) -> str:
    return " | ".join(d for _, c, d in rows if c == check)


SKIP_HW = ("--skip", "camera,temperature,throttling")


def test_a_good_setup_passes(tmp_path, broker, capsys):
    rc, rows = doctor(capsys, "-c", str(write_config(tmp_path, broker)), *SKIP_HW)
    assert rc == 0, rows
    assert statuses(rows, "config") == ["PASS"]
    from edge_app.config import Config

    # the detectors of detector.model (both by default), each configured liveness model, forensics, the
    # fusion and the strict JPEG check
    from edge_app.frames.detector import DETECTOR_MODELS

    n_detectors = len(DETECTOR_MODELS[Config().detector.model])
    assert statuses(rows, "models") == ["PASS"] * (len(Config().liveness.models) + n_detectors + 3)
    assert "strict JPEG decoding" in detail(rows, "models")
    assert "face_detection_short_range" in detail(rows, "models") and "sha256" in detail(rows, "models")
    assert "face_detection_full_range" in detail(rows, "models")
    assert statuses(rows, "broker") == ["PASS"] and "Success" in detail(rows, "broker")
    assert statuses(rows, "disk") == ["PASS"]
    assert statuses(rows, "snapshots") == ["PASS"] and "disabled" in detail(rows, "snapshots")
    assert statuses(rows, "camera") == ["SKIP"]
    assert not any(s == "FAIL" for s, _, _ in rows)
    assert PASSWORD not in capsys.readouterr().out


def test_a_corrupt_model_fails_with_exit_1(tmp_path, broker, capsys, models_dir):
    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    data = bytearray((models / "liveness_cnn.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / "liveness_cnn.tflite").write_bytes(bytes(data))
    rc, rows = doctor(capsys, "-c", str(write_config(tmp_path, broker)), "--models-dir", str(models), *SKIP_HW)
    assert rc == 1
    fails = [d for s, c, d in rows if c == "models" and s == "FAIL"]
    assert len(fails) == 1 and fails[0].startswith("liveness_cnn:") and "sha256" in fails[0], rows
    assert "does not match" in fails[0]
    assert "face_detection_short_range" in detail(rows, "models")  # the others are still checked
    assert statuses(rows, "broker") == ["PASS"]


def test_a_missing_model_is_named(tmp_path, capsys, models_dir):
    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    (models / "face_detection_short_range.tflite").unlink()
    rc, rows = doctor(capsys, "--models-dir", str(models), "--skip", "camera,broker,temperature,throttling")
    assert rc == 1
    assert "face_detection_short_range.tflite" in detail(rows, "models") and "missing" in detail(rows, "models")


def test_an_unreachable_broker_fails(tmp_path, capsys):
    port = free_port()  # nothing listens here
    rc, rows = doctor(capsys, "-c", str(write_config(tmp_path, port)), *SKIP_HW)
    assert rc == 1
    assert statuses(rows, "broker") == ["FAIL"]
    assert f"127.0.0.1:{port}" in detail(rows, "broker") and "unreachable" in detail(rows, "broker")


def test_a_wrong_password_fails_naming_the_credentials(tmp_path, broker, capsys):
    rc, rows = doctor(capsys, "-c", str(write_config(tmp_path, broker, password="wrong")), *SKIP_HW)
    assert rc == 1
    text = detail(rows, "broker")
    assert statuses(rows, "broker") == ["FAIL"] and "credentials" in text and "refused user 'door1'" in text, text
    assert "wrong" not in text  # the password is never printed


def test_anonymous_against_a_password_broker_fails(tmp_path, broker, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nport = {broker}\nprotocol = "5"\n')
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW)
    assert rc == 1 and "credentials" in detail(rows, "broker") and "anonymous" in detail(rows, "broker")


def test_an_unreadable_password_file_is_named(tmp_path, broker, capsys):
    cfg = write_config(tmp_path, broker, password=None)  # the password file is never written
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW)
    assert rc == 1
    assert "mqtt.password_file" in detail(rows, "broker") and "mqtt-password" in detail(rows, "broker")


def test_mqtt_disabled_is_skipped_not_failed(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n')
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW)
    assert rc == 0 and statuses(rows, "broker") == ["SKIP"]


def test_an_invalid_config_fails_and_names_the_key(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[mqtt]\nprot = 1883\n")
    rc, rows = doctor(capsys, "-c", str(cfg))
    assert rc == 1
    assert statuses(rows, "config") == ["FAIL"] and "mqtt.prot" in detail(rows, "config")
    assert set(s for s, c, _ in rows if c != "config") == {"SKIP"}


def test_not_a_pi_camera_source_fails_clearly(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on any machine without it
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[source]\nkind = "picamera2"\n[mqtt]\nenabled = false\n')
    rc, rows = doctor(capsys, "-c", str(cfg), "--skip", "models")
    assert rc == 1
    assert statuses(rows, "camera") == ["FAIL"] and "not a Raspberry Pi" in detail(rows, "camera")
    assert statuses(rows, "indicator") == ["WARN"]  # a camera with nothing to show it is on
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n')  # the sample: only a warning
    rc, rows = doctor(capsys, "-c", str(cfg), "--skip", "models")
    assert rc == 0 and statuses(rows, "camera") == ["WARN"]


def test_low_disk_space_fails(tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n[doctor]\nmin_free_mb = 1000000000\n')
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW, "--skip", "models")
    assert rc == 1 and statuses(rows, "disk") == ["FAIL"] and "MB free" in detail(rows, "disk")


def test_temperature_thresholds(tmp_path, capsys, monkeypatch):
    sensor = tmp_path / "temp"
    monkeypatch.setattr(doctor_mod, "THERMAL_PATH", sensor)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n')
    expected = {None: "SKIP", "52300": "PASS", "81000": "WARN", "86500": "FAIL"}
    for value, status in expected.items():
        if value is not None:
            sensor.write_text(value + "\n")
        rc, rows = doctor(capsys, "-c", str(cfg), "--skip", "camera,models,throttling")
        assert statuses(rows, "temperature") == [status], (value, rows)
        assert rc == (1 if status == "FAIL" else 0)
    assert "86.5 C" in detail(rows, "temperature")


def test_throttling_flags():
    assert doctor_mod.throttle_result("throttled=0x0\n").status == "PASS"
    past = doctor_mod.throttle_result("throttled=0x50000")
    assert past.status == "WARN" and "under-voltage since boot" in past.detail and "power supply" in past.detail
    now = doctor_mod.throttle_result("throttled=0x50005")
    assert now.status == "FAIL" and "under-voltage now" in now.detail and "throttled now" in now.detail
    assert doctor_mod.throttle_result("throttled=0x4").status == "WARN"
    assert doctor_mod.throttle_result("error=1 error_msg=...").status == "SKIP"


def test_a_snapshot_folder_readable_by_others_fails(tmp_path, capsys):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    os.chmod(snaps, 0o755)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n[snapshots]\nenabled = true\ndir = "{snaps}"\n')
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW, "--skip", "models")
    assert rc == 1 and statuses(rows, "snapshots") == ["FAIL"] and "0700" in detail(rows, "snapshots")
    os.chmod(snaps, 0o700)
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW, "--skip", "models")
    assert rc == 0 and "enabled for attack" in detail(rows, "snapshots")


def test_unknown_skip_is_refused(capsys):
    with pytest.raises(SystemExit, match="unknown check"):
        main(["doctor", "--skip", "camra"])


def test_json_output_and_exit_status_from_the_console(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[mqtt]\nport = {free_port()}\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "doctor", "-c", str(cfg), "--json", *SKIP_HW],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    by_check = {x["check"]: x["status"] for x in doc["results"]}
    assert by_check["broker"] == "FAIL" and by_check["config"] == "PASS"


def test_an_unreadable_config_fails_without_a_traceback(tmp_path, capsys):
    rc, rows = doctor(capsys, "-c", str(tmp_path))  # a directory: reading it fails like a 0640 file would
    assert rc == 1 and statuses(rows, "config") == ["FAIL"] and "is a directory" in detail(rows, "config")


def test_password_file_and_env_together_are_refused(tmp_path, broker, capsys):
    cfg = write_config(tmp_path, broker, extra="")
    cfg.write_text(cfg.read_text().replace('password_file = ', 'password_env = "X"\npassword_file = '))
    rc, rows = doctor(capsys, "-c", str(cfg), *SKIP_HW)
    assert rc == 1 and "set one of them, not both" in detail(rows, "broker")
