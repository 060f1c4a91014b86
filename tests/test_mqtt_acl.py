"""The shipped examples/mosquitto configuration and ACL, on a real broker: a device writes only
its own topics, the hub reads them and sends commands, and nobody writes another device's topics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from broker import Subscriber, free_ports, make_passwd, mosquitto, tls_files  # noqa: F401  (fixtures)
from edge_app.config import MqttConfig
from edge_app.hub.publisher import MqttPublisher

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "mosquitto"


def example_conf(tmp_path: Path, tls_files, plain_port: int) -> str:
    passwd = make_passwd(tmp_path / "passwd", {"door1": "pw-door1", "door2": "pw-door2", "hub": "pw-hub"})
    text = (EXAMPLES / "mosquitto.conf").read_text()
    for old, new in (("/etc/mosquitto/passwd", str(passwd)),
                     ("/etc/mosquitto/edge_app.acl", str(EXAMPLES / "edge_app.acl")),
                     ("/etc/mosquitto/certs/ca.crt", str(tls_files.ca)),
                     ("/etc/mosquitto/certs/server.crt", str(tls_files.server_cert)),
                     ("/etc/mosquitto/certs/server.key", str(tls_files.server_key)),
                     ("listener 8883\n", "listener {port} 127.0.0.1\n"),
                     ("listener 1883 127.0.0.1\n", f"listener {plain_port} 127.0.0.1\n")):
        assert old in text, f"examples/mosquitto/mosquitto.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def test_example_acl_lets_a_device_write_only_its_own_topics(mosquitto, tls_files, tmp_path):
    # both listeners' ports picked together: two separate picks can return the same port
    tls_port, plain_port = free_ports(2)
    broker = mosquitto(conf=example_conf(tmp_path, tls_files, plain_port), port=tls_port)
    hub = Subscriber(broker, ["edge_app/#", "homeassistant/#"], protocol="5", tls=tls_files,
                     username="hub", password="pw-hub").start()
    (tmp_path / "pw").write_text("pw-door1")
    (tmp_path / "pw").chmod(0o600)
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, protocol="5", tls=True, ca_file=str(tls_files.ca),
                     username="door1", password_file=str(tmp_path / "pw"), reconnect_min_s=0.05, reconnect_max_s=0.3)
    pub = MqttPublisher(cfg, "door1", tmp_path / "state")
    pub.set_verify_handler(lambda: {"decision": "no_face"})
    pub.start()
    try:
        assert pub.wait_connected(5), broker.log()
        event = {"event_id": "a" * 32, "seq": pub.next_seq(), "decision": "no_face", "device_id": "door1"}
        pub.publish_event(event)
        pub.publish_health({"fps": 10.0})
        hub.publish("edge_app/door1/cmd/verify", json.dumps({"request_id": "q1"}), qos=1)
        hub.wait_for(lambda ms: {"edge_app/door1/events", "edge_app/door1/state", "edge_app/door1/health",
                                 "edge_app/door1/availability", "edge_app/door1/verify/result"}
                     <= {m.topic for m in ms}
                     and any(m.topic.startswith("homeassistant/") for m in ms), what="door1's topics at the hub")
        hub.wait_for(lambda ms: pub.spool_depth() == 0, what="door1's event acknowledged")

        # door2 has valid credentials but must not speak for door1
        intruder = Subscriber(broker, ["edge_app/door2/cmd/#"], protocol="5", tls=tls_files,
                              username="door2", password="pw-door2").start()
        info = intruder.publish("edge_app/door1/events", b'{"decision":"live"}', qos=1)
        info.wait_for_publish(5)
        own = intruder.publish("edge_app/door2/events", b'{"decision":"no_face"}', qos=1)
        own.wait_for_publish(5)
        hub.wait_for(lambda ms: any(m.topic == "edge_app/door2/events" for m in ms), what="door2's own event")
        forged = [m for m in hub.messages("edge_app/door1/events") if b'"live"' in m.payload]
        assert forged == []
        intruder.stop()
    finally:
        pub.stop(1.0)
        hub.stop()


def test_events_the_broker_refuses_are_counted_as_dropped_not_retried_forever(mosquitto, tmp_path, caplog,
                                                                               monkeypatch):
    # an ACL that forgot the events topic: MQTT 5 PUBACKs say "Not authorized"
    acl = "pattern write edge_app/%u/availability\npattern write edge_app/%u/state\npattern read edge_app/%u/cmd/#\n"
    broker = mosquitto(users={"door1": "pw"}, acl=acl)
    caplog.set_level(logging.INFO, logger="edge_app")
    monkeypatch.setenv("EDGE_ACL_PW", "pw")
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, protocol="5", username="door1", password_env="EDGE_ACL_PW",
                     discovery=False, reconnect_min_s=0.05, reconnect_max_s=0.3)
    pub = MqttPublisher(cfg, "door1", tmp_path / "state")
    pub.start()
    try:
        assert pub.wait_connected(10), broker.log()
        for i in range(3):
            pub.publish_event({"event_id": f"{i:032x}", "seq": pub.next_seq(), "decision": "no_face"})
        deadline = time.monotonic() + 10
        while pub.spool.dropped() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (pub.spool.dropped(), pub.spool_depth()) == (3, 0), caplog.text + broker.log()
        assert "the broker refused them: Not authorized (check the ACL for edge_app/door1/events)" in caplog.text
    finally:
        pub.stop(1.0)
