"""MqttPublisher against a real Mosquitto on loopback: availability, events, durability, TLS,
authentication, commands and Home Assistant discovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import Broker, Received, Subscriber, TcpProxy, broker, free_port, mosquitto, tls_files  # noqa: F401  (fixtures)
from edge_app.config import MqttConfig
from edge_app.hub.events import DecisionEvent
from edge_app.hub.publisher import MqttPublisher

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "edge_app" / "schemas"
DEVICE = "door1"
BASE = f"edge_app/{DEVICE}"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate(doc: dict, name: str) -> None:
    jsonschema.validate(doc, schema(name), format_checker=jsonschema.FormatChecker())


def make_cfg(broker: Broker, **overrides) -> MqttConfig:
    # short backoff and keepalive so reconnects happen within a test's patience
    cfg = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.05, reconnect_max_s=0.3,
                     keepalive_s=5, health_interval_s=5)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_event(pub: MqttPublisher, decision: str = "live", **kw) -> dict:
    fields = dict(score=0.93, threshold=0.5, scores={"liveness_cnn": 0.93}, models={"liveness_cnn": "1.0.0"},
                  box=[10, 20, 100, 120], track_id=1, frames=5, frame_seq=42, timing_ms={"total": 12.5})
    if decision != "live":
        fields.update(score=0.1 if decision == "attack" else None, scores={}, reason="test")
    fields.update(kw)
    return DecisionEvent(decision=decision, device_id=pub.device_id, seq=pub.next_seq(), **fields).to_dict()


@pytest.fixture
def publishers(tmp_path):
    """Make publishers that are always stopped, even when a test fails."""
    made: list[MqttPublisher] = []

    def make(cfg: MqttConfig, state_dir: Path | None = None, start: bool = True, **kw) -> MqttPublisher:
        pub = MqttPublisher(cfg, DEVICE, state_dir or tmp_path / "state", **kw)
        made.append(pub)
        if start:
            pub.start()
        return pub

    yield make
    for pub in made:
        try:
            pub.stop(timeout=1.0)
        except Exception:
            pass


def ids_in_order(msgs) -> list[str]:
    """De-duplicate by event_id (first arrival wins), as a subscriber would."""
    seen, order = set(), []
    for m in msgs:
        event = m.json()
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            order.append(event)
    return order


# -- events, state, health ---------------------------------------------------------------------

def test_events_arrive_valid_with_retained_state_and_health(broker, publishers):
    sub = Subscriber(broker, [f"{BASE}/#"]).start()
    pub = publishers(make_cfg(broker), models={"liveness_cnn": "1.0.0"})
    assert pub.wait_connected(5)
    sent = [make_event(pub, "live"), make_event(pub, "attack"), make_event(pub, "no_face")]
    for event in sent:
        pub.publish_event(event)
    pub.publish_health({"frames": 300, "failures": 0, "faces": 280, "events": 3, "fps": 14.8,  # Pipeline.stats.summary()
                        "stage_ms": {"detect": {"p50": 3.1, "p95": 4.0},
                                     "capture_to_decision": {"p50": 9.9, "p95": 14.2}}})
    msgs = sub.wait_for(lambda ms: len([m for m in ms if m.topic == f"{BASE}/events"]) == 3
                        and any(m.topic == f"{BASE}/health" for m in ms), what="3 events and a health report")
    events = [m.json() for m in msgs if m.topic == f"{BASE}/events"]
    assert [e["event_id"] for e in events] == [e["event_id"] for e in sent]
    for event in events:
        validate(event, "event")
    assert all(not m.retain for m in msgs if m.topic == f"{BASE}/events")
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    health = [m.json() for m in msgs if m.topic == f"{BASE}/health"][-1]
    validate(health, "health")
    assert health["fps"] == 14.8 and health["device_id"] == DEVICE and health["models"] == {"liveness_cnn": "1.0.0"}
    sub.wait_for(lambda ms: pub.spool_depth() == 0, what="the spool to empty after PUBACKs")

    # a subscriber arriving later finds the latest decision, availability and health retained
    late = Subscriber(broker, [f"{BASE}/state", f"{BASE}/availability", f"{BASE}/health"]).start()
    got = late.wait_for(lambda ms: {m.topic for m in ms} >= {f"{BASE}/state", f"{BASE}/availability", f"{BASE}/health"},
                        what="retained state, availability and health")
    state = [m for m in got if m.topic == f"{BASE}/state"][-1]
    assert state.retain and state.json()["event_id"] == sent[-1]["event_id"]
    assert [m.payload for m in got if m.topic == f"{BASE}/availability"] == [b"online"]
    late.stop()
    sub.stop()


def test_publish_event_never_waits_for_the_network(tmp_path, publishers):
    """A broker that accepts TCP but never answers: publish_event still only spools."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        cfg = MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.3, keepalive_s=5)
        pub = publishers(cfg)
        done = threading.Event()

        def camera_loop():
            for _ in range(50):
                pub.publish_event(make_event(pub, "uncertain"))
            done.set()

        threading.Thread(target=camera_loop, daemon=True).start()
        assert done.wait(20), "publish_event blocked on a broker that never answers"
        assert pub.spool_depth() == 50 and not pub.connected
    finally:
        server.close()


def test_the_spool_commit_runs_on_the_sender_thread_not_the_camera_thread(broker, publishers):
    """An fsync per event (milliseconds on an SD card) must not sit in the frame loop; events are
    still spooled before they are published, and a clean stop spools whatever is queued."""
    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    threads = []
    real = pub.spool.put_many

    def recording(events, state=None):
        threads.append(threading.current_thread().name)
        return real(events, state)

    pub.spool.put_many = recording
    sub = Subscriber(broker, [pub.topics.events]).start()
    try:
        sent = [make_event(pub) for _ in range(20)]
        for event in sent:
            pub.publish_event(event)
        got = sub.wait_for(lambda msgs: len(msgs) >= 20, timeout=10, what="20 events")
    finally:
        sub.stop()
    assert [m.json()["event_id"] for m in got] == [e["event_id"] for e in sent]
    assert threads and set(threads) == {"mqtt-sender"}
    assert sum(1 for _ in threads) <= 20  # batched: at most one commit per event


# -- availability and last will ----------------------------------------------------------------

PUBLISHER_SCRIPT = """
import sys, time
from edge_app.config import MqttConfig
from edge_app.hub.publisher import MqttPublisher
cfg = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.3)
pub = MqttPublisher(cfg, "door1", sys.argv[2])
pub.start()
assert pub.wait_connected(10)
print("ready", flush=True)
time.sleep(60)
"""


def test_availability_online_then_last_will_offline_on_sigkill(broker, tmp_path):
    sub = Subscriber(broker, [f"{BASE}/availability"]).start()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, str(broker.port), str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
        msgs = sub.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"online"], what="online")
        proc.send_signal(signal.SIGKILL)  # no chance to say goodbye: only the will speaks
        proc.wait(5)
        msgs = sub.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"offline"], what="the last will")
        assert [m.payload for m in msgs] == [b"online", b"offline"]
    finally:
        proc.kill()
        proc.wait()
    # the will is retained: a newcomer learns the device is offline
    late = Subscriber(broker, [f"{BASE}/availability"]).start()
    got = late.wait_for(lambda ms: len(ms) == 1, what="retained offline")
    assert got[0].payload == b"offline" and got[0].retain
    late.stop()
    sub.stop()


def test_clean_stop_publishes_offline(broker, publishers):
    sub = Subscriber(broker, [f"{BASE}/availability"]).start()
    pub = publishers(make_cfg(broker, protocol="5"))
    sub.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"online"], what="online")
    pub.stop(timeout=3)
    sub.wait_for(lambda ms: [m.payload for m in ms][-1:] == [b"offline"], what="offline after stop()")
    sub.stop()


# -- durability --------------------------------------------------------------------------------

def test_broker_restart_mid_stream_loses_nothing_and_keeps_order(broker, publishers):
    # A persistent subscriber session (clean_session false, QoS 1) so the broker keeps what
    # arrives while the test subscriber is still reconnecting.
    sub = Subscriber(broker, [f"{BASE}/events"], client_id="hub-persistent", clean=False).start()
    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    sent = []

    def produce(n):
        for _ in range(n):
            event = make_event(pub, "uncertain")
            sent.append(event)
            pub.publish_event(event)
            time.sleep(0.005)

    produce(30)
    broker.stop()  # mid-stream: some events are in flight, some not yet handed to paho
    produce(30)  # the camera goes on while the broker is away
    assert pub.spool_depth() >= 30
    broker.start()
    produce(30)
    got = sub.wait_for(lambda ms: len({m.json()["event_id"] for m in ms}) >= 90, timeout=20,
                       what="all 90 events after the restart")
    events = ids_in_order(got)
    assert [e["event_id"] for e in events] == [e["event_id"] for e in sent]  # exactly once each, in order
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 90
    sub.wait_for(lambda ms: pub.spool_depth() == 0, what="the spool to empty")
    sub.stop()


def test_network_cut_with_events_in_flight_loses_nothing_and_keeps_order(broker, publishers):
    proxy = TcpProxy(broker.port)
    sub = Subscriber(broker, [f"{BASE}/events"]).start()  # the hub stays connected to the broker
    pub = publishers(make_cfg(broker, port=proxy.port))
    assert pub.wait_connected(5)
    sent = []

    def produce(n):
        for _ in range(n):
            event = make_event(pub, "uncertain")
            sent.append(event)
            pub.publish_event(event)

    try:
        produce(150)  # no pause: the cut below catches events handed to paho but not acknowledged
        proxy.cut()
        produce(50)
        sub.wait_for(lambda ms: not pub.connected, what="the device to notice the cut")
        proxy.restore()
        produce(50)
        got = sub.wait_for(lambda ms: len({m.json()["event_id"] for m in ms}) >= 250, timeout=20,
                           what="all 250 events after the cut")
        events = ids_in_order(got)
        assert [e["event_id"] for e in events] == [e["event_id"] for e in sent]
        sub.wait_for(lambda ms: pub.spool_depth() == 0, what="the spool to empty")
    finally:
        proxy.close()
        sub.stop()


def test_spool_survives_a_process_restart(mosquitto, tmp_path, publishers):
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))
    port = port_holder.getsockname()[1]
    port_holder.close()  # nothing listens here yet: the broker is "down"
    cfg = MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.3, keepalive_s=5)
    first = publishers(cfg)
    spooled = [make_event(first, "attack") for _ in range(5)]
    for event in spooled:
        first.publish_event(event)
    assert first.spool_depth() == 5
    first.stop(timeout=0.5)  # the process ends with the broker still down

    broker = mosquitto(port=port)
    sub = Subscriber(broker, [f"{BASE}/events", f"{BASE}/state"]).start()
    second = publishers(make_cfg(broker))  # same state dir, same spool file
    assert second.spool_depth() == 5
    got = sub.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/events")]) >= 5, what="5 spooled events")
    events = ids_in_order([m for m in got if m.topic.endswith("/events")])
    assert [e["event_id"] for e in events] == [e["event_id"] for e in spooled]
    # the retained state of the restarted device is its latest decision, from the spool
    sub.wait_for(lambda ms: any(m.topic.endswith("/state") and m.json()["event_id"] == spooled[-1]["event_id"]
                                for m in ms), what="state restored from the spool")
    assert second.next_seq() > spooled[-1]["seq"]  # seq is monotonic across the restart
    sub.wait_for(lambda ms: second.spool_depth() == 0, what="the spool to empty")
    sub.stop()


# -- security ----------------------------------------------------------------------------------

def test_tls_with_client_certificate_and_password(mosquitto, tls_files, publishers, tmp_path):
    broker = mosquitto(users={"door1": "s3cret-pw", "hub": "hub-pw"}, tls=tls_files, require_certificate=True)
    password_file = tmp_path / "mqtt.pass"
    password_file.write_text("s3cret-pw\n")
    password_file.chmod(0o600)
    cfg = make_cfg(broker, tls=True, ca_file=str(tls_files.ca), cert_file=str(tls_files.client_cert),
                   key_file=str(tls_files.client_key), username="door1", password_file=str(password_file))
    # the hub also needs a client certificate on this listener
    sub = Subscriber(broker, [f"{BASE}/events"], tls=tls_files, client_cert=True, username="hub",
                     password="hub-pw").start()
    pub = publishers(cfg)
    assert pub.wait_connected(5), broker.log()
    event = make_event(pub)
    pub.publish_event(event)
    got = sub.wait_for(lambda ms: len(ms) == 1, what="the event over TLS")
    assert got[0].json()["event_id"] == event["event_id"]
    sub.stop()


def test_tls_rejects_a_broker_the_ca_did_not_sign(mosquitto, tls_files, publishers, tmp_path, caplog):
    from broker import make_tls_files

    other = make_tls_files(tmp_path / "other-ca")
    broker = mosquitto(tls=tls_files)
    pub = publishers(make_cfg(broker, tls=True, ca_file=str(other.ca)))
    pub.publish_event(make_event(pub))
    assert not pub.wait_connected(1.0)
    assert pub.spool_depth() == 1
    assert f"MQTT broker 127.0.0.1:{broker.port} failed TLS verification (" in caplog.text


def test_unreachable_broker_says_why(publishers, caplog):
    cfg = MqttConfig(host="127.0.0.1", port=free_port(),
                     reconnect_min_s=0.05, reconnect_max_s=0.3)
    pub = publishers(cfg)
    deadline = time.monotonic() + 5
    while "cannot be reached" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert f"MQTT broker 127.0.0.1:{cfg.port} cannot be reached (Connection refused); events stay in the spool" in caplog.text


def test_wrong_password_is_a_clear_error_and_the_device_keeps_spooling(mosquitto, publishers, caplog, monkeypatch):
    broker = mosquitto(users={"door1": "right-password"})
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "wrong-password")
    caplog.set_level(logging.DEBUG, logger="edge_app")
    pub = publishers(make_cfg(broker, username="door1", password_env="EDGE_TEST_MQTT_PW"))
    for i in range(5):
        pub.publish_event(make_event(pub, "no_face"))
    deadline = time.monotonic() + 5
    expected = f"MQTT broker 127.0.0.1:{broker.port} refused the connection: bad user name or password"
    while expected not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected in caplog.text
    assert "EDGE_TEST_MQTT_PW" in caplog.text  # the message says where the password came from
    time.sleep(0.5)  # several retries with backoff happen meanwhile
    for i in range(5):
        pub.publish_event(make_event(pub, "no_face"))
    assert pub.spool_depth() == 10 and not pub.connected
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "refused" in r.getMessage()]
    assert len(errors) == 1  # one error line, not one per retry
    assert "wrong-password" not in caplog.text and "right-password" not in caplog.text


# -- commands ----------------------------------------------------------------------------------

def live_now(pub: MqttPublisher) -> dict:
    return make_event(pub, "live")


def test_verify_round_trip_mqtt5_response_topic_and_correlation(broker, publishers):
    pub = publishers(make_cfg(broker, protocol="5"))
    current = make_event(pub, "live")
    pub.set_verify_handler(lambda: current)
    assert pub.wait_connected(5)
    reply_topic = f"{BASE}/verify/result/door-controller"
    sub = Subscriber(broker, [reply_topic, f"{BASE}/verify/result"], protocol="5").start()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_topic
    props.CorrelationData = b"req-0001"
    sub.publish(f"{BASE}/cmd/verify", b"", qos=1, properties=props)
    got = sub.wait_for(lambda ms: len(ms) == 1, what="the verify reply")
    reply = got[0]
    assert reply.topic == reply_topic
    assert reply.properties.CorrelationData == b"req-0001"
    doc = reply.json()
    validate(doc, "reply")
    validate(doc["event"], "event")
    assert doc["status"] == "ok" and doc["request_id"] == "req-0001" and doc["event"]["event_id"] == current["event_id"]

    # malformed body: an error on the same route, with the correlation data, and the device lives on
    props.CorrelationData = b"req-0002"
    sub.publish(f"{BASE}/cmd/verify", b"{not json", qos=1, properties=props)
    got = sub.wait_for(lambda ms: len(ms) == 2, what="the error reply")
    assert got[1].topic == reply_topic and got[1].properties.CorrelationData == b"req-0002"
    doc = got[1].json()
    validate(doc, "reply")
    assert doc["status"] == "error" and "not valid JSON" in doc["error"] and doc["event"] is None
    sub.stop()


def test_verify_round_trip_mqtt311_fallback_topic(broker, publishers):
    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    sub = Subscriber(broker, [f"{BASE}/verify/result"]).start()
    # no handler yet: a clear error, never a live answer
    sub.publish(f"{BASE}/cmd/verify", json.dumps({"request_id": "r1"}), qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 1, what="reply r1")
    assert got[0].json()["status"] == "error" and got[0].json()["request_id"] == "r1"

    current = make_event(pub, "attack")
    pub.set_verify_handler(lambda: current)
    sub.publish(f"{BASE}/cmd/verify", json.dumps({"request_id": "r2"}), qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 2, what="reply r2")
    doc = got[1].json()
    validate(doc, "reply")
    assert doc["request_id"] == "r2" and doc["status"] == "ok" and doc["event"]["decision"] == "attack"

    # malformed commands: each answered with an error, none crash the device
    for payload in (b"[1, 2]", b"\xff\xfe", json.dumps({"request_id": ["x"]}).encode()):
        sub.publish(f"{BASE}/cmd/verify", payload, qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 5, what="three error replies")
    for m in got[2:]:
        validate(m.json(), "reply")
        assert m.json()["status"] == "error"

    def broken():
        raise RuntimeError("camera unplugged")

    pub.set_verify_handler(broken)
    sub.publish(f"{BASE}/cmd/verify", json.dumps({"request_id": "r3"}), qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 6, what="reply r3")
    assert got[5].json()["status"] == "error" and "camera unplugged" in got[5].json()["error"]
    assert pub.connected
    sub.stop()


def test_check_image_not_available_then_pluggable_handler(broker, publishers):
    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    sub = Subscriber(broker, [f"{BASE}/check_image/result"]).start()
    jpeg = (REPO / "edge_app" / "sample" / "live.jpg").read_bytes()
    sub.publish(f"{BASE}/cmd/check_image", jpeg, qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 1, what="not-available reply")
    doc = got[0].json()
    validate(doc, "reply")
    assert doc["status"] == "not_available" and "not available" in doc["error"]

    sub.publish(f"{BASE}/cmd/check_image", b"GIF89a not a jpeg", qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 2, what="malformed reply")
    assert got[1].json()["status"] == "error" and "neither a JPEG" in got[1].json()["error"]

    seen = []
    pub.set_check_image_handler(lambda data: seen.append(len(data)) or {"verdict": "authentic", "score": 0.02})
    import base64
    sub.publish(f"{BASE}/cmd/check_image",
                json.dumps({"request_id": "img-7", "jpeg_base64": base64.b64encode(jpeg).decode()}), qos=1)
    got = sub.wait_for(lambda ms: len(ms) == 3, what="verdict")
    doc = got[2].json()
    validate(doc, "reply")
    assert doc["status"] == "ok" and doc["request_id"] == "img-7" and doc["result"]["verdict"] == "authentic"
    assert seen == [len(jpeg)]
    sub.stop()


# -- Home Assistant discovery ------------------------------------------------------------------

def discovery_by_object(ha: Subscriber, count: int = 12) -> dict[str, Received]:
    msgs = ha.wait_for(lambda ms: len({m.topic for m in ms if m.topic.endswith("/config") and m.payload}) >= count,
                       what="discovery")
    return {m.topic.split("/")[3]: m for m in msgs if m.topic.endswith("/config") and m.payload}


def test_home_assistant_discovery_retained_and_republished_on_birth(broker, publishers):
    # what an earlier version left retained: its Uptime sensor, which this one retires
    seed = Subscriber(broker, ["unused/#"]).start()
    seed.publish("homeassistant/sensor/door1/uptime/config", json.dumps({"name": "Uptime"}), qos=1, retain=True)
    seed.stop()
    pub = publishers(make_cfg(broker, discovery_area="Front door"))
    assert pub.wait_connected(5)
    ha = Subscriber(broker, ["homeassistant/#"]).start()
    configs = discovery_by_object(ha)
    assert all(m.retain for m in configs.values())
    assert set(configs) == {"decision", "decision_event", "verify", "score", "live", "attack", "fps", "latency",
                            "spool_depth", "spool_dropped", "last_restart", "cpu_temperature"}
    decision = configs["decision"].json()
    assert decision["state_topic"] == f"{BASE}/state"
    assert decision["availability_topic"] == f"{BASE}/availability"
    assert decision["device"]["identifiers"] == ["edge_app_door1"]
    assert decision["device"]["name"] == DEVICE and decision["device"]["suggested_area"] == "Front door"
    assert decision["origin"]["name"] == "edge_app"
    assert configs["decision_event"].topic == "homeassistant/event/door1/decision_event/config"
    assert configs["verify"].topic == "homeassistant/button/door1/verify/config"
    unique = [m.json()["unique_id"] for m in configs.values()]
    assert len(set(unique)) == len(unique)
    # the retired sensor's retained config is gone: Home Assistant removes the entity
    assert not [m for m in ha.messages() if m.topic.endswith("/uptime/config") and m.payload]

    before = len(ha.messages())
    ha.publish("homeassistant/status", "online", qos=1)  # Home Assistant restarted
    ha.wait_for(lambda ms: len([m for m in ms[before:] if m.topic.endswith("/config")]) >= len(configs),
                what="discovery re-published after the birth message")
    ha.stop()


def test_event_entity_fires_on_every_decision_and_the_button_asks_for_verify(broker, publishers):
    """What Home Assistant does with the discovery configs, done by hand: subscribe to the event
    entity's topic at its QoS, render its template, press the button."""
    from ha_templates import render

    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    ha = Subscriber(broker, ["homeassistant/#"]).start()
    configs = {obj: m.json() for obj, m in discovery_by_object(ha).items()}
    ha.stop()
    event_cfg, button = configs["decision_event"], configs["verify"]
    entity = Subscriber(broker, [event_cfg["state_topic"]]).start()
    sent = [make_event(pub, d) for d in ("attack", "attack", "attack", "live", "no_face")]
    for event in sent:
        pub.publish_event(event)
    got = entity.wait_for(lambda ms: len(ms) >= len(sent), what="five decisions on the event entity's topic")
    assert not any(m.retain for m in got)  # Home Assistant ignores retained (replayed) event payloads
    fired = [json.loads(render(event_cfg["value_template"], m.payload)) for m in got]
    # three attacks in a row are three events, not one state change
    assert [f["event_type"] for f in fired] == ["attack", "attack", "attack", "live", "no_face"]
    assert all(f["event_type"] in event_cfg["event_types"] for f in fired)
    assert [f["event_id"] for f in fired] == [e["event_id"] for e in sent]
    assert fired[3]["score"] == 0.93 and fired[0]["reason"] == "test"
    entity.stop()

    latest = sent[-1]
    pub.set_verify_handler(lambda: latest)
    replies = Subscriber(broker, [f"{BASE}/verify/result"]).start()
    replies.publish(button["command_topic"], button["payload_press"], qos=button["qos"], retain=button["retain"])
    doc = replies.wait_for(lambda ms: len(ms) == 1, what="the verify answer to a button press")[0].json()
    validate(doc, "reply")
    assert doc["request_id"] == "home-assistant" and doc["status"] == "ok"
    assert doc["event"]["event_id"] == latest["event_id"]
    replies.stop()


def test_a_fresh_health_report_on_every_connect(broker, publishers):
    """The retained report of a previous process must not pass for current: a connect replaces it at once."""
    stale = {"schema": 1, "device_id": DEVICE, "timestamp": "2026-01-01T00:00:00.000+00:00", "fps": 9.0,
             "spool_depth": 0, "spool_dropped": 0, "events_sent": 0, "started_at": "2026-01-01T00:00:00.000+00:00",
             "uptime_s": 90.5, "cpu_temp_c": None}
    seed = Subscriber(broker, ["unused/#"]).start()
    seed.publish(f"{BASE}/health", json.dumps(stale), qos=1, retain=True)
    seed.stop()
    sub = Subscriber(broker, [f"{BASE}/health"]).start()
    sub.wait_for(lambda ms: len(ms) == 1, what="the stale retained report")
    pub = publishers(make_cfg(broker))  # no publish_health call: the connect alone reports
    first = sub.wait_for(lambda ms: len(ms) >= 2, what="a fresh report on connect")[1].json()
    validate(first, "health")
    assert first["started_at"] != stale["started_at"] and first["uptime_s"] < 30
    assert "fps" not in first  # the pipeline has reported nothing yet: unknown, not a stale figure
    started_at = first["started_at"]

    pub.publish_health({"frames": 30, "fps": 14.8})
    sub.wait_for(lambda ms: any(m.json().get("fps") == 14.8 for m in ms), what="the pipeline's report")
    before = len(sub.messages())
    broker.restart()  # retained messages are gone with it; the device reconnects
    again = sub.wait_for(lambda ms: len(ms) > before, timeout=15, what="a fresh report after reconnecting")[-1].json()
    validate(again, "health")
    assert again["started_at"] == started_at  # the same process: Last restart does not move
    assert again["fps"] == 14.8 and again["timestamp"] > first["timestamp"]
    sub.stop()


def test_a_verify_answer_json_cannot_carry_is_an_error_reply(broker, publishers):
    pub = publishers(make_cfg(broker))
    assert pub.wait_connected(5)
    pub.set_verify_handler(lambda: {"decision": "live", "oops": object()})
    sub = Subscriber(broker, [f"{BASE}/verify/result"]).start()
    sub.publish(f"{BASE}/cmd/verify", json.dumps({"request_id": "r9"}), qos=1)
    doc = sub.wait_for(lambda ms: len(ms) == 1, what="reply")[0].json()
    validate(doc, "reply")
    assert doc["status"] == "error" and doc["event"] is None and "cannot be encoded" in doc["error"]
    sub.stop()
