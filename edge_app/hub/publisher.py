"""The durable publisher: decision events from the spool to the broker in order, at QoS 1, and the
retained availability, state, health and discovery messages.

Threads, and why there are three (four with the check_image worker of ``hub.commands``):
  * the camera loop calls publish_event / publish_health: they write the spool (or a field) and
    wake the sender, nothing else, so a dead broker can never stall the camera;
  * the sender thread moves events from the spool to paho, at most EVENT_WINDOW unacknowledged,
    in spool order, and deletes them from the spool when paho reports the PUBACK (events kept
    in memory while the disk is full go the same way, in the same window, after the spooled ones);
  * paho's network thread (loop_start) connects, reconnects with backoff, and runs the callbacks.
    Its callbacks never take a lock the sender holds while calling paho (paho calls on_publish
    while holding its own message lock): acknowledgements travel through a deque instead.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.config import ConfigError, MqttConfig
from edge_app.device.board import read_cpu_temp_c, read_serial_number
from edge_app.hub.commands import CommandHandler
from edge_app.hub.connection import Client, paho_logger, refusal, unreachable
from edge_app.hub.credentials import read_password, tls_context
from edge_app.hub.discovery import discovery_configs, retired_discovery_topics, validate_url
from edge_app.hub.events import SCHEMA_VERSION
from edge_app.hub.payloads import dumps, utc_now
from edge_app.hub.spool import RateLimitedLog, Spool, SpoolError
from edge_app.hub.topics import OFFLINE, ONLINE, key_with_flag, topics_for, validate_topic

log = logging.getLogger(__name__)

EVENT_WINDOW = 16  # events handed to paho and not yet acknowledged (paho's own in-flight cap is 20)
RESEND_STALL_S = 30.0  # after a reconnect, how long new events wait behind paho's re-sent ones
# Events kept in memory while the spool cannot be written (a full disk): beyond this the oldest
# are dropped, counted in spool_dropped and logged. About 1 KB each.
MEMORY_EVENTS = 1000


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
            raise ConfigError(f"{key_with_flag('mqtt.host')}: empty host name")
        if not 0 < cfg.port < 65536:
            raise ConfigError(f"{key_with_flag('mqtt.port')}: {cfg.port} is not a TCP port")
        if "\x00" in self.client_id:
            raise ConfigError(f"{key_with_flag('mqtt.client_id')}: contains a NUL character")
        if len(self.client_id.encode("utf-8", "surrogatepass")) > 128:
            # brokers refuse long ids, and paho's network thread then died for good
            raise ConfigError(f"{key_with_flag('mqtt.client_id')}: at most 128 bytes, got {len(self.client_id.encode('utf-8', 'surrogatepass'))}")
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
        # paho mid -> (event_id, payload, seq): memory-held events handed to paho and not yet
        # acknowledged. Still undelivered: counted in spool_depth(), in the window, and kept by a stop.
        self._memory_inflight: dict[int, tuple] = {}
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
        self._client = self._make_client()
        self._commands = CommandHandler(self._client.publish, cfg, self.topics, device_id)

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once whether or not the broker is there."""
        if self._started:
            return
        self._started = True
        self._sender.start()
        self._commands.start()
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
        self._commands.verify_handler = fn

    def set_check_image_handler(self, fn: Callable[[bytes], dict] | None) -> None:
        self._commands.check_image_handler = fn

    def spool_depth(self) -> int:
        """Events not yet acknowledged by the broker (spooled, or about to be)."""
        # the lock covers the hand-over from the queue to the spool's reservation; it is never
        # held across the commit, and the spool swaps its stored/reserved counts as one
        with self._depth_lock:
            return len(self._incoming) + len(self._memory) + len(self._memory_inflight) + self.spool.depth()

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
            while (self._incoming or (self._connected.is_set() and (self.spool.depth() > 0 or self._memory
                                                                    or self._memory_inflight))) \
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
            self._commands.stop()
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
            client = Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            # clean session: a verify request queued while the device was away is stale by now
            client = Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.enable_logger(paho_logger())
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
                self._report_failure(refusal(reason_code, self.cfg))
                return
            log.info("MQTT connected to %s (%d events waiting in the spool)", self._where(), self.spool.depth())
            self._last_failure = None
            t = self.topics
            subs = self._commands.subscriptions
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
        self._report_failure(unreachable(getattr(client, "last_connect_error", None), self.cfg))

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
        # Commands answer for themselves (hub.commands); nothing here may take paho's thread down.
        try:
            if self._commands.handles(msg.topic):
                self._commands.on_message(msg)
            elif msg.topic == self.topics.ha_status:
                if msg.payload.strip() == ONLINE.encode():
                    log.info("Home Assistant is online: re-publishing discovery")
                    self._publish_discovery()
        except Exception:
            log.exception("MQTT command on %s failed", msg.topic)

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
                    drain_since = time.monotonic() if self._unacked() else None
                if drain_since is not None:
                    if not self._unacked():
                        drain_since = None
                    elif time.monotonic() - drain_since > RESEND_STALL_S:
                        log.warning("MQTT: %d re-sent events still unacknowledged after %.0f s; sending newer ones",
                                    self._unacked(), RESEND_STALL_S)
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
            # Events held in memory go first, those paho already has before the rest, and new ones
            # queue behind them: order holds, in the spool as on the wire.
            out = list(self._memory_inflight.items())
            from_memory = len(out) + len(self._memory)
            if from_memory:
                batch = [event for _, event in out] + list(self._memory) + batch
                self._memory_inflight.clear()
                self._memory.clear()
            if not batch:
                return
            self.spool.reserve(len(batch))  # still counted while the commit runs
        try:
            rows = self.spool.put_many(batch, state=batch[-1][1])
        except Exception as exc:  # SpoolError (a full disk), the spool closed by stop(), or a bug
            self._keep_in_memory(batch, out, exc)
            return
        finally:
            self.spool.reserve(0)
        if out:
            # Paho still has these: from now on they are spooled events in flight, whose PUBACK
            # deletes the row, and the cursor passes them so they are not handed over twice.
            self._inflight.update((mid, row) for (mid, _), row in zip(out, rows))
            self._cursor = max(self._cursor, rows[len(out) - 1])
        if from_memory:
            log.info("spool %s writable again: the %d event(s) kept in memory are now spooled",
                     self.spool.path, from_memory)

    def _keep_in_memory(self, batch: list, out: list, exc: Exception) -> None:
        """Durability is gone, delivery need not be: keep the batch in memory, bounded, and say so."""
        with self._depth_lock:
            self.spool.reserve(0)  # back in memory: no longer counted as about to be stored too
            self._memory_inflight.update(out)  # still with paho: only the rest counts against the bound
            self._memory.extendleft(reversed(batch[len(out):]))
            over = len(self._memory) - MEMORY_EVENTS
            lost = [self._memory.popleft() for _ in range(max(0, over))]
        self._memory_dropped += len(lost)
        self._spool_log(logging.ERROR, "%s; %d event(s) held in memory (at most %d) and published from there%s",
                        exc if isinstance(exc, SpoolError) else f"events not spooled: {exc!r}",
                        len(self._memory) + len(self._memory_inflight), MEMORY_EVENTS,
                        f"; {self._memory_dropped} dropped so far (oldest first, counted in spool_dropped)"
                        if self._memory_dropped else "")

    def _save_memory_at_stop(self) -> None:
        """A clean stop with events still in memory: store what the spool takes, name the rest."""
        # handed to paho but not acknowledged: the broker may never have had them, and they are
        # older than the ones not handed yet
        self._memory.extendleft(reversed(list(self._memory_inflight.values())))
        self._memory_inflight.clear()
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
            failed = reason is not None and getattr(reason, "is_failure", False)
            row = self._inflight.pop(mid, None)
            if row is None:
                self._memory_acked(mid, reason, failed)
            elif failed:
                refused.append(row)
                why = f"the broker refused them: {reason} (check the ACL for {self.topics.events})"
            else:
                delivered.append(row)
        if delivered:
            self._sent += self.spool.ack(delivered)
        if refused:
            self.spool.drop(refused, why)

    def _memory_acked(self, mid: int, reason, failed: bool) -> None:
        with self._depth_lock:
            event = self._memory_inflight.pop(mid, None)
        if event is None:
            return  # availability, state, discovery, replies: not events
        if failed:
            self._memory_dropped += 1  # counted in spool_dropped, as a refused spooled event is
            log.error("event %s (held in memory) dropped: the broker refused it: %s (check the ACL for %s)",
                      event[0], reason, self.topics.events)
        else:
            self._sent += 1

    def _unacked(self) -> int:
        return len(self._inflight) + len(self._memory_inflight)

    def _hand_events(self) -> None:
        room = EVENT_WINDOW - self._unacked()
        if room <= 0:
            return
        rows = self.spool.pending(self._cursor, room)
        if not rows:
            # every spooled event is out: the memory-held ones are newer, their turn now
            self._hand_memory(room)
        for row in rows:
            self._cursor = row.row_id
            try:
                info = self._client.publish(self.topics.events, row.payload, qos=1)
            except ValueError as exc:  # an oversized payload: it will never go
                self.spool.drop([row.row_id], f"event {row.event_id} cannot be published ({exc})")
                continue
            # If the link dropped just now paho keeps the message and re-sends it on reconnect.
            self._inflight[info.mid] = row.row_id

    def _hand_memory(self, room: int) -> None:
        """Memory-held events go out like spooled ones: in the window, and remembered until the
        PUBACK. Forgotten once handed, they left spool_depth() early, were not counted by the
        window or the re-send drain after a reconnect, and a stop lost them without a word."""
        while self._memory and room > 0 and self._connected.is_set():
            event = self._memory[0]  # only this thread takes from the queue
            try:
                info = self._client.publish(self.topics.events, event[1], qos=1)
            except ValueError as exc:  # an oversized payload: it will never go
                info = None
                self._memory_dropped += 1
                log.error("event %s (held in memory) cannot be published and is dropped (%s)", event[0], exc)
            # not under our lock while paho runs (see the module docstring); moved as one step after
            with self._depth_lock:
                self._memory.popleft()
                if info is not None:
                    # If the link dropped just now paho keeps the message and re-sends it on reconnect.
                    self._memory_inflight[info.mid] = event
            room -= 1

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
