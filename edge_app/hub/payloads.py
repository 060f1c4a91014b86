"""JSON as it goes on the wire: compact, UTF-8, no NaN (a non-finite number becomes null), UTC timestamps."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _finite(value: Any) -> Any:
    # JSON has no NaN: a non-finite score becomes null rather than an unparseable message.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays from a handler: plain numbers and lists
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(doc: dict) -> str:
    return json.dumps(_finite(doc), separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default)
