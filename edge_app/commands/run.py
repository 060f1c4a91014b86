"""``edge-app run``: the main job."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from edge_app.commands import add_common, config_from_args, non_negative_float, non_negative_int
from edge_app.config import ConfigError
from edge_app.device.indicator import IndicatorError, open_indicator
from edge_app.device.sdnotify import Notifier, Watchdog
from edge_app.device.snapshots import SnapshotError, SnapshotWriter
from edge_app.frames.sources import SourceError, open_source
from edge_app.frames.sources.reopen import ReopeningSource
from edge_app.liveness.annotate import AnnotateError, Annotator
from edge_app.liveness.decision_log import DecisionLog, StatusTicker, status_line
from edge_app.pipeline import Pipeline, load_models
from edge_app.tflite_model import ModelError

log = logging.getLogger("edge_app.run")


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: frames -> faces -> liveness -> decisions published over MQTT",
        description="Read frames from a source, find faces, score liveness and publish decision events. "
        "Without options it runs on the built-in sample (a live face, a printed-photo attack, an empty scene).",
    )
    p.add_argument("--source", choices=("sample", "files", "synthetic", "picamera2"), help="override source.kind")
    p.add_argument("--path", help="files source: a directory, image or glob (implies --source files)")
    p.add_argument("--once", action="store_true", help="play a files/sample source once instead of looping")
    p.add_argument("--fps", type=non_negative_float, help="pace the source to this many frames per second (0: unpaced)")
    p.add_argument("--max-frames", type=non_negative_int, default=0, metavar="N", help="stop after N frames (0: run until stopped)")
    p.add_argument("--print-events", action="store_true",
                   help="print each decision event as a JSON line on stdout (a readable line per decision is always logged)")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write frames to DIR with face boxes, scores and decisions drawn on them: every image of a "
                   "files source; from a camera each frame with a decision and one a second (for aiming the "
                   "camera; these are full frames on disk)")
    p.add_argument("--no-mqtt", action="store_true", help="do not publish (events are only printed/logged)")
    p.add_argument("--local-broker", action="store_true",
                   help="use a broker on this machine, starting a private mosquitto if none answers (demo); "
                   "events are spooled in their own state directory (<state_dir>/local-broker), so none of them "
                   "ever reaches the real broker of a later run")
    p.add_argument("--mqtt-host", help="broker host (overrides mqtt.host)")
    p.add_argument("--mqtt-port", type=int, help="broker port (overrides mqtt.port)")
    p.add_argument("--base-topic", help="MQTT base topic (overrides mqtt.base_topic; default edge_app/<device_id>)")
    p.add_argument("--device-id", help="device id (overrides device_id; default: host name)")
    p.add_argument("--client-id", help="MQTT client id (overrides mqtt.client_id)")
    add_common(p)
    p.set_defaults(func=run)


def apply_overrides(cfg, args: argparse.Namespace) -> None:
    """Command-line options win over the config file."""
    if args.path:
        cfg.source.kind, cfg.source.path = "files", args.path
    if args.source:
        cfg.source.kind = args.source
    if args.once:
        cfg.source.loop = False
    if args.fps is not None:
        cfg.source.fps = args.fps
    if args.no_mqtt:
        cfg.mqtt.enabled = False
    for opt, key in (("mqtt_host", "host"), ("mqtt_port", "port"), ("base_topic", "base_topic"), ("client_id", "client_id")):
        if getattr(args, opt) is not None:
            setattr(cfg.mqtt, key, getattr(args, opt))
    if args.device_id:
        cfg.device_id = args.device_id


def _status(pipeline: Pipeline, publisher) -> str:
    """One STATUS= line for systemctl status."""
    st = pipeline.stats
    spool = f", {publisher.spool_depth()} unsent" if publisher else ""
    return f"{st.frames} frames ({st.failures} failed), {st.events} events{spool}"


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    apply_overrides(cfg, args)
    device_id = cfg.resolved_device_id()
    if args.local_broker and cfg.mqtt.enabled:
        # a demo's events are spooled apart from the device's own: whatever a demo or a test run
        # leaves unsent must never be delivered to the real broker by a later run
        cfg.state_dir = str(cfg.resolved_state_dir() / "local-broker")
        cfg.mqtt.spool_path = ""
        log.info("--local-broker: state and event spool in %s, apart from the device's own", cfg.state_dir)
    annotator = None
    if args.annotate:
        try:
            annotator = Annotator(args.annotate)
        except AnnotateError as exc:
            log.error("%s", exc)
            return 2
    try:
        detector, scorer = load_models(cfg)
    except ModelError as exc:
        log.error("%s", exc)
        return 2
    log.info("device %s: models %s, fused threshold %.4f (%s)", device_id,
             ", ".join(f"{k} {v}" for k, v in scorer.versions().items()), scorer.threshold, scorer.fusion.source)

    decision_log = DecisionLog()  # one readable line per decision, and the tally at the end
    sinks = [decision_log]
    if args.print_events:
        sinks.append(lambda event: print(json.dumps(event), flush=True))
    broker = publisher = None
    next_seq = None
    if cfg.mqtt.enabled:
        if args.local_broker:
            from edge_app.hub.local_broker import find_or_start

            wanted = cfg.mqtt.port
            broker = find_or_start(cfg.mqtt.host, cfg.mqtt.port)
            if broker:
                cfg.mqtt.host, cfg.mqtt.port = broker.host, broker.port
                from edge_app.hub.topics import resolve_base_topic

                base = resolve_base_topic(cfg.mqtt, device_id)
                if broker.process:
                    log.info("events go to a private mosquitto on %s:%d that stops with this run; to watch them, "
                             "start a broker first (`mosquitto -p %d -d`), then in another terminal "
                             "`mosquitto_sub -p %d -t '%s/#' -v`, and run this again: it uses that broker",
                             broker.host, broker.port, wanted, wanted, base)
                else:
                    log.info("watch the events from another terminal: mosquitto_sub -h %s -p %d -t '%s/#' -v",
                             broker.host, broker.port, base)
        from edge_app.hub.publisher import MqttPublisher
        from edge_app.hub.spool import SpoolError

        try:
            publisher = MqttPublisher(cfg.mqtt, device_id, cfg.resolved_state_dir(), models=scorer.versions())
        except (ConfigError, SpoolError) as exc:
            log.error("%s", exc)
            if broker:
                broker.stop()
            return 2
        publisher.start()
        sinks.append(publisher.publish_event)
        next_seq = publisher.next_seq
    else:
        log.info("MQTT disabled: events are not published")

    pipeline = Pipeline(cfg, detector, scorer, device_id, sinks=sinks, next_seq=next_seq)
    if publisher:
        from edge_app.forensics.check import check_image_bytes

        publisher.set_verify_handler(lambda: pipeline.latest(max_age_s=2 * cfg.decision.max_frame_age_s + 1.0))
        # cmd/check_image: the still-image forensics verdict; it never raises, bad input is an error reply
        publisher.set_check_image_handler(lambda data: check_image_bytes(data, config=cfg, name="cmd/check_image payload"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def shutdown() -> None:
        if publisher:
            publisher.stop()
        if broker:
            broker.stop()

    # privacy: snapshots only when enabled (expired ones purged even when not); the indicator
    # is on from before the camera opens until after it is closed, whatever happens between
    notifier = Notifier()
    snapshots = SnapshotWriter(cfg.snapshots, cfg.resolved_state_dir())
    indicator = None
    try:
        snapshots.start()
        indicator = open_indicator(cfg.indicator)
        indicator.on()
    except (SnapshotError, IndicatorError) as exc:
        log.error("%s", exc)
        if indicator:
            indicator.close()
        shutdown()
        return 4
    pipeline.frame_observers.append(snapshots)
    if annotator:
        # stills: every one; a camera: decisions plus a frame a second (aiming needs no more)
        every_s = 0.0 if cfg.source.kind == "files" else 1.0
        pipeline.frame_observers.append(annotator.frame_observer(scorer.threshold, every_s))
    pipeline.frame_hooks.append(StatusTicker(cfg.log.status_interval_s,
                                             lambda: status_line(pipeline.stats, decision_log.counts, publisher)))
    pipeline.frame_hooks.append(Watchdog(notifier, status=lambda: _status(pipeline, publisher)))
    try:
        if cfg.source.kind == "picamera2":
            # a camera that is missing or fails is retried with backoff while the service runs on
            source = ReopeningSource(lambda: open_source(cfg.source), f"picamera2:{cfg.source.camera_index}")
        else:
            source = open_source(cfg.source)
    except SourceError as exc:
        log.error("cannot open frame source: %s", exc)
        indicator.close()
        shutdown()
        return 3
    except BaseException:
        indicator.close()
        shutdown()
        raise
    log.info("reading frames from %s", source.name)
    notifier.ready(f"reading frames from {source.name}")
    try:
        stats = pipeline.run(source, max_frames=args.max_frames, stop=stop,
                             health=publisher.publish_health if publisher else None)
    finally:
        notifier.stopping("stopping")
        source.close()
        indicator.close()
        shutdown()
    s = stats.summary()
    log.info("done: %d frames (%d failed, %d dropped while busy), %d faces, %d events, %.1f frames/s",
             s["frames"], s["failures"], s["dropped"], s["faces"], s["events"], s["fps_since_start"])
    for track_id, frames in pipeline.unfinished():
        log.warning("face track %d: its decision window was unfinished when the run ended (%d of %d frames): "
                    "no decision for it (decision.window sets the frames a decision needs; for single images "
                    "use `edge-app liveness`)", track_id, frames, cfg.decision.window)
    log.info("decisions: %s", decision_log.tally())
    if annotator:
        log.info("annotated frames in %s", annotator.folder)
    return 0
