"""The shipped liveness models (liveness_cnn, liveness_attn) and fusion.json, on the real interpreter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_app.config import Config
from edge_app.liveness.scorer import load_liveness_model, load_scorer
from tests.conftest import nuaa_rows

NAMES = ["liveness_cnn", "liveness_attn"]
VAL_SUBJECTS = ("0002", "0008", "0011")


def test_device_uses_both_models_by_default():
    assert Config().liveness.models == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shipped_int8_model_loads_verified_and_is_full_integer(models_dir, name):
    m = load_liveness_model(models_dir / f"{name}.json")
    assert m.model.input.dtype == "int8" and m.model.outputs[0].dtype == "int8"
    meta = m.model.metadata
    assert 0.0 < m.threshold < 1.0 and meta["operating_point"]["criterion"]
    assert meta["float_model"] == f"{name}_float.tflite"
    flt = load_liveness_model(models_dir / f"{name}_float.json")
    assert flt.model.input.dtype == "float32"
    assert (flt.crop_scale, flt.crop_size, flt.features) == (m.crop_scale, m.crop_size, m.features)
    assert meta["architecture"]["parameters"] < 1_000_000
    # what it learned from is on record; the teachers are never part of the model
    assert "MiniFASNet" in json.dumps(meta["training_data"]["teachers"])


def test_cnn_and_attention_model_are_the_minifasnet_pair_at_their_scales(models_dir):
    from convert.evaluate import delegation

    cnn = load_liveness_model(models_dir / "liveness_cnn.json")
    attn = load_liveness_model(models_dir / "liveness_attn.json")
    assert cnn.features[0] == "rgb" and cnn.model.input.shape[-1] == 3 * len(cnn.features)
    assert (cnn.crop_scale, attn.crop_scale) == (2.7, 4.0) and attn.features == ["rgb"]
    # squeeze-and-excitation: a sigmoid gate multiplied into the features, inside the int8 graph
    assert {"LOGISTIC", "MUL"} <= set(delegation(models_dir / "liveness_attn.tflite")["ops"])
    for m in (cnn, attn):
        assert "Apache-2.0" in json.dumps(m.model.metadata["architecture"]["started_from"])


@pytest.mark.parametrize("name", NAMES)
def test_int8_runs_as_one_xnnpack_partition(models_dir, name):
    from convert.evaluate import delegation

    d = delegation(models_dir / f"{name}.tflite")
    assert d["delegate_partitions"] == 1 and d["one_partition_covers_graph"], d


def test_int8_and_float_agree_on_validation_faces(models_dir, datasets, detector, rgb_of):
    paths = nuaa_rows(datasets, VAL_SUBJECTS, "live", every=20) + nuaa_rows(datasets, VAL_SUBJECTS, "print", every=60)
    pairs = {n: (load_liveness_model(models_dir / f"{n}.json"), load_liveness_model(models_dir / f"{n}_float.json"))
             for n in NAMES}
    scores = {n: ([], []) for n in NAMES}
    for p in paths:
        rgb = rgb_of(p)
        faces = detector.detect(rgb)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.w * f.h)
        for n, (q, f) in pairs.items():
            scores[n][0].append(q.score(rgb, face))
            scores[n][1].append(f.score(rgb, face))
    for n, (s8, sf) in scores.items():
        s8, sf = np.array(s8), np.array(sf)
        assert len(s8) >= 10
        thr = pairs[n][0].threshold
        assert np.mean((s8 >= thr) == (sf >= thr)) >= 0.9, n
        assert np.max(np.abs(s8 - sf)) < 0.15, (n, np.abs(s8 - sf))


def test_fusion_matches_the_models_and_its_threshold_is_the_scorers(models_dir):
    fusion = json.loads((models_dir / "fusion.json").read_text())
    assert set(fusion["weights"]) == set(NAMES)
    for key in ("bias", "threshold", "operating_point", "fitted_on"):
        assert key in fusion
    for n in NAMES:
        assert fusion["models"][n] == json.loads((models_dir / f"{n}.json").read_text())["sha256"]
    scorer = load_scorer(models_dir, NAMES)
    assert scorer.threshold == pytest.approx(fusion["threshold"])
    assert scorer.fusion.weights == pytest.approx(fusion["weights"])
    # both models push the fused score the same way
    assert all(w > 0 for w in fusion["weights"].values())


def test_feature_planes_are_the_device_code_and_what_convert_trained_on():
    from convert.train_liveness import model_inputs
    from edge_app.features.ela import error_level_normalized
    from edge_app.features.inputs import FEATURES, model_input
    from edge_app.features.wavelet import noise_residual_normalized

    crops = (np.random.default_rng(3).random((3, 80, 80, 3)) * 255).astype(np.uint8)
    names = ["rgb", "ela", "wavelet"]
    trained = model_inputs(crops, names)  # what train_liveness feeds a model with these features
    for c, t in zip(crops, trained):
        x = model_input(c, names)[0]
        np.testing.assert_array_equal(x[..., 3:6], error_level_normalized(c))
        np.testing.assert_array_equal(x[..., 6:9], noise_residual_normalized(c))
        np.testing.assert_array_equal(FEATURES["ela"][1](c), error_level_normalized(c))
        np.testing.assert_array_equal(t, x)
    np.testing.assert_array_equal(model_inputs(crops, ["rgb"]), np.concatenate([model_input(c, ["rgb"]) for c in crops]))


def test_real_prints_score_below_live_faces(models_dir, datasets, detector, rgb_of):
    """NUAA's people, live and as hand-held prints: the fused score separates them by a margin."""
    paths = {"live": nuaa_rows(datasets, VAL_SUBJECTS, "live", every=15),
             "print": nuaa_rows(datasets, VAL_SUBJECTS, "print", every=30)}
    scorer = load_scorer(models_dir, NAMES)
    fused = {k: [] for k in paths}
    for kind, rows in paths.items():
        for p in rows:
            rgb = rgb_of(p)
            faces = detector.detect(rgb)
            if faces:
                fused[kind].append(scorer.score(rgb, max(faces, key=lambda f: f.w * f.h)).fused)
    assert len(fused["live"]) >= 10 and len(fused["print"]) >= 10
    assert np.median(fused["print"]) < np.median(fused["live"]) - 0.2, fused
