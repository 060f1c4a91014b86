"""Wavelet noise residual: the image minus its wavelet-denoised version.

What is left after denoising is sensor noise plus fine texture that a live
face seen by the camera does not have: print halftone, screen pixel grids and
moire, resampling traces. The residual feeds the liveness and forensics CNNs.

Choices (why):

- ``db4``: 4 vanishing moments, so smooth shading and gradients (faces under
  soft light) go to the approximation band and stay out of the residual,
  while its 8-tap support is short enough to keep edges local and the border
  extension cheap on 128-pixel crops.
- 3 levels: noise and halftone/screen texture live at periods of 2-8 pixels,
  covered by the three finest scales; coarser bands hold face shape, which
  must stay in the denoised image. On a 128 crop db4 allows at most 4 levels,
  and the 4th would be mostly border effects.
- BayesShrink, soft: one threshold per subband (level, orientation, channel),
  sigma^2 / sigma_signal, adapts to how much signal each band holds; the
  universal VisuShrink threshold sigma*sqrt(2 ln N) over-smooths and pushes
  real edges into the residual. Soft thresholding is continuous, so the
  residual has no ringing from coefficients switching on and off.
- Noise sigma from the median absolute finest diagonal coefficient / 0.6745
  (Donoho's MAD): that band is nearly all noise in natural images and the
  median ignores the few large edge coefficients.
- Symmetric border extension (PyWavelets' default): periodic extension would
  wrap the left edge onto the right one and leave a false edge in the residual.
- float32 end to end: PyWavelets keeps float32, nearly 2x faster than float64
  at frame size, and 1e-5 relative error is far below one grey level.
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt

from edge_app.features import wavelet_banded

__all__ = [
    "NOISE_RESIDUAL_SCALE",
    "WAVELET",
    "WAVELET_LEVEL",
    "estimate_sigma",
    "noise_residual",
    "noise_residual_normalized",
]

WAVELET = "db4"
WAVELET_LEVEL = 3

#: Model input scale: ``clip(residual * NOISE_RESIDUAL_SCALE, -1, 1)``; the
#: residual is in grey levels (0..255 input). Fixed across images so models
#: see a stable scale. On NUAA frames and CASIA photos |residual| stays under
#: 1-5 levels at the 99.9th percentile; 16 leaves room for noisy low-light
#: frames at the door (sigma up to ~8) before clipping.
NOISE_RESIDUAL_SCALE = 1.0 / 16.0  # plain float (JSON-friendly); exact in float32

_MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|


def _check_image(img: object) -> None:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"wavelet input must be a numpy array, got {type(img).__name__}")
    if img.dtype not in (np.uint8, np.float32):
        raise ValueError(f"wavelet input must be uint8 or float32, got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] != 3:
        extra = " (RGBA? drop the alpha channel)" if img.shape[2] == 4 else ""
        raise ValueError(
            f"wavelet input must be grayscale (H, W) or RGB (H, W, 3), got shape {img.shape}{extra}"
        )
    if img.ndim not in (2, 3):
        raise ValueError(
            f"wavelet input must be grayscale (H, W) or RGB (H, W, 3), got shape {img.shape}"
        )
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"wavelet input is empty: shape {img.shape}")
    if img.dtype == np.float32 and not np.isfinite(img).all():
        raise ValueError("wavelet input contains NaN or infinity")


def _as_float(img: object) -> np.ndarray:
    """Validate; return float32 channels first, (1, H, W) for gray, (3, H, W) for RGB."""
    _check_image(img)
    return _channels_first(img)


def _channels_first(img: np.ndarray) -> np.ndarray:
    # Channels first and contiguous: one PyWavelets call transforms all
    # channels (less Python overhead than a loop), each row/column filter runs
    # on contiguous memory (faster than axes=(0, 1) on HWC), and per-channel
    # statistics become reductions over the last axis.
    chw = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32)


def _check_level(level: object) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"wavelet level must be an int >= 1, got {level!r}")
    return int(level)


def _wavelet(wavelet: str | pywt.Wavelet) -> pywt.Wavelet:
    if isinstance(wavelet, pywt.Wavelet):
        return wavelet
    try:
        return pywt.Wavelet(wavelet)
    except ValueError as exc:
        raise ValueError(f"unknown wavelet {wavelet!r}: {exc}") from None


def _decompose(x: np.ndarray, wavelet: pywt.Wavelet, level: int) -> list:
    allowed = pywt.dwt_max_level(min(x.shape[-2:]), wavelet.dec_len)
    if allowed < 1:
        # Below 7 pixels db4 allows no level at all; one level with symmetric
        # extension still works, so 1x1 or 2x5 crops get a residual, not an error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "level too high"
            return pywt.wavedec2(x, wavelet, mode="symmetric", level=1)
    return pywt.wavedec2(x, wavelet, mode="symmetric", level=min(level, allowed))


def _mad_sigma(finest_diagonal: np.ndarray) -> np.ndarray:
    """Noise sigma per channel, shape (C,), from the finest diagonal band (C, h, w)."""
    return _sigma_from_abs(np.abs(finest_diagonal).reshape(finest_diagonal.shape[0], -1))


def _sigma_from_abs(a: np.ndarray) -> np.ndarray:
    """_mad_sigma from |coefficients| (C, N), which it partitions in place."""
    n = a.shape[1]
    k = n // 2
    # Exact median by one partition: np.median is ~7x slower here.
    a.partition(k, axis=1)
    med = a[:, k]
    if n % 2 == 0:
        med = (med + a[:, :k].max(axis=1)) / np.float32(2)
    return med / np.float32(_MAD_TO_SIGMA)


def estimate_sigma(img: np.ndarray, wavelet: str = WAVELET) -> np.ndarray:
    """Gaussian noise sigma (grey levels) by MAD: float32 shape () or (3,) for RGB."""
    x = _as_float(img)
    # One level is enough: only the finest diagonal band is used.
    coeffs = _decompose(x, _wavelet(wavelet), 1)
    sigma = _mad_sigma(coeffs[-1][2])
    return sigma.reshape(()) if np.ndim(img) == 2 else sigma


def _bayes_thresholds(energy: np.ndarray, var_noise: np.ndarray) -> np.ndarray:
    """BayesShrink thresholds from mean band energies E[c^2] and the noise variance."""
    # T = sigma_noise^2 / sigma_signal per band and channel, with
    # sigma_signal^2 = max(E[c^2] - sigma_noise^2, 0). A band with no signal
    # above the noise gets T = inf (zeroed: it is all noise); a noise-free
    # image gets T = 0 (kept) instead of 0/0. All bands at once: per-band
    # arithmetic on 1-3 numbers costs more in numpy call overhead than the work.
    sig_signal = np.sqrt(np.maximum(energy - var_noise, 0))
    thr = np.empty_like(energy)
    thr[:] = np.where(var_noise > 0, np.float32(np.inf), np.float32(0))
    np.divide(var_noise, sig_signal, out=thr, where=sig_signal > 0)
    return thr


def _residual_pywt(x: np.ndarray, w: pywt.Wavelet, level: int) -> np.ndarray:
    """Reference path, any size: (C, H, W) float32 -> residual (C, H, W)."""
    coeffs = _decompose(x, w, level)
    var_noise = np.square(_mad_sigma(coeffs[-1][2]))
    bands = [band for detail in coeffs[1:] for band in detail]
    energy = np.stack([np.einsum("cij,cij->c", b, b) / np.float32(b[0].size) for b in bands])
    thr = _bayes_thresholds(energy, var_noise)
    for band, t in zip(bands, thr[:, :, None, None]):
        # Soft threshold in place: sign(c) * max(|c| - T, 0).
        mag = np.abs(band)
        mag -= t
        np.maximum(mag, 0, out=mag)
        np.copysign(mag, band, out=band)
    denoised = pywt.waverec2(coeffs, w, mode="symmetric")
    h, wd = x.shape[-2:]
    # waverec2 returns one extra row/column for odd sizes.
    return x - denoised[:, :h, :wd]


def _residual_banded(img: np.ndarray, ws: wavelet_banded.BandedTransform) -> np.ndarray:
    """The residual through the banded-matrix transform: an (H, C, W) view into ``ws``.

    At crop size PyWavelets' own transforms alone cost ~1.3 ms for a 128x128 RGB crop; with
    the same transform as banded BLAS products the whole residual costs ~0.5 ms (min time in
    ``bench/ela.py`` on this project's 2-core VM; see ``edge_app.features.wavelet_banded``). It needs
    no approximation band: soft(c) = c - clip(c, -T, T) and the inverse transform is linear and
    exact, so x - idwt(soft(c)) = idwt(clip(c, -T, T)) with the approximation set to 0.
    """
    wavelet_banded.analyze(ws, img)
    sigma = _sigma_from_abs(wavelet_banded.finest_diagonal_abs(ws))
    thr = _bayes_thresholds(wavelet_banded.band_energies(ws), np.square(sigma)[:, None])
    return wavelet_banded.synthesize_clipped(ws, thr)


def noise_residual(
    img: np.ndarray, wavelet: str = WAVELET, level: int = WAVELET_LEVEL
) -> np.ndarray:
    """Image minus its BayesShrink-denoised version, float32, same shape as ``img``.

    ``img`` is uint8 or float32, grayscale (H, W) or RGB (H, W, 3); RGB channels
    are denoised independently, each with its own noise estimate.
    """
    _check_image(img)
    w = _wavelet(wavelet)
    level = _check_level(level)
    h, wd = img.shape[:2]
    allowed = pywt.dwt_max_level(min(h, wd), w.dec_len)
    ws = None
    if isinstance(wavelet, str) and allowed >= 1:
        ws = wavelet_banded.transform_for(h, wd, 1 if img.ndim == 2 else 3, wavelet, min(level, allowed))
    if ws is None:
        residual = _residual_pywt(_channels_first(img), w, level)
        if img.ndim == 2:
            return residual[0]
        return np.ascontiguousarray(residual.transpose(1, 2, 0))
    y = _residual_banded(img, ws)
    if img.ndim == 2:
        return y[:, 0].copy()  # the workspace is reused: never hand it out
    out = np.empty(img.shape, np.float32)
    for c in range(3):  # 3x faster than one transposing copy, whose inner loop is 3 long
        out[:, :, c] = y[:, c]
    return out


def noise_residual_normalized(
    img: np.ndarray, wavelet: str = WAVELET, level: int = WAVELET_LEVEL
) -> np.ndarray:
    """Residual for models: ``clip(residual * NOISE_RESIDUAL_SCALE, -1, 1)``, float32."""
    r = noise_residual(img, wavelet, level)
    r *= NOISE_RESIDUAL_SCALE
    np.clip(r, -1, 1, out=r)
    return r
