"""Keypoint copy-move detection on real CASIA v1 photos: copies scaled and rotated here with
OpenCV and saved as real JPEGs, which the block matcher cannot find."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_app.forensics.copy_move import find_copy_move
from edge_app.forensics.keypoint_copy_move import KeypointParams, find_keypoint_copy_move, keypoint_copy_move_score
from tests.conftest import textured_casia_test_photos


SRC_C = (92, 128)  # (x, y) centre of the copied disc
DST_C = (290, 150)  # where its transformed copy goes
RADIUS = 34


def _round_trip(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _transformed_copy(rgb: np.ndarray, angle: float = 15.0, scale: float = 1.2
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, 2x3 source->copy transform, copy mask): a disc around SRC_C, turned by
    ``angle`` degrees and scaled about its centre, pasted at DST_C."""
    m = cv2.getRotationMatrix2D(SRC_C, angle, scale)
    m[:, 2] += np.subtract(DST_C, SRC_C)
    warped = cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.circle(mask, DST_C, RADIUS, 1, thickness=-1)
    out = rgb.copy()
    out[mask > 0] = warped[mask > 0]
    return out, m, mask.astype(bool)


@pytest.fixture(scope="module")
def photos():
    """Six held-out authentic CASIA photos, textured where the copy comes from."""
    x, y = SRC_C
    return textured_casia_test_photos((y - RADIUS, y + RADIUS, x - RADIUS, x + RADIUS), 6)


def test_a_scaled_and_rotated_copy_is_found_with_its_transform(photos):
    found = 0
    for name, rgb in photos:
        fake, m, _ = _transformed_copy(rgb)
        kp = find_keypoint_copy_move(_round_trip(fake, 90))
        if kp.inliers == 0:
            continue
        found += 1
        # the transform recovered from the JPEG is the one applied
        assert np.abs(kp.transform[:, :2] - m[:, :2]).max() < 0.02, (name, kp.transform, m)
        assert np.abs(kp.transform[:, 2] - m[:, 2]).max() < 2.0, (name, kp.transform, m)
        assert kp.scale == pytest.approx(1.2, abs=0.02) and abs(kp.rotation_deg) == pytest.approx(15, abs=1)
        # the block matcher, which compares unrotated blocks, has no such evidence here
        assert find_copy_move(_round_trip(fake, 90)).pairs < 10, name
    assert found >= 4, found


def test_untouched_photos_give_no_keypoint_evidence(photos):
    for name, rgb in photos:
        assert find_keypoint_copy_move(_round_trip(rgb, 90)).inliers == 0, name


def test_the_mask_marks_the_copy_and_its_source(photos):
    name, rgb = max(photos, key=lambda p: find_keypoint_copy_move(_round_trip(_transformed_copy(p[1])[0])).inliers)
    fake, _, copy_mask = _transformed_copy(rgb)
    kp = find_keypoint_copy_move(_round_trip(fake, 90))
    assert kp.inliers >= 10, (name, kp.inliers)
    mask = kp.mask(*rgb.shape[:2])
    src_mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.circle(src_mask, SRC_C, int(RADIUS / 1.2), 1, thickness=-1)
    assert mask[copy_mask].mean() > 0.15 and mask[src_mask > 0].mean() > 0.15, name
    # and little else: the mask stays within the two discs, widened by the keypoints' size
    both = cv2.dilate((copy_mask | (src_mask > 0)).astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    assert mask[~both].mean() < 0.01, name
    dy, dx = kp.shift
    assert abs(dx - (DST_C[0] - SRC_C[0])) < 12 and abs(dy - (DST_C[1] - SRC_C[1])) < 12, kp.shift


def test_the_same_input_gives_the_same_result(photos):
    fake, _, _ = _transformed_copy(photos[0][1], angle=-10, scale=0.9)
    img = _round_trip(fake, 90)
    a, b = find_keypoint_copy_move(img), find_keypoint_copy_move(img)
    assert a.inliers == b.inliers
    if a.inliers:
        np.testing.assert_array_equal(a.transform, b.transform)


def test_large_images_are_reduced_and_the_transform_is_in_input_pixels(photos):
    name, rgb = max(photos, key=lambda p: find_keypoint_copy_move(_round_trip(_transformed_copy(p[1])[0])).inliers)
    fake, m, _ = _transformed_copy(rgb)
    big = np.asarray(Image.fromarray(_round_trip(fake, 95)).resize((384 * 3, 256 * 3), Image.Resampling.BICUBIC))
    kp = find_keypoint_copy_move(big, KeypointParams(max_pixels=200_000))  # 1152x768 -> about 548x365
    assert kp.inliers >= 3, name
    assert kp.scale == pytest.approx(1.2, abs=0.03)
    # a translation of 3x the original one: the shift is reported in the input's pixels
    assert np.abs(kp.transform[:, 2] - 3 * m[:, 2]).max() < 8, (kp.transform, m)


def test_flat_tiny_and_wrong_input():
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert find_keypoint_copy_move(flat).inliers == 0 and find_keypoint_copy_move(flat).shift is None
    assert find_keypoint_copy_move(np.zeros((10, 12, 3), np.uint8)).inliers == 0
    assert not find_keypoint_copy_move(flat).mask(120, 160).any()
    with pytest.raises(ValueError, match="uint8 RGB"):
        find_keypoint_copy_move(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        find_keypoint_copy_move(np.zeros((64, 64, 3), np.float32))


def test_independent_noise_is_not_taken_for_a_copy():
    noisy = np.random.default_rng(5).integers(0, 256, (256, 384, 3), dtype=np.uint8)
    assert find_keypoint_copy_move(_round_trip(noisy, 90)).inliers == 0


def test_keypoint_score_is_monotone_and_half_at_half_inliers():
    assert keypoint_copy_move_score(0, 3) == 0.0
    assert keypoint_copy_move_score(3, 3) == pytest.approx(0.5)
    scores = [keypoint_copy_move_score(n, 3) for n in (3, 5, 20, 200)]
    assert scores == sorted(scores) and scores[-1] < 1.0


def test_min_scale_drops_transforms_outside_its_range(photos):
    """A copy halved in size: with ``min_scale`` 0.67 (an option, off as shipped) no candidate
    scales outside 0.67-1.5, while the shipped search recovers the halving."""
    from dataclasses import replace

    seen = 0
    for name, rgb in photos:
        fake, m, _ = _transformed_copy(rgb, angle=0.0, scale=0.5)
        img = _round_trip(fake, 90)
        shipped = find_keypoint_copy_move(img)
        if shipped.inliers == 0 or not 0.45 <= shipped.scale <= 0.55:
            continue
        seen += 1
        limited = find_keypoint_copy_move(img, replace(KeypointParams(), min_scale=0.67))
        assert all(0.67 <= np.hypot(*t[:, 0]) <= 1 / 0.67 for t in limited.candidates), (name, limited.candidates)
    assert seen >= 2, seen
