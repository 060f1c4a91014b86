"""ELA: bit-exact against the straightforward Pillow implementation."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageChops, ImageEnhance

from edge_app.features import ela_codecs
from edge_app.features.ela import (
    ELA_CLIP_LEVEL,
    ELA_SCALE,
    ElaWorkspace,
    error_level,
    error_level_display,
    error_level_normalized,
)
from edge_app.features.ela_codecs import PREFERENCE, CodecUnavailable, open_codec


def _available_codecs() -> list[str]:
    names = []
    for name in PREFERENCE:
        try:
            open_codec(name)
            names.append(name)
        except CodecUnavailable:
            pass
    return names


#: every backend that runs here is held to the same reference
CODECS = _available_codecs()
WORKSPACES = {name: ElaWorkspace(name) for name in CODECS}
if "turbojpeg" in CODECS:
    # large images coded in up to 4 strips at once, whatever this machine's core count
    CODECS.append("turbojpeg x4")
    WORKSPACES["turbojpeg x4"] = ElaWorkspace("turbojpeg", threads=4)

DATASETS = Path(
    os.environ.get("EDGE_APP_DATASETS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
)


# --------------------------------------------------------------- reference


def ref_diff(rgb: np.ndarray, quality: int) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return ImageChops.difference(im, Image.open(buf))


def ref_exact(rgb: np.ndarray, quality: int) -> np.ndarray:
    return np.asarray(ref_diff(rgb, quality))


def ref_display(rgb: np.ndarray, quality: int) -> np.ndarray:
    diff = ref_diff(rgb, quality)
    max_diff = max(hi for _, hi in diff.getextrema()) or 1
    return np.asarray(ImageEnhance.Brightness(diff).enhance(255.0 / max_diff))


def dataset_images(folder: str, pattern: str, count: int) -> list[Path]:
    root = DATASETS / folder
    if not root.is_dir():
        pytest.skip(f"dataset folder {root} not present")
    files = sorted(root.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {root}")
    step = max(1, len(files) // count)
    return files[::step][:count]


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.array(im.convert("RGB"))


# --------------------------------------------------------------- exactness


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (8, 8), (17, 1), (64, 65), (480, 640)])
@pytest.mark.parametrize("quality", [1, 50, 90, 100])
def test_random_images_match_reference(shape, quality, codec):
    ws = WORKSPACES[codec]
    rgb = np.random.default_rng(sum(shape) + quality).integers(0, 256, (*shape, 3), dtype=np.uint8)
    levels = error_level(rgb, quality, workspace=ws)
    assert levels.shape == rgb.shape and levels.dtype == np.uint8
    np.testing.assert_array_equal(levels, ref_exact(rgb, quality))
    np.testing.assert_array_equal(error_level_display(rgb, quality, workspace=ws), ref_display(rgb, quality))


@pytest.mark.parametrize(
    "folder,pattern,count",
    [("casia1", "Au/*.jpg", 6), ("casia1", "Sp/*.jpg", 3), ("nuaa", "ClientRaw/*/*.jpg", 3),
     ("nuaa", "ImposterRaw/*/*.jpg", 2)],
)
@pytest.mark.parametrize("codec", CODECS)
def test_natural_images_match_reference(folder, pattern, count, codec):
    ws = WORKSPACES[codec]
    for path in dataset_images(folder, pattern, count):
        rgb = load_rgb(path)
        for quality in (75, 90):
            levels = error_level(rgb, quality, workspace=ws)
            np.testing.assert_array_equal(levels, ref_exact(rgb, quality), err_msg=str(path))
            np.testing.assert_array_equal(
                error_level_display(rgb, quality, workspace=ws), ref_display(rgb, quality), err_msg=str(path)
            )
            norm = error_level_normalized(rgb, quality, workspace=ws)
            assert norm.dtype == np.float32
            np.testing.assert_array_equal(
                norm, np.minimum(levels.astype(np.float32) * ELA_SCALE, np.float32(1))
            )


@st.composite
def rgb_images(draw):
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["random", "constant", "gradient", "sparse"]))
    if kind == "random":
        return draw(hnp.arrays(np.uint8, (h, w, 3)))
    if kind == "constant":
        return np.full((h, w, 3), draw(st.integers(0, 255)), np.uint8)
    if kind == "gradient":
        yy, xx = np.mgrid[0:h, 0:w]
        g = (xx * draw(st.integers(0, 9)) + yy * draw(st.integers(0, 9))) % 256
        return np.stack([g, 255 - g, (g * 3) % 256], -1).astype(np.uint8)
    img = np.zeros((h, w, 3), np.uint8)
    img[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = draw(st.integers(1, 255))
    return img


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rgb=rgb_images(), quality=st.integers(1, 100), codec=st.sampled_from(CODECS))
def test_properties(rgb, quality, codec):
    levels = error_level(rgb, quality, workspace=WORKSPACES[codec])
    assert levels.shape == rgb.shape and levels.dtype == np.uint8
    np.testing.assert_array_equal(levels, ref_exact(rgb, quality))

    display = error_level_display(rgb, quality)
    assert display.shape == rgb.shape and display.dtype == np.uint8
    np.testing.assert_array_equal(display, ref_display(rgb, quality))
    peak = int(levels.max())
    if peak == 0:
        assert not display.any()
    else:
        # 255, or 254 where float32(255/peak) * peak rounds just below 255
        # (Pillow's blend truncates); ordering of levels is kept.
        assert display.max() in (254, 255)
        assert display.max() == int(np.float32(np.float32(255.0 / peak) * np.float32(peak)))
        assert np.array_equal(display == display.max(), levels == peak)

    norm = error_level_normalized(rgb, quality)
    assert norm.dtype == np.float32 and norm.shape == rgb.shape
    assert norm.min() >= 0 and norm.max() <= 1
    np.testing.assert_allclose(norm, np.minimum(levels / ELA_CLIP_LEVEL, 1), rtol=1e-6)


# --------------------------------------------------------------- API details


def test_workspace_reuse_across_sizes_keeps_earlier_results():
    rng = np.random.default_rng(3)
    ws = ElaWorkspace()
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(30, 40, 3), (9, 5, 3), (30, 40, 3)]]
    results = [error_level(im, 90, workspace=ws) for im in images]
    for im, res in zip(images, results):
        np.testing.assert_array_equal(res, ref_exact(im, 90))


def test_out_parameter_and_noncontiguous_input():
    rng = np.random.default_rng(4)
    big = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = big[::2, 1::3]  # not C-contiguous
    expected = ref_exact(np.ascontiguousarray(view), 90)
    out = np.empty(view.shape, np.uint8)
    assert error_level(view, 90, out=out) is out
    np.testing.assert_array_equal(out, expected)
    out_f = np.empty(view.shape, np.float32)
    assert error_level_normalized(view, out=out_f) is out_f
    with pytest.raises(ValueError, match="out must be"):
        error_level(view, 90, out=np.empty((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="out must be"):
        error_level_display(view, 90, out=np.empty(view.shape, np.float32))


def test_default_result_is_read_only_and_stable():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    first = error_level(a)
    keep = first.copy()
    assert not first.flags.writeable
    error_level(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    np.testing.assert_array_equal(first, keep)


def test_threads_use_separate_workspaces():
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8) for i in range(4)]
    expected = [ref_exact(im, 90) for im in images]
    failures = []

    def work(i):
        for _ in range(20):
            if not np.array_equal(error_level(images[i]), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


# --------------------------------------------------------------- codec backends


@st.composite
def tall_images(draw):
    """Random or photo-like content tall enough for 1-4 strips, any width and height."""
    h = draw(st.integers(1, 330))
    w = draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    smooth = 128 + 80 * np.sin(xx / rng.uniform(2, 30)) * np.cos(yy / rng.uniform(2, 30))
    img = smooth[..., None] + rng.normal(0, rng.uniform(0, 20), (h, w, 3)) + rng.uniform(-40, 40, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.skipif("turbojpeg" not in CODECS, reason="libturbojpeg is not installed here")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rgb=tall_images(), quality=st.integers(1, 100), strips=st.integers(2, 4))
def test_images_coded_in_strips_match_reference(rgb, quality, strips):
    # forced split, so small images exercise every cut position and the image edges
    codec = WORKSPACES["turbojpeg x4"].codec
    np.testing.assert_array_equal(codec.levels(rgb, quality, strips=strips), ref_exact(rgb, quality))


@pytest.mark.parametrize("height", [1, 15, 16, 17, 31, 100, 480, 1080, 1081])
@pytest.mark.parametrize("strips", [1, 2, 3, 4])
def test_strip_plan_tiles_the_image_on_mcu_rows_with_context(height, strips):
    from edge_app.features.ela_codecs.turbojpeg import strip_plan

    plan = strip_plan(height, strips)
    assert 1 <= len(plan) <= strips
    kept = [(k0, k1) for _, _, k0, k1 in plan]
    assert kept[0][0] == 0 and kept[-1][1] == height
    assert all(a[1] == b[0] for a, b in zip(kept, kept[1:]))  # no gap, no overlap
    for start, stop, k0, k1 in plan:
        assert k0 < k1 and start % 16 == 0 and k0 % 16 == 0
        assert start == max(0, k0 - 16) and stop == min(height, k1 + 16)


def test_the_backend_splits_frames_not_crops():
    if "turbojpeg" not in CODECS:
        pytest.skip("libturbojpeg is not installed here")
    codec = WORKSPACES["turbojpeg x4"].codec
    assert codec.strips_for((128, 128, 3)) == 1
    assert codec.strips_for((300, 400, 3)) == 1
    assert codec.strips_for((480, 640, 3)) == 3
    assert codec.strips_for((1080, 1920, 3)) == 4
    assert ElaWorkspace("turbojpeg", threads=1).codec.strips_for((1080, 1920, 3)) == 1


def test_a_backend_wrong_only_when_split_is_refused():
    if "turbojpeg" not in CODECS:
        pytest.skip("libturbojpeg is not installed here")
    real = WORKSPACES["turbojpeg x4"].codec

    class WrongWhenSplit:
        name = "wrong-when-split"
        threads = 4

        def levels(self, rgb, quality, strips=None):
            levels = real.levels(rgb, quality, strips=1)
            if strips and strips > 1:
                levels = levels.copy()
                levels[-1, -1, 0] ^= 1
            return levels

    with pytest.raises(CodecUnavailable, match="in 4 strips"):
        ela_codecs._check_identical("wrong-when-split (test)", WrongWhenSplit())


def _levels_in_child(rgb, queue):
    queue.put(error_level(rgb, 90, workspace=WORKSPACES["turbojpeg x4"]).copy())


def test_a_forked_child_codes_strips_too():
    # convert/ forks workers; a child inherits the codec's thread pool but not its threads
    if "turbojpeg" not in CODECS:
        pytest.skip("libturbojpeg is not installed here")
    import multiprocessing

    rgb = np.random.default_rng(12).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    expected = error_level(rgb, 90, workspace=WORKSPACES["turbojpeg x4"])  # the parent's pool runs
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_levels_in_child, args=(rgb, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_count_raises(threads):
    with pytest.raises(ValueError, match="ELA threads must be an int >= 1"):
        ElaWorkspace(threads=threads)


def test_turbojpeg_backend_is_used_where_its_library_is_installed():
    import ctypes.util

    if ctypes.util.find_library("turbojpeg") is None:
        pytest.skip("libturbojpeg is not installed here (scripts/setup.sh installs it)")
    # the library is there: the backend must load, pass its self-check and be the default
    assert "turbojpeg" in CODECS
    assert ElaWorkspace().codec.name == "turbojpeg"


def test_a_backend_whose_maps_differ_from_pillow_is_refused(caplog):
    class OffByOne:
        name = "off-by-one"

        def levels(self, rgb, quality):
            return np.minimum(ref_exact(rgb, quality), 254) + 1

    with pytest.raises(CodecUnavailable, match="differ from Pillow"):
        ela_codecs._check_identical("off-by-one (test)", OffByOne())
    assert "not used" in caplog.text


def test_the_codec_can_be_forced_by_name_or_environment(monkeypatch):
    assert ElaWorkspace("pillow").codec.name == "pillow"
    monkeypatch.setenv(ela_codecs.ENV, "pillow")
    assert ElaWorkspace().codec.name == "pillow"
    monkeypatch.setenv(ela_codecs.ENV, "nonsense")
    with pytest.raises(ValueError, match="unknown ELA codec 'nonsense'"):
        ElaWorkspace()


# --------------------------------------------------------------- what ELA shows


def test_pasted_region_stands_out_in_resaved_jpeg():
    """A region pasted from a q=60 JPEG into a photo at its q=90 fixed point,
    saved at 90: ELA at 90 is much higher inside the paste than elsewhere."""
    files = dataset_images("casia1", "Au/*.jpg", 24)
    y0, x0, ph, pw = 61, 101, 112, 144  # not on the 8x8 grid
    ratios = []
    for a_path, b_path in zip(files[0::2], files[1::2]):
        a = np.array(Image.open(a_path).convert("RGB").resize((384, 256)))
        b = np.array(Image.open(b_path).convert("RGB").resize((384, 256)))
        for _ in range(5):  # repeated saves at 90 converge to a fixed point
            a = jpeg_round_trip(a, 90)
        b = jpeg_round_trip(b, 60)
        a[y0 : y0 + ph, x0 : x0 + pw] = b[13 : 13 + ph, 21 : 21 + pw]
        tampered = jpeg_round_trip(a, 90)  # the forger saves the result at 90
        levels = error_level(tampered, 90).astype(np.float64).mean(axis=2)
        inside = levels[y0 + 8 : y0 + ph - 8, x0 + 8 : x0 + pw - 8].mean()
        outside_mask = np.ones(levels.shape, bool)
        outside_mask[y0 - 8 : y0 + ph + 8, x0 - 8 : x0 + pw + 8] = False
        ratios.append(inside / max(levels[outside_mask].mean(), 1e-3))
    ratios = np.array(ratios)
    # Measured on these 12 pairs: median ~11, 11 of 12 above 1.5. A smooth
    # pasted patch (sky, wall) has little to lose, so not every pair is high.
    assert np.median(ratios) > 3, ratios
    assert (ratios > 1.5).mean() >= 0.75, ratios


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((8, 8), np.uint8), "grayscale"),
        (np.zeros((8, 8, 4), np.uint8), "RGBA"),
        (np.zeros((8, 8, 1), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((8,), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint16), "dtype uint16"),
        (np.zeros((8, 8, 3), np.float32), "dtype float32"),
        (np.zeros((8, 8, 3), np.float64), "dtype float64"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((8, 0, 3), np.uint8), "empty"),
        ([[[0, 0, 0]]], "numpy array"),
    ],
)
@pytest.mark.parametrize("fn", [error_level, error_level_display, error_level_normalized])
def test_bad_image_raises(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(bad)


@pytest.mark.parametrize("quality", [0, 101, -5, 90.0, "90", True, None])
@pytest.mark.parametrize("fn", [error_level, error_level_display, error_level_normalized])
def test_bad_quality_raises(fn, quality):
    with pytest.raises(ValueError, match="quality"):
        fn(np.zeros((8, 8, 3), np.uint8), quality)


def test_numpy_integer_quality_accepted():
    rgb = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(error_level(rgb, np.int64(90)), ref_exact(rgb, 90))
