"""The ``edge-app run`` flags that override ``[mqtt]`` settings and the device id (the command line wins)."""

from __future__ import annotations

from edge_app.config import Config, ConfigError
from edge_app.hub.topics import key_with_flag, validate_topic


def add_cli_arguments(parser) -> None:
    """The `edge-app run` flags that override [mqtt] settings (the command line wins)."""
    group = parser.add_argument_group("MQTT (override the config file)")
    group.add_argument("--mqtt-host", help="broker host name or address")
    group.add_argument("--mqtt-port", type=int, help="broker TCP port")
    group.add_argument("--base-topic", help="base topic of this device (default edge_app/<device id>)")
    group.add_argument("--device-id", help="device id (default: the host name)")
    group.add_argument("--client-id", help="MQTT client id (default edge_app-<device id>)")


def apply_cli_overrides(cfg: Config, args) -> None:
    """Copy the MQTT flags that were given onto ``cfg``; missing or None attributes are ignored."""
    def given(name: str):
        return getattr(args, name, None)

    if given("device_id") is not None:
        cfg.device_id = args.device_id
    if given("mqtt_host") is not None:
        if not args.mqtt_host:
            raise ConfigError(f"{key_with_flag('mqtt.host')}: empty host name")
        cfg.mqtt.host = args.mqtt_host
    if given("mqtt_port") is not None:
        if not 0 < int(args.mqtt_port) < 65536:
            raise ConfigError(f"{key_with_flag('mqtt.port')}: {args.mqtt_port} is not a TCP port")
        cfg.mqtt.port = int(args.mqtt_port)
    if given("base_topic") is not None:
        cfg.mqtt.base_topic = validate_topic(args.base_topic, "mqtt.base_topic")
    if given("client_id") is not None:
        cfg.mqtt.client_id = args.client_id
