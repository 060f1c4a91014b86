"""Copy-move detection on real CASIA v1 photos, copies made here and saved as real JPEGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_app.forensics.copy_move import CopyMoveParams, copy_move_score, find_copy_move
from tests.conftest import textured_casia_test_photos


SRC = (113, 129)  # top-left of the copied region
DST = (150, 230)  # where it is pasted: a shift of (37, 101), off the 8x8 JPEG grid
SIZE = (40, 48)


def _round_trip(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _copy(rgb: np.ndarray, src=SRC, dst=DST, size=SIZE) -> np.ndarray:
    out = rgb.copy()
    (sy, sx), (dy, dx), (h, w) = src, dst, size
    out[dy:dy + h, dx:dx + w] = rgb[sy:sy + h, sx:sx + w]
    return out


@pytest.fixture(scope="module")
def photos():
    """Three held-out authentic CASIA photos (landscape, textured where the copy comes from)."""
    return textured_casia_test_photos((SRC[0], SRC[0] + SIZE[0], SRC[1], SRC[1] + SIZE[1]), 3)


def test_a_copied_region_is_found_with_its_shift_after_jpeg(photos):
    for name, rgb in photos:
        cm = find_copy_move(_round_trip(_copy(rgb), 90))
        assert cm.shift == (DST[0] - SRC[0], DST[1] - SRC[1]), (name, cm)
        # a 40x48 copy holds (40-15) * (48-15) = 825 block positions; most survive JPEG
        assert cm.pairs >= 200, (name, cm.pairs)
        mask = cm.mask(*rgb.shape[:2])
        pasted = np.zeros_like(mask)
        pasted[DST[0]:DST[0] + SIZE[0], DST[1]:DST[1] + SIZE[1]] = True
        assert mask[pasted].mean() > 0.6, (name, mask[pasted].mean())
        # the mask holds the source and the copy, nothing far from them
        near = np.zeros_like(mask)
        near[SRC[0] - 16:DST[0] + SIZE[0] + 16, SRC[1] - 16:DST[1] + SIZE[1] + 16] = True
        assert not (mask & ~near).any(), name


def test_the_same_photos_untouched_give_little_evidence(photos):
    for name, rgb in photos:
        copied = find_copy_move(_round_trip(_copy(rgb), 90)).pairs
        untouched = find_copy_move(_round_trip(rgb, 90)).pairs
        assert untouched < 10 and untouched * 20 < copied, (name, untouched, copied)


def test_a_copy_survives_a_lower_quality_save(photos):
    name, rgb = photos[0]
    cm = find_copy_move(_round_trip(_copy(rgb), 75))
    assert cm.shift == (37, 101) and cm.pairs >= 50, (name, cm)


def test_large_images_are_reduced_first_and_shifts_come_back_in_input_pixels(photos):
    name, rgb = photos[0]
    # an even shift survives a 2x box reduction exactly
    fake = _round_trip(_copy(rgb, src=(112, 128), dst=(150, 228)), 95)
    cm = find_copy_move(fake, CopyMoveParams(max_pixels=30_000))  # 384x256 -> 192x128
    assert cm.shift == (38, 100), (name, cm)
    assert cm.block == 32 and cm.mask(*fake.shape[:2])[150:190, 228:276].mean() > 0.5


def test_flat_tiny_and_wrong_inputs():
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert find_copy_move(flat).pairs == 0 and find_copy_move(flat).shift is None
    assert find_copy_move(np.zeros((10, 12, 3), np.uint8)).pairs == 0
    assert not find_copy_move(flat).mask(120, 160).any()
    with pytest.raises(ValueError, match=r"uint8 RGB \(H, W, 3\), got uint8 \(64, 64\)"):
        find_copy_move(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        find_copy_move(np.zeros((64, 64, 3), np.float32))


def test_repeated_texture_from_a_generator_is_not_a_copy():
    # independent noise everywhere: similar statistics, never the same pixels
    rng = np.random.default_rng(5)
    noisy = rng.normal(128, 30, (256, 384, 3)).clip(0, 255).astype(np.uint8)
    assert find_copy_move(_round_trip(noisy, 90)).pairs < 5


def test_copy_move_score_is_monotone_and_half_at_half_pairs():
    assert copy_move_score(0, 8) == 0.0
    assert copy_move_score(8, 8) == pytest.approx(0.5)
    scores = [copy_move_score(n, 8) for n in (1, 5, 20, 200, 5000)]
    assert scores == sorted(scores) and scores[-1] < 1.0
