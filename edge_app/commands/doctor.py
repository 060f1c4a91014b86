"""``edge-app doctor``: is this device ready to run the main job? A pass/fail list.

Each check prints one line ``STATUS  check  detail``; the exit status is 1 when any check
FAILs, else 0. What each status means:

- FAIL: the main job would not work, or would work unsafely: config invalid; a model
  missing, corrupt (sha256) or with a wrong input spec; broker unreachable or refusing the
  credentials; TLS files unreadable; less free space than ``doctor.min_free_mb`` for the
  spool; ``source.kind = "picamera2"`` without a camera; the CPU at 85 C or more; the supply
  under-voltage now; the snapshot folder readable by others; the indicator output unusable.
- WARN: it would run, but look: a camera source is not configured (e.g. the sample), a
  camera is present but unused, no indicator configured for a camera, CPU at or above
  ``doctor.max_cpu_temp_c``, throttling now or since boot.
- SKIP: not applicable or not readable here (MQTT disabled, no thermal sensor or
  ``vcgencmd`` off a Pi), or skipped with ``--skip``.

Without ``--config`` the doctor reads ``/etc/edge-app/config.toml`` when it exists (the
service's config), else the built-in defaults. It never prints secrets, and its broker
probe uses its own client id so it does not disturb the running service's session.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edge_app.commands import add_common, setup_logging
from edge_app.config import Config, ConfigError, load_config

SERVICE_CONFIG = Path("/etc/edge-app/config.toml")
THERMAL_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
VCGENCMD = ("vcgencmd", "/usr/bin/vcgencmd", "/opt/vc/bin/vcgencmd")
HARD_TEMP_LIMIT_C = 85.0  # the Pi firmware throttles hard here
CHECKS = ("camera", "models", "broker", "disk", "temperature", "throttling", "indicator", "snapshots")


@dataclass
class Result:
    check: str
    status: str  # PASS | WARN | FAIL | SKIP
    detail: str


def register(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check camera, models, broker, disk, temperature and privacy settings; exit 1 on any failure",
        description="Check that this device can run the main job: config, camera, model files and hashes, "
        "broker reachability and credentials, free space for the spool, CPU temperature and throttling, "
        "the camera indicator and snapshot privacy. Prints PASS/WARN/FAIL/SKIP lines; exits 1 on any FAIL.",
    )
    add_common(p)
    p.add_argument("--skip", action="append", default=[], metavar="CHECK",
                   help=f"skip checks (comma-separated or repeated): {', '.join(CHECKS)}")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.set_defaults(func=doctor)


# -- the checks --------------------------------------------------------------------------
def check_camera(cfg: Config) -> list[Result]:
    nodes = sorted(str(p) for p in Path("/dev").glob("video*"))
    uses_camera = cfg.source.kind == "picamera2"
    from edge_app.frames.sources.picamera2_import import CameraImportError, import_picamera2

    try:
        Picamera2 = import_picamera2()
    except CameraImportError as exc:  # the same line the service logs
        where = f"V4L2 nodes: {', '.join(nodes)}" if nodes else "no /dev/video* nodes"
        msg = f"{exc}; {where}"
        if uses_camera:
            return [Result("camera", "FAIL", msg)]
        return [Result("camera", "WARN", f"source.kind = {cfg.source.kind!r}, not a camera; {msg}")]
    try:
        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera errors come in many types
        return [Result("camera", "FAIL", f"libcamera could not list cameras: {exc}")]
    if not cameras:
        status = "FAIL" if uses_camera else "WARN"
        return [Result("camera", status, "picamera2 lists no camera: check the ribbon cable and "
                       "camera_auto_detect=1 in /boot/firmware/config.txt")]
    names = ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cameras))
    if not uses_camera:
        return [Result("camera", "WARN", f"camera(s) present ({names}) but source.kind = {cfg.source.kind!r}")]
    if cfg.source.camera_index >= len(cameras):
        return [Result("camera", "FAIL", f"source.camera_index = {cfg.source.camera_index} but only "
                       f"{len(cameras)} camera(s): {names}")]
    return [Result("camera", "PASS", f"{len(cameras)} camera(s): {names}")]


def check_models(cfg: Config) -> list[Result]:
    from edge_app.liveness.scorer import load_scorer
    from edge_app.tflite_model import ModelError, load_model

    models_dir = cfg.resolved_models_dir()
    results = []
    ok = True
    from edge_app.frames.detector import DETECTOR_MODELS, SHORT_RANGE

    detectors = list(DETECTOR_MODELS[cfg.detector.model])
    if cfg.detector.closeup_retry and SHORT_RANGE not in detectors:
        detectors.append(SHORT_RANGE)  # the close-up retry's model
    # the forensics model is optional (check_image answers not_available without it), checked when present
    forensics = [cfg.forensics.model] if (models_dir / f"{cfg.forensics.model}.json").exists() else []
    for name in [*detectors, *cfg.liveness.models, *forensics]:
        try:
            model = load_model(models_dir / f"{name}.json")
        except ModelError as exc:
            results.append(Result("models", "FAIL", f"{name}: {exc}"))
            ok = False
            continue
        results.append(Result("models", "PASS", f"{name} {model.version}: sha256 "
                              f"{model.metadata['sha256'][:12]}..., metadata seal and input spec verified ({model.path})"))
    if ok:
        try:
            scorer = load_scorer(models_dir, cfg.liveness.models)
            results.append(Result("models", "PASS", f"liveness fusion: threshold {scorer.threshold:.4f} from "
                                  f"{scorer.fusion.source} (sealed, in range, fitted on these models)"))
        except ModelError as exc:
            results.append(Result("models", "FAIL", f"liveness fusion: {exc}"))
    from edge_app import jpeg_strict

    if jpeg_strict.available():
        results.append(Result("models", "PASS", "strict JPEG decoding: libturbojpeg reports corrupt JPEG data"))
    else:
        results.append(Result("models", "WARN", "strict JPEG decoding unavailable: corrupt JPEG data in stills and "
                              "file frames is not detected (install libturbojpeg0)"))
    return results


def probe_broker(mq, client_id: str, timeout: float) -> Result:
    """Connect with the configured host, port, TLS and credentials and wait for CONNACK."""
    import paho.mqtt.client as mqtt

    from edge_app.hub.credentials import read_password, tls_context

    where = f"{mq.host}:{mq.port}{' (TLS)' if mq.tls else ''}"
    try:
        password = read_password(mq)  # the device's own reading, so doctor checks what run will use
    except ConfigError as exc:
        return Result("broker", "FAIL", f"{where}: credentials: {exc}")
    if password is not None and not mq.username:
        return Result("broker", "FAIL", f"{where}: credentials: a password is configured but mqtt.username is empty")
    v5 = mq.protocol == "5"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **({} if v5 else {"clean_session": True}))
    client.connect_timeout = timeout
    if mq.username:
        client.username_pw_set(mq.username, password)
    if mq.tls:
        try:
            client.tls_set_context(tls_context(mq))
        except ConfigError as exc:
            return Result("broker", "FAIL", f"{where}: TLS files unusable: {exc}")
    answer: dict = {}
    done = threading.Event()

    def on_connect(_client, _userdata, _flags, reason_code, _properties) -> None:
        answer["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mq.host, mq.port, keepalive=max(5, int(timeout) * 2))
    except ssl.SSLError as exc:
        return Result("broker", "FAIL", f"{where}: TLS handshake failed: {exc}")
    except ConnectionResetError as exc:
        why = "TLS handshake reset: is that port a TLS listener?" if mq.tls else f"connection reset: {exc}"
        return Result("broker", "FAIL", f"{where}: {why}")
    except (OSError, ValueError) as exc:
        return Result("broker", "FAIL", f"{where}: unreachable: {exc}")
    deadline = time.monotonic() + timeout
    try:
        while not done.is_set() and time.monotonic() < deadline:
            rc = client.loop(timeout=0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS and not done.is_set():
                return Result("broker", "FAIL", f"{where}: connection closed before CONNACK "
                              f"({mqtt.error_string(rc)}; TLS on a plain port, or not an MQTT broker?)")
    except ssl.SSLError as exc:
        return Result("broker", "FAIL", f"{where}: TLS failed: {exc}")
    finally:
        try:  # a clean DISCONNECT, so the broker logs no error for the probe
            client.disconnect()
            client.loop(timeout=0.2)
        except (OSError, ssl.SSLError):
            pass
    if not done.is_set():
        return Result("broker", "FAIL", f"{where}: no CONNACK within {timeout:.0f} s")
    rc = answer["rc"]
    who = f"user {mq.username!r}" if mq.username else "anonymous"
    if rc.is_failure:
        if rc.value in (0x86, 0x87, 0x8C):  # bad user name or password, not authorized, bad auth method
            return Result("broker", "FAIL", f"{where}: refused {who}: {rc} (reason code {rc.value}); "
                          "check the credentials: mqtt.username and mqtt.password_file / mqtt.password_env")
        return Result("broker", "FAIL", f"{where}: refused {who}: {rc} (reason code {rc.value})")
    return Result("broker", "PASS", f"{where}: CONNACK {rc} for {who}, MQTT {mq.protocol}")


def check_broker(cfg: Config) -> list[Result]:
    if not cfg.mqtt.enabled:
        return [Result("broker", "SKIP", "mqtt.enabled = false: events are not published")]
    client_id = f"{cfg.mqtt.client_id or 'edge_app-' + cfg.resolved_device_id()}-doctor-{os.getpid()}"
    return [probe_broker(cfg.mqtt, client_id, cfg.doctor.broker_timeout_s)]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(cfg: Config) -> list[Result]:
    state = cfg.resolved_state_dir()
    places = {"state dir": state}
    if cfg.mqtt.spool_path:
        places["spool"] = Path(cfg.mqtt.spool_path).parent
    if cfg.snapshots.enabled and cfg.snapshots.dir:
        places["snapshots"] = Path(cfg.snapshots.dir)
    results = []
    seen = set()
    for what, path in places.items():
        at = _existing(path)
        try:
            dev = at.stat().st_dev
            usage = shutil.disk_usage(at)
        except OSError as exc:
            results.append(Result("disk", "FAIL", f"{what} {path}: {exc}"))
            continue
        if dev in seen:
            continue
        seen.add(dev)
        free_mb = usage.free / 2**20
        note = "" if at == path else f" (not created yet; checked {at})"
        detail = f"{free_mb:.0f} MB free for the {what} {path}{note}; need {cfg.doctor.min_free_mb} MB"
        results.append(Result("disk", "FAIL" if free_mb < cfg.doctor.min_free_mb else "PASS", detail))
    return results


def check_temperature(cfg: Config) -> list[Result]:
    try:
        celsius = int(THERMAL_PATH.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return [Result("temperature", "SKIP", f"{THERMAL_PATH} not readable (not a Raspberry Pi?)")]
    detail = f"CPU {celsius:.1f} C (warn at {cfg.doctor.max_cpu_temp_c:.0f} C, fail at {HARD_TEMP_LIMIT_C:.0f} C)"
    if celsius >= HARD_TEMP_LIMIT_C:
        return [Result("temperature", "FAIL", detail + ": add cooling")]
    return [Result("temperature", "WARN" if celsius >= cfg.doctor.max_cpu_temp_c else "PASS", detail)]


THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage since boot", 17: "frequency capped since boot", 18: "throttled since boot",
    19: "soft temperature limit since boot",
}


def throttle_result(output: str) -> Result:
    """Judge ``vcgencmd get_throttled`` output (``throttled=0x50005``)."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", output)
    if not match:
        return Result("throttling", "SKIP", f"vcgencmd answered {output.strip()!r}")
    value = int(match.group(1), 0)
    flags = [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]
    if not flags:
        return Result("throttling", "PASS", f"{match.group(0)}: no under-voltage or throttling since boot")
    status = "FAIL" if value & 1 else "WARN"
    hint = ": use a stronger power supply" if value & ((1 << 0) | (1 << 16)) else ""
    return Result("throttling", status, f"{match.group(0)}: {', '.join(flags)}{hint}")


def check_throttling(cfg: Config) -> list[Result]:
    exe = next((p for p in (shutil.which(c) or c for c in VCGENCMD) if os.access(p, os.X_OK)), None)
    if not exe:
        return [Result("throttling", "SKIP", "vcgencmd not found (not a Raspberry Pi?)")]
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Result("throttling", "SKIP", f"{exe} get_throttled failed: {exc}")]
    return [throttle_result(out.stdout or out.stderr)]


def check_indicator(cfg: Config) -> list[Result]:
    ind = cfg.indicator
    if ind.kind == "none":
        if cfg.source.kind == "picamera2":
            return [Result("indicator", "WARN", "indicator.kind = 'none': nothing shows when the camera is on")]
        return [Result("indicator", "SKIP", "indicator.kind = 'none'")]
    # the running service may hold the output, so it is looked at, not switched
    if ind.kind == "file":
        parent = Path(ind.path).parent
        ok = Path(ind.path).exists() and os.access(ind.path, os.W_OK) or \
            not Path(ind.path).exists() and os.access(parent, os.W_OK)
        return [Result("indicator", "PASS" if ok else "FAIL",
                       f"file {ind.path} {'is' if ok else 'is not'} writable by this user")]
    if ind.kind == "sysfs":
        root = Path("/sys/class/gpio")
        ok = root.is_dir()
        return [Result("indicator", "PASS" if ok else "FAIL",
                       f"sysfs GPIO {ind.line}: {root} {'present' if ok else 'missing (kernel without sysfs GPIO)'}")]
    try:
        import gpiod
    except ImportError:
        return [Result("indicator", "FAIL", "indicator.kind = 'gpiochip' needs the gpiod module "
                       "(apt install python3-libgpiod; venv with --system-site-packages)")]
    chip = Path(ind.chip if ind.chip.startswith("/") else f"/dev/{ind.chip}")
    if not chip.exists():
        return [Result("indicator", "FAIL", f"{chip} does not exist")]
    version = getattr(gpiod, "__version__", "?")
    return [Result("indicator", "PASS", f"gpiod {version}, {chip} line {ind.line} "
                   f"(active {'high' if ind.active_high else 'low'}; not switched by the doctor)")]


def check_snapshots(cfg: Config) -> list[Result]:
    from edge_app.device.snapshots import NAME, is_private_dir, snapshot_dir

    snap = cfg.snapshots
    folder = snapshot_dir(snap, cfg.resolved_state_dir())
    try:
        kept = [p for p in folder.iterdir() if NAME.match(p.name) and p.suffix == ".jpg"] if folder.is_dir() else []
    except OSError:
        kept = []
    if not snap.enabled:
        extra = f"; {len(kept)} old snapshot(s) in {folder} go at the next start" if kept else ""
        return [Result("snapshots", "PASS", f"disabled: no frame or face is written to disk{extra}")]
    detail = (f"enabled for {', '.join(snap.decisions)} decisions, kept {snap.retention_hours:g} h, "
              f"in {folder} ({len(kept)} now)")
    if folder.is_dir():
        try:
            private = is_private_dir(folder)
        except OSError as exc:
            return [Result("snapshots", "FAIL", f"{folder}: {exc}")]
        if not private:
            return [Result("snapshots", "FAIL", f"{detail}: the folder is readable by others (must be 0700)")]
    return [Result("snapshots", "PASS", detail)]


RUNNERS: dict[str, Callable[[Config], list[Result]]] = {
    "camera": check_camera, "models": check_models, "broker": check_broker, "disk": check_disk,
    "temperature": check_temperature, "throttling": check_throttling, "indicator": check_indicator,
    "snapshots": check_snapshots,
}


def run_checks(cfg: Config, skip: set[str]) -> list[Result]:
    results = []
    for name in CHECKS:
        if name in skip:
            results.append(Result(name, "SKIP", "skipped (--skip)"))
            continue
        try:
            results.extend(RUNNERS[name](cfg))
        except Exception as exc:  # a broken check is a failure to report, not a traceback
            results.append(Result(name, "FAIL", f"check crashed: {type(exc).__name__}: {exc}"))
    return results


def doctor(args: argparse.Namespace) -> int:
    skip = {s.strip() for item in args.skip for s in item.split(",") if s.strip()}
    unknown = skip - set(CHECKS)
    if unknown:
        raise SystemExit(f"edge-app doctor: --skip: unknown check(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(CHECKS)}")
    config_path = args.config or (SERVICE_CONFIG if SERVICE_CONFIG.is_file() else None)
    results: list[Result] = []
    try:
        cfg = load_config(config_path)
        results.append(Result("config", "PASS", f"{config_path}: valid" if config_path else
                              "no --config and no /etc/edge-app/config.toml: built-in defaults"))
    except ConfigError as exc:
        cfg = None
        results.append(Result("config", "FAIL", str(exc)))
    except OSError as exc:  # e.g. /etc/edge-app/config.toml is root:edge-app 0640
        cfg = None
        results.append(Result("config", "FAIL", f"{config_path}: cannot read ({exc.strerror or exc}); "
                              "run the doctor as root or as the edge-app user"))
    if cfg is not None:
        if args.models_dir:
            cfg.liveness.models_dir = str(args.models_dir)
        setup_logging(args.log_level or "WARNING")  # the result lines are the output
        results.extend(run_checks(cfg, skip))
    else:
        results.extend(Result(name, "SKIP", "config invalid") for name in CHECKS)
    failed = sum(r.status == "FAIL" for r in results)
    if args.json:
        print(json.dumps({"ok": not failed, "results": [asdict(r) for r in results]}, indent=2))
    else:
        width = max(len(r.check) for r in results)
        for r in results:
            print(f"{r.status:<5} {r.check:<{width}}  {r.detail}", flush=True)
        counts = {s: sum(r.status == s for r in results) for s in ("PASS", "WARN", "FAIL", "SKIP")}
        print(f"doctor: {counts['PASS']} passed, {counts['WARN']} warning(s), {counts['FAIL']} failed, "
              f"{counts['SKIP']} skipped -> {'NOT READY' if failed else 'ready'}")
    return 1 if failed else 0
