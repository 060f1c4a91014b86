"""Dense verification of a copy-move candidate: warp the image by the found transform,
compare it with itself, and keep only what matches as a copy would.

    candidate transform T (a shift from block matching, a similarity from keypoints)
      -> D(x) = local mean |g(x) - g(T x)|,  S(x) = local standard deviation of g
      -> a pixel matches where S >= min_texture and D <= abs_tol + rel_tol * S,
         T x is inside the image and at least min_distance away from x
      -> opening, connected components of at least min_area (fraction of the image)
      -> repeat test per component: where the copy also matches its own image under T
         (g(T x) ~ g(T^2 x)), the source its preimage (T^-1), half the shift, or another
         candidate - on the image's high-pass detail, or loosely on the image itself - the
         structure repeats (tiles, windows, shelves, rows of buttons): not a copy, dropped
      -> a confirmed copy whose region takes part in a second, different confirmed relation
         (A->B and B->C, or A->B and A->C) is dropped too: look-alike objects, not one paste
      -> verified region: the kept source components and their images under T

Why: the two matchers (``copy_move``, ``keypoint_copy_move`` beside this module) vote for a
transform from sparse evidence, and on authentic photos that evidence is often noise:
sub-block means of a flat white wall agree at many shifts, a row of identical products or a
tiled floor gives many consistent keypoint pairs. A real copy agrees with its source over a
whole *textured* region, to within the recompression noise, and only once. Counting the
matching textured area, and not the votes, makes the evidence an area that does not grow with
the image's size; flat pixels never count; and the periodic test removes repeated structure,
which matches at T, 2T, 3T alike, while a copy matches at T only.

Everything runs on the analysis image the matchers saw (a fixed pixel budget), so the cost
is bounded whatever the input size; OpenCV does the warping, filtering and labelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VerifyParams:
    window: int = 7  # side of the window for the local mean difference and local std, pixels
    min_texture: float = 4.0  # local std (grey levels) below which a pixel is flat and never counts
    abs_tol: float = 1.5  # grey levels of local mean |difference| always allowed (recompression noise)
    rel_tol: float = 0.2  # plus this fraction of the local std (resampling of scaled/rotated copies)
    min_distance: int = 16  # pixels between a point and its copy, analysis image
    min_area: float = 0.0015  # smallest component kept, fraction of the analysis image
    min_pixels: int = 200  # and at least this many pixels (small images)
    max_periodic: float = 0.3  # a component matching under T^2 or T^-1 over more than this is periodic
    # the repeat tests (T^2, T^-1, other candidates) compare high-pass detail and call it a
    # repeat where the difference is under this share of its magnitude: a look-alike that
    # nearly matches is repetition all the same, and a copy's source matches nothing else
    repeat_ratio: float = 0.7
    grow: int = 24  # the drawn region may extend this far (pixels) into agreeing flat pixels
    # when > 0, a scaled or rotated copy is compared after a Gaussian blur of resample_sigma
    # plus resample_scale x sqrt(r^2 - 1) pixels, r the scale factor or its inverse (> 1), and
    # with loose_repeats_rigid_only the loose repeat test skips resampled copies. Both verify
    # more of a scaled copy (tests/test_copy_move_verify.py), and both were compared for issue 17
    # (python -m convert.compare_copy_move, 0.7 / 1.0 / True): CASIA's facades and fabrics then
    # verify too, the calibrated thresholds rise, and 124-128 of 160 validation copies were
    # found against 126 without them. Off.
    resample_sigma: float = 0.0
    resample_scale: float = 0.0
    loose_repeats_rigid_only: bool = False


@dataclass(frozen=True)
class Verified:
    """What dense verification confirmed of one candidate, in analysis-image pixels."""

    area: float  # verified source area, fraction of the image (0 when nothing is confirmed)
    transform: np.ndarray | None  # (2, 3) float64 source -> copy, analysis pixels (x, y)
    source: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # bool (h, w)
    copy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # bool (h, w)
    periodic_area: float = 0.0  # area dropped as periodic structure, fraction of the image
    components: int = 0  # components kept

    @property
    def found(self) -> bool:
        return self.area > 0

    def region(self) -> np.ndarray:
        """bool (h, w): source and copy together."""
        if self.source.size == 0:
            return self.source
        return self.source | self.copy


def empty(shape: tuple[int, int]) -> Verified:
    z = np.zeros(shape, bool)
    return Verified(0.0, None, z, z)


def _local_std(g: np.ndarray, k: int) -> np.ndarray:
    import cv2

    m = cv2.blur(g, (k, k))
    m2 = cv2.blur(g * g, (k, k))
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def _warp(g: np.ndarray, m: np.ndarray, box: tuple[int, int, int, int] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(g(M x), inside) for every analysis pixel x (of ``box`` = (y0, y1, x0, x1) only, when
    given): the image read through M, and where M x falls inside the image (the luma is
    never negative, so the -1 border marks outside)."""
    import cv2

    h, w = g.shape
    y0, y1, x0, x1 = box or (0, h, 0, w)
    m = np.array(m, np.float64)
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # box pixel (x', y') is image pixel (x' + x0, y' + y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(g, m, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    return out, out > -0.5


def _resample_sigma(m: np.ndarray, p: VerifyParams) -> float:
    """Blur (pixels) before comparing a copy made by ``m``: none for a plain shift."""
    lin = np.asarray(m, np.float64)[:, :2]
    if np.allclose(lin, np.eye(2), atol=1e-6):
        return 0.0
    s = float(np.sqrt(abs(np.linalg.det(lin))))
    r = max(s, 1.0 / s) if s > 0 else 1.0
    return p.resample_sigma + p.resample_scale * float(np.sqrt(max(r * r - 1.0, 0.0)))


def _resampled(m: np.ndarray) -> bool:
    """Whether ``m`` scales by 5% or more or turns by 3 degrees or more (a shift, or nearly one, is not)."""
    lin = np.asarray(m, np.float64)[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(lin))))
    turn = abs(float(np.degrees(np.arctan2(lin[1, 0], lin[0, 0]))))
    return abs(np.log(max(scale, 1e-9))) >= np.log(1.05) or turn >= 3.0


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine map x -> a(b(x))."""
    A = np.vstack([a, [0, 0, 1]])
    B = np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]


def _invert(m: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(m)


def _match(g: np.ndarray, other: np.ndarray, inside: np.ndarray, std: np.ndarray, p: VerifyParams,
           loose: float = 1.0) -> np.ndarray:
    import cv2

    diff = cv2.blur(np.abs(g - other), (p.window, p.window))
    return inside & (std >= p.min_texture) & (diff <= loose * (p.abs_tol + p.rel_tol * std))


def _centre(region: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(homogeneous centre [x, y, 1], pixel count) of a bool region, None when empty."""
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return None
    return np.array([xs.mean(), ys.mean(), 1.0]), int(ys.size)


def _same_copy(a: np.ndarray, b: np.ndarray, region: np.ndarray, px: float = 8.0,
               centre: tuple[np.ndarray, int] | None = None) -> bool:
    """Whether ``b`` describes the copy ``a`` makes of ``region`` (or its way back): it takes
    the region's centre to the same place (or back from it), within ``px`` or a quarter of
    the region's radius. A translation that block matching found on part of a scaled copy
    is the same copy; a lattice of shifts or a third instance puts the centre elsewhere."""
    found = centre if centre is not None else _centre(region)
    if found is None:
        return False
    c, size = found
    tol = max(px, 0.25 * float(np.sqrt(size / np.pi)))
    ac = a @ c
    if np.hypot(*(b @ c - ac)) <= tol:
        return True
    back = _invert(b) @ c  # b as the way back from the copy: b(a(c)) = c
    return bool(np.hypot(*(b @ np.append(ac, 1.0) - c[:2])) <= tol or np.hypot(*(back - ac)) <= tol)


def _repeats(a: np.ndarray, b: np.ndarray, inside: np.ndarray, std: np.ndarray, p: VerifyParams) -> np.ndarray:
    """Where two high-pass images agree: local mean |a - b| under ``repeat_ratio`` times their
    local mean magnitude (independent texture gives about 1.1-1.4), on textured pixels."""
    import cv2

    k = (p.window, p.window)
    diff = cv2.blur(np.abs(a - b), k)
    level = cv2.blur(0.5 * (np.abs(a) + np.abs(b)), k)
    return inside & (std >= p.min_texture) & (diff <= p.repeat_ratio * level)


def verify(g: np.ndarray, transform: np.ndarray, params: VerifyParams = VerifyParams(),
           std: np.ndarray | None = None, others: list[np.ndarray] = ()) -> Verified:
    """Confirm a candidate copy ``transform`` (2x3, source -> copy, pixels of ``g``) on the
    float32 luma ``g``; ``std`` is its local std if the caller has it already. ``others`` are
    the matchers' other candidates: a source that also matches under another transform
    repeats (a lattice of shifts), and counts as periodic like one matching under T^2."""
    import cv2

    g = np.ascontiguousarray(g, np.float32)
    h, w = g.shape
    m = np.asarray(transform, np.float64)
    if std is None:
        std = _local_std(g, params.window)
    warped, inside = _warp(g, m)
    # the displacement of each pixel: a copy is somewhere else, not a smooth self-overlap
    # a row and a column of coordinates, broadcast: every element is computed as from the
    # full coordinate grids (same operands, same order) without building them
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    tx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    ty = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    far = (tx - xs) ** 2 + (ty - ys) ** 2 >= params.min_distance ** 2
    del tx, ty
    sigma = _resample_sigma(m, params)
    if sigma > 0:
        # the smaller of the two instances lost the detail the larger still has (and a
        # rotation was interpolated twice): compare them at the detail both still hold
        gs = cv2.GaussianBlur(g, (0, 0), sigma)
        hit = _match(gs, _warp(gs, m)[0], inside, std, params)
    else:
        hit = _match(g, warped, inside, std, params)
    hit = (hit & far).astype(np.uint8)
    hit = cv2.morphologyEx(hit, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
    min_px = max(params.min_pixels, params.min_area * h * w)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px]
    if not big:
        return empty((h, w))
    # the repeat tests look only at the components' bounding box (padded by the window, so
    # the local means there are those of the whole image)
    pad = params.window
    # the components' joint bounding box, from their own (connectedComponentsWithStats)
    top = min(int(stats[i, cv2.CC_STAT_TOP]) for i in big)
    left = min(int(stats[i, cv2.CC_STAT_LEFT]) for i in big)
    bottom = max(int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]) for i in big)
    right = max(int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in big)
    box = (max(0, top - pad), min(h, bottom + pad), max(0, left - pad), min(w, right + pad))
    by0, by1, bx0, bx1 = box
    # compared on the detail (high-pass) of the image, so that look-alikes lit or exposed a
    # little differently still count as repetition
    hp = g - cv2.GaussianBlur(g, (0, 0), 2.0)
    ib, sb = inside[by0:by1, bx0:bx1], std[by0:by1, bx0:bx1]
    gb = hp[by0:by1, bx0:bx1]
    wb, _ = _warp(hp, m, box)

    gr, wr = g[by0:by1, bx0:bx1], warped[by0:by1, bx0:bx1]
    pairs = {id(gb): gr, id(wb): wr}  # each high-pass crop with its plain-image twin

    # a resampled copy (scaled or turned) differs from its source by the interpolation: the
    # loose test then matches smooth skin and walls under T^-1 or T^2 as often as not (it
    # dropped 6 of 80 validation copies as repeats), and look-alike objects, the structure it
    # is there for, sit side by side at the same size and angle
    loose = not (params.loose_repeats_rigid_only and _resampled(m))

    def rep(a, b, ok, t):
        # a repeat on the detail, or on the plain image at twice the copy tolerance
        found = _repeats(a, b, ok, sb, params)
        if loose:
            found |= _match(pairs[id(a)], _warp(g, t, box)[0], ok, sb, params, 2.0)
        return found

    # periodic structure: the copy matches its own image under T, or the source its preimage
    warped2, inside2 = _warp(hp, _compose(m, m), box)
    again = rep(wb, warped2, ib & inside2, _compose(m, m))
    back, inside_b = _warp(hp, _invert(m), box)
    again |= rep(gb, back, inside_b, _invert(m))
    if m[0, 0] == 1 and m[1, 1] == 1 and m[0, 1] == 0 and m[1, 0] == 0 and not (m[:, 2] % 2).any():
        half = m.copy()
        half[:, 2] /= 2  # a lattice: half the shift matches too
        other, inside_o = _warp(hp, half, box)
        again |= rep(gb, other, inside_o, half)
    comps = np.isin(labels, big)
    comps_centre = _centre(comps)  # the same for every other candidate: found once
    for o in others:
        o = np.asarray(o, np.float64)
        # a candidate that takes the components where T takes them is either this copy again
        # (another matcher's estimate: a translation found on part of a scaled copy) or the
        # next link of a chain of equally spaced look-alikes (A->B, B->C); either way the
        # source matches under it trivially, so only the copy is tested: does it match its
        # own image under the candidate (B against C)?
        same = _same_copy(m, o, comps, params.min_distance / 2, comps_centre)
        for t in ((o,) if same else (o, _invert(o))):
            if not same:  # a third instance: the source matches under another candidate too
                other, inside_o = _warp(hp, t, box)
                again |= rep(gb, other, inside_o, t)
            other, inside_o = _warp(hp, _compose(t, m), box)
            again |= rep(wb, other, ib & inside_o, _compose(t, m))
    labels_b = labels[by0:by1, bx0:bx1]
    source = np.zeros((h, w), bool)
    periodic_px, kept = 0, 0
    for i in big:
        area = int(stats[i, cv2.CC_STAT_AREA])
        if float(again[labels_b == i].mean()) > params.max_periodic:
            periodic_px += area
            continue
        source |= labels == i
        kept += 1
    if not kept:
        z = np.zeros((h, w), bool)
        return Verified(0.0, None, z, z, periodic_px / (h * w), 0)
    area = float(source.sum()) / (h * w)
    # the drawn region (not the evidence): the confirmed pixels, closed over small gaps, and
    # grown into the flat pixels next to them that agree with their copy as closely as the
    # recompression allows - the plain parts of a pasted region - but no further than
    # params.grow pixels, since a flat wall agrees with itself at any shift
    ell = lambda k: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))  # noqa: E731
    filled = cv2.morphologyEx(source.astype(np.uint8), cv2.MORPH_CLOSE, ell(15))
    close = cv2.blur(np.abs(g - warped), (params.window, params.window)) <= params.abs_tol
    # the dilation reaches params.grow pixels beyond ``filled``: computed in that box only
    # (a 49-pixel ellipse over the whole analysis image was 8 ms a candidate)
    near = np.zeros((h, w), bool)
    fy, fx = np.nonzero(filled)
    g0, g1 = max(0, fy.min() - params.grow), min(h, fy.max() + 1 + params.grow)
    g2, g3 = max(0, fx.min() - params.grow), min(w, fx.max() + 1 + params.grow)
    near[g0:g1, g2:g3] = cv2.dilate(filled[g0:g1, g2:g3], ell(2 * params.grow + 1)) > 0
    grow = (inside & far & close & near).astype(np.uint8) | filled
    n2, lab2 = cv2.connectedComponents(grow, connectivity=8)
    keep = np.unique(lab2[filled > 0])
    filled = (np.isin(lab2, keep[keep > 0]) | (filled > 0)).astype(np.uint8)
    copy = cv2.warpAffine(filled, m, (w, h), flags=cv2.INTER_NEAREST) > 0
    return Verified(area, m, filled > 0, copy, periodic_px / (h * w), kept)


def _share(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, min(int(a.sum()), int(b.sum())))


def _one_copy(v: Verified, u: Verified) -> bool:
    """Whether two confirmed candidates are one copy: the same move of the same place (or
    its way back). A chain A->B, B->C moves by the same vector but from another place."""
    same_place = _share(v.source, u.source) > 0.5 or _share(v.source, u.copy) > 0.5
    return same_place and _same_copy(v.transform, u.transform, v.source)


def _overlap(a: Verified, b: Verified) -> float:
    ra, rb = a.region(), b.region()
    return float((ra & rb).sum()) / max(1, min(ra.sum(), rb.sum()))


def verify_all(g: np.ndarray, candidates: list[tuple[str, np.ndarray]], params: VerifyParams = VerifyParams()
               ) -> dict[str, Verified]:
    """Per detector name, its candidate with the largest verified area (``empty`` when none).

    ``candidates`` are (detector, transform) from both matchers. Every candidate is tried,
    the others serving the periodic test; then a confirmed copy whose region also takes
    part in another confirmed, different copy relation is dropped: three look-alike objects
    give A->B, B->C and A->C, a region pasted once gives one relation (found by either
    matcher, in either direction)."""
    g = np.ascontiguousarray(g, np.float32)
    h, w = g.shape
    std = _local_std(g, params.window)
    transforms = [t for _, t in candidates]
    best = {name: empty((h, w)) for name, _ in candidates}
    found = []
    for i, (name, t) in enumerate(candidates):
        v = verify(g, t, params, std, [o for j, o in enumerate(transforms) if j != i])
        if v.found:
            found.append((name, v))
        elif v.periodic_area > best[name].periodic_area and not best[name].found:
            best[name] = v  # nothing confirmed: report how much was dropped as repeating
    for i, (name, v) in enumerate(found):
        repeated = any(not _one_copy(v, u) and _overlap(v, u) > 0.2
                       for j, (_, u) in enumerate(found) if j != i)
        if repeated:
            v = Verified(0.0, None, np.zeros((h, w), bool), np.zeros((h, w), bool), v.area + v.periodic_area, 0)
        if v.area > best[name].area or (not best[name].found and v.periodic_area > best[name].periodic_area):
            best[name] = v
    return best


def upscale_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool (height, width): an analysis-image mask at the input's size (nearest)."""
    import cv2

    if mask.shape == (height, width):
        return mask
    if mask.size == 0:
        return np.zeros((height, width), bool)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
