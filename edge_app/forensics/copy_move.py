"""Copy-move detection: a region of an image pasted elsewhere in the same image.

    image -> luma -> 16x16 blocks (every pixel position, textured ones only)
          -> descriptor: the 4x4 grid of 4x4 sub-block means
          -> lexicographic sort, neighbours in sorted order with near-equal descriptors
          -> shift vectors of the matching pairs -> the most frequent shift and its count

This is block matching in the manner of Fridrich, Soukal and Lukas (2003), "Detection of
copy-move forgery in digital images". It complements the forensics CNN, which judges each
patch on its own compression and noise traces and so misses a region copied from the same
image: the copy carries the same camera noise and JPEG history as its surroundings. A copy
is instead a second, near-identical instance of a textured region at one fixed offset, which
natural images rarely have.

Why these choices:

- Sub-block means, not raw pixels or DCT: averaging 16 pixels removes most of the JPEG
  noise that a copy picks up when it is re-compressed off the 8x8 grid, so a copied block
  stays within ``tolerance`` grey levels of its source.
- Textured blocks only (``min_std``): flat sky or walls match themselves everywhere.
- Pairs must be ``min_distance`` apart, so overlapping neighbours of one smooth gradient are
  not counted; and the evidence is the *count* of pairs sharing one shift (a copied region
  of 40x40 pixels gives hundreds), not any single pair.
- Plain translation only: rotated or scaled copies are not found (86% of CASIA v1's
  copy-moves are plain translations). Rotation/scale-invariant descriptors cost far more.

The parameters were chosen on CASIA v1 validation images (``convert/calibrate_forensics.py``
reports what the detector adds on held-out test images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class CopyMoveParams:
    block: int = 16  # block side, pixels
    grid: int = 4  # descriptor: grid x grid sub-block means
    min_std: float = 10.0  # skip blocks with a grey-level std below this (flat areas)
    tolerance: int = 2  # max |difference| of any sub-block mean for a match, grey levels
    min_distance: int = 24  # pixels between the two blocks of a pair
    neighbours: int = 6  # compare each block with this many following ones in sorted order
    sort_step: int = 4  # descriptors are sorted on mean // sort_step (coarse first)
    max_pixels: int = 1_000_000  # larger images are box-averaged down to this first
    candidates: int = 4  # distinct shifts handed on for verification, most voted first


@dataclass(frozen=True)
class CopyMove:
    """Result on one image. ``pairs`` is the evidence: block pairs sharing the dominant shift."""

    pairs: int
    shift: tuple[int, int] | None  # (dy, dx) in the input image's pixels, or None
    blocks: np.ndarray  # (n, 2) int32 top-left (y, x) of the source blocks, input pixels
    block: int  # side of those blocks in input pixels
    # the strongest distinct shifts and their pair counts, strongest first (input pixels):
    # dense verification (edge_app.forensics.copy_move_verify) tries each, since on a photo with flat
    # areas the most voted shift is often not the copy
    candidates: tuple[tuple[tuple[int, int], int], ...] = ()

    def mask(self, height: int, width: int) -> np.ndarray:
        """bool (height, width): the matched blocks, source and copy."""
        out = np.zeros((height, width), bool)
        if self.shift is None:
            return out
        dy, dx = self.shift
        b = self.block
        for y, x in self.blocks:
            out[y:y + b, x:x + b] = True
            out[max(0, y + dy):max(0, y + dy + b), max(0, x + dx):max(0, x + dx + b)] = True
        return out


NONE = CopyMove(0, None, np.zeros((0, 2), np.int32), 16)


def copy_move_score(pairs: int, half_pairs: float) -> float:
    """Map a pair count to [0, 1): 0.5 at ``half_pairs`` pairs, rising towards 1."""
    return float(pairs / (pairs + half_pairs)) if pairs > 0 else 0.0


def _integral(x: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0] + 1, x.shape[1] + 1), np.float64)
    np.cumsum(x, axis=0, dtype=np.float64, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
    return out


def _window_sums(integral: np.ndarray, side: int) -> np.ndarray:
    """Sums over every side x side window (top-left indexed), from an integral image."""
    i = integral
    return i[side:, side:] - i[:-side, side:] - i[side:, :-side] + i[:-side, :-side]


def _luma(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, int]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"copy-move input must be uint8 RGB (H, W, 3), got {got}")
    h, w = rgb.shape[:2]
    f = 1
    while (h // f) * (w // f) > max_pixels:
        f += 1
    g = rgb.astype(np.float32) @ _LUMA
    if f > 1:
        # box averaging keeps a copy a copy (both go through the same filter)
        g = g[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return g, f


def _sort_keys(q: np.ndarray) -> list[np.ndarray]:
    """Keys for np.lexsort that order the rows of ``q`` (uint8) lexicographically, column 0
    first: columns packed into as few uint64 as their bit width allows (2 instead of 16)."""
    bits = max(1, int(q.max(initial=0)).bit_length())
    per = 64 // bits
    keys = []
    for start in range(0, q.shape[1], per):
        k = np.zeros(q.shape[0], np.uint64)
        for col in range(start, min(start + per, q.shape[1])):
            k <<= np.uint64(bits)
            k |= q[:, col].astype(np.uint64)
        keys.append(k)
    return keys[::-1]  # lexsort sorts by the last key first


def find_copy_move(rgb: np.ndarray, params: CopyMoveParams = CopyMoveParams()) -> CopyMove:
    """The dominant copy-move shift of an RGB uint8 image and how many block pairs support it."""
    g, f = _luma(rgb, params.max_pixels)
    b, grid = params.block, params.grid
    h, w = g.shape
    if h < b + 1 or w < b + 1:
        return NONE
    n = b * b
    sums = _window_sums(_integral(g), b)
    var = _window_sums(_integral(np.square(g, dtype=np.float64)), b) / n - np.square(sums / n)
    ys, xs = np.nonzero(var >= params.min_std ** 2)
    if ys.size < 2:
        return NONE
    s = b // grid
    # descriptor planes: sub-block means (0..255 as uint8) for every block position
    means = np.rint(_window_sums(_integral(g), s) / (s * s)).astype(np.uint8)
    hb, wb = h - b + 1, w - b + 1
    planes = np.stack([means[i * s:i * s + hb, j * s:j * s + wb] for i in range(grid) for j in range(grid)], axis=-1)
    # rows gathered with np.take, not fancy indexing: the same rows, 10x faster for
    # 16-byte rows (3 ms each time at 100k textured blocks)
    desc = np.take(planes.reshape(-1, planes.shape[-1]), ys * wb + xs, axis=0)  # (n, grid * grid) uint8
    order = np.lexsort(_sort_keys(desc // params.sort_step))
    desc, ys, xs = np.take(desc, order, axis=0), ys[order].astype(np.int64), xs[order].astype(np.int64)

    span = 2 * w + 1
    keys, firsts = [], []
    lanes = desc.shape[1]
    for off in range(1, params.neighbours + 1):
        dy, dx = ys[off:] - ys[:-off], xs[off:] - xs[:-off]
        a, c = desc[off:], desc[:-off]
        # |a - c| <= tolerance in every lane, on contiguous uint8 rows; the rows' flags are
        # read 8 lanes at a time as uint64 (zero means no lane is over)
        if 0 <= params.tolerance < 127:
            # |a - c| <= t exactly when (a - c + t) mod 256 <= 2t: two wrapping uint8
            # operations instead of max, min and a difference
            over = np.subtract(a, c)
            over += np.uint8(params.tolerance)
            over = over > 2 * params.tolerance
        else:
            over = (np.maximum(a, c) - np.minimum(a, c)) > params.tolerance
        if lanes % 8 == 0:
            words = over.view(np.uint64)
            acc = words[:, 0].copy()
            for k in range(1, words.shape[1]):
                acc |= words[:, k]
            close = acc == 0
        else:
            close = ~over.any(axis=1)
        idx = np.nonzero(close & (dy * dy + dx * dx >= params.min_distance ** 2))[0]
        # one sign per shift: (dy, dx) and (-dy, -dx) are the same copy seen from either end
        flip = (dx[idx] < 0) | ((dx[idx] == 0) & (dy[idx] < 0))
        sy = np.where(flip, -dy[idx], dy[idx])
        sx = np.where(flip, -dx[idx], dx[idx])
        keys.append((sy + h) * span + (sx + w))
        # the block the shift points away from
        firsts.append(np.where(flip, idx + off, idx))
    key = np.concatenate(keys)
    if key.size == 0:
        return NONE
    counts = np.bincount(key)
    best = int(counts.argmax())
    first = np.concatenate(firsts)[key == best]
    dy, dx = best // span - h, best % span - w
    blocks = np.unique(np.stack([ys[first], xs[first]], axis=1), axis=0).astype(np.int32) * f
    return CopyMove(int(counts[best]), (int(dy * f), int(dx * f)), blocks, b * f,
                    _top_shifts(counts, h, w, span, f, params.candidates))


def _top_shifts(counts: np.ndarray, h: int, w: int, span: int, f: int, k: int):
    """The ``k`` most voted shifts, each at least 3 pixels from a stronger one (a copy's
    pairs also vote for the shifts next to its own, through rounding)."""
    nz = np.flatnonzero(counts)  # most shifts get no vote at all
    top = min(64 * k, nz.size)
    part = nz[np.argpartition(counts[nz], nz.size - top)[nz.size - top:]] if top else nz
    order = part[np.argsort(counts[part], kind="stable")[::-1]]
    out: list[tuple[tuple[int, int], int]] = []
    for key in order:
        c = int(counts[key])
        if c == 0 or len(out) == k:
            break
        dy, dx = int(key // span - h), int(key % span - w)
        if any(abs(dy - oy) <= 2 and abs(dx - ox) <= 2 for (oy, ox), _ in out):
            continue
        out.append(((dy, dx), c))
    return tuple(((dy * f, dx * f), c) for (dy, dx), c in out)
