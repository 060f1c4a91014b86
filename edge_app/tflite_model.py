"""Load a shipped ``.tflite`` with its metadata JSON, verified, and run it on floats.

The metadata (``models/<name>.json``) is the contract between ``convert/`` and the
device. The runtime refuses a model whose file hash or input spec disagrees with its
metadata, because a silently different model would make every threshold meaningless.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.interpreters import InterpreterUnavailable, create_interpreter

_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}


class ModelError(RuntimeError):
    """A model file or its metadata is unusable; the message names the file and why."""


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8")


@dataclass
class Model:
    """A verified interpreter plus its metadata; ``run`` takes and returns real values."""

    name: str
    path: Path
    metadata: dict
    input: TensorSpec
    outputs: list[TensorSpec]
    interpreter: object = field(repr=False)
    _in_index: int = 0
    _out_indices: list[int] = field(default_factory=list)
    _in_buffer: np.ndarray | None = field(default=None, repr=False)
    _tmp_buffer: np.ndarray | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "?"))

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Quantize ``x`` (real values, input shape), invoke, dequantize every output."""
        if x.shape != self.input.shape:
            raise ModelError(f"{self.path.name}: input has shape {x.shape}, model takes {self.input.shape}")
        if self.input.quantized:
            q = self._in_buffer
            info = np.iinfo(q.dtype)
            tmp = self._tmp_buffer
            # round(x/scale)+zp saturated to the dtype range, into reused buffers
            np.multiply(x, 1.0 / self.input.scale, out=tmp)
            np.rint(tmp, out=tmp)
            tmp += self.input.zero_point
            np.clip(tmp, info.min, info.max, out=tmp)
            q[...] = tmp
            self.interpreter.set_tensor(self._in_index, q)
        else:
            self.interpreter.set_tensor(self._in_index, np.asarray(x, dtype=np.float32))
        self.interpreter.invoke()
        results = []
        for spec, index in zip(self.outputs, self._out_indices):
            raw = self.interpreter.get_tensor(index)
            if spec.quantized:
                results.append((raw.astype(np.float32) - spec.zero_point) * spec.scale)
            else:
                results.append(raw.astype(np.float32, copy=True))
        return results


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The metadata carries thresholds, crop geometry and output meanings: numbers that decide
# `live` as much as the weights do. Its own sha256 (of the canonical JSON of everything but
# this key) is recorded by the code in convert/ that writes it and checked at every load, so
# a hand edit or a corrupted copy is refused like a changed .tflite. Re-record after a
# deliberate edit with `python -m convert.seal_metadata models/*.json`.
SEAL_KEY = "metadata_sha256"


def metadata_digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def write_metadata(path: Path, meta: dict) -> Path:
    """Write a metadata or fusion JSON with its seal; NaN and infinities are refused."""
    sealed = {k: v for k, v in meta.items() if k != SEAL_KEY}
    sealed[SEAL_KEY] = metadata_digest(sealed)
    Path(path).write_text(json.dumps(sealed, indent=2, allow_nan=False) + "\n")
    return Path(path)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_sealed_json(json_path: Path, what: str = "metadata") -> dict:
    """A JSON object whose recorded seal matches its content; ModelError otherwise."""
    json_path = Path(json_path)
    try:
        if json_path.exists() and not json_path.is_file():
            raise ModelError(f"{json_path}: model {what} is not a regular file")
        # parse_constant: NaN / Infinity are not JSON and must not reach a threshold
        meta = json.loads(json_path.read_text(), parse_constant=_reject_constant)
    except FileNotFoundError:
        raise ModelError(f"{json_path}: model {what} not found") from None
    except PermissionError:
        raise ModelError(f"{json_path}: model {what} not readable by this user (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ModelError(f"{json_path}: {what} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise ModelError(f"{json_path}: model {what} cannot be read ({exc.strerror or exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{json_path}: {what} must be a JSON object")
    recorded = meta.get(SEAL_KEY)
    if not isinstance(recorded, str):
        raise ModelError(f"{json_path}: {what} has no {SEAL_KEY} record; it was not written by convert/ "
                         f"(after a deliberate edit: python -m convert.seal_metadata {json_path})")
    actual = metadata_digest(meta)
    if actual != recorded:
        raise ModelError(f"{json_path}: {what} content does not match its {SEAL_KEY} record ({actual[:12]}... "
                         f"against {recorded[:12]}...): edited or corrupted since convert/ wrote it")
    return meta


# The required keys checked by hand, not with jsonschema (a test-only dependency; the Pi installs
# runtime dependencies only): each refusal names the file and the key.
def read_metadata(json_path: Path) -> dict:
    meta = read_sealed_json(json_path, "metadata")
    for key in ("name", "version", "file", "sha256", "task", "input"):
        if key not in meta:
            raise ModelError(f"{json_path}: metadata lacks required key {key!r}")
    if not isinstance(meta["file"], str) or Path(meta["file"]).name != meta["file"]:
        raise ModelError(f"{json_path}: metadata key 'file' must name a file beside it, got {meta['file']!r}")
    if not isinstance(meta["sha256"], str):
        raise ModelError(f"{json_path}: metadata key 'sha256' must be a string")
    return meta


def _spec_from_meta(json_path: Path, spec: dict) -> TensorSpec:
    try:
        q = spec.get("quantization") or {}
        return TensorSpec(
            shape=tuple(int(v) for v in spec["shape"]),
            dtype=str(spec["dtype"]),
            scale=float(q.get("scale", 0.0)),
            zero_point=int(q.get("zero_point", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{json_path}: malformed tensor spec {spec!r} ({exc})") from None


def _spec_from_detail(detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        shape=tuple(int(v) for v in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def _check_spec(json_path: Path, what: str, declared: TensorSpec, actual: TensorSpec) -> None:
    problems = []
    if declared.shape != actual.shape:
        problems.append(f"shape {list(declared.shape)} declared, {list(actual.shape)} in the model")
    if declared.dtype != actual.dtype:
        problems.append(f"dtype {declared.dtype} declared, {actual.dtype} in the model")
    elif actual.quantized and (
        not np.isclose(declared.scale, actual.scale, rtol=1e-6) or declared.zero_point != actual.zero_point
    ):
        problems.append(
            f"quantization (scale {declared.scale}, zero point {declared.zero_point}) declared, "
            f"(scale {actual.scale}, zero point {actual.zero_point}) in the model"
        )
    if problems:
        raise ModelError(f"{json_path}: {what} spec does not match the model: " + "; ".join(problems))


def load_model(json_path: str | Path, num_threads: int = 1, backend: str = "auto") -> Model:
    """Read metadata, verify the ``.tflite`` it names by sha256 and input spec, and load it."""
    json_path = Path(json_path)
    meta = read_metadata(json_path)
    model_path = json_path.parent / meta["file"]
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file named by {json_path.name} is missing")
    actual_sha = file_sha256(model_path)
    if actual_sha != meta["sha256"]:
        raise ModelError(
            f"{model_path}: sha256 {actual_sha[:16]}... does not match {meta['sha256'][:16]}... "
            f"in {json_path.name}; the file is truncated, corrupt or not the model the metadata describes"
        )
    try:
        interpreter = create_interpreter(model_path, num_threads=num_threads, backend=backend)
    except InterpreterUnavailable as exc:
        raise ModelError(str(exc)) from None
    in_details = interpreter.get_input_details()
    if len(in_details) != 1:
        raise ModelError(f"{model_path}: expected one input tensor, found {len(in_details)}")
    declared_in = _spec_from_meta(json_path, meta["input"])
    actual_in = _spec_from_detail(in_details[0])
    _check_spec(json_path, "input", declared_in, actual_in)
    out_details = interpreter.get_output_details()
    declared_outs = meta.get("outputs")
    if declared_outs is not None:
        # match by order of the names given in metadata when present, else model order
        by_name = {d["name"]: d for d in out_details}
        ordered = []
        for spec in declared_outs:
            detail = by_name.get(spec.get("tensor_name")) if spec.get("tensor_name") else None
            ordered.append(detail)
        if all(d is not None for d in ordered) and ordered:
            out_details = ordered
    model = Model(
        name=meta["name"],
        path=model_path,
        metadata=meta,
        input=actual_in,
        outputs=[_spec_from_detail(d) for d in out_details],
        interpreter=interpreter,
        _in_index=in_details[0]["index"],
        _out_indices=[d["index"] for d in out_details],
    )
    if actual_in.quantized:
        model._in_buffer = np.zeros(actual_in.shape, dtype=_DTYPES[actual_in.dtype])
        model._tmp_buffer = np.zeros(actual_in.shape, dtype=np.float32)
    return model
