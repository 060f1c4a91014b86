"""OpenCV is the optional extra 'forensics' (pip's OpenCV needs numpy 2, which would shadow the
Pi's apt numpy): without it keypoint matching says which extra to install, and forensics still
gives a verdict, saying the keypoint evidence is missing. cv2 is hidden in a child process."""

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
                "from edge_app.keypoint_copy_move import OpenCVMissing, find_keypoint_copy_move\n"
                "try:\n"
                "    find_keypoint_copy_move(np.zeros((64, 64, 3), np.uint8))\n"
                "except OpenCVMissing as exc:\n"
                "    print(exc)\n")
    assert r.returncode == 0, r.stderr
    assert "edge_app[forensics]" in r.stdout and "OpenCV" in r.stdout


def test_forensics_without_opencv_still_gives_a_verdict_and_says_what_is_missing():
    r = _python("import sys\nfrom edge_app.cli import main\nsys.exit(main(sys.argv[1:]))",
                "forensics", "--json", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[0])
    assert result["verdict"] in ("authentic", "manipulated")
    assert "keypoint_copy_move" not in result["evidence"]
    assert any("keypoint copy-move evidence not computed" in n and "edge_app[forensics]" in n for n in result["notes"])


def test_with_opencv_the_keypoint_evidence_is_there():
    # the same image with OpenCV installed (the test extra has it): the evidence and no such note
    r = subprocess.run([sys.executable, "-m", "edge_app", "forensics", "--json", str(SAMPLE)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[0])
    assert "keypoint_copy_move" in result["evidence"]
    assert not any("keypoint" in n for n in result["notes"])
