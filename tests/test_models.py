import json
import shutil

import numpy as np
import pytest

from edge_app.config import Config
from edge_app.frames.crop import crop_face
from edge_app.features.inputs import model_input
from edge_app.liveness.scorer import load_liveness_model
from edge_app.tflite_model import ModelError, load_model, write_metadata
from tests.conftest import nuaa_rows

LIVENESS = Config().liveness.models
VAL_SUBJECTS = ("0002", "0008", "0011")


def _copy_model(models_dir, name, tmp_path):
    meta = json.loads((models_dir / f"{name}.json").read_text())
    shutil.copy(models_dir / meta["file"], tmp_path / meta["file"])
    shutil.copy(models_dir / f"{name}.json", tmp_path / f"{name}.json")
    return tmp_path / meta["file"], tmp_path / f"{name}.json", meta


@pytest.mark.parametrize("name", LIVENESS)
def test_int8_model_agrees_with_its_float_model_on_validation_faces(models_dir, datasets, detector, rgb_of, name):
    int8 = load_liveness_model(models_dir / f"{name}.json")
    float_name = int8.model.metadata["float_model"].removesuffix(".tflite")
    flt = load_liveness_model(models_dir / f"{float_name}.json")
    assert int8.model.input.dtype == "int8" and flt.model.input.dtype == "float32"
    paths = nuaa_rows(datasets, VAL_SUBJECTS, "live", every=12) + nuaa_rows(datasets, VAL_SUBJECTS, "print", every=40)
    s8, sf = [], []
    for p in paths:
        rgb = rgb_of(p)
        face = detector.detect(rgb)[0]
        s8.append(int8.score(rgb, face))
        sf.append(flt.score(rgb, face))
    s8, sf = np.array(s8), np.array(sf)
    threshold = int8.threshold
    agreement = np.mean((s8 >= threshold) == (sf >= threshold))
    assert agreement >= 0.9, agreement
    # scores track each other closely in logit space, not just on the right side of the line
    z8, zf = np.log(s8 / (1 - s8 + 1e-9) + 1e-9), np.log(sf / (1 - sf + 1e-9) + 1e-9)
    assert np.corrcoef(z8, zf)[0, 1] > 0.95


def test_quantization_round_trip_of_the_loader(models_dir, datasets, detector, rgb_of):
    m = load_liveness_model(models_dir / f"{LIVENESS[0]}.json")
    rgb = rgb_of(datasets / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg")
    x = model_input(crop_face(rgb, detector.detect(rgb)[0], m.crop_scale, m.crop_size), m.features)
    spec = m.model.input
    m.model.run(x)
    q = m.model._in_buffer
    # every quantized value dequantizes to within half a step of the real input
    back = (q.astype(np.float32) - spec.zero_point) * spec.scale
    inside = (x >= (np.iinfo(q.dtype).min - spec.zero_point) * spec.scale) & (x <= (np.iinfo(q.dtype).max - spec.zero_point) * spec.scale)
    assert np.abs(back - x)[inside].max() <= spec.scale / 2 + 1e-6


def test_truncated_model_is_refused_naming_the_file(models_dir, tmp_path):
    path, meta_path, meta = _copy_model(models_dir, LIVENESS[0], tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match=rf"{path.name}.*sha256.*truncated"):
        load_model(meta_path)


def test_truncated_model_with_matching_hash_is_refused_by_the_runtime(models_dir, tmp_path):
    path, meta_path, meta = _copy_model(models_dir, LIVENESS[0], tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    from edge_app.tflite_model import file_sha256

    meta["sha256"] = file_sha256(path)
    write_metadata(meta_path, meta)  # a consistent, re-sealed file: the later check must catch it
    with pytest.raises(ModelError, match=path.name):
        load_model(meta_path)


def test_hash_mismatch_is_refused(models_dir, tmp_path):
    path, meta_path, meta = _copy_model(models_dir, LIVENESS[0], tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        load_model(meta_path)


def test_input_spec_mismatch_is_refused_with_what_differs(models_dir, tmp_path):
    path, meta_path, meta = _copy_model(models_dir, LIVENESS[0], tmp_path)
    meta["input"]["shape"] = [1, 64, 64, 3]
    write_metadata(meta_path, meta)  # a consistent, re-sealed file: the later check must catch it
    with pytest.raises(ModelError, match=r"input spec does not match.*shape \[1, 64, 64, 3\] declared"):
        load_model(meta_path)
    meta["input"]["shape"] = json.loads((models_dir / f"{LIVENESS[0]}.json").read_text())["input"]["shape"]
    meta["input"]["quantization"]["zero_point"] += 3
    write_metadata(meta_path, meta)  # a consistent, re-sealed file: the later check must catch it
    with pytest.raises(ModelError, match="quantization"):
        load_model(meta_path)


def test_missing_metadata_and_missing_model_file(models_dir, tmp_path):
    with pytest.raises(ModelError, match="metadata not found"):
        load_model(tmp_path / "nothing.json")
    path, meta_path, _ = _copy_model(models_dir, LIVENESS[0], tmp_path)
    path.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(meta_path)
    meta_path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(meta_path)


def test_shipped_metadata_states_data_threshold_and_evaluation(models_dir):
    for name in LIVENESS:
        meta = json.loads((models_dir / f"{name}.json").read_text())
        for key in ("threshold", "operating_point", "evaluation", "training_data", "sha256", "input", "output"):
            assert key in meta, (name, key)
        assert 0.0 <= meta["threshold"] <= 1.0


@pytest.mark.parametrize("name", LIVENESS)
def test_int8_liveness_models_run_whole_in_one_xnnpack_partition(models_dir, name):
    from edge_app.interpreters import backend_name, delegate_partitions

    if backend_name() != "litert":
        pytest.skip("tflite-runtime does not hand int8 graphs to XNNPACK")
    m = load_model(models_dir / f"{name}.json")
    assert delegate_partitions(m.interpreter) == (1, True)
