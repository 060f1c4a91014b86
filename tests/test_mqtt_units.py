"""Pure parts of edge_app.hub: topic validation, configuration, discovery, schemas. No broker."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, strategies as st

from ha_templates import render

from edge_app.config import Config, ConfigError, MqttConfig
from edge_app.hub.events import DECISIONS, DecisionEvent
from edge_app.device.board import read_cpu_temp_c, read_serial_number
from edge_app.hub.credentials import read_password
from edge_app.hub.discovery import discovery_configs, node_id, retired_discovery_topics
from edge_app.hub.overrides import add_cli_arguments, apply_cli_overrides
from edge_app.hub.payloads import dumps
from edge_app.hub.publisher import MqttPublisher
from edge_app.hub.topics import build_topics, topics_for, validate_topic

SCHEMAS = Path(__file__).resolve().parents[1] / "edge_app" / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


# -- topics ------------------------------------------------------------------------------------

def test_default_topics_live_under_edge_app_device_id():
    t = topics_for(MqttConfig(), "door1")
    assert t.base == "edge_app/door1"
    assert (t.availability, t.events, t.state, t.health) == (
        "edge_app/door1/availability", "edge_app/door1/events", "edge_app/door1/state", "edge_app/door1/health")
    assert (t.cmd_verify, t.verify_result) == ("edge_app/door1/cmd/verify", "edge_app/door1/verify/result")
    assert (t.cmd_check_image, t.check_image_result) == ("edge_app/door1/cmd/check_image",
                                                         "edge_app/door1/check_image/result")
    assert t.ha_status == "homeassistant/status"
    assert topics_for(MqttConfig(discovery=False), "door1").ha_status is None


def test_configured_base_topic_wins():
    assert topics_for(MqttConfig(base_topic="site/lobby/door"), "door1").events == "site/lobby/door/events"


@pytest.mark.parametrize("key, cfg, device, fragment", [
    ("mqtt.base_topic", MqttConfig(base_topic="site/+/door"), "d", "wildcards"),
    ("mqtt.base_topic", MqttConfig(base_topic="site/#"), "d", "wildcards"),
    ("mqtt.base_topic", MqttConfig(base_topic="/site/door"), "d", "start or end with /"),
    ("mqtt.base_topic", MqttConfig(base_topic="site/door/"), "d", "start or end with /"),
    ("mqtt.base_topic", MqttConfig(base_topic="site//door"), "d", "empty level"),
    ("mqtt.base_topic", MqttConfig(base_topic="site/do\x00or"), "d", "NUL"),
    ("mqtt.base_topic", MqttConfig(base_topic="$SYS/door"), "d", "reserved"),
    ("device_id", MqttConfig(), "door/1", "single topic level"),
    ("device_id", MqttConfig(), "door+1", "wildcards"),
    ("device_id", MqttConfig(), "", "empty"),
    ("mqtt.discovery_prefix", MqttConfig(discovery_prefix="home/#"), "d", "wildcards"),
    ("mqtt.discovery_prefix", MqttConfig(discovery_prefix=""), "d", "empty"),
])
def test_bad_topics_name_the_config_key(key, cfg, device, fragment):
    with pytest.raises(ConfigError) as err:
        topics_for(cfg, device)
    assert str(err.value).startswith(key) and fragment in str(err.value)


def test_bad_topic_stops_the_publisher_before_anything_happens(tmp_path):
    with pytest.raises(ConfigError, match=r"^mqtt.base_topic \(or --base-topic\): 'a/\+' is not a valid MQTT topic"):
        MqttPublisher(MqttConfig(base_topic="a/+"), "door1", tmp_path)
    assert not (tmp_path / "spool.sqlite3").exists()


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="/+#\x00$", blacklist_categories=("Cs",)),
                        min_size=1, max_size=8), min_size=1, max_size=5))
def test_any_levels_without_forbidden_characters_are_valid(levels):
    topic = "/".join(levels)
    assert validate_topic(topic, "k") == topic


@given(st.text(max_size=30))
def test_validate_topic_accepts_or_raises_config_error(text):
    try:
        validate_topic(text, "k")
    except ConfigError as exc:
        assert str(exc).startswith("k")
    else:
        assert text and not ({"+", "#", "\x00"} & set(text)) and "//" not in text


def test_node_id_is_safe_for_home_assistant():
    assert node_id("door 1/lobby.é") == "door_1_lobby__"
    assert node_id("Door-1_a") == "Door-1_a"


# -- command line ------------------------------------------------------------------------------

def test_cli_overrides_win_over_the_config_file():
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    cfg = Config(device_id="from-file")
    cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.base_topic = "file-host", 1883, "file/base"
    args = parser.parse_args(["--mqtt-host", "cli-host", "--mqtt-port", "8883", "--base-topic", "cli/base",
                              "--device-id", "cli-dev", "--client-id", "cli-client"])
    apply_cli_overrides(cfg, args)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.base_topic, cfg.device_id, cfg.mqtt.client_id) == (
        "cli-host", 8883, "cli/base", "cli-dev", "cli-client")


def test_cli_flags_not_given_leave_the_config_alone():
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    cfg = Config(device_id="from-file")
    cfg.mqtt.host = "file-host"
    apply_cli_overrides(cfg, parser.parse_args([]))
    assert (cfg.device_id, cfg.mqtt.host, cfg.mqtt.port) == ("from-file", "file-host", 1883)
    apply_cli_overrides(cfg, argparse.Namespace())  # a parser without these flags at all


@pytest.mark.parametrize("argv, fragment", [
    (["--mqtt-port", "0"], "mqtt.port (or --mqtt-port): 0 is not a TCP port"),
    (["--base-topic", "a/#"], "mqtt.base_topic (or --base-topic)"),
    (["--mqtt-host", ""], "mqtt.host (or --mqtt-host): empty host name"),
])
def test_bad_cli_values_are_config_errors(argv, fragment):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    with pytest.raises(ConfigError) as err:
        apply_cli_overrides(Config(), parser.parse_args(argv))
    assert fragment in str(err.value)


# -- secrets -----------------------------------------------------------------------------------

def test_password_from_file_or_environment(tmp_path, monkeypatch, caplog):
    f = tmp_path / "pw"
    f.write_text("file-secret\n")
    f.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert read_password(MqttConfig(username="u", password_file=str(f))) == "file-secret"
    assert "readable by other users" in caplog.text and "file-secret" not in caplog.text
    monkeypatch.setenv("EDGE_PW", "env-secret")
    assert read_password(MqttConfig(username="u", password_env="EDGE_PW")) == "env-secret"
    assert read_password(MqttConfig()) is None


@pytest.mark.parametrize("cfg, fragment", [
    (MqttConfig(username="u", password_file="/nonexistent/pw"), "mqtt.password_file: /nonexistent/pw: file not found"),
    (MqttConfig(username="u", password_env="EDGE_PW_UNSET_FOR_TEST"), "mqtt.password_env: environment variable EDGE_PW_UNSET_FOR_TEST is not set"),
    (MqttConfig(password_env="EDGE_PW"), "mqtt.username: a password is configured but no user name"),
    (MqttConfig(username="u", password_env="EDGE_PW", password_file="/x"), "set one of them, not both"),
])
def test_password_errors_name_the_key_never_the_secret(cfg, fragment, monkeypatch):
    monkeypatch.setenv("EDGE_PW", "env-secret")
    monkeypatch.delenv("EDGE_PW_UNSET_FOR_TEST", raising=False)
    with pytest.raises(ConfigError) as err:
        read_password(cfg)
    assert fragment in str(err.value) and "env-secret" not in str(err.value)


def test_empty_password_file_is_an_error(tmp_path):
    f = tmp_path / "pw"
    f.write_text("\n")
    with pytest.raises(ConfigError, match="the file is empty"):
        read_password(MqttConfig(username="u", password_file=str(f)))


@pytest.mark.parametrize("overrides, fragment", [
    ({"tls": True, "ca_file": "/nonexistent/ca.crt"}, "mqtt.ca_file: /nonexistent/ca.crt: file not found"),
    ({"tls": True, "cert_file": "/nonexistent/c.crt"}, "mqtt.cert_file: /nonexistent/c.crt: file not found"),
    ({"reconnect_min_s": 0.0}, "mqtt.reconnect_min_s"),
    ({"reconnect_min_s": 10.0, "reconnect_max_s": 1.0}, "mqtt.reconnect_min_s"),
    ({"keepalive_s": 1}, "mqtt.keepalive_s"),
    ({"spool_max_events": 0}, "mqtt.spool_max_events"),
])
def test_bad_connection_settings_name_the_key(tmp_path, overrides, fragment):
    cfg = MqttConfig(**overrides)
    with pytest.raises(ConfigError) as err:
        MqttPublisher(cfg, "door1", tmp_path)
    assert fragment in str(err.value)


def test_a_ca_file_that_is_not_a_certificate_is_named(tmp_path):
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^mqtt.ca_file: .*not a usable CA certificate"):
        MqttPublisher(MqttConfig(tls=True, ca_file=str(bad)), "door1", tmp_path)


# -- discovery ---------------------------------------------------------------------------------

def by_object(configs: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    return {topic.split("/")[3]: (topic.split("/")[1], cfg) for topic, cfg in configs.items()}


def test_discovery_configs_cover_decision_event_verify_alarms_and_health():
    topics = build_topics("edge_app/door1", "homeassistant")
    configs = discovery_configs(topics, "door1", health_interval_s=30, models={"liveness_cnn": "1.0.0"})
    by_obj = by_object(configs)
    assert set(by_obj) == {"decision", "decision_event", "verify", "score", "live", "attack", "fps", "latency",
                           "spool_depth", "spool_dropped", "last_restart", "cpu_temperature"}
    assert by_obj["live"][0] == by_obj["attack"][0] == "binary_sensor"
    assert by_obj["decision_event"][0] == "event" and by_obj["verify"][0] == "button"
    for component, cfg in by_obj.values():
        assert cfg["availability_topic"] == "edge_app/door1/availability"
        if component == "button":
            assert cfg["command_topic"] == "edge_app/door1/cmd/verify"
        else:
            assert cfg["state_topic"] in ("edge_app/door1/state", "edge_app/door1/events", "edge_app/door1/health")
        assert cfg["device"]["identifiers"] == ["edge_app_door1"]
        assert cfg["unique_id"].startswith("edge_app_door1_")
    assert by_obj["fps"][1]["expire_after"] == 90
    assert discovery_configs(build_topics("b", None), "door1") == {}


def test_entity_names_are_short_and_the_device_is_named_by_its_id():
    """has_entity_name style: Home Assistant shows "door1 Live person", never the software name twice."""
    configs = discovery_configs(build_topics("edge_app/door1", "homeassistant"), "door1")
    for cfg in configs.values():
        assert cfg["device"]["name"] == "door1"
        assert not cfg["name"].lower().startswith(("edge_app", "door1")), cfg["name"]
    names = [cfg["name"] for cfg in configs.values()]
    assert len(set(names)) == len(names)


def test_fps_has_no_unit_home_assistant_does_not_know():
    fps = by_object(discovery_configs(build_topics("b", "homeassistant"), "door1"))["fps"][1]
    assert "unit_of_measurement" not in fps and "device_class" not in fps
    assert fps["state_class"] == "measurement"


def test_attributes_stay_small_and_stable():
    """Nothing per decision (event id, timestamp, seq, timing, box) in a sensor's attributes: the
    recorder would store a new attribute set about once a second."""
    configs = by_object(discovery_configs(build_topics("edge_app/door1", "homeassistant"), "door1"))
    with_attributes = {obj for obj, (_, cfg) in configs.items() if "json_attributes_topic" in cfg}
    assert with_attributes == {"decision"}
    decision = configs["decision"][1]
    event = DecisionEvent(decision="live", device_id="door1", seq=7, score=0.93, scores={"liveness_cnn": 0.93},
                          threshold=0.5, models={"liveness_cnn": "1.0.0"}, box=[1, 2, 3, 4], frames=5,
                          timing_ms={"total": 9.0}).to_dict()
    attributes = json.loads(render(decision["json_attributes_template"], dumps(event)))
    assert attributes == {"threshold": 0.5, "models": {"liveness_cnn": "1.0.0"}}
    later = dict(event, event_id="other", seq=8, timestamp="2026-01-01T00:00:00.000+00:00", score=0.97,
                 box=[5, 6, 7, 8], timing_ms={"total": 11.0})
    assert json.loads(render(decision["json_attributes_template"], dumps(later))) == attributes


@pytest.mark.parametrize("decision", DECISIONS)
def test_event_entity_template_makes_a_home_assistant_event_of_every_decision(decision):
    event_cfg = by_object(discovery_configs(build_topics("edge_app/door1", "homeassistant"), "door1"))["decision_event"][1]
    assert event_cfg["event_types"] == list(DECISIONS)
    event = DecisionEvent(decision=decision, device_id="door1", seq=7, score=0.93 if decision == "live" else None,
                          threshold=0.5, frames=5, track_id=3, reason="" if decision == "live" else "why").to_dict()
    data = json.loads(render(event_cfg["value_template"], dumps(event)))
    assert data == {"event_type": decision, "score": event["score"], "reason": event["reason"], "track_id": 3,
                    "frames": 5, "event_id": event["event_id"], "decided_at": event["timestamp"]}


def test_health_templates_read_a_report_and_last_restart_is_a_timestamp():
    configs = by_object(discovery_configs(build_topics("edge_app/door1", "homeassistant"), "door1"))
    report = dumps({"schema": 1, "device_id": "door1", "timestamp": "2026-05-11T08:15:02.417+00:00", "fps": 14.8,
                    "stage_ms": {"capture_to_decision": {"p50": 9.9, "p95": 14.2}}, "spool_depth": 2,
                    "spool_dropped": 0, "events_sent": 5, "started_at": "2026-05-11T08:00:00.000+00:00",
                    "uptime_s": 902.4, "cpu_temp_c": 51.2})
    got = {obj: render(cfg["value_template"], report) for obj, (_, cfg) in configs.items()
           if cfg.get("state_topic") == "edge_app/door1/health"}
    assert got == {"fps": "14.8", "latency": "14.2", "spool_depth": "2", "spool_dropped": "0",
                   "last_restart": "2026-05-11T08:00:00.000+00:00", "cpu_temperature": "51.2"}
    assert configs["last_restart"][1]["device_class"] == "timestamp"
    assert "expire_after" not in configs["last_restart"][1]  # the restart time does not go stale
    # a fresh report made on connect, before the pipeline's first figures: unknown, not an error
    bare = dumps({"schema": 1, "spool_depth": 0, "started_at": "2026-05-11T08:00:00.000+00:00"})
    assert render(configs["fps"][1]["value_template"], bare) == "None"
    assert render(configs["latency"][1]["value_template"], bare) == "None"


def test_device_details_come_from_the_configuration(tmp_path):
    cfg = MqttConfig(discovery_area="Front door", discovery_configuration_url="http://door1.local/",
                     discovery_support_url="https://example.org/edge_app/issues")
    pub = MqttPublisher(cfg, "door1", tmp_path)
    try:
        configs = list(pub._discovery.values())
        assert all(c["device"]["suggested_area"] == "Front door" for c in configs)
        assert all(c["device"]["configuration_url"] == "http://door1.local/" for c in configs)
        assert all(c["origin"]["support_url"] == "https://example.org/edge_app/issues" for c in configs)
    finally:
        pub.stop()
    bare = discovery_configs(build_topics("b", "homeassistant"), "door1")
    device = next(iter(bare.values()))["device"]
    assert not {"suggested_area", "configuration_url", "serial_number"} & set(device)


@pytest.mark.parametrize("key", ["discovery_configuration_url", "discovery_support_url"])
@pytest.mark.parametrize("url", ["door1.local", "ftp://x/y", "http://", "http://a b/"])
def test_a_url_home_assistant_would_reject_is_a_config_error_naming_the_key(tmp_path, key, url):
    with pytest.raises(ConfigError, match=f"mqtt.{key}: .* is not an http:// or https:// URL"):
        MqttPublisher(MqttConfig(**{key: url}), "door1", tmp_path)


def test_serial_number_from_the_device_tree_or_cpuinfo(tmp_path):
    tree = tmp_path / "serial-number"
    tree.write_bytes(b"10000000a1b2c3d4\x00")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 00000000deadbeef\nModel\t: Pi\n")
    missing = str(tmp_path / "nope")
    assert read_serial_number((str(tree), str(cpuinfo))) == "10000000a1b2c3d4"
    assert read_serial_number((missing, str(cpuinfo))) == "00000000deadbeef"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: x86\n")  # a PC: no serial line
    assert read_serial_number((missing, str(cpuinfo))) is None
    tree.write_bytes(b"0000000000000000\x00")  # an unset serial is no serial
    assert read_serial_number((str(tree),)) is None


def test_retired_uptime_sensor_is_cleared():
    topics = build_topics("edge_app/door1", "homeassistant")
    assert retired_discovery_topics(topics, "door1") == ["homeassistant/sensor/door1/uptime/config"]
    assert not set(retired_discovery_topics(topics, "door1")) & set(discovery_configs(topics, "door1"))
    assert retired_discovery_topics(build_topics("b", None), "door1") == []


def test_discovery_topics_are_valid_for_odd_device_ids():
    topics = build_topics("site/door", "homeassistant")
    for topic in discovery_configs(topics, "Door 1.lobby"):
        validate_topic(topic, "discovery")
        assert topic.split("/")[2] == "Door_1_lobby"


# -- payloads and schemas ----------------------------------------------------------------------

def test_cpu_temperature_reads_millidegrees(tmp_path):
    f = tmp_path / "temp"
    f.write_text("48312\n")
    assert read_cpu_temp_c(str(f)) == 48.3
    assert read_cpu_temp_c(str(tmp_path / "missing")) is None
    f.write_text("garbage")
    assert read_cpu_temp_c(str(f)) is None


def test_non_finite_numbers_become_null():
    doc = json.loads(dumps({"score": math.nan, "scores": {"a": math.inf}, "box": [1, 2, 3, 4]}))
    assert doc == {"score": None, "scores": {"a": None}, "box": [1, 2, 3, 4]}


def test_every_decision_event_matches_the_schema():
    validator = jsonschema.Draft202012Validator(schema("event"), format_checker=jsonschema.FormatChecker())
    live = DecisionEvent(decision="live", device_id="d", seq=1, score=0.9, threshold=0.5, frames=5,
                         scores={"cnn": 0.9}, models={"cnn": "1"}, box=[1, 2, 3, 4], track_id=3, frame_seq=9,
                         timing_ms={"total": 3.0})
    validator.validate(live.to_dict())
    for decision in ("attack", "uncertain", "no_face", "error"):
        validator.validate(DecisionEvent(decision=decision, device_id="d", seq=2, reason="r").to_dict())


@pytest.mark.parametrize("change", [
    {"decision": "maybe"},
    {"event_id": ""},
    {"seq": -1},
    {"score": 1.5},
    {"box": [1, 2, 3]},
    {"timestamp": "2026-01-01 10:00"},
    {"unexpected": 1},
    {"score": None},  # live without a score: the schema fails it closed
    {"frames": 0},  # live aggregated from no frame
])
def test_schema_rejects_malformed_events(change):
    event = DecisionEvent(decision="live", device_id="d", seq=1, score=0.9, threshold=0.5, frames=5).to_dict()
    event.update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema("event"), format_checker=jsonschema.FormatChecker())


def test_schemas_are_valid_json_schemas():
    for name in ("event", "health", "reply"):
        jsonschema.Draft202012Validator.check_schema(schema(name))
