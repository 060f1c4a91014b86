"""Wavelet noise residual: shapes, noise estimate, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_app.wavelet import (
    NOISE_RESIDUAL_SCALE,
    estimate_sigma,
    noise_residual,
    noise_residual_normalized,
)


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
