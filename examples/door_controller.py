#!/usr/bin/env python3
"""A door controller for an edge_app terminal: ask for a decision, open only on fresh evidence.

    python examples/door_controller.py --host hub.local --base-topic edge_app/door1 --protocol 5

It sends one request to ``<base>/cmd/verify`` and waits for the answer (MQTT 5: on its own
response topic with correlation data; MQTT 3.1.1: on ``<base>/verify/result``, matched by the
``request_id`` it put in the request). The door opens only when the answer is for this request,
says ``live`` with a score at or above its threshold, and the decision is at most ``--max-age``
seconds old. Anything else -- no answer in time, a stale decision, ``attack``/``uncertain``/
``no_face``/``error``, a malformed reply -- keeps the door shut (fail closed). Exit status: 0 when
the door opened, 1 when it stayed shut.

Needs only paho-mqtt (the controller runs elsewhere, not on the camera device). See docs/mqtt.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("door_controller")

MAX_AGE_S = 2.0  # a decision older than this is not evidence that someone stands at the door now
MAX_SKEW_S = 1.0  # tolerated clock difference when the decision looks like it comes from the future


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def decide(reply, request_id: str, now: float, *, max_age_s: float = MAX_AGE_S, max_skew_s: float = MAX_SKEW_S,
           device_id: str | None = None) -> tuple[bool, str]:
    """(open?, why). ``reply`` is the parsed JSON answer, ``now`` the controller's time.time().

    Every check must pass; any missing, malformed or unexpected field means "stay shut".
    """
    try:
        if not isinstance(reply, dict):
            return False, "reply is not a JSON object"
        if reply.get("request_id") != request_id:
            return False, f"reply is for request {reply.get('request_id')!r}, not {request_id!r}"
        if reply.get("status") != "ok":
            return False, f"device answered {reply.get('status')!r}: {reply.get('error')}"
        event = reply.get("event")
        if not isinstance(event, dict):
            return False, "reply carries no decision event"
        for where in (reply, event):
            if device_id is not None and where.get("device_id") != device_id:
                return False, f"reply comes from device {where.get('device_id')!r}, not {device_id!r}"
        if event.get("decision") != "live":
            return False, f"decision is {event.get('decision')!r} ({event.get('reason') or 'no reason given'})"
        score, threshold = event.get("score"), event.get("threshold")
        if not (_number(score) and _number(threshold)) or score < threshold:
            return False, f"live decision without a score above its threshold (score {score!r}, threshold {threshold!r})"
        stamp = event.get("timestamp")
        if not isinstance(stamp, str):
            return False, "decision has no timestamp"
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            return False, f"decision timestamp {stamp!r} has no UTC offset"
        age = now - when.timestamp()
        if age > max_age_s:
            return False, f"decision is stale ({age:.1f} s old, limit {max_age_s} s)"
        if age < -max_skew_s:
            return False, f"decision is {-age:.1f} s in the future: check the clocks (NTP)"
        return True, f"live, score {score} >= {threshold}, {age:.2f} s old"
    except Exception as exc:  # fail closed on anything unforeseen
        return False, f"malformed reply ({type(exc).__name__}: {exc})"


def should_open(reply, request_id: str, now: float, **limits) -> bool:
    """True only for a fresh ``live`` decision answering exactly this request."""
    return decide(reply, request_id, now, **limits)[0]


def open_door() -> None:
    """The actuator. Replace with the real thing (a relay pulse on a GPIO pin, a lock API ...)."""
    print("OPEN", flush=True)


class DoorController:
    """One MQTT connection; verify() sends a request and waits for its answer."""

    def __init__(self, host: str, port: int, base_topic: str, *, protocol: str = "5", client_id: str = "",
                 username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 tls: bool = False, timeout_s: float = 3.0, max_age_s: float = MAX_AGE_S,
                 device_id: str | None = None, actuator=open_door) -> None:
        self.base_topic = base_topic.rstrip("/")
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.device_id = device_id
        self.actuator = actuator
        self.v5 = protocol == "5"
        self.client_id = client_id or f"door-controller-{uuid.uuid4().hex[:8]}"
        # MQTT 5: answers come to a topic only this controller listens to (under the device's base
        # topic, so the example ACL lets the device write there).
        self.reply_topic = (f"{self.base_topic}/verify/result/{self.client_id}" if self.v5
                            else f"{self.base_topic}/verify/result")
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list]] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if tls or ca_file:
            self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.on_message = self._on_message

    def start(self, timeout: float = 5.0) -> bool:
        self.client.connect_async(self._host, self._port, 30)
        self.client.loop_start()
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self._host, self._port, reason_code)
            return
        # MQTT 5 also listens on the 3.1.1 result topic: a device connected with 3.1.1 never sees
        # the response topic and answers there (matched by the request_id in the body).
        topics = [(self.reply_topic, 1)]
        if self.v5:
            topics.append((f"{self.base_topic}/verify/result", 1))
        client.subscribe(topics)

    def _on_message(self, client, userdata, msg) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None) if self.v5 and msg.properties else None
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            reply = None
        if correlation is not None:
            request_id = correlation.decode("utf-8", "replace")
        elif isinstance(reply, dict) and isinstance(reply.get("request_id"), str):
            request_id = reply["request_id"]
        else:
            log.warning("ignoring an unmatched or malformed reply on %s", msg.topic)
            return
        with self._lock:
            waiter = self._waiting.get(request_id)
        if waiter is not None:
            waiter[1].append(reply)  # a malformed body matched by correlation data: decide() says no
            waiter[0].set()

    def verify(self) -> tuple[bool, str]:
        """Ask for a decision now; (open?, why). Never raises: trouble means the door stays shut."""
        request_id = uuid.uuid4().hex
        done, box = threading.Event(), []
        with self._lock:
            self._waiting[request_id] = (done, box)
        try:
            props = None
            if self.v5:
                props = Properties(PacketTypes.PUBLISH)
                props.ResponseTopic = self.reply_topic
                props.CorrelationData = request_id.encode()
            info = self.client.publish(f"{self.base_topic}/cmd/verify", json.dumps({"request_id": request_id}),
                                       qos=1, properties=props)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False, f"request not sent: {mqtt.error_string(info.rc)}"
            if not done.wait(self.timeout_s):
                return False, f"no answer within {self.timeout_s} s"
            return decide(box[0], request_id, time.time(), max_age_s=self.max_age_s, device_id=self.device_id)
        except Exception as exc:
            return False, f"verify failed: {exc}"
        finally:
            with self._lock:
                self._waiting.pop(request_id, None)

    def request_and_act(self) -> bool:
        opened, why = self.verify()
        if opened:
            log.info("opening: %s", why)
            self.actuator()
        else:
            log.warning("door stays shut: %s", why)
        return opened


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--base-topic", default="", help="the terminal's base topic (default edge_app/<device-id>)")
    parser.add_argument("--device-id", default="", help="the terminal's device id; replies from others are refused")
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="5")
    parser.add_argument("--tls", action="store_true", help="TLS with the system CAs (or --ca-file)")
    parser.add_argument("--ca-file")
    parser.add_argument("--username")
    parser.add_argument("--password-env", help="environment variable holding the password")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    parser.add_argument("--max-age", type=float, default=MAX_AGE_S, help="oldest decision that opens the door, s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (args.base_topic or args.device_id):
        parser.error("give --base-topic or --device-id")
    password = os.environ.get(args.password_env) if args.password_env else None
    controller = DoorController(args.host, args.port, args.base_topic or f"edge_app/{args.device_id}",
                                protocol=args.protocol, username=args.username, password=password,
                                ca_file=args.ca_file, tls=args.tls, timeout_s=args.timeout, max_age_s=args.max_age,
                                device_id=args.device_id or None)
    if not controller.start():
        log.error("cannot reach the broker %s:%d: door stays shut", args.host, args.port)
        controller.stop()
        return 1
    try:
        return 0 if controller.request_and_act() else 1
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
