"""MQTT: every topic this device uses, the durable publisher, commands and Home Assistant discovery.

All topic strings are built here and nowhere else (docs/mqtt.md is the contract):

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

Threads, and why there are three:
  * the camera loop calls publish_event / publish_health: they write the spool (or a field) and
    wake the sender, nothing else, so a dead broker can never stall the camera;
  * the sender thread moves events from the spool to paho, at most EVENT_WINDOW unacknowledged,
    in spool order, and deletes them from the spool when paho reports the PUBACK;
  * paho's network thread (loop_start) connects, reconnects with backoff, and runs the callbacks.
    Its callbacks never take a lock the sender holds while calling paho (paho calls on_publish
    while holding its own message lock): acknowledgements travel through a deque instead.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import math
import os
import queue
import re
import socket
import ssl
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_app import __version__
from edge_app.config import Config, ConfigError, MqttConfig
from edge_app.hub.events import DECISIONS, SCHEMA_VERSION
from edge_app.hub.spool import RateLimitedLog, Spool, SpoolError

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
EVENT_WINDOW = 16  # events handed to paho and not yet acknowledged (paho's own in-flight cap is 20)
RESEND_STALL_S = 30.0  # after a reconnect, how long new events wait behind paho's re-sent ones
MAX_COMMAND_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_REQUEST_ID = 128
# Events kept in memory while the spool cannot be written (a full disk): beyond this the oldest
# are dropped, counted in spool_dropped and logged. About 1 KB each.
MEMORY_EVENTS = 1000
CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"

# The command-line flag that sets each key, so a bad value is traced to where it came from.
_FLAGS = {"mqtt.host": "--mqtt-host", "mqtt.port": "--mqtt-port", "mqtt.base_topic": "--base-topic",
          "device_id": "--device-id", "mqtt.client_id": "--client-id"}


# -- topics -----------------------------------------------------------------------------------

def _key(key: str) -> str:
    return f"{key} (or {_FLAGS[key]})" if key in _FLAGS else key


def validate_topic(topic: str, key: str) -> str:
    """A topic name to publish on, or ConfigError naming the configuration key it came from."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{_key(key)}: {topic!r} is not a valid MQTT topic: {why}")

    if not isinstance(topic, str) or not topic:
        raise ConfigError(f"{_key(key)}: the topic is empty")
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
        raise ConfigError(f"{_key(key)}: {value!r} must be a single topic level (no /)")
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


# -- Home Assistant discovery ------------------------------------------------------------------

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


SERIAL_PATHS = ("/sys/firmware/devicetree/base/serial-number", "/proc/cpuinfo")


def read_serial_number(paths: tuple[str, ...] = SERIAL_PATHS) -> str | None:
    """The board's serial number (a Raspberry Pi's, from the device tree or /proc/cpuinfo), or None."""
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if path.endswith("cpuinfo"):
            match = re.search(r"^Serial\s*:\s*([0-9A-Fa-f]+)\s*$", text, re.M)
            text = match.group(1) if match else ""
        serial = text.strip("\x00 \n")
        if serial and set(serial) != {"0"}:
            return serial
    return None


# -- small helpers -----------------------------------------------------------------------------

def read_cpu_temp_c(path: str = CPU_TEMP_PATH) -> float | None:
    """CPU temperature in °C from the thermal zone (millidegrees), or None where unreadable."""
    try:
        return round(int(Path(path).read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


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


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password from mqtt.password_file or the variable named by mqtt.password_env.

    Errors name the key and the file or variable, never the password.
    """
    if cfg.password_file and cfg.password_env:
        raise ConfigError("mqtt.password_file and mqtt.password_env: set one of them, not both")
    password = None
    if cfg.password_file:
        path = Path(cfg.password_file).expanduser()
        try:
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):  # a FIFO would block start-up forever
                raise ConfigError(f"mqtt.password_file: {path}: not a regular file")
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise ConfigError(f"mqtt.password_file: {path}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mqtt.password_file: {path}: cannot read it ({type(exc).__name__})") from None
        if not password:
            raise ConfigError(f"mqtt.password_file: {path}: the file is empty")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("mqtt.password_file: %s is readable by other users (mode %o): chmod 600 it",
                        path, stat.S_IMODE(mode))
    elif cfg.password_env:
        password = os.environ.get(cfg.password_env)
        if password is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
    if password is not None and not cfg.username:
        raise ConfigError("mqtt.username: a password is configured but no user name")
    return password


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker against mqtt.ca_file (or the system CAs); optional client certificate."""
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(cfg, key)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"mqtt.{key}: {value}: file not found")
    if cfg.key_file and not cfg.cert_file:
        raise ConfigError("mqtt.key_file: set mqtt.cert_file too (the client certificate)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(Path(cfg.ca_file).expanduser()) if cfg.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.ca_file: {cfg.ca_file}: not a usable CA certificate ({exc})") from None
    if cfg.cert_file:
        def no_passphrase() -> bytes:
            # an encrypted key would otherwise make OpenSSL prompt on a terminal a service lacks
            return b""
        try:
            ctx.load_cert_chain(str(Path(cfg.cert_file).expanduser()),
                                str(Path(cfg.key_file).expanduser()) if cfg.key_file else None,
                                password=no_passphrase)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.cert_file / mqtt.key_file: {cfg.cert_file}: not a usable certificate and "
                              f"unencrypted key ({exc})") from None
    return ctx


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
            raise ConfigError(f"{_key('mqtt.host')}: empty host name")
        cfg.mqtt.host = args.mqtt_host
    if given("mqtt_port") is not None:
        if not 0 < int(args.mqtt_port) < 65536:
            raise ConfigError(f"{_key('mqtt.port')}: {args.mqtt_port} is not a TCP port")
        cfg.mqtt.port = int(args.mqtt_port)
    if given("base_topic") is not None:
        cfg.mqtt.base_topic = validate_topic(args.base_topic, "mqtt.base_topic")
    if given("client_id") is not None:
        cfg.mqtt.client_id = args.client_id


def _paho_logger() -> logging.Logger:
    # paho 2.2 logs "Client is not connected" at ERROR after every failed reconnect: while a broker
    # is down that is one error line per retry, which drowns the single line that matters.
    logger = logging.getLogger(__name__ + ".paho")
    if not any(isinstance(f, _NotConnectedFilter) for f in logger.filters):
        logger.addFilter(_NotConnectedFilter())
    return logger


class _NotConnectedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (on_connect_fail is not told)."""

    last_connect_error: OSError | None = None

    def reconnect(self):
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


class _BadRequest(ValueError):
    pass


@dataclass
class _Route:
    """Where a reply goes: the MQTT 5 response topic (with the correlation data) or the fallback."""
    topic: str
    properties: Properties | None
    correlation: bytes | None
    problem: str | None = None  # the response topic itself was unusable


# -- the publisher -----------------------------------------------------------------------------

class MqttPublisher:
    def __init__(self, cfg: MqttConfig, device_id: str, state_dir: Path | str,
                 models: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.models = dict(models or {})
        self.topics = topics_for(cfg, device_id)
        self.base_topic = self.topics.base
        self.client_id = cfg.client_id or f"edge_app-{device_id}"
        if not cfg.host:
            raise ConfigError(f"{_key('mqtt.host')}: empty host name")
        if not 0 < cfg.port < 65536:
            raise ConfigError(f"{_key('mqtt.port')}: {cfg.port} is not a TCP port")
        if "\x00" in self.client_id:
            raise ConfigError(f"{_key('mqtt.client_id')}: contains a NUL character")
        if len(self.client_id.encode("utf-8", "surrogatepass")) > 128:
            # brokers refuse long ids, and paho's network thread then died for good
            raise ConfigError(f"{_key('mqtt.client_id')}: at most 128 bytes, got {len(self.client_id.encode('utf-8', 'surrogatepass'))}")
        if not 0 < cfg.reconnect_min_s <= cfg.reconnect_max_s:
            raise ConfigError(f"mqtt.reconnect_min_s / mqtt.reconnect_max_s: need 0 < min <= max, got "
                              f"{cfg.reconnect_min_s} and {cfg.reconnect_max_s}")
        if not 5 <= cfg.keepalive_s <= 65535:
            raise ConfigError(f"mqtt.keepalive_s: between 5 and 65535 seconds, got {cfg.keepalive_s}")
        if cfg.reply_prefix:
            validate_topic(cfg.reply_prefix, "mqtt.reply_prefix")
            if cfg.reply_prefix.split("/")[0] in (cfg.discovery_prefix, "$SYS") or \
                    self.topics.base.startswith(cfg.reply_prefix + "/") or self.topics.base == cfg.reply_prefix:
                raise ConfigError(f"mqtt.reply_prefix: {cfg.reply_prefix!r} would cover the device's own or "
                                  f"Home Assistant's topics; pick a prefix of its own, e.g. 'doors/replies'")
        self._v5 = cfg.protocol == "5"
        self._password = read_password(cfg)
        self._tls = tls_context(cfg) if cfg.tls else None
        if not cfg.tls and (cfg.ca_file or cfg.cert_file):
            log.warning("mqtt.ca_file / mqtt.cert_file are set but mqtt.tls is false: the connection is NOT encrypted")
        if self._password is not None and not cfg.tls and cfg.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("MQTT password is sent to %s without TLS (set mqtt.tls = true)", cfg.host)
        self._discovery = discovery_configs(
            self.topics, device_id, cfg.health_interval_s, self.models, area=cfg.discovery_area,
            configuration_url=validate_url(cfg.discovery_configuration_url, "mqtt.discovery_configuration_url"),
            support_url=validate_url(cfg.discovery_support_url, "mqtt.discovery_support_url"),
            serial_number=read_serial_number() if cfg.discovery else None)
        self._retired_discovery = retired_discovery_topics(self.topics, device_id)

        spool_path = Path(cfg.spool_path).expanduser() if cfg.spool_path else Path(state_dir) / "spool.sqlite3"
        try:
            self.spool = Spool(spool_path, cfg.spool_max_events)
        except ValueError as exc:
            raise ConfigError(f"mqtt.spool_max_events: {exc}") from None

        self._verify_handler: Callable[[], Any] | None = None
        self._check_image_handler: Callable[[bytes], dict] | None = None
        self._started = False
        self._stopped = False
        self._started_at = time.monotonic()
        self._started_at_utc = utc_now()  # the "Last restart" Home Assistant shows
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # SUBACK for the command topics of this connection
        self._conn_gen = 0  # bumped by every successful connect
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque = collections.deque()  # (mid, reason code) from paho's thread
        # (event_id, payload, seq) not in the spool because it could not be written; all newer than
        # every spooled event (while it holds any, new events queue behind it), so order holds
        self._memory: collections.deque = collections.deque()
        self._memory_dropped = 0
        self._spool_log = RateLimitedLog(log)
        self._incoming: collections.deque = collections.deque()  # from the camera thread, not yet spooled
        self._depth_lock = threading.Lock()
        # sender-thread state
        self._inflight: dict[int, int] = {}  # paho mid -> spool row id
        self._cursor = 0  # last spool row handed to paho
        self._sent = 0
        # latest retained payloads, written by the camera thread, published by the sender
        self._state_payload: str | None = self.spool.last_state()
        self._state_dirty = False
        self._health_payload: str | None = None
        self._pipeline_health: dict = {}  # the latest figures, so a connect can make a fresh report
        self._health_due = False  # set by a connect: publish a fresh report, not the retained old one
        self._last_failure: str | None = None

        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._images: queue.Queue = queue.Queue(maxsize=2)
        self._image_worker = threading.Thread(target=self._run_image_worker, name="mqtt-check-image", daemon=True)
        self._client = self._make_client()

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once whether or not the broker is there."""
        if self._started:
            return
        self._started = True
        self._sender.start()
        self._image_worker.start()
        cfg = self.cfg
        if self._v5:
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
        else:
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
        log.info("MQTT %s to %s:%d as %s, base topic %s, TLS %s, user %s, spool %s (%d waiting)",
                 "5" if self._v5 else "3.1.1", cfg.host, cfg.port, self.client_id, self.base_topic,
                 "on" if cfg.tls else "off", repr(cfg.username) if cfg.username else "none",
                 self.spool.path, self.spool.depth())
        self._client.loop_start()

    def next_seq(self) -> int:
        return self.spool.next_seq()

    def publish_event(self, event) -> None:
        """Spool the event durably, then let the sender publish it (QoS 1) and the retained state.

        Returns after one SQLite commit whatever the broker does; never raises for broker or
        spool trouble (it logs), because the camera loop must go on.
        """
        if hasattr(event, "to_dict"):
            event = event.to_dict()
        event = dict(event)
        if not event.get("event_id"):
            event["event_id"] = uuid.uuid4().hex
        try:
            payload = dumps(event)
        except (TypeError, ValueError) as exc:
            log.error("event %s cannot be encoded as JSON and is not published: %s", event.get("event_id"), exc)
            return
        seq = event.get("seq") if isinstance(event.get("seq"), int) else None
        # The SQLite commit (an fsync, milliseconds on an SD card) happens on the sender
        # thread, batched; the event is published only after it is in the spool.
        self._incoming.append((str(event["event_id"]), payload, seq))
        self._state_payload = payload
        self._state_dirty = True
        self._wake.set()

    def publish_health(self, health: dict) -> None:
        """Add spool depth, uptime and CPU temperature to the pipeline's figures; retained, QoS 0."""
        self._pipeline_health = dict(health or {})
        payload = self._health_report(self._pipeline_health)
        if payload is not None:
            self._health_payload = payload
            self._wake.set()

    def _health_report(self, pipeline: dict) -> str | None:
        doc = {"schema": SCHEMA_VERSION, "device_id": self.device_id, "timestamp": utc_now()}
        doc.update(pipeline)
        doc.update({
            "spool_depth": self.spool_depth(),
            "spool_dropped": self.spool.dropped() + self._memory_dropped,
            "events_sent": self._sent,
            "started_at": self._started_at_utc,
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "cpu_temp_c": read_cpu_temp_c(),
        })
        if self.models and "models" not in doc:
            doc["models"] = dict(self.models)
        try:
            return dumps(doc)
        except (TypeError, ValueError) as exc:
            log.error("health report cannot be encoded as JSON: %s", exc)
            return None

    def _fresh_health(self) -> str | None:
        """A report made now, with the pipeline's latest figures (none before its first report):
        after a (re)connect the retained one may be a previous process's."""
        return self._health_report(self._pipeline_health)

    def set_verify_handler(self, fn: Callable[[], Any] | None) -> None:
        self._verify_handler = fn

    def set_check_image_handler(self, fn: Callable[[bytes], dict] | None) -> None:
        self._check_image_handler = fn

    def spool_depth(self) -> int:
        """Events not yet acknowledged by the broker (spooled, or about to be)."""
        # the lock covers the hand-over from the queue to the spool's reservation; it is never
        # held across the commit, and the spool swaps its stored/reserved counts as one
        with self._depth_lock:
            return len(self._incoming) + len(self._memory) + self.spool.depth()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed to the command topics (commands sent before that are lost)."""
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what the broker takes within ``timeout``, say offline, disconnect.

        Whatever is not acknowledged by then stays in the spool for the next start.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        if self._started:
            while (self._incoming or (self._connected.is_set() and (self.spool.depth() > 0 or self._memory))) \
                    and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.02)
            self._stopping.set()
            if self._connected.is_set():
                try:
                    info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
                    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.debug("offline message not confirmed: %s", exc)
            self._wake.set()
            self._sender.join(max(0.1, deadline - time.monotonic()))
            try:
                self._images.put_nowait(None)
            except queue.Full:
                pass
            self._client.disconnect()
            self._client.loop_stop()
            self._connected.clear()
        self._stopping.set()
        self._spool_incoming()  # whatever the sender did not get to: never lost on a clean stop
        self._save_memory_at_stop()
        left = self.spool.depth()
        if left:
            log.info("MQTT stopped; %d events stay in the spool %s for the next start", left, self.spool.path)
        self.spool.close()

    # -- paho client and callbacks ---------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        if self._v5:
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            # clean session: a verify request queued while the device was away is stale by now
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.enable_logger(_paho_logger())
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _report_failure(self, what: str) -> None:
        # One error line per kind of failure, not one per retry: the backoff can run for days.
        msg = f"MQTT broker {self._where()} {what}; events stay in the spool ({self.spool.depth()} waiting), retrying with backoff"
        if what != self._last_failure:
            log.error(msg)
            self._last_failure = what
        else:
            log.debug(msg)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                text = str(reason_code)
                text = text[:1].lower() + text[1:]
                if reason_code.value in (0x86, 0x87, 0x8C):  # bad user name or password / not authorized / bad auth
                    # Mosquitto answers a wrong password with "not authorized" (3.1.1 code 5).
                    source = (f"mqtt.password_file {self.cfg.password_file}" if self.cfg.password_file else
                              f"mqtt.password_env {self.cfg.password_env}" if self.cfg.password_env else "no password")
                    user = f"mqtt.username {self.cfg.username!r}" if self.cfg.username else "no mqtt.username"
                    said = "" if reason_code.value == 0x86 else f"; the broker said: {text}"
                    text = f"bad user name or password{said} (check {user} and {source})"
                self._report_failure(f"refused the connection: {text}")
                return
            log.info("MQTT connected to %s (%d events waiting in the spool)", self._where(), self.spool.depth())
            self._last_failure = None
            t = self.topics
            subs = [(t.cmd_verify, 1), (t.cmd_check_image, 1)]
            if t.ha_status:
                subs.append((t.ha_status, 1))
            client.subscribe(subs)
            client.publish(t.availability, ONLINE, qos=1, retain=True)
            self._publish_discovery()
            for topic in self._retired_discovery:
                client.publish(topic, b"", qos=1, retain=True)
            self._state_dirty = self._state_payload is not None
            self._health_due = True
            self._conn_gen += 1
            self._connected.set()
            self._wake.set()
        except Exception:
            log.exception("MQTT on_connect failed")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("MQTT broker %s refused the command subscriptions (%s): check the ACL for %s/cmd/#",
                      self._where(), ", ".join(refused), self.base_topic)
        self._subscribed.set()

    def _on_connect_fail(self, client, userdata) -> None:
        exc = getattr(client, "last_connect_error", None)
        if isinstance(exc, ssl.SSLCertVerificationError):
            what = (f"failed TLS verification ({exc.verify_message}; check mqtt.ca_file and that "
                    f"{self.cfg.host} is named in the broker's certificate)")
        elif isinstance(exc, ssl.SSLError):
            what = f"failed the TLS handshake ({exc.reason or exc}; is mqtt.tls right for port {self.cfg.port}?)"
        elif isinstance(exc, socket.gaierror):
            what = f"cannot be resolved ({exc.strerror})"
        elif isinstance(exc, OSError):
            what = f"cannot be reached ({exc.strerror or exc})"
        else:
            what = "cannot be reached"
        self._report_failure(what)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if self._stopping.is_set():
            log.info("MQTT disconnected from %s", self._where())
        elif was:
            why = "closed" if getattr(reason_code, "value", None) == 0x80 else str(reason_code)  # 0x80: "unspecified"
            log.warning("MQTT connection to %s lost (%s); events are spooled and sent after reconnecting",
                        self._where(), why)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Called with paho's message lock held: no locks of ours here, just hand it over.
        self._acks.append((mid, reason_code))
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        # A malformed command must never take the network thread down with it, and still gets
        # an answer (docs/mqtt.md promises one for every request).
        try:
            if msg.topic == self.topics.cmd_verify:
                self._on_verify(msg)
            elif msg.topic == self.topics.cmd_check_image:
                self._on_check_image(msg)
            elif msg.topic == self.topics.ha_status:
                if msg.payload.strip() == ONLINE.encode():
                    log.info("Home Assistant is online: re-publishing discovery")
                    self._publish_discovery()
        except Exception as exc:
            log.exception("MQTT command on %s failed", msg.topic)
            answers = {self.topics.cmd_verify: ("verify_result", self.topics.verify_result, "event"),
                       self.topics.cmd_check_image: ("check_image_result", self.topics.check_image_result, "result")}
            if msg.topic in answers:
                kind, fallback, field_name = answers[msg.topic]
                try:
                    route = self._route(msg, fallback)
                    self._reply(route, kind, None, "error", error=f"request failed: {type(exc).__name__}",
                                **{field_name: None})
                except Exception:
                    log.exception("MQTT error reply on %s failed", fallback)

    def _publish_discovery(self) -> None:
        for topic, config in self._discovery.items():
            self._client.publish(topic, dumps(config), qos=1, retain=True)

    # -- the sender thread -----------------------------------------------------------------------

    def _run_sender(self) -> None:
        gen_seen = 0
        drain_since: float | None = None
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._spool_incoming()
                self._process_acks()
                if self._stopping.is_set():  # stop() has already waited for the flush
                    return
                if not self._connected.is_set():
                    continue
                if self._conn_gen != gen_seen:
                    gen_seen = self._conn_gen
                    # paho re-sends what it had in flight right after this connect; new events
                    # wait until those are acknowledged, or the order would break.
                    drain_since = time.monotonic() if self._inflight else None
                if drain_since is not None:
                    if not self._inflight:
                        drain_since = None
                    elif time.monotonic() - drain_since > RESEND_STALL_S:
                        log.warning("MQTT: %d re-sent events still unacknowledged after %.0f s; sending newer ones",
                                    len(self._inflight), RESEND_STALL_S)
                        drain_since = None
                    else:
                        continue
                self._hand_events()
                self._publish_retained()
            except Exception:
                log.exception("MQTT sender step failed; retrying")
                time.sleep(0.5)

    def _spool_incoming(self) -> None:
        with self._depth_lock:  # spool_depth() never sees the batch in neither place
            batch = []
            while self._incoming:
                batch.append(self._incoming.popleft())
            from_memory = len(self._memory)
            if from_memory:
                # events held in memory go first, and new ones queue behind them: order holds
                self._memory.extend(batch)
                batch = list(self._memory)
                self._memory.clear()
            if not batch:
                return
            self.spool.reserve(len(batch))  # still counted while the commit runs
        try:
            self.spool.put_many(batch, state=batch[-1][1])
            if from_memory:
                log.info("spool %s writable again: the %d event(s) kept in memory are now spooled",
                         self.spool.path, from_memory)
        except Exception as exc:  # SpoolError (a full disk), the spool closed by stop(), or a bug
            # Durability is gone, delivery need not be: keep them in memory, bounded, and say so.
            with self._depth_lock:
                self._memory.extendleft(reversed(batch))
                over = len(self._memory) - MEMORY_EVENTS
                lost = [self._memory.popleft() for _ in range(max(0, over))]
            self._memory_dropped += len(lost)
            self._spool_log(logging.ERROR, "%s; %d event(s) held in memory (at most %d) and published from there%s",
                            exc if isinstance(exc, SpoolError) else f"events not spooled: {exc!r}",
                            len(self._memory), MEMORY_EVENTS,
                            f"; {self._memory_dropped} dropped so far (oldest first, counted in spool_dropped)"
                            if self._memory_dropped else "")
        finally:
            self.spool.reserve(0)

    def _save_memory_at_stop(self) -> None:
        """A clean stop with events still in memory: store what the spool takes, name the rest."""
        saved = 0
        while self._memory:
            try:
                self.spool.put_many([self._memory[0]])
            except Exception:
                break
            self._memory.popleft()
            saved += 1
        if self._memory_dropped or self._memory:
            lost = list(self._memory)
            seqs = [seq for _, _, seq in lost if isinstance(seq, int)]
            log.error("MQTT stopped with the spool unwritable: %d event(s) saved at the last moment, %d lost now%s%s, "
                      "%d dropped earlier from the memory queue",
                      saved, len(lost), f" (seq {min(seqs)}..{max(seqs)})" if seqs else "",
                      ": " + ", ".join(e for e, _, _ in lost) if lost else "", self._memory_dropped)
            self._memory.clear()

    def _process_acks(self) -> None:
        delivered, refused, why = [], [], ""
        while self._acks:
            mid, reason = self._acks.popleft()
            row = self._inflight.pop(mid, None)
            if row is None:
                continue  # availability, state, discovery, replies: not spooled
            if reason is not None and getattr(reason, "is_failure", False):
                refused.append(row)
                why = f"the broker refused them: {reason} (check the ACL for {self.topics.events})"
            else:
                delivered.append(row)
        if delivered:
            self._sent += self.spool.ack(delivered)
        if refused:
            self.spool.drop(refused, why)

    def _hand_events(self) -> None:
        room = EVENT_WINDOW - len(self._inflight)
        if room <= 0:
            return
        rows = self.spool.pending(self._cursor, room)
        if not rows:
            # every spooled event is out: the memory-held ones are newer, their turn now
            while self._memory and room > 0 and self._connected.is_set():
                with self._depth_lock:
                    _, payload, _ = self._memory.popleft()
                self._client.publish(self.topics.events, payload, qos=1)
                room -= 1
        for row in rows:
            self._cursor = row.row_id
            try:
                info = self._client.publish(self.topics.events, row.payload, qos=1)
            except ValueError as exc:  # an oversized payload: it will never go
                self.spool.drop([row.row_id], f"event {row.event_id} cannot be published ({exc})")
                continue
            # If the link dropped just now paho keeps the message and re-sends it on reconnect.
            self._inflight[info.mid] = row.row_id

    def _publish_retained(self) -> None:
        if self._state_dirty:
            self._state_dirty = False  # cleared before reading, so a newer state is never missed
            payload = self._state_payload
            if payload is not None:
                self._client.publish(self.topics.state, payload, qos=1, retain=True)
        health, self._health_payload = self._health_payload, None
        if self._health_due:
            self._health_due = False
            health = self._fresh_health()
        if health is not None:
            self._client.publish(self.topics.health, health, qos=0, retain=True)

    # -- commands --------------------------------------------------------------------------------

    def _route(self, msg, fallback: str) -> _Route:
        if not self._v5:
            return _Route(fallback, None, None)
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        incoming = msg.properties
        correlation = getattr(incoming, "CorrelationData", None) if incoming is not None else None
        if correlation is not None:
            props.CorrelationData = correlation
        response = getattr(incoming, "ResponseTopic", None) if incoming is not None else None
        if response:
            try:
                topic = validate_topic(response, "response topic")
            except ConfigError as exc:
                return _Route(fallback, props, correlation, problem=str(exc))
            if not self._reply_allowed(topic, fallback):
                # A requester must not make the device publish where it may not itself: on the
                # device's events, state or availability, another device's topics, discovery.
                log.warning("MQTT request on %s asked for a reply on %r, outside the allowed reply topics; "
                            "answered with an error on %s", msg.topic, topic[:200], fallback)
                return _Route(fallback, props, correlation,
                              problem=f"response topic {topic[:200]!r} refused: replies go only to {fallback} "
                                      f"or below it{self._prefix_note()}")
            return _Route(topic, props, correlation)
        return _Route(fallback, props, correlation)

    def _reply_allowed(self, topic: str, fallback: str) -> bool:
        prefix = self.cfg.reply_prefix
        return (topic == fallback or topic.startswith(fallback + "/")
                or bool(prefix) and (topic == prefix or topic.startswith(prefix + "/")))

    def _prefix_note(self) -> str:
        return f" or under mqtt.reply_prefix {self.cfg.reply_prefix}" if self.cfg.reply_prefix else ""

    def _reply(self, route: _Route, kind: str, request_id, status: str, *, error: str | None = None,
               **extra) -> None:
        doc = {"schema": SCHEMA_VERSION, "type": kind, "request_id": request_id, "device_id": self.device_id,
               "timestamp": utc_now(), "status": status, "error": error, **extra}
        try:
            payload = dumps(doc)
        except (TypeError, ValueError) as exc:  # the handler returned something JSON cannot carry
            status, error = "error", f"the answer cannot be encoded as JSON: {exc}"
            doc.update(status=status, error=error, **{key: None for key in extra})
            payload = dumps(doc)
        if status != "ok":
            log.warning("MQTT %s request %r answered %s: %s", kind, request_id, status, error)
        self._client.publish(route.topic, payload, qos=1, properties=route.properties)

    @staticmethod
    def _correlation_id(route: _Route):
        if route.correlation is None:
            return None
        try:
            return route.correlation.decode("utf-8")[:MAX_REQUEST_ID]
        except UnicodeDecodeError:
            return route.correlation.hex()[:MAX_REQUEST_ID]

    @staticmethod
    def _parse_json_request(payload: bytes, max_bytes: int) -> dict:
        if len(payload) > max_bytes:
            raise _BadRequest(f"request is {len(payload)} bytes, more than {max_bytes}")
        try:
            body = json.loads(payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise _BadRequest("request is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise _BadRequest(f"request is not valid JSON ({exc.msg} at character {exc.pos})") from None
        except RecursionError:
            raise _BadRequest("request JSON is nested too deeply") from None
        if not isinstance(body, dict):
            raise _BadRequest(f"request must be a JSON object, got {type(body).__name__}")
        rid = body.get("request_id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))
                                or len(str(rid)) > MAX_REQUEST_ID):
            raise _BadRequest(f"request_id must be a string or integer of at most {MAX_REQUEST_ID} characters")
        if isinstance(rid, str):
            try:
                rid.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\\ud800") cannot go back out as UTF-8
                raise _BadRequest("request_id is not valid Unicode (a lone surrogate escape)") from None
        return body

    def _on_verify(self, msg) -> None:
        route = self._route(msg, self.topics.verify_result)
        request_id = self._correlation_id(route)
        if route.problem:
            return self._reply(route, "verify_result", request_id, "error", error=route.problem, event=None)
        try:
            if msg.payload.strip():
                body = self._parse_json_request(msg.payload, MAX_COMMAND_BYTES)
                if body.get("request_id") is not None:
                    request_id = body["request_id"]
        except _BadRequest as exc:
            return self._reply(route, "verify_result", request_id, "error", error=str(exc), event=None)
        handler = self._verify_handler
        if handler is None:
            return self._reply(route, "verify_result", request_id, "error",
                               error="no decision source is attached yet", event=None)
        try:
            event = handler()
            if hasattr(event, "to_dict"):
                event = event.to_dict()
            if not isinstance(event, dict):
                raise TypeError(f"the decision source returned {type(event).__name__}, not an event")
        except Exception as exc:  # fail closed: an error is an answer, never an open door
            log.exception("verify handler failed")
            return self._reply(route, "verify_result", request_id, "error",
                               error=f"decision source failed: {exc}", event=None)
        self._reply(route, "verify_result", request_id, "ok", event=event)

    def _on_check_image(self, msg) -> None:
        route = self._route(msg, self.topics.check_image_result)
        request_id = self._correlation_id(route)
        payload = msg.payload
        try:
            if route.problem:
                raise _BadRequest(route.problem)
            if payload[:2] == b"\xff\xd8":
                jpeg = payload
            elif payload.lstrip()[:1] == b"{":
                body = self._parse_json_request(payload, MAX_IMAGE_BYTES * 4 // 3 + 1024)
                if body.get("request_id") is not None:
                    request_id = body["request_id"]
                data = body.get("jpeg_base64")
                if not isinstance(data, str):
                    raise _BadRequest("a JSON request needs jpeg_base64 (the JPEG, base64-encoded)")
                try:
                    jpeg = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raise _BadRequest("jpeg_base64 is not valid base64") from None
                if jpeg[:2] != b"\xff\xd8":
                    raise _BadRequest("jpeg_base64 does not hold a JPEG (no FF D8 start marker)")
            elif not payload:
                raise _BadRequest("empty request: send the JPEG bytes")
            else:
                raise _BadRequest("payload is neither a JPEG (FF D8 start marker) nor a JSON request")
            if len(jpeg) > MAX_IMAGE_BYTES:
                raise _BadRequest(f"image is {len(jpeg)} bytes, more than {MAX_IMAGE_BYTES}")
        except _BadRequest as exc:
            return self._reply(route, "check_image_result", request_id, "error", error=str(exc), result=None)
        handler = self._check_image_handler
        if handler is None:
            return self._reply(route, "check_image_result", request_id, "not_available",
                               error="image forensics is not available on this device (no forensics model installed)",
                               result=None)
        # The forensics model may take a while: run it off the network thread, one at a time.
        try:
            self._images.put_nowait((route, request_id, jpeg, handler))
        except queue.Full:
            self._reply(route, "check_image_result", request_id, "error",
                        error="busy: other images are being checked, try again", result=None)

    def _run_image_worker(self) -> None:
        while True:
            job = self._images.get()
            if job is None:
                return
            route, request_id, jpeg, handler = job
            try:
                result = handler(jpeg)
                if not isinstance(result, dict):
                    raise TypeError(f"the forensics handler returned {type(result).__name__}, not a dict")
            except Exception as exc:
                log.exception("check_image handler failed")
                self._reply(route, "check_image_result", request_id, "error", error=f"check failed: {exc}",
                            result=None)
                continue
            try:
                self._reply(route, "check_image_result", request_id, "ok", result=result)
            except Exception:
                log.exception("check_image reply failed")
