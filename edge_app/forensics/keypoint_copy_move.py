"""Copy-move detection by keypoints: finds copies that were scaled or rotated.

    image -> luma -> SIFT keypoints + descriptors (OpenCV)
          -> each keypoint's nearest other keypoint, kept if clearly nearer than the
             second nearest (ratio test) and far enough away
          -> one similarity transform (rotation, uniform scale, shift) by RANSAC
          -> its inlier count is the evidence; the inliers' hulls are the two regions

This is the keypoint approach of Amerini et al. (2011), "A SIFT-based forensic method for
copy-move attack detection and transformation recovery". It complements the block matcher
in ``edge_app.forensics.copy_move``: that one compares 16x16 blocks pixel for pixel, so it finds a
plain translated copy even in fine texture but loses a copy that was resized or turned
(an editor's "free transform"). SIFT descriptors are invariant to both.

Why these choices:

- OpenCV's SIFT, brute-force matcher and RANSAC: the library made for the job, with
  aarch64 wheels for the Pi (``opencv-python-headless``); nothing here is hand-written.
- ``contrast_threshold`` 0.02 (OpenCV's default is 0.04): small copies in 384x256 photos
  hold only a few keypoints at the default; halving it found more scaled copies on CASIA
  and self-made validation images at no cost in false alarms there.
- Ratio test at 0.6 against the second-nearest *other* keypoint (the nearest is the
  keypoint itself): a copy's keypoint has one near twin, repeated texture has many.
- More keypoints (contrast 0.01, ratio 0.7) and a scale limit (``min_scale``) were compared
  for issue 17 (``python -m convert.compare_copy_move``): at the thresholds the calibration
  rule then sets, they found 124-128 of 160 validation copies against these settings' 126:
  CASIA's facades and fabrics give look-alikes at slightly different scales, which push the
  thresholds up. Two more copies of 160 is within the noise; ``min_scale`` stays off (0).
- A similarity transform (4 degrees of freedom), not a full affine one: editors scale
  uniformly and rotate; two point pairs fix a similarity, so the evidence starts at the
  third consistent pair (``min_inliers``).
- OpenCV's RANSAC draws its samples from a fixed seed, so the result is reproducible.

The parameters were compared on validation images only (``convert/calibrate_forensics.py``
chooses the weight of this evidence there and reports it on held-out test images).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

INSTALL_HINT = ("keypoint copy-move matching needs OpenCV, the optional extra 'forensics': "
                "pip install 'edge_app[forensics]' (opencv-python-headless; on a Raspberry Pi with apt's "
                "numpy 1.24: sudo apt install python3-opencv instead, as pip's OpenCV needs numpy 2)")


class OpenCVMissing(ImportError):
    """OpenCV is not installed; the message names the extra that brings it."""


def opencv():
    """The cv2 module, or OpenCVMissing naming the extra (the door terminal runs without it)."""
    try:
        import cv2
    except ImportError as exc:
        raise OpenCVMissing(f"{INSTALL_HINT} ({exc})") from exc
    return cv2


def available() -> bool:
    try:
        opencv()
    except OpenCVMissing:
        return False
    return True


@dataclass(frozen=True)
class KeypointParams:
    contrast_threshold: float = 0.02  # SIFT detector; lower finds more keypoints
    max_keypoints: int = 4000  # strongest keypoints kept (bounds the n^2 matching)
    ratio: float = 0.6  # nearest other keypoint must be < ratio x the second nearest
    min_distance: int = 24  # pixels between the two keypoints of a pair
    ransac_px: float = 3.0  # reprojection error for a RANSAC inlier, pixels
    min_inliers: int = 3  # fewer consistent pairs count as no evidence
    max_pixels: int = 1_000_000  # larger images are area-averaged down to this first
    candidates: int = 4  # transforms found one after another (sequential RANSAC)
    # when > 0, a transform scaling by less than min_scale or more than 1 / min_scale is dropped
    # (with more keypoints RANSAC fitted a scale of 0.01 to three chance pairs on a flat face)
    min_scale: float = 0.0


@dataclass(frozen=True)
class KeypointCopyMove:
    """Result on one image. ``inliers`` is the evidence: point pairs that one similarity
    transform maps source onto copy (0 when fewer than ``min_inliers``)."""

    inliers: int
    transform: np.ndarray | None = None  # (2, 3) float64, source -> copy, input pixels (x, y)
    src: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # inlier points (x, y)
    dst: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    radius: float = 8.0  # half the median keypoint size of the inliers, input pixels
    # every transform found, strongest first (the first is ``transform``): each is handed on
    # to dense verification (edge_app.forensics.copy_move_verify)
    candidates: tuple = ()

    @property
    def scale(self) -> float | None:
        return None if self.transform is None else float(np.hypot(*self.transform[:, 0]))

    @property
    def rotation_deg(self) -> float | None:
        if self.transform is None:
            return None
        return float(np.degrees(np.arctan2(self.transform[1, 0], self.transform[0, 0])))

    @property
    def shift(self) -> tuple[int, int] | None:
        """(dy, dx) from the source points' centre to the copy's, input pixels."""
        if self.inliers == 0:
            return None
        d = self.dst.mean(axis=0) - self.src.mean(axis=0)
        return int(round(float(d[1]))), int(round(float(d[0])))

    def mask(self, height: int, width: int) -> np.ndarray:
        """bool (height, width): the convex hulls of the inlier points, source and copy,
        each point widened by ``radius`` so that a hull of few points still has area."""
        cv2 = opencv()

        canvas = np.zeros((height, width), np.uint8)
        if self.inliers == 0:
            return canvas.astype(bool)
        r = int(round(self.radius))
        for pts in (self.src, self.dst):
            for x, y in np.rint(pts).astype(np.int32):
                cv2.circle(canvas, (int(x), int(y)), r, 1, thickness=-1)
            if len(pts) >= 3:
                hull = cv2.convexHull(np.rint(pts).astype(np.int32))
                cv2.fillConvexPoly(canvas, hull, 1)
        return canvas.astype(bool)


NONE = KeypointCopyMove(0)


def keypoint_copy_move_score(inliers: int, half_inliers: float) -> float:
    """Map an inlier count to [0, 1): 0.5 at ``half_inliers`` inliers, rising towards 1."""
    return float(inliers / (inliers + half_inliers)) if inliers > 0 else 0.0


def _luma(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    cv2 = opencv()

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"keypoint copy-move input must be uint8 RGB (H, W, 3), got {got}")
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    if h * w <= max_pixels:
        return g, 1.0
    f = float(np.sqrt(h * w / max_pixels))
    size = (max(1, int(w / f)), max(1, int(h / f)))
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA), w / size[0]


_MATCH_ROWS = 256  # query rows per block of the distance matrix (4 MB at 4000 keypoints)


def _ratio_matches(des: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(query, nearest other) index pairs whose nearest other descriptor is nearer than
    ``ratio`` times the second nearest other (L2), each keypoint against all the others.

    The same test as OpenCV's brute-force ``knnMatch(k=3)`` minus the keypoint itself, as
    float32 matrix products and row minima: 3-5x faster at 1-2k keypoints, because knnMatch
    returns a Python object per match.

    The squared distances are taken a block of ``_MATCH_ROWS`` query rows at a time: the
    whole matrix at 4000 keypoints is 64 MB, and its expression ``|a|^2 + |b|^2 - 2 a.b``
    made three of them at once (issue 15). Blocks give the same numbers as the whole: SIFT
    descriptors are integers (0..255, norm near 512), so every product, sum and distance
    is an integer far below 2**24, exact in float32 in any order of summation, and so
    argmin's choice among equal distances is the same too."""
    d = np.ascontiguousarray(des, np.float32)
    n = len(d)
    if n < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sq = np.einsum("ij,ij->i", d, d)
    first = np.empty(n, np.int64)
    d1 = np.empty(n, np.float32)
    d2 = np.empty(n, np.float32)
    block = np.empty((min(n, _MATCH_ROWS), n), np.float32)  # one buffer for every block
    for r0 in range(0, n, _MATCH_ROWS):
        r1 = min(n, r0 + _MATCH_ROWS)
        rows = np.arange(r1 - r0)
        # |b|^2 - 2 a.b: the row's own |a|^2 does not change which column is nearest
        m = np.matmul(d[r0:r1], d.T, out=block[:r1 - r0])
        m *= np.float32(-2.0)
        m += sq[None, :]
        m[rows, rows + r0] = np.inf  # a keypoint is not its own match
        j = m.argmin(axis=1)
        first[r0:r1] = j
        d1[r0:r1] = m[rows, j]
        m[rows, j] = np.inf
        d2[r0:r1] = m.min(axis=1)
    d1 += sq
    d2 += sq
    d_first, d_second = np.sqrt(np.maximum(d1, 0)), np.sqrt(np.maximum(d2, 0))
    ok = d_first < ratio * d_second
    rows = np.arange(n)
    return rows[ok], first[ok]


def find_keypoint_copy_move(rgb: np.ndarray, params: KeypointParams = KeypointParams()) -> KeypointCopyMove:
    """The strongest scaled/rotated/translated copy in an RGB uint8 image, by SIFT keypoints.
    Raises OpenCVMissing (naming the extra to install) without OpenCV."""
    cv2 = opencv()

    g, f = _luma(rgb, params.max_pixels)
    if min(g.shape) < 16:
        return NONE
    sift = cv2.SIFT_create(nfeatures=params.max_keypoints, contrastThreshold=params.contrast_threshold)
    kps, des = sift.detectAndCompute(g, None)
    if des is None or len(kps) < 3:
        return NONE
    pts = np.array([k.pt for k in kps], np.float32)
    sizes = np.array([k.size for k in kps], np.float32)
    a, b = _ratio_matches(des, params.ratio)
    if not len(a):
        return NONE
    far = np.hypot(*(pts[a] - pts[b]).T) >= params.min_distance / f
    a, b = a[far], b[far]
    # one direction per pair, so both ends of a copy agree on which side is the source;
    # a pair found from both of its keypoints counts once
    swap = (pts[a, 0] > pts[b, 0]) | ((pts[a, 0] == pts[b, 0]) & (pts[a, 1] > pts[b, 1]))
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    if len(pairs) < params.min_inliers:
        return NONE
    src, dst = pts[pairs[:, 0]], pts[pairs[:, 1]]
    found = []  # (inlier mask over pairs, transform in input pixels), strongest first
    left = np.ones(len(pairs), bool)
    for _ in range(params.candidates):
        # sequential RANSAC: the next transform from the pairs the earlier ones left over
        if left.sum() < params.min_inliers:
            break
        idx = np.nonzero(left)[0]
        transform, inl = cv2.estimateAffinePartial2D(src[idx], dst[idx], method=cv2.RANSAC,
                                                     ransacReprojThreshold=params.ransac_px / f,
                                                     maxIters=2000, confidence=0.99)
        if transform is None:
            break
        keep = np.zeros(len(pairs), bool)
        keep[idx[inl.ravel().astype(bool)]] = True
        if int(keep.sum()) < params.min_inliers:
            break
        left &= ~keep
        scale = float(np.hypot(*transform[:, 0]))
        if params.min_scale > 0 and not params.min_scale <= scale <= 1.0 / params.min_scale:
            continue
        transform = transform.copy()
        transform[:, 2] *= f  # shift back to input pixels; rotation and scale are unchanged
        found.append((keep, transform))
    if not found:
        return NONE
    keep, transform = found[0]
    return KeypointCopyMove(int(keep.sum()), transform, src[keep] * np.float32(f), dst[keep] * np.float32(f),
                            float(np.median(sizes[pairs[keep, 0]])) * f / 2, tuple(t for _, t in found))
