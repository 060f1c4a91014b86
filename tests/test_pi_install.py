"""The Raspberry Pi OS install, for real on Debian 12 (what Raspberry Pi OS bookworm is built on).

systemd/install.sh (its --root trial mode) makes the venv from Debian's own /usr/bin/python3
with --system-site-packages and pip-installs this package into it, as on a Pi. apt's
python3-numpy (1.24 on bookworm) must stay the numpy the venv imports: picamera2's compiled
helpers from apt (simplejpeg) are built against it, and a pip numpy 2 shadowing it breaks the
camera import with ``numpy.dtype size changed``. apt's python3-scipy stands in for simplejpeg:
an extension module Debian compiled against that numpy.

Needs the Debian packages python3-numpy, python3-scipy and python3-venv (scripts/setup.sh
installs them) and PyPI for the runtime dependencies (pip's cache makes a re-run quick).
Run alone: ``pytest -m pi_install``; skip it: ``pytest -m "not pi_install"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker import Subscriber, broker, mosquitto  # noqa: F401  (fixtures)

pytestmark = pytest.mark.pi_install

REPO = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")
SAMPLE = REPO / "edge_app" / "sample"


def _clean_env() -> dict:
    # the venv is run as the service runs it: no PYTHONPATH or virtualenv of the test runner
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _system(code: str) -> str:
    r = subprocess.run([str(DEBIAN_PYTHON), "-I", "-c", code], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else ""


@pytest.fixture(scope="module")
def pi_root(tmp_path_factory) -> Path:
    if not Path("/etc/debian_version").exists() or not DEBIAN_PYTHON.exists():
        pytest.skip("not a Debian system with /usr/bin/python3")
    missing = [m for m in ("numpy", "scipy", "venv") if not _system(f"import {m}; print('ok')")]
    assert not missing, (f"Debian's {', '.join('python3-' + m for m in missing)} missing for /usr/bin/python3: "
                         "scripts/setup.sh installs them")
    root = tmp_path_factory.mktemp("pi") / "root"
    r = subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--root", str(root), "--python", str(DEBIAN_PYTHON),
                        "--no-systemctl"], capture_output=True, text=True, timeout=900, env=_clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    root.joinpath("install.log").write_text(r.stdout + r.stderr)
    return root


def venv_python(root: Path) -> str:
    return str(root / "opt/edge-app/venv/bin/python")


def in_venv(root: Path, code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([venv_python(root), "-c", code], capture_output=True, text=True, timeout=120,
                          env=env or _clean_env(), cwd=root)


def test_the_venv_keeps_apts_numpy(pi_root):
    apt_numpy = _system("import numpy; print(numpy.__version__, numpy.__file__)")
    assert apt_numpy.split()[1].startswith("/usr/lib/python3/dist-packages/"), apt_numpy
    r = in_venv(pi_root, "import numpy; print(numpy.__version__, numpy.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == apt_numpy.split()  # the same version from the same place
    log = (pi_root / "install.log").read_text()
    assert f"numpy=={apt_numpy.split()[0]}" in log
    assert (pi_root / "opt/edge-app/pip-constraints.txt").read_text().strip().endswith(f"numpy=={apt_numpy.split()[0]}")
    # nothing in the venv's own site-packages is a numpy, and the runtime's choices fit it
    r = in_venv(pi_root, "import importlib.metadata as m, sys; "
                "print(json.dumps({d.metadata['Name'].lower(): [d.version, str(d.locate_file(''))] "
                "for d in m.distributions()}))".replace("json.dumps", "__import__('json').dumps"))
    dists = json.loads(r.stdout)
    venv_dir = str(pi_root / "opt/edge-app/venv")
    assert not dists["numpy"][1].startswith(venv_dir), dists["numpy"]
    assert "opencv-python-headless" not in dists  # forensics' optional extra, not the terminal's
    assert dists["pywavelets"][0] < "1.9" and dists["pywavelets"][1].startswith(venv_dir)
    assert "ai-edge-litert" in dists


def test_an_apt_extension_built_against_that_numpy_still_imports(pi_root):
    # scipy from apt, compiled against numpy 1.24 like picamera2's simplejpeg
    r = in_venv(pi_root, "import scipy, scipy.special, scipy.ndimage, numpy as np; "
                "print(scipy.__file__); print(float(scipy.special.gamma(5.0)), "
                "int(scipy.ndimage.label(np.eye(4, dtype=np.uint8))[1]))")
    assert r.returncode == 0, r.stderr
    where, values = r.stdout.splitlines()
    assert where.startswith("/usr/lib/python3/dist-packages/scipy/")
    assert values.split() == ["24.0", "4"]


def test_a_pip_numpy_2_shadowing_it_breaks_that_extension_and_the_camera_error_says_so(pi_root, tmp_path):
    # the failure the constraint prevents, shown to be real and to be caught: the test runner's
    # own numpy (pip's, 2.x) put in front of the venv's path, as a pip install would
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        pytest.skip(f"the test runner's numpy is {numpy.__version__}, not a numpy 2 to shadow with")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    site = Path(numpy.__file__).parent.parent
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (shadow / name).symlink_to(site / name)
    # a picamera2 stand-in whose compiled dependency comes from apt (the camera itself is the
    # only thing faked): scipy.special, built against apt's numpy, in place of simplejpeg
    cam = tmp_path / "cam" / "picamera2"
    cam.mkdir(parents=True)
    (cam / "__init__.py").write_text("import scipy.special  # apt-built against the OS's numpy\n"
                                     "class Picamera2:\n    @staticmethod\n    def global_camera_info():\n"
                                     "        return [{'Num': 0, 'Model': 'imx708'}]\n")
    env = _clean_env()
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[source]\nkind = "picamera2"\n[mqtt]\nenabled = false\n')
    env["PYTHONPATH"] = str(cam.parent)  # the OS's numpy: the camera imports and is found
    ok = subprocess.run([str(pi_root / "opt/edge-app/venv/bin/edge-app"), "doctor", "-c", str(config), "--json",
                         "--skip", "models,indicator"], capture_output=True, text=True, timeout=120, env=env)
    camera = [x for x in json.loads(ok.stdout)["results"] if x["check"] == "camera"]
    assert camera[0]["status"] == "PASS" and "imx708" in camera[0]["detail"], camera

    # numpy 2 in front: the import fails as picamera2's does, and the message says why. (The
    # whole edge-app would not start then: PyWavelets imports apt's scipy.fft when present,
    # which fails the same way; so the camera import is checked through the doctor's own helper.)
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(cam.parent)])
    bad = in_venv(pi_root, "from edge_app.frames.sources.picamera2_import import CameraImportError, import_picamera2\n"
                  "try:\n    import_picamera2()\nexcept CameraImportError as exc:\n    print(exc)\n", env=env)
    assert bad.returncode == 0, bad.stderr
    detail = bad.stdout.strip()
    assert "numpy mismatch" in detail and "numpy.dtype size changed" in detail, detail
    system_version = _system("import numpy; print(numpy.__version__)")
    assert f"found numpy {numpy.__version__}" in detail and f"expected the system's numpy {system_version}" in detail


def test_liveness_and_run_work_in_the_pi_venv(pi_root, tmp_path, broker):  # noqa: F811
    models = str(pi_root / "opt/edge-app/models")
    exe = str(pi_root / "opt/edge-app/venv/bin/edge-app")
    r = subprocess.run([exe, "liveness", str(SAMPLE / "live.jpg"), str(SAMPLE / "print.jpg"), str(SAMPLE / "empty.jpg"),
                        "--models-dir", models], capture_output=True, text=True, timeout=180, env=_clean_env())
    assert r.returncode == 0, r.stderr
    decisions = {Path(line.split("\t")[0]).name: line.split("\t")[1] for line in r.stdout.splitlines() if "\t" in line}
    assert decisions["empty.jpg"] == "no_face"
    assert decisions["live.jpg"] in ("live", "attack", "uncertain") and decisions["print.jpg"] in ("live", "attack", "uncertain")

    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[liveness]\nmodels_dir = "{models}"\n')
    sub = Subscriber(broker, ["edge_app/pidoor/#"]).start()
    try:
        r = subprocess.run([exe, "run", "-c", str(config), "--device-id", "pidoor", "--once", "--mqtt-host", broker.host,
                            "--mqtt-port", str(broker.port)], capture_output=True, text=True, timeout=300, env=_clean_env())
        assert r.returncode == 0, r.stderr
        got = sub.wait_for(lambda m: any(x.topic == "edge_app/pidoor/events" and b'"no_face"' in x.payload for x in m),
                           timeout=60, what="the sample's decisions over MQTT")
    finally:
        sub.stop()
    events = [json.loads(x.payload) for x in got if x.topic == "edge_app/pidoor/events"]
    assert {e["decision"] for e in events} - {"no_face"} <= {"live", "attack", "uncertain"}
    assert any(e["decision"] != "no_face" for e in events)
