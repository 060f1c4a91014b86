"""Home Assistant's MQTT templates rendered the way Home Assistant renders them: sandboxed Jinja2
with the payload as ``value`` and, parsed, as ``value_json``."""

from __future__ import annotations

import json


def render(template: str, payload: str | bytes) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    return ImmutableSandboxedEnvironment().from_string(template).render(value=payload, value_json=json.loads(payload))
