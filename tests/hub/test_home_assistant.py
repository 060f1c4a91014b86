"""edge_app against a real Home Assistant core: opt-in (`make test-hub`), never in `make test`.

One scenario, in order: Home Assistant starts on loopback, MQTT is set up through its config
flow, `edge-app run` plays the built-in sample against a test Mosquitto, and everything is
checked through Home Assistant's REST API: the entities and their device, the states, an event
per decision, `unavailable` on a clean stop and on a kill, discovery after a Home Assistant
restart, and a log without MQTT warnings. The steps share one Home Assistant, so they run in
file order; a failed step usually fails the ones after it.
"""

from __future__ import annotations

import collections
import re
import signal
import time
from datetime import datetime, timezone

import pytest

from broker import Broker, Subscriber, free_ports
from home_assistant import DECISIONS, EdgeApp, HomeAssistant, wait_until

ENTITIES = {  # entity id -> friendly name: the device name, then the entity's own
    "sensor.door1_decision": "door1 Decision",
    "event.door1_decision_event": "door1 Decision event",
    "button.door1_verify_now": "door1 Verify now",
    "sensor.door1_liveness_score": "door1 Liveness score",
    "binary_sensor.door1_live_person": "door1 Live person",
    "binary_sensor.door1_presentation_attack": "door1 Presentation attack",
    "sensor.door1_frames_per_second": "door1 Frames per second",
    "sensor.door1_decision_latency_p95": "door1 Decision latency p95",
    "sensor.door1_undelivered_events": "door1 Undelivered events",
    "sensor.door1_dropped_events": "door1 Dropped events",
    "sensor.door1_last_restart": "door1 Last restart",
    "sensor.door1_cpu_temperature": "door1 CPU temperature",
}
TIMES: dict[str, float] = {}
SEEN: dict[str, object] = {}  # what one step leaves for a later one


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("hub")
    broker_port, ha_port = free_ports(2)
    broker = Broker(work / "mosquitto", port=broker_port).start()
    ha = HomeAssistant(work / "config", ha_port)
    device = EdgeApp(work / "device", broker_port)
    events = Subscriber(broker, ["edge_app/door1/events"], client_id="hub-test-events", clean=False).start()
    discovery = Subscriber(broker, ["homeassistant/#"]).start()
    try:
        TIMES["first start of Home Assistant"] = ha.start()
        ha.onboard()
        wait_until("Home Assistant to finish starting", lambda: ha.get("/api/config").get("state") == "RUNNING", 120)
        t0 = time.monotonic()
        ha.setup_mqtt(broker.port)
        TIMES["MQTT config flow"] = time.monotonic() - t0
        yield ha, device, broker, events, discovery
    finally:
        device.stop(signal.SIGKILL)
        ha.stop()
        events.stop()
        discovery.stop()
        broker.stop()
        print("\nhub test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items())
              + f"; decisions counted one by one: {SEEN.get('decisions counted')}")
        print(f"Home Assistant config and log: {ha.dir}")


def seen_events(events: Subscriber) -> dict[str, list[str]]:
    """event ids per decision, each once (QoS 1 may deliver twice)."""
    by_decision: dict[str, list[str]] = collections.defaultdict(list)
    seen = set()
    for m in events.messages():
        event = m.json()
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            by_decision[event["decision"]].append(event["event_id"])
    return by_decision


def counters(ha: HomeAssistant, kind: str) -> dict[str, int]:
    return {d: int(float(ha.state(f"counter.{kind}_{d}")["state"])) for d in DECISIONS}


def available(ha: HomeAssistant) -> bool:
    states = ha.states()
    return all(e in states and states[e]["state"] != "unavailable" for e in ENTITIES)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_entities_appear_on_one_device_with_short_names(hub):
    ha, device, *_ = hub
    t0 = time.monotonic()
    device.start()
    wait_until("all edge_app entities, available", lambda: available(ha), 60)
    TIMES["device start to all entities available"] = time.monotonic() - t0
    states = ha.states()
    for entity_id, name in ENTITIES.items():
        assert states[entity_id]["attributes"]["friendly_name"] == name
    assert not [e for e in states if "edge_app" in e], "no entity id repeats the software name"
    device_id = ha.template("{{ device_id('sensor.door1_decision') }}")
    assert device_id and device_id != "None"
    on_device = set(ha.template("{{ device_entities('%s') | join(',') }}" % device_id).split(","))
    assert on_device == set(ENTITIES)
    assert ha.template("{{ device_attr('%s', 'name') }}" % device_id) == "door1"
    assert ha.template("{{ device_attr('%s', 'manufacturer') }}" % device_id) == "edge_app"
    assert ha.template("{{ area_name('sensor.door1_decision') }}") == "Front door"  # suggested_area
    assert "fps" not in str(states["sensor.door1_frames_per_second"]["attributes"].get("unit_of_measurement"))


def test_states_follow_the_sample_and_attributes_stay_lean(hub):
    ha, device, broker, events, _ = hub
    # two rounds of the sample: live face, printed photo, nobody
    wait_until("two rounds of the sample", lambda: len(seen_events(events)["no_face"]) >= 2, 60)
    decision = ha.state("sensor.door1_decision")
    assert decision["state"] in DECISIONS
    assert set(decision["attributes"]) == {"threshold", "models", "device_class", "icon", "friendly_name"}
    assert not {k for e in ENTITIES if e.startswith("sensor.") and e != "sensor.door1_decision"
                for k in ha.state(e)["attributes"]} & {"event_id", "seq", "timestamp", "timing_ms", "box", "stage_ms"}
    changes = counters(ha, "state")
    assert changes["live"] >= 2 and changes["attack"] >= 2 and changes["no_face"] >= 2, changes


def test_health_is_fresh_and_last_restart_is_a_timestamp(hub):
    ha, *_ = hub
    restart = parse_time(ha.state("sensor.door1_last_restart")["state"])
    SEEN["last restart"] = restart
    assert abs((datetime.now(timezone.utc) - restart).total_seconds()) < 120
    assert ha.state("sensor.door1_last_restart")["attributes"]["device_class"] == "timestamp"
    fps = wait_until("a frames-per-second figure", lambda: ha.state("sensor.door1_frames_per_second")["state"]
                     not in ("unknown", "unavailable") and ha.state("sensor.door1_frames_per_second")["state"], 20)
    assert float(fps) > 0


def test_unavailable_on_a_clean_stop(hub):
    ha, device, broker, events, _ = hub
    assert device.stop(signal.SIGTERM) == 0
    wait_until("every entity unavailable after a clean stop",
               lambda: all(ha.state(e)["state"] == "unavailable" for e in ENTITIES), 20)
    # Home Assistant subscribes to a newly discovered entity's topics in a batch about a second
    # later: decisions in that first second after the very first announcement fire no event
    first = {d: len(ids) for d, ids in seen_events(events).items()}
    print(f"\nfirst run: decisions published {first}, event automation runs {counters(ha, 'event')}")


def test_an_event_fires_for_every_decision(hub):
    """Counted from a quiet start (device stopped, counters reset), with the entity known to Home Assistant."""
    ha, device, broker, events, _ = hub
    ha.post("/api/services/counter/reset",
            {"entity_id": [f"counter.{kind}_{d}" for kind in ("event", "state") for d in DECISIONS]})
    wait_until("counters reset", lambda: sum(counters(ha, "event").values()) + sum(counters(ha, "state").values()) == 0, 10)
    with events._lock:
        events.received.clear()
    device.start()
    wait_until("two rounds of the sample", lambda: len(seen_events(events)["no_face"]) >= 2, 60)
    assert device.stop(signal.SIGTERM) == 0
    wait_until("every entity unavailable after a clean stop",
               lambda: all(ha.state(e)["state"] == "unavailable" for e in ENTITIES), 20)
    published = {d: len(ids) for d, ids in seen_events(events).items()}
    expected = {d: published.get(d, 0) for d in DECISIONS}
    try:
        wait_until("one automation run per decision", lambda: counters(ha, "event") == expected, 20)
    finally:
        print(f"second run: decisions published {expected}, automation runs on the event entity "
              f"{counters(ha, 'event')}, on Decision state changes {counters(ha, 'state')}")
    assert counters(ha, "event") == expected
    # a state trigger on the Decision sensor sees consecutive equal decisions as one change
    assert sum(counters(ha, "state").values()) < sum(expected.values())
    SEEN["decisions counted"] = sum(expected.values())


def test_unavailable_after_a_kill(hub):
    ha, device, *_ = hub
    before = SEEN["last restart"]
    device.start()
    wait_until("entities available again", lambda: available(ha), 60)
    wait_until("a newer Last restart", lambda: parse_time(ha.state("sensor.door1_last_restart")["state"]) > before, 20)
    device.stop(signal.SIGKILL)  # no goodbye: the broker publishes the last will
    wait_until("every entity unavailable after SIGKILL (last will)",
               lambda: all(ha.state(e)["state"] == "unavailable" for e in ENTITIES), 20)


def test_discovery_after_a_home_assistant_restart(hub):
    ha, device, broker, events, discovery = hub
    device.start()
    wait_until("entities available again", lambda: available(ha), 60)
    ha.stop()
    before = len(discovery.messages())
    TIMES["Home Assistant restart"] = ha.start()
    wait_until("Home Assistant to finish starting", lambda: ha.get("/api/config").get("state") == "RUNNING", 120)
    wait_until("entities available after the restart", lambda: available(ha), 60)
    # the device answers Home Assistant's birth message with its configs (not only the retained copies)
    wait_until("Home Assistant's birth message", lambda: [m.payload for m in discovery.messages()[before:]
                                                          if m.topic == "homeassistant/status"][-1:] == [b"online"], 60)
    wait_until("discovery re-published for the birth message", lambda: len(
        {m.topic for m in discovery.messages()[before:] if m.topic.endswith("/config") and m.payload and not m.retain})
        == len(ENTITIES), 20)
    n = len(seen_events(events)["no_face"])
    wait_until("decisions flowing after the restart", lambda: len(seen_events(events)["no_face"]) > n, 30)
    assert ha.state("sensor.door1_decision")["state"] in DECISIONS
    device.stop(signal.SIGTERM)


def test_no_mqtt_warnings_in_home_assistant_log(hub):
    ha, *_ = hub
    # one file per Home Assistant start: the restart moved the first one to .log.1
    log = "\n".join(path.read_text(errors="replace") for path in sorted(ha.dir.glob("home-assistant.log*")))
    assert log.count("Found new component: event door1 decision_event") >= 1
    assert "Connected to MQTT server" in log
    bad = [line for line in log.splitlines()
           if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line) and re.search(r"mqtt|door1|edge_app", line, re.I)]
    assert not bad, "\n".join(bad)
