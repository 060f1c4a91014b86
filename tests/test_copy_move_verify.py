"""Copy-move evidence that does not cry wolf: candidates verified pixel by pixel on a fixed-size
analysis image; flat areas, periodic structure and look-alike objects give no evidence.
Real photos (CASIA v1 held-out authentic images, NUAA frames), real JPEG encoding."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_app.forensics.copy_move_search import SearchParams, analysis_image, find_copy_moves
from edge_app.forensics.copy_move_verify import verify
from tests.conftest import DATASETS, textured_casia_test_photos


def _jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def photos():
    return textured_casia_test_photos((100, 160, 60, 140), 4)


def _translated_copy(rgb):
    fake = rgb.copy()
    fake[150:210, 250:330] = rgb[100:160, 60:140]  # shift (50, 190), off the 8x8 grid
    truth = np.zeros(rgb.shape[:2], bool)
    truth[100:160, 60:140] = truth[150:210, 250:330] = True
    return _jpeg(fake), truth


def test_a_translated_copy_is_verified_and_drawn_where_it_is(photos):
    for name, rgb in photos:
        fake, truth = _translated_copy(rgb)
        ev = find_copy_moves(fake)
        assert ev.block.found, name
        d = ev.describe("block")
        assert d["shift"] == [50, 190] and d["scale"] == 1.0, (name, d)
        region = ev.mask("block", *fake.shape[:2])
        iou = (region & truth).sum() / (region | truth).sum()
        assert iou > 0.5, (name, iou)
        # the same photo, untouched, has nothing verified
        clean = find_copy_moves(_jpeg(rgb))
        assert not clean.block.found and not clean.keypoint.found, name


def _disc_copy(rgb, angle: float, scale: float, radius: int, interpolation: int):
    """(``rgb`` with the disc around (100, 130) turned by ``angle``, scaled by ``scale`` and pasted
    at (280, 140) with the given radius, the 2x3 transform, the pasted disc)."""
    m = cv2.getRotationMatrix2D((100, 130), angle, scale)  # about the source centre, then moved
    m[:, 2] += (180, 10)
    warped = cv2.warpAffine(rgb, m, (384, 256), flags=interpolation, borderMode=cv2.BORDER_REFLECT)
    disc = np.zeros((256, 384), np.uint8)
    cv2.circle(disc, (280, 140), radius, 1, thickness=-1)
    fake = rgb.copy()
    fake[disc > 0] = warped[disc > 0]
    return fake, m, disc


def test_a_scaled_and_rotated_copy_is_verified_through_keypoints(photos):
    found = 0
    for name, rgb in photos:
        fake, _, disc = _disc_copy(rgb, 15, 1.2, 40, cv2.INTER_CUBIC)
        ev = find_copy_moves(_jpeg(fake))
        if ev.keypoint.found:
            d = ev.describe("keypoint")
            assert d["scale"] == pytest.approx(1.2, abs=0.04) and abs(d["rotation_deg"]) == pytest.approx(15, abs=2)
            region = ev.mask("keypoint", 256, 384)
            assert region[disc > 0].mean() > 0.4, name
            found += 1
    assert found >= 3, found


def test_a_copy_is_found_the_same_in_a_4x_larger_image(photos):
    name, rgb = photos[0]
    fake, _ = _translated_copy(rgb)
    big = np.asarray(Image.fromarray(fake).resize((384 * 4, 256 * 4), Image.Resampling.LANCZOS))
    small_ev, big_ev = find_copy_moves(fake), find_copy_moves(_jpeg(big))
    assert big_ev.factor > 1 and big_ev.analysis_size[0] * big_ev.analysis_size[1] <= SearchParams().analysis_pixels
    assert big_ev.block.found or big_ev.keypoint.found
    area = max(big_ev.block.area, big_ev.keypoint.area)
    # the evidence is an area fraction: about the same whatever the pixel count
    assert area == pytest.approx(small_ev.block.area, rel=0.5), (area, small_ev.block.area)


def test_periodic_structure_is_not_a_copy():
    from convert.forensics_authentic import tiles

    for seed in range(3):
        with Image.open(io.BytesIO(tiles(2000 + seed))) as im:
            rgb = np.asarray(im.convert("RGB"))
        ev = find_copy_moves(rgb)
        assert not ev.block.found and not ev.keypoint.found, seed
    board = np.kron((np.indices((8, 8)).sum(axis=0) % 2), np.ones((32, 32))).astype(np.uint8) * 200 + 20
    rgb = _jpeg(np.repeat(board[..., None], 3, axis=2))
    ev = find_copy_moves(rgb)
    assert ev.block_raw.pairs > 100  # the block matcher does see the repeats
    assert not ev.block.found and not ev.keypoint.found


def test_flat_walls_and_look_alike_objects_are_not_copies():
    from convert.forensics_authentic import flat_scene, repeated_objects

    if not (DATASETS / "utkface").is_dir():
        pytest.skip(f"UTKFace not found at {DATASETS} (set EDGE_APP_DATASETS)")
    objects = sorted((DATASETS / "utkface" / "faces").glob("*.jpg"))[::400]
    for seed in range(3):
        for make in (flat_scene, repeated_objects):
            with Image.open(io.BytesIO(make(seed, objects))) as im:
                ev = find_copy_moves(np.asarray(im.convert("RGB")))
            # nothing, or a sliver far below the calibrated thresholds (0.5% of the image and up)
            assert ev.block.area < 0.003 and ev.keypoint.area < 0.003, (make.__name__, seed)


def test_verification_needs_texture_and_agreement():
    rng = np.random.default_rng(5)
    g = rng.normal(128, 30, (200, 300)).astype(np.float32)
    g[120:170, 200:260] = g[20:70, 40:100]  # an exact copy at shift (100, 160)
    v = verify(g, np.array([[1.0, 0, 160], [0, 1.0, 100]]))
    assert v.found and v.source[20:70, 40:100].mean() > 0.8 and v.copy[120:170, 200:260].mean() > 0.8
    # a wrong shift: nothing agrees
    assert not verify(g, np.array([[1.0, 0, 150], [0, 1.0, 100]])).found
    # the same copy in a flat image: nothing textured to agree on
    flat = np.full((200, 300), 128.0, np.float32)
    assert not verify(flat, np.array([[1.0, 0, 160], [0, 1.0, 100]])).found


def test_analysis_image_never_enlarges_and_keeps_the_aspect():
    rgb = np.zeros((300, 400, 3), np.uint8)
    same, f = analysis_image(rgb, 200_000)
    assert same is rgb and f == 1.0
    big = np.zeros((3000, 4000, 3), np.uint8)
    small, f = analysis_image(big, 200_000)
    assert small.shape[0] * small.shape[1] <= 200_000 and f > 1
    assert small.shape[1] / small.shape[0] == pytest.approx(4 / 3, rel=0.02)
    with pytest.raises(ValueError, match="uint8 RGB"):
        analysis_image(np.zeros((10, 10), np.float32), 1000)


def _shrunk_copy(rgb, scale: float = 0.8):
    """(JPEG of ``rgb`` with a disc shrunk by ``scale`` (area-averaged, as editors shrink), transform)."""
    fake, m, _ = _disc_copy(rgb, 0, scale, 36, cv2.INTER_AREA)
    return _jpeg(fake), m


def test_the_resampling_blur_confirms_more_of_a_shrunk_copy(photos):
    """The shrunk instance lost the fine detail its source still has: compared pixel for pixel
    the two disagree over much of the copy; with the resampling blur (an option, off as shipped:
    convert.compare_copy_move found 124-128 of 160 copies with it against 126 without) more of
    the copy is confirmed."""
    from dataclasses import replace

    from edge_app.forensics.copy_move_verify import VerifyParams

    sharp = VerifyParams()
    blurred = replace(sharp, resample_sigma=0.7, resample_scale=1.0)
    blurred_wins = 0
    for name, rgb in photos:
        fake, m = _shrunk_copy(rgb)
        g = fake.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        with_blur, without = verify(g, m, blurred), verify(g, m, sharp)
        assert with_blur.area >= without.area, name
        blurred_wins += with_blur.area > 1.5 * max(without.area, 0.001)
    assert blurred_wins >= 2, blurred_wins


def test_a_plain_shift_is_compared_without_blur():
    from edge_app.forensics.copy_move_verify import VerifyParams, _resample_sigma, _resampled

    assert _resample_sigma(cv2.getRotationMatrix2D((50, 50), 10, 1.25), VerifyParams()) == 0.0  # off as shipped
    p = VerifyParams(resample_sigma=0.7, resample_scale=1.0)
    shift = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, -7.0]])
    assert _resample_sigma(shift, p) == 0.0 and not _resampled(shift)
    turned = cv2.getRotationMatrix2D((50, 50), 10, 1.0)
    scaled = cv2.getRotationMatrix2D((50, 50), 0, 1.25)
    assert _resampled(turned) and _resampled(scaled)
    # the blur grows with the scale change, in either direction
    assert _resample_sigma(turned, p) == pytest.approx(p.resample_sigma)
    assert _resample_sigma(scaled, p) == pytest.approx(_resample_sigma(cv2.getRotationMatrix2D((0, 0), 0, 0.8), p))
    assert _resample_sigma(scaled, p) > _resample_sigma(turned, p)
