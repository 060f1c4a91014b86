"""Issue 15: forensics of any single input within 200 MB peak RSS (a 512 MB Pi), and the
memory-saving code paths giving the same pixels as the plain ones they replace.

The peak is measured on a real process, ``edge-app forensics`` on a real 12 MP file, by the
kernel's own account (the child's VmHWM at its end): memory, not time, so it does not depend
on how loaded the machine is.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.forensics.heatmap import _error_level_by_strips, ela_panel, overlay
from edge_app.forensics.loading import _lanczos_by_passes
from edge_app.features.ela import error_level
from edge_app.images import decode, rgb_array

REPO = Path(__file__).resolve().parents[1]
PEAK_LIMIT_MB = 200


def _photo(w: int, h: int) -> np.ndarray:
    """The sample portrait enlarged to w x h with sensor-like noise (JPEG and PNG alike)."""
    with Image.open(REPO / "edge_app" / "sample" / "live.jpg") as im:
        big = np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), np.int16)
    noise = np.random.default_rng(15).normal(0, 3, big.shape).astype(np.int16)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_12mp() -> np.ndarray:
    return _photo(4000, 3000)




@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_forensics_of_a_12mp_photo_peaks_under_200_mb(tmp_path, photo_12mp, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(photo_12mp).save(path, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    # VmHWM of the child's own address space: ru_maxrss would not do, as Linux carries the
    # parent's peak over exec (a child of pytest would report pytest's 450 MB)
    code = ("import sys; from edge_app.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_KB', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "forensics", "--json", str(path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split("PEAK_KB")[1].split()[0]) / 1024
    result = proc.stdout.splitlines()[0]
    assert '"width": 4000' in result and '"verdict": "error"' not in result
    assert peak_mb <= PEAK_LIMIT_MB, f"edge-app forensics on a 12 MP {fmt} peaked at {peak_mb:.0f} MB"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA"])
def test_two_pass_downscale_gives_the_one_call_pixels(mode):
    rgb = _photo(1203, 901)
    im = Image.fromarray(rgb).convert(mode)
    expected = np.asarray(im.convert("RGB").resize((700, 523), Image.Resampling.LANCZOS))
    got = np.asarray(_lanczos_by_passes(im.copy(), (700, 523)))
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "CMYK", "I;16"])
def test_strip_conversion_gives_the_whole_image_conversion(mode):
    im = Image.fromarray(_photo(301, 203)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        im = im.convert("I").point(lambda v: v * 200).convert("I;16")
    assert np.array_equal(rgb_array(im), np.asarray(im.convert("RGB")))


def test_decode_array_matches_pillow_and_names_a_bad_input():
    buf = io.BytesIO()
    Image.fromarray(_photo(640, 480)).convert("RGBA").save(buf, "PNG")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        expected = np.asarray(im.convert("RGB"))
    assert np.array_equal(decode(data, "x.png").rgb, expected)
    from edge_app.images import ImageLoadError

    with pytest.raises(ImageLoadError, match="broken.png"):
        decode(data[: len(data) // 2], "broken.png")


def test_ela_by_strips_is_the_whole_image_map():
    rgb = _photo(1000, 700)
    assert np.array_equal(_error_level_by_strips(rgb), error_level(rgb, 90))


def test_ela_panel_and_overlay_keep_their_pixels():
    rgb = _photo(640, 480)
    panel, top = ela_panel(rgb)
    levels = np.minimum(error_level(rgb, 90).astype(np.float32) / 32, 1).mean(axis=2)
    assert top == pytest.approx(float(np.percentile(levels, 99.5)) * 32)
    plain = (np.clip(levels / max(top / 32, 1e-6), 0, 1) ** 0.6 * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(panel[..., 0], plain) and np.array_equal(panel[..., 2], plain)
    a = np.zeros((480, 640), bool)
    a[50:200, 60:300] = True
    b = np.zeros((480, 640), bool)
    b[150:300, 200:400] = True  # overlapping: the tints compound
    out = overlay(rgb, {"block_copy_move": a, "keypoint_copy_move": b}, alpha=0.4)
    both = a & b
    f = rgb.astype(np.float32)
    tinted = (f * 0.6 + np.float32(255) * np.array([1, 0, 1], np.float32) * 0.4)
    tinted = tinted * 0.6 + np.array([0, 200, 255], np.float32) * 0.4
    inner = np.zeros_like(both)
    inner[160:190, 210:290] = True  # inside both regions, away from the outlines drawn on their edges
    assert both[inner].all()
    assert np.array_equal(out[inner], np.clip(tinted[inner] + 0.5, 0, 255).astype(np.uint8))
    untouched = ~(a | b)
    untouched[40:320, 50:410] = False
    assert np.array_equal(out[untouched], rgb[untouched])
