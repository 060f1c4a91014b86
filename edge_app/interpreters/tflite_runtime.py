"""tflite-runtime 2.14 (last release): fallback where ai-edge-litert has no wheel.

It needs numpy<2 and does not give int8 graphs to XNNPACK, so int8 runs slower there.
"""

NAME = "tflite-runtime"


def available() -> bool:
    try:
        from tflite_runtime import interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def create(model_path: str, num_threads: int):
    from tflite_runtime.interpreter import Interpreter

    return Interpreter(model_path=model_path, num_threads=num_threads)
