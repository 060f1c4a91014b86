"""examples/door_controller.py: opens only on a fresh live answer to its own request."""

from __future__ import annotations

import importlib.util
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from broker import broker, mosquitto  # noqa: F401  (fixtures)
from edge_app.config import MqttConfig
from edge_app.hub.events import DecisionEvent
from edge_app.hub.publisher import MqttPublisher

REPO = Path(__file__).resolve().parents[1]


def load_controller():
    spec = importlib.util.spec_from_file_location("door_controller", REPO / "examples" / "door_controller.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dc = load_controller()
NOW = 1_800_000_000.0


def stamp(age_s: float) -> str:
    return datetime.fromtimestamp(NOW - age_s, timezone.utc).isoformat(timespec="milliseconds")


def reply(request_id="r1", status="ok", age_s=0.3, **event_fields) -> dict:
    event = DecisionEvent(decision="live", device_id="door1", seq=7, score=0.91, threshold=0.5, frames=5,
                          timestamp=stamp(age_s)).to_dict()
    event.update(event_fields)
    return {"schema": 1, "type": "verify_result", "request_id": request_id, "device_id": "door1",
            "timestamp": stamp(0), "status": status, "error": None if status == "ok" else "x", "event": event}


def test_opens_on_a_fresh_live_answer_to_this_request():
    assert dc.should_open(reply(), "r1", NOW)
    assert dc.should_open(reply(age_s=-0.5), "r1", NOW)  # small clock skew is tolerated
    assert dc.should_open(reply(), "r1", NOW, device_id="door1")


@pytest.mark.parametrize("bad, why", [
    (reply(request_id="r0"), "another request"),
    (reply(request_id=None), "no request id"),
    (reply(status="error"), "device error"),
    (reply(decision="attack", score=0.1), "attack"),
    (reply(decision="uncertain"), "uncertain"),
    (reply(decision="no_face", score=None), "no face"),
    (reply(decision="error"), "error"),
    (reply(age_s=5.0), "stale"),
    (reply(age_s=-30.0), "from the future"),
    (reply(score=None), "live without a score"),
    (reply(score=0.4), "score below threshold"),
    (reply(score=float("nan")), "NaN score"),
    (reply(score=True, threshold=False), "booleans are not scores"),
    (reply(timestamp="yesterday"), "bad timestamp"),
    (reply(timestamp="2027-01-15T08:00:00"), "timestamp without offset"),
    ({**reply(), "event": None}, "no event"),
    ({**reply(), "status": None}, "no status"),
    ({"request_id": "r1", "status": "ok", "event": "live"}, "event is a string"),
    ([], "not an object"),
    (None, "nothing"),
    ("live", "a bare string"),
])
def test_fails_closed(bad, why):
    assert not dc.should_open(bad, "r1", NOW), why
    opened, reason = dc.decide(bad, "r1", NOW)
    assert not opened and reason


def test_other_device_is_refused():
    assert not dc.should_open(reply(), "r1", NOW, device_id="door2")


@pytest.fixture
def terminal(broker, tmp_path):
    cfg = MqttConfig(host=broker.host, port=broker.port, protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.3)
    pub = MqttPublisher(cfg, "door1", tmp_path / "state")
    pub.start()
    assert pub.wait_connected(5)
    yield pub
    pub.stop(1.0)


def current(decision="live", age_s=0.0) -> dict:
    when = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    fields = {"score": 0.9, "threshold": 0.5, "frames": 5} if decision == "live" else {"score": 0.1, "threshold": 0.5}
    return DecisionEvent(decision=decision, device_id="door1", seq=1, timestamp=when.isoformat(), **fields).to_dict()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_round_trip_through_the_broker(broker, terminal, protocol):
    opened = []
    controller = dc.DoorController(broker.host, broker.port, "edge_app/door1", protocol=protocol, timeout_s=3,
                                   device_id="door1", actuator=lambda: opened.append(time.time()))
    assert controller.start()
    try:
        terminal.set_verify_handler(lambda: current("live"))
        assert controller.request_and_act() and len(opened) == 1

        terminal.set_verify_handler(lambda: current("live", age_s=10))
        ok, why = controller.verify()
        assert not ok and "stale" in why

        terminal.set_verify_handler(lambda: current("attack"))
        assert not controller.request_and_act() and len(opened) == 1

        terminal.set_verify_handler(None)  # the device has no decision source: an error answer
        ok, why = controller.verify()
        assert not ok and "error" in why
    finally:
        controller.stop()


def test_no_answer_keeps_the_door_shut(broker):
    controller = dc.DoorController(broker.host, broker.port, "edge_app/nobody-here", timeout_s=0.3,
                                   actuator=lambda: pytest.fail("opened without an answer"))
    assert controller.start()
    try:
        ok, why = controller.verify()
        assert not ok and "no answer" in why
    finally:
        controller.stop()


def test_mqtt5_controller_and_mqtt311_device(broker, tmp_path):
    cfg = MqttConfig(host=broker.host, port=broker.port, protocol="3.1.1", reconnect_min_s=0.05, reconnect_max_s=0.3)
    pub = MqttPublisher(cfg, "door1", tmp_path / "state")
    pub.set_verify_handler(lambda: current("live"))
    pub.start()
    controller = dc.DoorController(broker.host, broker.port, "edge_app/door1", protocol="5", timeout_s=3)
    try:
        assert pub.wait_connected(5) and controller.start()
        ok, why = controller.verify()
        assert ok, why
    finally:
        controller.stop()
        pub.stop(1.0)
