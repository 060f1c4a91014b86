"""Faces at door distance and tight close-ups: the full-range BlazeFace, detector.model choices
and the close-up retry, on the built-in sample (a real photo) rescaled into a 1280x720 frame
the way convert/detector_recall.py measures recall."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convert.detector_recall import compose
from convert.fetch_detector import MODELS
from edge_app.config import ConfigError, load_config
from edge_app.liveness.decision import iou
from edge_app.frames.detector import CLOSEUP_ZOOM_OUT, MultiDetector, load_detector, ssd_anchors
from edge_app.frames.sources.sample import sample_image

MIN_SCORE = 0.6


@pytest.fixture(scope="module")
def dets(models_dir):
    if not (models_dir / "face_detection_full_range.tflite").is_file():
        pytest.fail("models/face_detection_full_range.tflite missing: run scripts/setup.sh (make test does)")
    return {m: load_detector(models_dir, 1, MIN_SCORE, m) for m in ("short", "full", "both")}


@pytest.fixture(scope="module")
def framed(dets):
    """frame(fraction) -> (1280x720 frame, expected face box) with the sample's face that wide."""
    rgb = sample_image("live")
    f = dets["short"].detect(rgb)[0]
    background = Image.fromarray(sample_image("empty")).resize((1280, 720), Image.BILINEAR)
    return lambda fraction: compose(rgb, (f.x, f.y, f.w, f.h), fraction, background, seed=1)


def _hit(faces, expected) -> bool:
    return any(iou(face.box(), tuple(int(v) for v in expected)) >= 0.3 for face in faces)


def test_full_range_anchor_grid_and_metadata(models_dir):
    anchors = ssd_anchors(192, (4,), 0.5, per_layer=1)
    assert anchors.shape == (2304, 2)  # 48x48 cells, one anchor each
    assert np.allclose(anchors[0], [0.5 / 48, 0.5 / 48]) and np.allclose(anchors[1], [1.5 / 48, 0.5 / 48])
    meta = json.loads((models_dir / "face_detection_full_range.json").read_text())
    seal = meta.pop("metadata_sha256")  # written by convert/ (edge_app.tflite_model.write_metadata)
    assert meta == MODELS["face_detection_full_range"] and len(seal) == 64
    assert meta["source"]["member"].endswith("face_detection_full_range_sparse.tflite")
    assert meta["input"]["shape"] == [1, 192, 192, 3] and meta["anchors"]["count"] == 2304


def test_full_range_boxes_land_on_the_same_face(dets):
    rgb = sample_image("live")
    short, full = dets["short"].detect(rgb), dets["full"].detect(rgb)
    assert len(short) == 1 and len(full) == 1
    assert iou(short[0].box(), full[0].box()) > 0.6
    # keypoints decoded with the right anchors: eyes above the mouth, inside the box
    (rx, ry), (lx, ly), _, (mx, my) = full[0].keypoints[:4]
    assert ry < my and ly < my and full[0].x < rx < full[0].x + full[0].w
    assert dets["full"].detect(sample_image("empty")) == []

def test_both_keeps_short_range_boxes_of_near_faces_and_hands_far_ones_over(dets, framed):
    # a near face (30% of the width): the short-range box, the liveness models' training geometry
    near, _ = framed(0.3)
    assert [f.box() for f in dets["both"].detect(near)] == [f.box() for f in dets["short"].detect(near)]
    # at 8% the short-range model reports the face in a box about twice too large: full-range's is used
    far, expected = framed(0.08)
    short = dets["short"].detect(far)
    both = dets["both"].detect(far)
    assert [f.box() for f in both] == [f.box() for f in dets["full"].detect(far)]
    assert both and abs(both[0].w - expected[2]) < 0.25 * expected[2]
    assert all(f.w > 1.5 * expected[2] for f in short)  # what "both" avoids (empty list: nothing to avoid)


def test_a_face_8_percent_of_the_frame_is_found_by_full_range_not_short_range(dets, framed):
    frame, expected = framed(0.08)
    assert not _hit(dets["short"].detect(frame), expected)
    assert _hit(dets["full"].detect(frame), expected)
    assert _hit(dets["both"].detect(frame), expected)


def test_a_close_up_cut_by_the_frame_is_found_by_the_retry(dets, framed, models_dir):
    frame, expected = framed(1.0)
    assert expected[2] >= 1270  # the face spans the whole frame width and is cut at top and bottom
    assert not _hit(dets["short"].detect(frame), expected) and not _hit(dets["full"].detect(frame), expected)
    assert _hit(dets["short"].detect(frame, CLOSEUP_ZOOM_OUT), expected)
    retrying = load_detector(models_dir, 1, MIN_SCORE, "both", closeup_retry=True)
    assert isinstance(retrying, MultiDetector) and retrying.retry is not None
    assert _hit(retrying.detect(frame), expected)
    # the retry only looks when the first pass found nothing: a normal frame costs the same
    ordinary, _ = framed(0.3)
    assert [f.box() for f in retrying.detect(ordinary)] == [f.box() for f in dets["both"].detect(ordinary)]
    assert retrying.detect(sample_image("empty")) == []


def test_detector_model_is_configured_and_checked(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detector]\nmodel = "full"\ncloseup_retry = false\n')
    loaded = load_config(cfg)
    assert loaded.detector.model == "full" and loaded.detector.closeup_retry is False
    cfg.write_text('[detector]\nmodel = "far"\n')
    with pytest.raises(ConfigError, match="detector.model"):
        load_config(cfg)
