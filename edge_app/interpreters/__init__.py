"""TFLite interpreter backends.

Each backend is one small module exposing ``NAME``, ``available() -> bool`` and
``create(model_path, num_threads) -> interpreter``; the interpreter object has the
tf.lite ``Interpreter`` API. Adding a backend is adding a file and naming it in
``BACKENDS`` (ordered by preference).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

BACKENDS = ("litert", "tflite_runtime")


class InterpreterUnavailable(RuntimeError):
    pass


def _backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise InterpreterUnavailable(f"unknown interpreter backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")


def backend_name(preferred: str = "auto") -> str:
    """The backend that ``create_interpreter`` will use."""
    names = BACKENDS if preferred == "auto" else (preferred,)
    for name in names:
        if _backend(name).available():
            return name
    raise InterpreterUnavailable(
        "no TFLite interpreter installed: pip install ai-edge-litert "
        "(or tflite-runtime with numpy<2 where ai-edge-litert has no wheel)"
    )


def create_interpreter(model_path: str | Path, num_threads: int = 1, backend: str = "auto"):
    """An allocated interpreter for ``model_path`` from the first available backend."""
    module = _backend(backend_name(backend))
    try:
        interpreter = module.create(str(model_path), num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InterpreterUnavailable(f"{model_path}: the TFLite runtime cannot load this model: {exc}") from exc
    return interpreter


def delegate_partitions(interpreter) -> tuple[int, bool]:
    """(number of delegate partitions, whether one partition runs the whole graph).

    A delegated subgraph shows up as a DELEGATE node among the interpreter's nodes; the
    whole graph is delegated when a single such node reads the model input and writes
    every model output. Several partitions mean the CPU kernels run between them.
    """
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    if len(delegates) != 1:
        return len(delegates), False
    node = delegates[0]
    ins = {int(i) for i in node["inputs"]}
    outs = {int(o) for o in node["outputs"]}
    whole = all(int(d["index"]) in ins for d in interpreter.get_input_details()) and all(
        int(d["index"]) in outs for d in interpreter.get_output_details()
    )
    return 1, whole
