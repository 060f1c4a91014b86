"""One image in, one result dict out: ``check_image`` (a path or bytes with an analyzer) and
``check_image_bytes``, the entry point of the MQTT layer (``cmd/check_image``), which
loads the model once, serialises calls and never raises for bad input.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge_app.forensics.analyzer import Analysis, ForensicsAnalyzer, load_analyzer
from edge_app.forensics.errors import ForensicsError
from edge_app.forensics.loading import LoadedImage, open_image
from edge_app.forensics.results import error_dict, result_dict
from edge_app.images import MAX_PIXELS

log = logging.getLogger(__name__)


def check_image(source: str | Path | bytes, analyzer: ForensicsAnalyzer, *, max_pixels: int = MAX_PIXELS,
                analysis_max_pixels: int = 4_000_000, oversize: str = "downscale",
                name: str = "", progress=None) -> tuple[dict, LoadedImage | None, Analysis | None]:
    """(result dict, image, analysis); bad input gives verdict "error" and Nones."""
    try:
        img = open_image(source, max_pixels, analysis_max_pixels, oversize, name)
    except ForensicsError as exc:
        return error_dict(str(exc)), None, None
    try:
        analysis = analyzer.analyze(img.rgb, jpeg_source=img.format == "JPEG", progress=progress)
    except (ForensicsError, ValueError, OSError, MemoryError) as exc:
        label = name or (str(source) if isinstance(source, (str, Path)) else "image data")
        return error_dict(f"{label}: analysis failed ({exc})"), img, None
    return result_dict(img, analysis, analyzer), img, analysis


_shared: dict = {}
_shared_lock = threading.Lock()


def _shared_analyzer(models_dir, name, threads, threshold) -> ForensicsAnalyzer:
    from edge_app.config import default_models_dir

    key = (str(models_dir or default_models_dir()), name, threads, threshold)
    if key not in _shared:
        _shared[key] = load_analyzer(key[0], name, threads, threshold)
    return _shared[key]


def check_image_bytes(data: bytes, *, config=None, models_dir: str | Path | None = None,
                      analyzer: ForensicsAnalyzer | None = None, name: str = "image data") -> dict:
    """Forensics of one encoded image (JPEG, PNG, ...) for the MQTT layer; never raises.

    Returns a JSON-ready dict: ``verdict`` authentic / manipulated / error, ``score``
    (P(manipulated) aggregated over patches) and ``threshold``, ``width``/``height``,
    ``source`` (format, estimated JPEG quality), ``heatmap`` (suspect fraction, bbox
    [x0, y0, x1, y1] and largest regions at the pixel threshold), ``notes`` (lossless
    source, downscaled), ``model`` and ``timing_ms``. On bad input or an unusable model:
    ``{"verdict": "error", "error": "...", "score": None}``.

    ``config`` is an ``edge_app.config.Config`` (its ``forensics`` section; defaults when
    None). The model is loaded once per (models dir, name, threads, threshold) and calls
    are serialised, so it is safe to call from a network thread.
    """
    t0 = time.perf_counter()
    try:
        from edge_app.config import Config

        fc = (config or Config()).forensics
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return error_dict(f"{name}: expected bytes, got {type(data).__name__}")
        if len(data) > fc.max_bytes:
            return error_dict(f"{name}: {len(data)} bytes, over the {fc.max_bytes}-byte limit; refused")
        with _shared_lock:
            if analyzer is None:
                models = models_dir or (config.resolved_models_dir() if config is not None else None)
                analyzer = _shared_analyzer(models, fc.model, fc.threads, fc.threshold or None)
            result, _, _ = check_image(bytes(data), analyzer, max_pixels=fc.max_pixels,
                                       analysis_max_pixels=fc.analysis_max_pixels, oversize=fc.oversize, name=name)
    except Exception as exc:  # the MQTT layer must always get an answer
        log.exception("forensics failed")
        return error_dict(f"{name}: forensics failed ({type(exc).__name__}: {exc})")
    result["elapsed_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return result
