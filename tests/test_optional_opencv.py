"""OpenCV is the optional extra 'forensics' (pip's OpenCV needs numpy 2, which would shadow the
Pi's apt numpy): without it keypoint matching says which extra to install, and still-image forensics
(which runs on OpenCV) refuses with the same hint; the door terminal needs none of it. cv2 is hidden in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "edge_app" / "sample" / "live.jpg"
HIDE_CV2 = "import sys; sys.modules['cv2'] = None\n"


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_CV2 + code, *args], capture_output=True, text=True, timeout=180)


def test_keypoint_matching_without_opencv_names_the_extra():
    r = _python("import numpy as np\n"
                "from edge_app.forensics.keypoint_copy_move import OpenCVMissing, find_keypoint_copy_move\n"
                "try:\n"
                "    find_keypoint_copy_move(np.zeros((64, 64, 3), np.uint8))\n"
                "except OpenCVMissing as exc:\n"
                "    print(exc)\n")
    assert r.returncode == 0, r.stderr
    assert "edge_app[forensics]" in r.stdout and "OpenCV" in r.stdout


def test_forensics_without_opencv_refuses_in_one_line_naming_the_extra():
    # copy-move search and its dense verification run on OpenCV: without it there is no verdict
    # to give, and the command says what to install instead of failing with a traceback
    r = _python("import sys\nfrom edge_app.cli import main\nsys.exit(main(sys.argv[1:]))",
                "forensics", "--json", str(SAMPLE))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "edge_app[forensics]" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_check_image_without_opencv_is_an_error_reply_not_a_crash():
    r = _python("import json\nfrom edge_app.forensics.check import check_image_bytes\n"
                f"print(json.dumps(check_image_bytes(open({str(SAMPLE)!r}, 'rb').read())))")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["verdict"] == "error" and "edge_app[forensics]" in result["error"]


def test_with_opencv_the_keypoint_evidence_is_there():
    # the same image with OpenCV installed (the test extra has it): the evidence and no such note
    r = subprocess.run([sys.executable, "-m", "edge_app", "forensics", "--json", str(SAMPLE)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[0])
    assert "keypoint_copy_move" in result["evidence"]
    assert not any("keypoint" in n for n in result["notes"])
