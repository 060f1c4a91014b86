"""ai-edge-litert: the maintained TFLite runtime; hands int8 graphs to XNNPACK."""

NAME = "ai-edge-litert"


def available() -> bool:
    try:
        from ai_edge_litert import interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def create(model_path: str, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=model_path, num_threads=num_threads)
