"""Copy-move evidence of one image: both matchers on one fixed-size analysis image, every
candidate they find verified densely, the confirmed area as the evidence.

    image -> area-averaged down to at most ``analysis_pixels`` (never up)
          -> block matching (edge_app.forensics.copy_move): the most voted shifts
          -> keypoint matching (edge_app.forensics.keypoint_copy_move): similarity transforms
          -> each candidate warped and compared (edge_app.forensics.copy_move_verify)
          -> per detector: the largest confirmed area (fraction of the image) and its region

Why a fixed analysis size: the evidence is then the same for a photo and its 4x upscale, and
the cost is bounded (both matchers grow with the pixel count). Averaging keeps a copy a copy,
since source and copy go through the same filter; a copy smaller than about
``VerifyParams.min_area`` of the image is below what is claimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_app.forensics.copy_move import CopyMove, CopyMoveParams, find_copy_move
from edge_app.forensics.copy_move_verify import Verified, VerifyParams, empty, upscale_mask, verify_all
from edge_app.forensics.keypoint_copy_move import KeypointCopyMove, KeypointParams, find_keypoint_copy_move

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class SearchParams:
    analysis_pixels: int = 200_000
    min_block_pairs: int = 2  # block-matching shifts with fewer pairs are noise, not verified
    block: CopyMoveParams = field(default_factory=CopyMoveParams)
    keypoint: KeypointParams = field(default_factory=KeypointParams)
    verify: VerifyParams = field(default_factory=VerifyParams)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchParams":
        return cls(int(d.get("analysis_pixels", cls.analysis_pixels)), int(d.get("min_block_pairs", cls.min_block_pairs)),
                   CopyMoveParams(**d.get("block", {})), KeypointParams(**d.get("keypoint", {})),
                   VerifyParams(**d.get("verify", {})))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"analysis_pixels": self.analysis_pixels, "min_block_pairs": self.min_block_pairs,
                "block": asdict(self.block),
                "keypoint": asdict(self.keypoint), "verify": asdict(self.verify)}


@dataclass
class CopyMoveEvidence:
    """Both detectors' confirmed copies. Areas are fractions of the image; masks and
    transforms are in analysis pixels (``factor`` input pixels each)."""

    block: Verified
    keypoint: Verified
    block_raw: CopyMove
    keypoint_raw: KeypointCopyMove
    factor: float  # input pixels per analysis pixel (1.0 when not reduced)
    analysis_size: tuple[int, int]  # (width, height)
    min_area: float = 0.0  # smallest confirmed component, fraction of the image

    def mask(self, which: str, height: int, width: int) -> np.ndarray:
        """bool (height, width): the confirmed source and copy of ``which`` (block/keypoint)."""
        v = self.block if which == "block" else self.keypoint
        if not v.found:
            return np.zeros((height, width), bool)
        return upscale_mask(v.region(), height, width)

    def describe(self, which: str) -> dict:
        """JSON-ready: area, and shift / scale / rotation in input pixels."""
        v = self.block if which == "block" else self.keypoint
        out = {"verified_area": round(v.area, 5), "periodic_area_dropped": round(v.periodic_area, 5)}
        if which == "block":
            out["pairs"] = self.block_raw.pairs
        else:
            out["inliers"] = self.keypoint_raw.inliers
        if v.found:
            m = v.transform
            # (dy, dx) from the source region's centre to the copy's, input pixels
            ys, xs = np.nonzero(v.source)
            c = np.array([xs.mean(), ys.mean(), 1.0])
            d = (m @ c - c[:2]) * self.factor
            out["shift"] = [int(round(d[1])), int(round(d[0]))]
            out["scale"] = round(float(np.hypot(m[0, 0], m[1, 0])), 3)
            out["rotation_deg"] = round(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), 1)
        return out


def analysis_image(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    """(RGB at most ``max_pixels``, input pixels per analysis pixel)."""
    import cv2

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"copy-move input must be uint8 RGB (H, W, 3), got {got}")
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb, 1.0
    f = float(np.sqrt(h * w / max_pixels))
    size = (max(16, int(w / f)), max(16, int(h / f)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), w / size[0]


def _shift_matrix(dy: int, dx: int) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def find_copy_moves(rgb: np.ndarray, params: SearchParams = SearchParams()) -> CopyMoveEvidence:
    """Both detectors on ``rgb`` (uint8 RGB), every candidate verified densely."""
    small, f = analysis_image(rgb, params.analysis_pixels)
    h, w = small.shape[:2]
    # the matchers must not reduce the analysis image again
    block_p = CopyMoveParams(**{**params.block.__dict__, "max_pixels": h * w + 1})
    kp_p = KeypointParams(**{**params.keypoint.__dict__, "max_pixels": h * w + 1})
    raw_b = find_copy_move(small, block_p)
    raw_k = find_keypoint_copy_move(small, kp_p)
    g = small.astype(np.float32) @ _LUMA
    shifts = [_shift_matrix(*shift) for shift, n in raw_b.candidates if n >= params.min_block_pairs]
    found = verify_all(g, [("block", t) for t in shifts] + [("keypoint", t) for t in raw_k.candidates], params.verify)
    block, keypoint = found.get("block", empty((h, w))), found.get("keypoint", empty((h, w)))
    return CopyMoveEvidence(block, keypoint, raw_b, raw_k, f, (w, h), params.verify.min_area)
