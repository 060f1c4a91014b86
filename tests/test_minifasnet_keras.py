"""The Keras MiniFASNet pair reproduces the teacher .tflite files on real face crops.

Offline training code: needs TensorFlow (the ``train`` extra), which CI's default venv does
not install, and the teacher files in ``../shared/teachers`` (never committed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATASETS, REPO, nuaa_rows

pytest.importorskip("tensorflow", reason="TensorFlow not installed (pip install -e '.[train]'): offline training code")

# beside the data sets by default (../shared/teachers), like the rest of ../shared
TEACHERS = Path(os.environ.get("EDGE_APP_TEACHERS", DATASETS.parent / "teachers")) / "minifasnet"


@pytest.fixture(scope="module")
def mf():
    from convert import minifasnet

    missing = [n for n in minifasnet.TEACHERS.values() if not (TEACHERS / n).is_file()]
    if missing:
        pytest.skip(f"teacher models {missing} not found in {TEACHERS} (set EDGE_APP_TEACHERS)")
    return minifasnet


@pytest.fixture(scope="module")
def frames():
    """The built-in sample (live portrait, the same portrait printed) and NUAA live/print frames."""
    from edge_app.images import load_rgb

    paths = [REPO / "edge_app" / "sample" / "live.jpg", REPO / "edge_app" / "sample" / "print.jpg"]
    if (DATASETS / "nuaa" / "manifest.csv").is_file():
        paths += nuaa_rows(DATASETS, ("0004", "0012"), "live", every=150) + nuaa_rows(DATASETS, ("0004", "0012"), "print", every=150)
    return [load_rgb(p) for p in paths]


def crops_at(mf, detector, frames, kind):
    from convert.face_crops import largest_face_crop

    crops = [largest_face_crop(detector, rgb, mf.CROP_SCALE[kind], mf.SIZE) for rgb in frames]
    assert all(c is not None for c in crops[:2]), "no face found in the built-in sample"
    return np.stack([c for c in crops if c is not None])


@pytest.mark.parametrize("kind", ["v2", "v1se"])
def test_prelu_build_reproduces_teacher_logits(mf, detector, frames, kind):
    path = TEACHERS / mf.TEACHERS[kind]
    crops = crops_at(mf, detector, frames, kind)
    ref = mf.teacher_logits(path, crops)
    assert ref.std(axis=0).min() > 0.1, "crops too alike to test anything"

    model = mf.build_minifasnet(kind, "prelu", batch_size=None, outputs="both")
    mf.load_teacher_weights(model, path)
    live, logits = model.predict(mf.rgb_input(crops), verbose=0)
    assert np.abs(logits - ref).max() < 1e-3
    head = ref[:, 1] - (ref[:, 0] + ref[:, 2]) / 2
    assert np.abs(live[:, 0] - head).max() < 1e-3

    # the batch-1 export build, weights copied by name, gives the same live logit one crop at a time
    export = mf.build_minifasnet(kind, "prelu", batch_size=1)
    mf.copy_weights(model, export)
    one = np.concatenate([export(mf.rgb_input(c[None]), training=False).numpy() for c in crops])
    assert one.shape == (len(crops), 1)
    assert np.abs(one[:, 0] - live[:, 0]).max() < 1e-4


def test_teacher_convention_input_and_relu_variant(mf, detector, frames):
    kind = "v2"
    path = TEACHERS / mf.TEACHERS[kind]
    crops = crops_at(mf, detector, frames, kind)
    ref = mf.teacher_logits(path, crops)

    bgr = mf.build_minifasnet(kind, "prelu", input_norm="bgr255", batch_size=None, outputs="both")
    mf.load_teacher_weights(bgr, path)
    _, logits = bgr.predict(crops[..., ::-1].astype(np.float32), verbose=0)
    assert np.abs(logits - ref).max() < 1e-3

    # ReLU in place of PReLU keeps the weights but is a different function
    relu = mf.build_minifasnet(kind, "relu", batch_size=None, outputs="both")
    mf.load_teacher_weights(relu, path)
    _, relu_logits = relu.predict(mf.rgb_input(crops), verbose=0)
    assert np.abs(relu_logits - ref).max() > 0.05
    assert np.allclose(relu.get_layer("001_conv1").get_weights()[0], bgr.get_layer("001_conv1").get_weights()[0][:, :, ::-1] * 255)


def test_wrong_teacher_file_is_refused(mf):
    model = mf.build_minifasnet("v2", "prelu")
    with pytest.raises(ValueError, match="another kind"):
        mf.load_teacher_weights(model, TEACHERS / mf.TEACHERS["v1se"])


def test_relu_int8_export_is_one_xnnpack_partition(mf, detector, frames, tmp_path):
    """V1SE (squeeze-and-excitation: MEAN, LOGISTIC, MUL) with ReLU, full-integer int8: one
    XNNPACK partition from input to output, ranking the crops like its float32 self."""
    from convert.tflite_export import to_float_tflite, to_int8_tflite
    from edge_app.interpreters import create_interpreter, delegate_partitions

    kind = "v1se"
    crops = crops_at(mf, detector, frames, kind)
    x = mf.rgb_input(crops)
    model = mf.build_minifasnet(kind, "relu", batch_size=1)
    mf.load_teacher_weights(model, TEACHERS / mf.TEACHERS[kind])
    (tmp_path / "f.tflite").write_bytes(to_float_tflite(model))
    (tmp_path / "q.tflite").write_bytes(to_int8_tflite(model, lambda: ([c[None]] for c in np.concatenate([x, x[:, :, ::-1]]))))
    out = {}
    for name in ("f", "q"):
        it = create_interpreter(tmp_path / f"{name}.tflite", num_threads=1)
        assert delegate_partitions(it) == (1, True), name
        d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]
        z = []
        for xi in x:
            if d_in["dtype"] == np.int8:
                s, zp = d_in["quantization"]
                xi = np.clip(np.round(xi / s + zp), -128, 127).astype(np.int8)
            it.set_tensor(d_in["index"], xi[None])
            it.invoke()
            y = it.get_tensor(d_out["index"]).ravel()[0].astype(np.float32)
            if d_out["dtype"] == np.int8:
                s, zp = d_out["quantization"]
                y = (y - zp) * s
            z.append(float(y))
        out[name] = np.array(z)
    assert np.corrcoef(out["f"], out["q"])[0, 1] > 0.95
