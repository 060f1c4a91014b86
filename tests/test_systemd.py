"""The systemd unit (systemd-analyze verify, required directives), install.sh into a temporary
root (twice: idempotent; the real system untouched), and the example config."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_app.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edge-app.service"
INSTALL = REPO / "systemd" / "install.sh"
EXAMPLE = REPO / "systemd" / "config.example.toml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; systemd allows repeated keys."""
    out, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(section: str, key: str) -> list[str]:
    return [v for s, k, v in directives(UNIT.read_text()) if s == section and k == key]


def one(section: str, key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
    return found[0]


def analyze_verify(*args: str) -> subprocess.CompletedProcess:
    if not os.access(SYSTEMD_ANALYZE, os.X_OK):
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))


def unit_with_execstart(tmp_path: Path, exe: Path) -> Path:
    """The unit as shipped, with ExecStart's binary replaced by ``exe`` (verify needs it to exist)."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/edge-app/venv/bin/edge-app run --config /etc/edge-app/config.toml" in text
    unit = tmp_path / "edge-app.service"
    unit.write_text(text.replace("ExecStart=/opt/edge-app/venv/bin/edge-app ", f"ExecStart={exe} "))
    return unit


def test_unit_passes_systemd_analyze_verify(tmp_path):
    exe = tmp_path / "edge-app"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    r = analyze_verify(str(unit_with_execstart(tmp_path, exe)))
    assert r.returncode == 0, r.stdout + r.stderr
    # unknown keys, bad values and misplaced directives are only warnings to verify: none allowed
    noise = [line for line in (r.stdout + r.stderr).splitlines() if "edge-app.service" in line]
    assert not noise, noise


def test_verify_catches_what_it_should(tmp_path):
    # the check above means something: a unit with a typo or a missing binary is reported
    exe = tmp_path / "edge-app"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = unit_with_execstart(tmp_path, exe)
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    r = analyze_verify(str(unit))
    assert "WatchdogSecs" in r.stdout + r.stderr
    unit = unit_with_execstart(tmp_path, tmp_path / "missing")
    assert analyze_verify(str(unit)).returncode != 0


def test_unit_has_the_required_directives():
    assert one("Service", "Type") == "notify"
    assert one("Service", "NotifyAccess") == "main"
    assert one("Service", "ExecStart") == "/opt/edge-app/venv/bin/edge-app run --config /etc/edge-app/config.toml"
    assert int(one("Service", "WatchdogSec")) >= 20  # > the 5 s camera back-off of the frame loop
    assert one("Service", "Restart") == "on-failure"
    assert 1 <= int(one("Service", "RestartSec")) <= 30
    assert int(one("Unit", "StartLimitIntervalSec")) > 0 and int(one("Unit", "StartLimitBurst")) > 0
    assert one("Service", "User") == "edge-app"
    assert one("Service", "StateDirectory") == "edge-app"
    assert one("Service", "StateDirectoryMode") == "0700"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one("Service", key) == "yes", key
    assert one("Service", "ProtectSystem") == "strict"
    assert one("Service", "DevicePolicy") == "closed"
    assert not values("Service", "PrivateDevices")  # it would hide the camera
    allowed = values("Service", "DeviceAllow")
    for device in ("char-video4linux", "char-media", "char-dma_heap", "char-gpiochip"):
        assert f"{device} rw" in allowed, device
    assert any(v.startswith("/dev/dma_heap/") for v in allowed)
    read_only = " ".join(values("Service", "ReadOnlyPaths")).split()
    assert "/etc/edge-app" in read_only and "/opt/edge-app" in read_only
    assert one("Install", "WantedBy") == "multi-user.target"


def test_example_config_loads_and_documents_every_section():
    cfg = load_config(EXAMPLE)
    assert cfg.source.kind == "picamera2"
    assert cfg.state_dir == "/var/lib/edge-app"
    assert cfg.liveness.models_dir == "/opt/edge-app/models"
    assert cfg.snapshots.enabled is False  # privacy by default, also in the example
    assert cfg.indicator.kind == "none"
    table = tomllib.loads(EXAMPLE.read_text())
    for section in ("snapshots", "indicator", "doctor"):
        fields = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        assert set(table[section]) == fields, section  # every key shown, with its default
        assert table[section] == dataclasses.asdict(getattr(Config(), section)), section
    assert "password" not in {k for k, v in table["mqtt"].items() if v}  # no secret in the example


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root (the venv summarised) with its type, mode, mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if "/venv/" in f"/{rel}/" and not rel.endswith("venv"):
            continue
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else \
            (os.readlink(p) if p.is_symlink() else "dir")
        out[rel] = (oct(st.st_mode), st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path | None:
    """This checkout built as a wheel (from a copy: a build writes next to its sources)."""
    d = tmp_path_factory.mktemp("wheel")
    src = d / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("edge_app", "convert"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(d / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None  # e.g. no `wheel` in this venv: the install test then runs with --no-pip
    return next((d / "dist").glob("edge_app-*.whl"))


def run_install(root: Path, wheel: Path | None) -> subprocess.CompletedProcess:
    args = ["bash", str(INSTALL), "--root", str(root), "--python", sys.executable]
    args += ["--wheel", str(wheel), "--pip-args", "--no-deps --no-index"] if wheel else ["--no-pip"]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_install_into_a_temporary_root_twice(tmp_path, wheel):
    real = {p: p.exists() for p in (Path("/etc/edge-app"), Path("/opt/edge-app"),
                                     Path("/etc/systemd/system/edge-app.service"))}
    user_before = subprocess.run(["id", "edge-app"], capture_output=True).returncode
    root = tmp_path / "root"

    first = run_install(root, wheel)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "skipping apt" in first.stdout and "skipping user" in first.stdout
    expected = [
        "etc/edge-app/config.toml", "etc/edge-app/config.example.toml", "etc/systemd/system/edge-app.service",
        "opt/edge-app/models/face_detection_short_range.tflite", "opt/edge-app/models/face_detection_short_range.json",
        "opt/edge-app/models/liveness_cnn.tflite", "opt/edge-app/models/liveness_cnn.json",
        "opt/edge-app/share/README.md", "opt/edge-app/share/privacy.md", "opt/edge-app/venv/bin/python",
    ]
    for rel in expected:
        assert (root / rel).exists(), rel
    assert (root / "etc/systemd/system/edge-app.service").read_bytes() == UNIT.read_bytes()
    assert oct((root / "etc/edge-app").stat().st_mode & 0o777) == "0o750"
    assert oct((root / "etc/edge-app/config.toml").stat().st_mode & 0o777) == "0o640"
    cfg = load_config(root / "etc/edge-app/config.toml")
    assert cfg.liveness.models_dir == "/opt/edge-app/models"
    pyvenv = (root / "opt/edge-app/venv/pyvenv.cfg").read_text()
    assert re.search(r"include-system-site-packages\s*=\s*true", pyvenv)  # picamera2 from apt
    if shutil.which("systemctl"):
        link = root / "etc/systemd/system/multi-user.target.wants/edge-app.service"
        assert link.is_symlink(), first.stdout
    if wheel:
        venv_python = root / "opt/edge-app/venv/bin/python"
        # the package (installed --no-deps here, so nothing that imports Pillow or numpy) comes from the venv
        r = subprocess.run([str(venv_python), "-c", "import edge_app as c; print(c.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert r.returncode == 0 and str(root / "opt/edge-app/venv") in r.stdout, r.stdout + r.stderr
        assert (root / "opt/edge-app/venv/bin/edge-app").is_file()
        # the unit verified against the installed tree: ExecStart resolves to the installed entry point
        if os.access(SYSTEMD_ANALYZE, os.X_OK) and Path("/usr/lib/systemd/system/sysinit.target").exists():
            shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
            r = analyze_verify(f"--root={root}", "edge-app.service")
            assert r.returncode == 0, r.stdout + r.stderr
            shutil.rmtree(root / "usr")

    before = tree(root)
    second = run_install(root, wheel)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to do" in second.stdout, second.stdout
    assert tree(root) == before  # not a byte, mode or mtime changed

    # an edited config survives a re-install; the new example is put beside it
    edited = (root / "etc/edge-app/config.toml").read_text().replace('host = "127.0.0.1"', 'host = "hub.lan"')
    (root / "etc/edge-app/config.toml").write_text(edited)
    third = run_install(root, wheel)
    assert third.returncode == 0 and "kept" in third.stdout, third.stdout
    assert (root / "etc/edge-app/config.toml").read_text() == edited
    assert load_config(root / "etc/edge-app/config.toml").mqtt.host == "hub.lan"

    # and the real system was not touched
    for path, existed in real.items():
        assert path.exists() == existed, path
    assert subprocess.run(["id", "edge-app"], capture_output=True).returncode == user_before


def test_install_refuses_unknown_options(tmp_path):
    r = subprocess.run(["bash", str(INSTALL), "--root", str(tmp_path), "--frobnicate"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr
    assert not any(tmp_path.iterdir())
