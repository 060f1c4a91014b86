"""The two MQTT commands a subscriber can send, each answered exactly once: ``cmd/verify`` (the
current decision, for a door controller) and ``cmd/check_image`` (a JPEG checked for manipulation).

Answers go to the MQTT 5 response topic when the request names an allowed one (with its
correlation data), else to the fixed result topic. A malformed request, a failing handler or
a busy device is answered with an error, never silence and never an open door. Images are
checked on a worker thread of their own, one at a time, off paho's network thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_app.config import ConfigError, MqttConfig
from edge_app.hub.events import SCHEMA_VERSION
from edge_app.hub.payloads import dumps, utc_now
from edge_app.hub.topics import Topics, validate_topic

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_REQUEST_ID = 128


class _BadRequest(ValueError):
    pass


@dataclass
class _Route:
    """Where a reply goes: the MQTT 5 response topic (with the correlation data) or the fallback."""
    topic: str
    properties: Properties | None
    correlation: bytes | None
    problem: str | None = None  # the response topic itself was unusable


class CommandHandler:
    """Answers requests on the command topics; ``publish`` is the paho client's ``publish``."""

    def __init__(self, publish: Callable[..., Any], cfg: MqttConfig, topics: Topics, device_id: str) -> None:
        self._publish = publish
        self.cfg = cfg
        self.topics = topics
        self.device_id = device_id
        self._v5 = cfg.protocol == "5"
        self.verify_handler: Callable[[], Any] | None = None
        self.check_image_handler: Callable[[bytes], dict] | None = None
        self._images: queue.Queue = queue.Queue(maxsize=2)
        self._image_worker = threading.Thread(target=self._run_image_worker, name="mqtt-check-image", daemon=True)

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.topics.cmd_verify, 1), (self.topics.cmd_check_image, 1)]

    def start(self) -> None:
        self._image_worker.start()

    def stop(self) -> None:
        try:
            self._images.put_nowait(None)
        except queue.Full:
            pass

    def handles(self, topic: str) -> bool:
        return topic in (self.topics.cmd_verify, self.topics.cmd_check_image)

    def on_message(self, msg) -> None:
        """Called on paho's network thread. A malformed command must never take that thread down
        with it, and still gets an answer (docs/mqtt.md promises one for every request)."""
        try:
            if msg.topic == self.topics.cmd_verify:
                self._on_verify(msg)
            elif msg.topic == self.topics.cmd_check_image:
                self._on_check_image(msg)
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
        self._publish(route.topic, payload, qos=1, properties=route.properties)

    @staticmethod
    def _correlation_id(route: _Route):
        if route.correlation is None:
            return None
        try:
            return route.correlation.decode("utf-8")[:MAX_REQUEST_ID]
        except UnicodeDecodeError:
            return route.correlation.hex()[:MAX_REQUEST_ID]

    # Checked by hand, not with jsonschema: that is a test-only dependency (the Pi installs the
    # runtime ones only), and the answer must say which field is wrong in a sentence.
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
        handler = self.verify_handler
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
        handler = self.check_image_handler
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
