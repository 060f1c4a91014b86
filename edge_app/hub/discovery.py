"""Home Assistant MQTT discovery: the device, its entities and their retained config payloads."""

from __future__ import annotations

import re

from edge_app import __version__
from edge_app.config import ConfigError
from edge_app.hub.events import DECISIONS
from edge_app.hub.payloads import dumps
from edge_app.hub.topics import OFFLINE, ONLINE, Topics

def node_id(device_id: str) -> str:
    # Home Assistant accepts only [a-zA-Z0-9_-] in the node and object ids of a discovery topic.
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id) or "edge_app"


def discovery_device(device_id: str, models: dict[str, str] | None = None, *, area: str = "",
                     configuration_url: str = "", serial_number: str | None = None) -> dict:
    """The Home Assistant device every entity belongs to, named by the device id alone: entities
    carry short names ("Live person") that Home Assistant prefixes with it ("door1 Live person")."""
    node = node_id(device_id)
    device = {
        "identifiers": [f"edge_app_{node}"],
        "name": device_id,
        "manufacturer": "edge_app",
        "model": "Face liveness terminal",
        "sw_version": __version__,
    }
    if models:
        device["hw_version"] = ", ".join(f"{k} {v}" for k, v in sorted(models.items()))
    if serial_number:
        device["serial_number"] = serial_number
    if area:
        device["suggested_area"] = area
    if configuration_url:
        device["configuration_url"] = configuration_url
    return device


def discovery_configs(topics: Topics, device_id: str, health_interval_s: float = 30.0,
                      models: dict[str, str] | None = None, *, area: str = "", configuration_url: str = "",
                      support_url: str = "", serial_number: str | None = None) -> dict[str, dict]:
    """Retained Home Assistant discovery payloads, keyed by their config topic.

    Attributes are kept few and stable: Home Assistant's recorder stores every distinct attribute
    set, so per-decision detail (event id, scores, timing) rides on the event entity only.
    """
    if topics.discovery_prefix is None:
        return {}
    node = node_id(device_id)
    origin = {"name": "edge_app", "sw_version": __version__}
    if support_url:
        origin["support_url"] = support_url
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": discovery_device(device_id, models, area=area, configuration_url=configuration_url,
                                   serial_number=serial_number),
        "origin": origin,
    }
    # Health sensors go unavailable when three reports in a row are missing (a dead camera loop).
    stale = max(int(3 * health_interval_s), 10)

    def health(key: str) -> str:
        return "{{ value_json.get('%s') }}" % key

    entities: list[tuple[str, str, dict]] = [
        ("sensor", "decision", {
            "name": "Decision", "state_topic": topics.state, "value_template": "{{ value_json.decision }}",
            "device_class": "enum", "options": list(DECISIONS), "icon": "mdi:face-recognition",
            # what a decision is measured against; changes only with a new model
            "json_attributes_topic": topics.state,
            "json_attributes_template": "{{ {'threshold': value_json.threshold, 'models': value_json.models}"
                                        " | tojson }}"}),
        ("event", "decision_event", {
            # fires on every decision, also on the same decision twice in a row (a state trigger
            # on the Decision sensor does not); QoS 1, so de-duplicate by event_id if it matters
            "name": "Decision event", "state_topic": topics.events, "qos": 1,
            "event_types": list(DECISIONS), "icon": "mdi:face-recognition",
            "value_template": "{{ {'event_type': value_json.decision, 'score': value_json.score,"
                              " 'reason': value_json.reason, 'track_id': value_json.track_id,"
                              " 'frames': value_json.frames, 'event_id': value_json.event_id,"
                              " 'decided_at': value_json.timestamp} | tojson }}"}),
        ("button", "verify", {
            # the answer goes to <base>/verify/result (an MQTT trigger can read it)
            "name": "Verify now", "command_topic": topics.cmd_verify, "qos": 1, "retain": False,
            "payload_press": dumps({"request_id": "home-assistant"}), "icon": "mdi:door-closed-lock"}),
        ("sensor", "score", {
            # a null score renders "None", which Home Assistant shows as unknown
            "name": "Liveness score", "state_topic": topics.state, "value_template": "{{ value_json.score }}",
            "state_class": "measurement", "suggested_display_precision": 3, "icon": "mdi:gauge"}),
        ("binary_sensor", "live", {
            "name": "Live person", "state_topic": topics.state, "device_class": "occupancy",
            "value_template": "{{ 'ON' if value_json.decision == 'live' else 'OFF' }}"}),
        ("binary_sensor", "attack", {
            "name": "Presentation attack", "state_topic": topics.state, "device_class": "problem",
            "value_template": "{{ 'ON' if value_json.decision == 'attack' else 'OFF' }}"}),
        ("sensor", "fps", {
            # no unit: "fps" is not a unit Home Assistant knows, and frames are not hertz
            "name": "Frames per second", "state_topic": topics.health, "value_template": health("fps"),
            "state_class": "measurement", "suggested_display_precision": 1, "icon": "mdi:camera-timer",
            "entity_category": "diagnostic", "expire_after": stale}),
        ("sensor", "latency", {
            "name": "Decision latency p95", "state_topic": topics.health,
            "value_template": "{{ value_json.get('stage_ms', {}).get('capture_to_decision', {}).get('p95') }}",
            "unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement",
            "suggested_display_precision": 1, "entity_category": "diagnostic", "expire_after": stale}),
        ("sensor", "spool_depth", {
            "name": "Undelivered events", "state_topic": topics.health, "value_template": health("spool_depth"),
            "state_class": "measurement", "entity_category": "diagnostic", "expire_after": stale,
            "icon": "mdi:tray-full"}),
        ("sensor", "spool_dropped", {
            "name": "Dropped events", "state_topic": topics.health, "value_template": health("spool_dropped"),
            "state_class": "total_increasing", "entity_category": "diagnostic", "icon": "mdi:delete-alert"}),
        ("sensor", "last_restart", {
            # a timestamp, not an uptime that ticks: Home Assistant's convention, and one state
            # per process start instead of one per report
            "name": "Last restart", "state_topic": topics.health, "value_template": health("started_at"),
            "device_class": "timestamp", "entity_category": "diagnostic"}),
        ("sensor", "cpu_temperature", {
            "name": "CPU temperature", "state_topic": topics.health, "value_template": health("cpu_temp_c"),
            "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement",
            "entity_category": "diagnostic", "expire_after": stale}),
    ]
    configs = {}
    for component, obj, fields in entities:
        topic = f"{topics.discovery_prefix}/{component}/{node}/{obj}/config"
        configs[topic] = {**fields, "unique_id": f"edge_app_{node}_{obj}", **common}
    return configs


# Entities earlier versions announced: an empty retained config removes them from Home Assistant.
RETIRED_ENTITIES = (("sensor", "uptime"),)


def retired_discovery_topics(topics: Topics, device_id: str) -> list[str]:
    if topics.discovery_prefix is None:
        return []
    node = node_id(device_id)
    return [f"{topics.discovery_prefix}/{component}/{node}/{obj}/config" for component, obj in RETIRED_ENTITIES]


def validate_url(url: str, key: str) -> str:
    """An http(s) URL Home Assistant accepts in discovery (it rejects the whole config otherwise)."""
    if url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{key}: {url!r} is not an http:// or https:// URL")
    return url
