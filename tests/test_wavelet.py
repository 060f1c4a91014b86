"""Wavelet noise residual: shapes, noise estimate, edge cases, matrix path vs PyWavelets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import pywt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from edge_app.config import PACKAGE_DIR
from edge_app.features import wavelet as wv
from edge_app.features import wavelet_banded
from edge_app.features.wavelet import (
    NOISE_RESIDUAL_SCALE,
    estimate_sigma,
    noise_residual,
    noise_residual_normalized,
)

SAMPLES = PACKAGE_DIR / "sample"


def smooth_image(h: int = 128, w: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (128 + 50 * np.sin(xx / 19) * np.cos(yy / 23) + 0.2 * xx).astype(np.float32)


@pytest.mark.parametrize("shape", [(128, 128), (128, 128, 3), (37, 50), (37, 50, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_shape_and_dtype(shape, dtype):
    img = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    r = noise_residual(img)
    assert r.shape == shape and r.dtype == np.float32
    assert r.flags.c_contiguous and np.isfinite(r).all()


@pytest.mark.parametrize("shape", [(40, 41), (40, 41, 3)])
def test_constant_image_has_no_residual(shape):
    r = noise_residual(np.full(shape, 77, np.uint8))
    assert np.abs(r).max() < 1e-3


def test_gaussian_noise_sigma_is_recovered():
    rng = np.random.default_rng(1)
    clean = smooth_image()
    noisy = clean + rng.normal(0, 10, clean.shape).astype(np.float32)
    sigma = float(estimate_sigma(noisy))
    assert 8 <= sigma <= 12, sigma
    r = noise_residual(noisy)
    # The residual is mostly the added noise: right size, and correlated with it.
    assert 8 <= r.std() <= 12, r.std()
    noise = noisy - clean
    assert np.corrcoef(r.ravel(), noise.ravel())[0, 1] > 0.9
    # Without noise the smooth image leaves (almost) nothing.
    assert noise_residual(clean).std() < 1


def test_rgb_channels_are_independent():
    rng = np.random.default_rng(2)
    clean = smooth_image(96, 80)
    sigmas = [4.0, 10.0, 16.0]
    rgb = np.stack([clean + rng.normal(0, s, clean.shape) for s in sigmas], -1).astype(np.float32)
    est = estimate_sigma(rgb)
    assert est.shape == (3,) and est.dtype == np.float32
    np.testing.assert_allclose(est, sigmas, rtol=0.2)
    r = noise_residual(rgb)
    for c in range(3):
        np.testing.assert_allclose(r[..., c], noise_residual(rgb[..., c].copy()), atol=1e-3)


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 1, 3), (1, 9), (2, 3), (7, 13), (7, 13, 3), (8, 8), (129, 127, 3)]
)
def test_odd_and_tiny_sizes(shape):
    img = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    r = noise_residual(img, level=5)
    assert r.shape == shape and r.dtype == np.float32 and np.isfinite(r).all()


def test_level_capped_for_small_images():
    img = np.random.default_rng(4).integers(0, 256, (32, 32), dtype=np.uint8)
    # db4 allows 2 levels on 32 pixels; asking for 10 gives the same as 2.
    np.testing.assert_array_equal(noise_residual(img, level=10), noise_residual(img, level=2))


def test_other_wavelet_accepted():
    img = np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8)
    assert noise_residual(img, wavelet="sym8", level=2).shape == (64, 64)


def test_normalized_form():
    rng = np.random.default_rng(6)
    img = np.clip(smooth_image() + rng.normal(0, 25, (128, 128)), 0, 255).astype(np.uint8)
    r = noise_residual(img)
    n = noise_residual_normalized(img)
    assert n.dtype == np.float32 and n.min() >= -1 and n.max() <= 1
    np.testing.assert_allclose(n, np.clip(r * NOISE_RESIDUAL_SCALE, -1, 1), atol=1e-6)
    assert (np.abs(n) == 1).any()  # sigma 25 noise saturates somewhere


@settings(max_examples=40, deadline=None)
@given(
    img=st.integers(1, 40).flatmap(
        lambda h: st.integers(1, 40).flatmap(
            lambda w: st.sampled_from([(h, w), (h, w, 3)]).flatmap(
                lambda shape: hnp.arrays(np.uint8, shape)
            )
        )
    ),
    level=st.integers(1, 6),
)
def test_properties(img, level):
    r = noise_residual(img, level=level)
    assert r.shape == img.shape and r.dtype == np.float32 and np.isfinite(r).all()
    # The residual removes detail, never invents it: bounded by the image range.
    assert np.abs(r).max() <= 255 * 2


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((8, 8, 4), np.uint8), "RGBA"),
        (np.zeros((8, 8, 2), np.uint8), "grayscale"),
        (np.zeros((8,), np.uint8), "grayscale"),
        (np.zeros((2, 8, 8, 3), np.uint8), "grayscale"),
        (np.zeros((8, 8), np.uint16), "dtype uint16"),
        (np.zeros((8, 8), np.float64), "dtype float64"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
@pytest.mark.parametrize("fn", [noise_residual, noise_residual_normalized, estimate_sigma])
def test_bad_input_raises(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(bad)


@pytest.mark.parametrize("level", [0, -1, 1.5, "3", True])
def test_bad_level_raises(level):
    with pytest.raises(ValueError, match="level"):
        noise_residual(np.zeros((16, 16), np.uint8), level=level)


def test_unknown_wavelet_raises():
    with pytest.raises(ValueError, match="unknown wavelet"):
        noise_residual(np.zeros((16, 16), np.uint8), wavelet="nope")


# --- matrix path (crops up to 256 px) against the PyWavelets path it replaces -----------------

# Non-square, odd, both parities; at 17 px db4 allows one level only.
MATRIX_SHAPES = [(128, 128), (96, 112), (127, 129), (64, 200), (17, 33)]

_pywt_path = wv._residual_pywt  # kept: the tests below take it away from noise_residual


def pywt_residual(img: np.ndarray, wavelet: str | pywt.Wavelet = "db4", level: int = 3):
    """The PyWavelets path (wavedec2, soft thresholds, waverec2): the reference."""
    r = _pywt_path(wv._as_float(img), wv._wavelet(wavelet), level)
    return r[0] if img.ndim == 2 else r.transpose(1, 2, 0)


@pytest.fixture
def matrix_path_only(monkeypatch):
    """noise_residual fails on the PyWavelets path: the comparisons must test the matrix path."""

    def fail(*args, **kwargs):
        raise AssertionError("took the PyWavelets path")

    monkeypatch.setattr(wv, "_residual_pywt", fail)


def assert_matches_pywt(img: np.ndarray, atol: float = 1e-3, **kw) -> None:
    got = noise_residual(img, **kw)
    assert got.shape == img.shape and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, pywt_residual(img, **kw), rtol=0, atol=atol)


def random_crop(rgb: np.ndarray, shape: tuple[int, int], seed: int) -> np.ndarray:
    h, w = shape
    if rgb.shape[0] < h or rgb.shape[1] < w:  # scale a small photo up first
        size = (max(rgb.shape[1], w), max(rgb.shape[0], h))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, rgb.shape[0] - h + 1), rng.integers(0, rgb.shape[1] - w + 1)
    return np.ascontiguousarray(rgb[y : y + h, x : x + w])


def assert_photo_crops_match(rgb: np.ndarray, seed: int) -> None:
    for i, shape in enumerate(MATRIX_SHAPES + [(256, 256), (255, 201)]):
        crop = random_crop(rgb, shape, seed + i)
        assert_matches_pywt(crop)
        assert_matches_pywt(crop[..., 1].copy())


@pytest.mark.parametrize("shape", MATRIX_SHAPES)
@pytest.mark.parametrize("channels", [(), (3,)])
def test_matrix_path_matches_pywavelets_on_random_images(shape, channels, matrix_path_only):
    rng = np.random.default_rng(7)
    smooth = smooth_image(*shape)
    noisy = (smooth[..., None] if channels else smooth) + rng.normal(0, 6, shape + channels)
    assert_matches_pywt(np.clip(noisy, 0, 255).astype(np.uint8))
    assert_matches_pywt(noisy.astype(np.float32))
    # Pure noise: every detail band sits at the noise level, where BayesShrink's
    # T = sigma^2 / sqrt(E[c^2] - sigma^2) amplifies rounding; the float32 PyWavelets
    # path is itself up to ~1.5e-3 off a float64 computation on such images.
    assert_matches_pywt(rng.integers(0, 256, shape + channels, dtype=np.uint8), atol=5e-3)


@pytest.mark.parametrize("sample", ["live.jpg", "print.jpg"])
def test_matrix_path_matches_pywavelets_on_sample_photos(sample, matrix_path_only):
    assert_photo_crops_match(np.asarray(Image.open(SAMPLES / sample).convert("RGB")), seed=0)


def test_matrix_path_matches_pywavelets_on_research_photos(datasets, matrix_path_only):
    nuaa = sorted((datasets / "nuaa" / "ClientRaw").glob("*/*.jpg"))[::97]
    casia = sorted((datasets / "casia1" / "Au").glob("*.jpg"))[::101]
    assert len(nuaa) >= 5 and len(casia) >= 5
    for i, path in enumerate(nuaa + casia):
        assert_photo_crops_match(np.asarray(Image.open(path).convert("RGB")), seed=10 * i)


@pytest.mark.parametrize("level", [1, 2, 5])
@pytest.mark.parametrize("wavelet", ["haar", "sym8", "bior2.2", "coif2"])
def test_matrix_path_other_wavelets_and_levels(wavelet, level, matrix_path_only):
    rng = np.random.default_rng(8)
    noisy = smooth_image(96, 112)[..., None] + rng.normal(0, 6, (96, 112, 3))
    assert_matches_pywt(np.clip(noisy, 0, 255).astype(np.uint8), wavelet=wavelet, level=level)


@pytest.mark.parametrize(
    "shape,wavelet",
    [
        ((300, 200), "db4"),  # a side over 256: building operators for it costs more than it saves
        ((257, 3), "db4"),  # too small for one db4 level
        ((13, 7, 3), "db4"),
        ((64, 64), pywt.Wavelet("db4")),  # a Wavelet object, not a name
    ],
)
def test_pywavelets_path_outside_the_matrix_path(shape, wavelet):
    img = np.random.default_rng(9).integers(0, 256, shape, dtype=np.uint8)
    expected = pywt_residual(img, wavelet=wavelet)
    np.testing.assert_array_equal(noise_residual(img, wavelet=wavelet), expected)


def test_matrix_operators_and_buffers_are_reused(monkeypatch):
    wavelet_banded.axis_plan.cache_clear()
    wavelet_banded._kept.cache = {}
    rng = np.random.default_rng(10)
    img = rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)
    first = noise_residual(img)
    assert wavelet_banded.axis_plan.cache_info().misses == 2  # one per side length
    ws = wavelet_banded.transform_for(128, 96, 3, "db4", 3)

    def fail(*args, **kwargs):
        raise AssertionError("PyWavelets ran again")

    # A second crop of that size: no PyWavelets at all, neither the transform nor
    # the operator building, and the same buffers.
    monkeypatch.setattr(wv.pywt, "dwt", fail)
    monkeypatch.setattr(wv.pywt, "idwt", fail)
    monkeypatch.setattr(wv.pywt, "wavedec2", fail)
    monkeypatch.setattr(wv.pywt, "waverec2", fail)
    kept = first.copy()
    other = rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)
    second = noise_residual(other)
    assert wavelet_banded.axis_plan.cache_info().misses == 2
    assert wavelet_banded.transform_for(128, 96, 3, "db4", 3) is ws
    # Results are fresh arrays, not views of the reused buffers.
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(noise_residual(img), first)
    # Gray crops of the same size share the operators; the 96 side is cached too.
    noise_residual(img[..., 0].copy())
    noise_residual(np.ascontiguousarray(img[:96, :96]))
    assert wavelet_banded.axis_plan.cache_info().misses == 2


def test_matrix_path_threads_keep_their_own_buffers():
    rng = np.random.default_rng(11)
    imgs = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(4)]
    expected = [noise_residual(img) for img in imgs]
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        results[i] = [noise_residual(imgs[i]) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for i, rs in results.items():
        for r in rs:
            np.testing.assert_array_equal(r, expected[i])
