"""Keras -> TFLite, float32 and full-integer int8, with the metadata JSON the device reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edge_app.tflite_model import file_sha256, write_metadata


def to_float_tflite(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def to_int8_tflite(model, representative: Callable[[], Iterable[list[np.ndarray]]]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def tensor_specs(tflite_path: Path) -> tuple[dict, dict]:
    """(input spec, output spec) as the metadata states them, read from the converted file."""
    from edge_app.interpreters import create_interpreter

    interp = create_interpreter(tflite_path)
    specs = []
    for detail in (interp.get_input_details()[0], interp.get_output_details()[0]):
        scale, zp = detail["quantization"]
        spec = {"shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
        if spec["dtype"] in ("int8", "uint8"):
            spec["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
        specs.append(spec)
    return specs[0], specs[1]


def write_model(models_dir: Path, name: str, data: bytes, metadata: dict) -> Path:
    """Write ``<name>.tflite`` and ``<name>.json``; hash and tensor specs come from the file itself."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{name}.tflite"
    path.write_bytes(data)
    in_spec, out_spec = tensor_specs(path)
    meta = dict(metadata)
    meta["name"] = name
    meta["file"] = path.name
    meta["sha256"] = file_sha256(path)
    meta["input"] = {**meta.get("input", {}), **in_spec}
    meta["output"] = {**meta.get("output", {}), **out_spec}
    write_metadata(models_dir / f"{name}.json", meta)
    return path
