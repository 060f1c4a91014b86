import numpy as np
import pytest

from edge_app.liveness.decision import iou
from edge_app.frames.detector import letterbox, ssd_anchors, weighted_nms
from tests.conftest import blank_frame

# Boxes drawn by hand around the face (brow to chin, ear to ear) in 640x480 NUAA frames,
# read off the images; the detector's box should overlap them well.
HAND_BOXES = {
    "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg": (255, 160, 175, 180),
    "nuaa/ClientRaw/0010/0010_01_05_03_363.jpg": (220, 200, 185, 190),
    "nuaa/ImposterRaw/0008/0008_00_03_03_144.jpg": (390, 95, 170, 175),
}


def test_anchor_grid_matches_blazeface_short_range():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    # 16x16 cells x 2 anchors, then 8x8 cells x 6 anchors
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[512 + 6], [1.5 / 8, 0.5 / 8])
    assert anchors.min() > 0 and anchors.max() < 1


def test_letterbox_keeps_aspect_and_reports_padding():
    img = np.full((480, 640, 3), 200, np.uint8)
    canvas, scale, pad_x, pad_y = letterbox(img)
    assert canvas.shape == (128, 128, 3)
    assert scale == pytest.approx(0.2)
    assert pad_x == 0 and pad_y == pytest.approx(16 / 128)
    assert canvas[:16].max() == 0 and canvas[16:112].min() == 200


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.11, 0.1, 0.31, 0.3], [0.6, 0.6, 0.8, 0.8]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kept = weighted_nms(boxes, scores, kps, 0.3)
    assert len(kept) == 2
    merged = kept[0][0]
    assert 0.1 < merged[0] < 0.11  # score-weighted average of the two overlapping boxes


@pytest.mark.parametrize("rel,hand", sorted(HAND_BOXES.items()))
def test_detector_box_lands_on_hand_checked_face(detector, datasets, rgb_of, rel, hand):
    faces = detector.detect(rgb_of(datasets / rel))
    assert len(faces) >= 1
    best = faces[0]
    assert iou(best.box(), hand) > 0.7, (best.box(), hand)
    right_eye, left_eye, nose, mouth = best.keypoints[:4]
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]  # eyes above nose above mouth


def test_detector_finds_faces_in_most_nuaa_frames(detector, datasets, rgb_of):
    from tests.conftest import nuaa_rows

    paths = nuaa_rows(datasets, ("0003", "0009"), "live", every=10) + nuaa_rows(datasets, ("0003",), "print", every=30)
    found = sum(bool(detector.detect(rgb_of(p))) for p in paths)
    assert found >= 0.95 * len(paths)


def test_no_face_in_scenes_without_people(detector, datasets, rgb_of):
    # CASIA's authentic architecture and texture photos hold no faces
    paths = sorted((datasets / "casia1" / "Au").glob("Au_arc_*.jpg"))[:8] + sorted((datasets / "casia1" / "Au").glob("Au_txt_*.jpg"))[:8]
    assert paths
    false = [p.name for p in paths if detector.detect(rgb_of(p))]
    assert len(false) <= 1, false
    assert detector.detect(blank_frame()) == []
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_face_coordinates_follow_the_face_when_it_moves(detector, datasets, rgb_of):
    rgb = rgb_of(datasets / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg")
    a = detector.detect(rgb)[0]
    shifted = np.zeros_like(rgb)
    shifted[:, 60:] = rgb[:, :-60]
    b = detector.detect(shifted)[0]
    assert b.x - a.x == pytest.approx(60, abs=6)
    assert b.y == pytest.approx(a.y, abs=6)
