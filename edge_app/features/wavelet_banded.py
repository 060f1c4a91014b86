"""PyWavelets' multilevel 2-D DWT of one fixed shape, applied as banded float32 products.

This is the fast path of ``edge_app.features.wavelet`` for face crops (sides up to 256): the same
transform, wavelet, border mode and level, so the same residual up to float32 rounding.
``edge_app.features.wavelet`` keeps the denoising rule (BayesShrink); this module only transforms:
``transform_for`` (the buffers for one shape), ``analyze`` (image -> coefficients),
``finest_diagonal_abs`` and ``band_energies`` (what the thresholds are computed from) and
``synthesize_clipped`` (clipped details -> residual).
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import numpy as np
import pywt

# Why. At crop size PyWavelets is slow: its C loops filter one sample
# at a time, and wavedec2 + waverec2 of a 128x128 RGB crop take ~1.3 ms. With
# size, wavelet, mode and level fixed, each level's 1-D DWT and inverse DWT are
# fixed linear maps: matrices, built once per axis length by running
# PyWavelets itself on the identity (so border extension, lengths and
# waverec2's trimming are PyWavelets' own) and applied as float32 BLAS
# products. The matrices are banded (8 taps: the 134x128 level-1 matrix is
# 94% zeros), so their rows go in blocks of ~16, each multiplied with just the
# window of input its rows touch: a dense product would do ~6x the work.
#
# Along each axis the coefficients of a level are interleaved, lowpass and
# highpass of position p in rows 2p and 2p + 1, so a block of rows is a run of
# positions for the analysis and the synthesis windows alike; "lead" zero
# positions go first where that lines the blocks up with their windows.

#: Coefficient positions (2 rows each) per analysis block and output rows per
#: synthesis block: smaller blocks waste less of the band (window ~ rows + 6)
#: but cost more calls; 12-16 rows measured best here.
_ANALYSIS_PAIRS = 8
_SYNTHESIS_ROWS = 16
#: Longest side for the matrix path. Per call it beats PyWavelets at any size
#: (640x480: ~3x), but building a new size's operators runs PyWavelets on
#: identity matrices, O(side^2): ~4 ms per side at 128, ~60 ms for 640x480,
#: a loss where sizes keep changing (whole photos in forensics). Face crops
#: repeat one size.
MAX_SIDE = 256
#: Workspaces (buffers and views: ~2 MB at 128x128 RGB, ~6 MB at 256x256)
#: each thread keeps.
_WORKSPACES_KEPT = 4


class _Banded(NamedTuple):
    """Banded (n_out, n_in) operator: blocks of rows, each times a window of the input."""

    rows: np.ndarray  # (blocks, n_out // blocks, width): for _along_rows
    cols: np.ndarray  # the same, transposed: for _along_cols
    start: int  # block b reads inputs start + b * step ... + width - 1
    step: int
    margin: int  # how far windows reach outside inputs 0 ... n_in - 1
    n_in: int
    n_out: int


class _Level(NamedTuple):
    analysis: _Banded  # input positions -> 2 * pairs interleaved rows
    synthesis: _Banded  # 2 * pairs rows -> output rows lead ... lead + n_in - 1
    pairs: int  # coefficient positions per band, padding included
    first: int  # the m coefficients are at positions first ... first + m - 1
    m: int
    lead: int


def _windows(first: np.ndarray, last: np.ndarray, per: int, leads: range) -> tuple[int, ...]:
    """Blocks of ``per`` rows with input spans [first, last] (none: first > last).

    Returns (lead, blocks, start, step, width): ``lead`` zero rows go first;
    block b reads inputs start + b * step ... + width - 1. Of the given leads
    and all steps, the fewest multiply-adds (blocks * width) win.
    """
    big = 1 << 40
    n = first.size
    ld = np.array(leads)[:, None]
    blocks = -(-(n + ld[:, 0]) // per)
    row = np.arange(blocks.max() * per) - ld  # (lead, slot): the row in each slot
    real = (row >= 0) & (row < n)
    row = np.clip(row, 0, n - 1)
    f = np.where(real, first[row], big).reshape(len(ld), -1, per).min(axis=2)  # (lead, block)
    t = np.where(real, last[row], -big).reshape(len(ld), -1, per).max(axis=2)
    used = (f <= t)[:, None, :]
    b = np.arange(f.shape[1])
    steps = np.arange(2 * per + 16)[:, None]
    starts = np.where(used, f[:, None, :] - steps * b, big).min(axis=2)  # (lead, step)
    widths = np.where(used, t[:, None, :] - steps * b, -big).max(axis=2) - starts + 1
    i, s = np.unravel_index(np.argmin(widths * blocks[:, None]), widths.shape)
    return int(ld[i, 0]), int(blocks[i]), int(starts[i, s]), int(steps[s, 0]), int(widths[i, s])


def _banded(
    op: np.ndarray, row0: int, col0: int, n_rows: int, n_in: int, per: int, leads: range
) -> tuple[_Banded, int]:
    """Blocks of an (n_rows, n_in) operator that is ``op`` at rows row0..., columns col0...

    Also returns the lead (zero rows before the first block). Only the band
    is touched: building stays cheap next to the dense ``op`` from PyWavelets.
    """
    big = 1 << 40
    nz = op != 0
    has = nz.any(axis=1)
    f = nz.argmax(axis=1)
    t = op.shape[1] - 1 - nz[:, ::-1].argmax(axis=1)
    first = np.full(n_rows, big)
    last = np.full(n_rows, -big)
    first[row0 : row0 + len(op)] = np.where(has, f + col0, big)
    last[row0 : row0 + len(op)] = np.where(has, t + col0, -big)
    lead, blocks, start, step, width = _windows(first, last, per, leads)

    rows = np.flatnonzero(has)
    cols = f[rows, None] + np.arange(int((t - f)[rows].max()) + 1)
    inside = cols <= t[rows, None]
    rows, cols = np.broadcast_to(rows[:, None], cols.shape)[inside], cols[inside]
    b, s = np.divmod(lead + row0 + rows, per)
    w = col0 + cols - start - b * step
    if w.min() < 0 or w.max() >= width:
        raise AssertionError("banded operator: a window misses part of its rows")
    block = np.zeros((blocks, per, width), np.float32)
    block[b, s, w] = op[rows, cols]
    block.setflags(write=False)
    transposed = np.ascontiguousarray(block.transpose(0, 2, 1))
    transposed.setflags(write=False)
    margin = max(0, -start, start + (blocks - 1) * step + width - n_in)
    return _Banded(block, transposed, start, step, margin, n_in, blocks * per), lead


@functools.lru_cache(maxsize=32)
def axis_plan(n: int, wavelet: str, level: int) -> tuple[_Level, ...] | None:
    """Per-level operators along an axis of length n; None if not a perfect reconstruction."""
    w = pywt.Wavelet(wavelet)
    plan = []
    n_real = n_in = n  # this level's real inputs, and input positions with padding
    at = 0  # where the real ones start
    for _ in range(level):
        lo, hi = pywt.dwt(np.eye(n_real), w, mode="symmetric", axis=0)  # (m, n_real)
        m = lo.shape[0]
        eye = np.eye(m)
        rlo = pywt.idwt(eye, None, w, mode="symmetric", axis=0)[:n_real]  # (n_real, m)
        rhi = pywt.idwt(None, eye, w, mode="symmetric", axis=0)[:n_real]
        v = np.random.default_rng(0).standard_normal(n_real)
        if rlo.shape[0] < n_real or not np.allclose(rlo @ (lo @ v) + rhi @ (hi @ v), v, atol=1e-6):
            return None  # the clip form of the residual needs exact reconstruction

        ana = np.empty((2 * m, n_real))
        ana[0::2], ana[1::2] = lo, hi
        per = 2 * _ANALYSIS_PAIRS
        analysis, lead = _banded(ana, 0, at, 2 * m, n_in, per, range(0, per, 2))
        syn = np.empty((n_real, 2 * m))
        syn[:, 0::2], syn[:, 1::2] = rlo, rhi
        pairs = analysis.n_out // 2
        per = _SYNTHESIS_ROWS
        synthesis, out_lead = _banded(syn, at, lead, n_in, 2 * pairs, per, range(per))

        plan.append(_Level(analysis, synthesis, pairs, lead // 2, m, out_lead))
        n_real, n_in, at = m, pairs, lead // 2
    return tuple(plan)


def _buffer(shape: tuple[int, ...], margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat, array): uninitialised float32 ``shape`` with ``margin`` zeros either side in memory.

    Windows may reach past the data by up to the margin, always where the
    operator's weights are 0; the memory there must still hold finite numbers,
    as 0 * NaN is NaN.
    """
    size = math.prod(shape)
    flat = np.empty(size + 2 * margin, np.float32)
    flat[:margin] = 0
    flat[margin + size :] = 0
    return flat, flat[margin : margin + size].reshape(shape)


def _along_rows(op: _Banded, flat: np.ndarray, margin: int, k: int, out: np.ndarray) -> tuple:
    """matmul arguments for out (n_out, k) = op @ x, x (n_in, k) at flat[margin:]."""
    blocks, rows, width = op.rows.shape
    offset, strides = (margin + op.start * k) * 4, (op.step * k * 4, k * 4, 4)
    win = np.ndarray((blocks, width, k), np.float32, flat, offset, strides)
    return op.rows, win, out.reshape(blocks, rows, k)


def _along_cols(op: _Banded, flat: np.ndarray, margin: int, k: int, out: np.ndarray) -> tuple:
    """matmul arguments for out (k, n_out) = x @ op.T, x (k, n_in) at flat[margin:]."""
    blocks, width, rows = op.cols.shape
    offset, strides = (margin + op.start) * 4, (op.step * 4, op.n_in * 4, 4)
    win = np.ndarray((blocks, k, width), np.float32, flat, offset, strides)
    return win, op.cols, out.reshape(k, blocks, rows).transpose(1, 0, 2)


class _Step(NamedTuple):
    """One level of the matrix path: its products and the views between them."""

    analysis: tuple[tuple, tuple]  # matmul arguments: along columns, then rows
    synthesis: tuple[tuple, tuple]
    coarser: tuple | None  # copy (to, from): lowpass-lowpass to the next level's input
    approx: tuple | None  # copy (to, from): the next level's output to lowpass-lowpass
    bands: np.ndarray  # (row positions, 2, C * column rows); 2: lowpass, highpass
    squares: np.ndarray  # (2, C * column rows) scratch
    squares_bands: np.ndarray  # the same as (2, C, column positions, 2)
    thr: np.ndarray  # (2, C * column rows): the threshold of each coefficient's band
    thr_bands: np.ndarray  # the same as (2, C, column positions, 2)
    neg_thr: np.ndarray


class BandedTransform(NamedTuple):
    x: np.ndarray  # (H, C, W): the first level's input
    steps: tuple[_Step, ...]
    diagonal: np.ndarray  # (C, m, m) view: the finest diagonal band
    diagonal_abs: np.ndarray  # (C, m, m) scratch
    energy: np.ndarray  # (level, row band, channel, column band)
    sizes: np.ndarray  # coefficients per band, per level
    y: np.ndarray  # (H, C, W) view: the residual


def _workspace(rows: tuple[_Level, ...], cols: tuple[_Level, ...], c: int) -> BandedTransform:
    """Buffers and the views every step reads and writes, for one image shape."""
    # (H, C, W) keeps the channels between the two transformed axes, so each
    # axis is one product for all channels: rows as (H, C*W), columns as (H*C, W).
    x_flat, x = _buffer((rows[0].analysis.n_in, c, cols[0].analysis.n_in), cols[0].analysis.margin)
    first_input = x
    steps = []
    for i, (r, k) in enumerate(zip(rows, cols)):
        nr, nc, mr, mc = r.analysis.n_in, k.analysis.n_in, r.analysis.n_out, k.analysis.n_out
        t_flat, t = _buffer((nr, c, mc), r.analysis.margin * c * mc)
        z_flat, z = _buffer((mr, c, mc), k.synthesis.margin)
        analysis = (
            _along_cols(k.analysis, x_flat, k.analysis.margin, nr * c, t),
            _along_rows(r.analysis, t_flat, r.analysis.margin * c * mc, c * mc, z),
        )
        z5 = z.reshape(r.pairs, 2, c, k.pairs, 2)
        coarser = None
        if i + 1 < len(rows):
            x_flat, x = _buffer((r.pairs, c, k.pairs), cols[i + 1].analysis.margin)
            coarser = x, z5[:, 0, :, :, 0]
        ms = k.synthesis.n_out
        u_flat, u = _buffer((mr, c, ms), r.synthesis.margin * c * ms)
        y = np.empty((r.synthesis.n_out, c, ms), np.float32)
        synthesis = (
            _along_cols(k.synthesis, z_flat, k.synthesis.margin, mr * c, u),
            _along_rows(r.synthesis, u_flat, r.synthesis.margin * c * ms, c * ms, y),
        )
        y = y[r.lead : r.lead + nr, :, k.lead : k.lead + nc]  # this level's input positions
        if i:  # this level's output is the approximation band of the level above
            steps[-1] = steps[-1]._replace(approx=(steps[-1].approx, y))
        else:
            residual = y
        squares = np.empty((2, c * mc), np.float32)
        thr = np.empty((2, c * mc), np.float32)
        steps.append(
            _Step(
                analysis, synthesis, coarser, z5[:, 0, :, :, 0], z.reshape(r.pairs, 2, c * mc),
                squares, squares.reshape(2, c, k.pairs, 2), thr, thr.reshape(2, c, k.pairs, 2),
                np.empty_like(thr),
            )
        )  # fmt: skip
    steps[-1] = steps[-1]._replace(approx=None)  # the coarsest approximation stays 0
    r, k = rows[0], cols[0]
    hh = steps[0].bands.reshape(r.pairs, 2, c, k.pairs, 2)[:, 1, :, :, 1]
    hh = hh[r.first : r.first + r.m, :, k.first : k.first + k.m]  # without the padding
    sizes = np.array([r.m * k.m for r, k in zip(rows, cols)], np.float32).reshape(-1, 1, 1, 1)
    return BandedTransform(
        first_input, tuple(steps), hh.transpose(1, 0, 2), np.empty((c, r.m, k.m), np.float32),
        np.empty((len(rows), 2, c, 2), np.float32), sizes, residual,
    )  # fmt: skip


_kept = threading.local()


def transform_for(h: int, w: int, c: int, wavelet: str, level: int) -> BandedTransform | None:
    """This thread's transform of (h, w) images with c channels; None where the matrix path
    does not apply: a side over ``MAX_SIDE``, or a reconstruction that is not exact."""
    if max(h, w) > MAX_SIDE:
        return None
    # Allocating the buffers and views costs about as much as the arithmetic
    # at crop size, so each thread keeps its own few (threads must not share
    # buffers); the operators behind them are shared through axis_plan.
    cache = getattr(_kept, "cache", None)
    if cache is None:
        cache = _kept.cache = {}
    key = h, w, c, wavelet, level
    ws = cache.get(key)
    if ws is None:
        rows, cols = axis_plan(h, wavelet, level), axis_plan(w, wavelet, level)
        if rows is None or cols is None:
            return None
        ws = _workspace(rows, cols, c)
        if len(cache) >= _WORKSPACES_KEPT:
            del cache[next(iter(cache))]
        cache[key] = ws
    return ws


def analyze(ws: BandedTransform, img: np.ndarray) -> None:
    """Transform ``img`` (the shape ``ws`` was made for; uint8 or float32) into ws's bands."""
    if img.ndim == 2:
        ws.x[:, 0] = img
    else:  # casting first: a cast and a transposing copy beat a transposing cast
        ws.x[...] = (img if img.dtype == np.float32 else img.astype(np.float32)).transpose(0, 2, 1)
    for s in ws.steps:
        for a, b, out in s.analysis:
            np.matmul(a, b, out=out)
        if s.coarser is not None:
            np.copyto(*s.coarser)


def finest_diagonal_abs(ws: BandedTransform) -> np.ndarray:
    """|finest diagonal band| after ``analyze``, (C, N): scratch the caller may reorder."""
    np.abs(ws.diagonal, out=ws.diagonal_abs)
    return ws.diagonal_abs.reshape(len(ws.diagonal_abs), -1)


def band_energies(ws: BandedTransform) -> np.ndarray:
    """Mean squared coefficient of every band after ``analyze``, float32
    (level, row band, channel, column band), band 0 lowpass, 1 highpass, finest level first."""
    for s, e in zip(ws.steps, ws.energy):
        np.einsum("pbj,pbj->bj", s.bands, s.bands, out=s.squares)  # padding is 0: adds nothing
        np.einsum("bcpd->bcd", s.squares_bands, out=e)
    np.divide(ws.energy, ws.sizes, out=ws.energy)
    return ws.energy


def synthesize_clipped(ws: BandedTransform, thr: np.ndarray) -> np.ndarray:
    """The inverse transform of the detail bands clipped to [-thr, thr], approximation 0:
    the residual of soft thresholding at ``thr`` (shaped like ``band_energies``; its
    approximation entries are ignored). An (H, C, W) view into ``ws``, valid until its next use.
    """
    for s, t in zip(ws.steps[::-1], thr[::-1]):
        s.thr_bands[...] = t[:, :, None, :]
        # approximation clipped to 0: the coarsest is not part of the residual; on the
        # finer levels the coarser level's output is copied in below
        s.thr_bands[0, :, :, 0] = 0
        np.negative(s.thr, out=s.neg_thr)
        np.minimum(s.bands, s.thr, out=s.bands)
        np.maximum(s.bands, s.neg_thr, out=s.bands)
        if s.approx is not None:
            np.copyto(*s.approx)
        for a, b, out in s.synthesis:
            np.matmul(a, b, out=out)
    return ws.y
