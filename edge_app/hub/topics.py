"""Every MQTT topic this device uses, built here and nowhere else, and the checks on topic names.

docs/mqtt.md is the contract:

    <base>/availability          retained online/offline; the last will says offline
    <base>/events                decision events, QoS 1, not retained (schemas/event.schema.json)
    <base>/state                 retained copy of the latest decision event
    <base>/health                retained health report, QoS 0 (schemas/health.schema.json)
    <base>/cmd/verify            in: a door controller asks for the current decision
    <base>/verify/result         out: the answer for MQTT 3.1.1 requesters (MQTT 5: its response topic)
    <base>/cmd/check_image       in: a JPEG to check for manipulation
    <base>/check_image/result    out: the answer for MQTT 3.1.1 requesters
    <discovery_prefix>/<component>/<node>/<object>/config   retained Home Assistant discovery
    <discovery_prefix>/status    in: Home Assistant's birth message; discovery is re-published
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_app.config import ConfigError, MqttConfig

ONLINE = "online"  # the availability payloads
OFFLINE = "offline"

# The command-line flag that sets each key, so a bad value is traced to where it came from.
_FLAGS = {"mqtt.host": "--mqtt-host", "mqtt.port": "--mqtt-port", "mqtt.base_topic": "--base-topic",
          "device_id": "--device-id", "mqtt.client_id": "--client-id"}


def key_with_flag(key: str) -> str:
    """A configuration key, with the ``edge-app run`` flag that also sets it."""
    return f"{key} (or {_FLAGS[key]})" if key in _FLAGS else key


# By hand: paho checks only for wildcards when publishing; this also refuses $-topics, empty
# levels and bad UTF-8 at start-up, and names the configuration key.
def validate_topic(topic: str, key: str) -> str:
    """A topic name to publish on, or ConfigError naming the configuration key it came from."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{key_with_flag(key)}: {topic!r} is not a valid MQTT topic: {why}")

    if not isinstance(topic, str) or not topic:
        raise ConfigError(f"{key_with_flag(key)}: the topic is empty")
    if "\x00" in topic:
        raise bad("it contains a NUL character")
    if "+" in topic or "#" in topic:
        raise bad("wildcards + and # are only for subscriptions")
    if topic.startswith("/") or topic.endswith("/"):
        raise bad("it must not start or end with /")
    if "//" in topic:
        raise bad("it has an empty level (//)")
    if topic.startswith("$"):
        raise bad("topics starting with $ are reserved for the broker")
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        raise bad("longer than 65535 bytes")
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("not valid UTF-8") from None
    return topic


def validate_level(value: str, key: str) -> str:
    """One topic level (no /), such as a device id used inside the default base topic."""
    validate_topic(value, key)
    if "/" in value:
        raise ConfigError(f"{key_with_flag(key)}: {value!r} must be a single topic level (no /)")
    return value


@dataclass(frozen=True)
class Topics:
    base: str
    availability: str
    events: str
    state: str
    health: str
    cmd_verify: str
    verify_result: str
    cmd_check_image: str
    check_image_result: str
    discovery_prefix: str | None  # None: discovery off
    ha_status: str | None


def build_topics(base: str, discovery_prefix: str | None = None) -> Topics:
    return Topics(
        base=base,
        availability=f"{base}/availability",
        events=f"{base}/events",
        state=f"{base}/state",
        health=f"{base}/health",
        cmd_verify=f"{base}/cmd/verify",
        verify_result=f"{base}/verify/result",
        cmd_check_image=f"{base}/cmd/check_image",
        check_image_result=f"{base}/check_image/result",
        discovery_prefix=discovery_prefix,
        ha_status=f"{discovery_prefix}/status" if discovery_prefix else None,
    )


def resolve_base_topic(cfg: MqttConfig, device_id: str) -> str:
    if cfg.base_topic:
        return validate_topic(cfg.base_topic, "mqtt.base_topic")
    validate_level(device_id, "device_id")
    return f"edge_app/{device_id}"


def topics_for(cfg: MqttConfig, device_id: str) -> Topics:
    """Every topic for this configuration; ConfigError names the key of a bad one."""
    prefix = validate_topic(cfg.discovery_prefix, "mqtt.discovery_prefix") if cfg.discovery else None
    return build_topics(resolve_base_topic(cfg, device_id), prefix)
