"""Configuration: one TOML file, typed sections, defaults that work on a fresh machine.

An unknown key or a value of the wrong type stops start-up with a message naming the key:
a typo in a door terminal's config must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

# a frame, like a still, beyond the pixel budget does not fit a 512 MB Pi with the models loaded
from edge_app.images import MAX_PIXELS as MAX_FRAME_PIXELS

PACKAGE_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A bad configuration; the message names the file, the key and the problem."""


def default_models_dir() -> Path:
    # a source checkout (pip install -e .) keeps models/ beside the package
    return PACKAGE_DIR.parent / "models"


@dataclass
class SourceConfig:
    kind: str = "sample"  # sample | files | synthetic | picamera2
    path: str = ""  # files: a directory, an image or a glob
    loop: bool = True
    fps: float = 0.0  # 0: as fast as the pipeline takes them (files, sample)
    width: int = 640
    height: int = 480
    lores_width: int = 320  # picamera2 low-res stream for detection
    lores_height: int = 240
    camera_index: int = 0
    # read frames on a thread so capture overlaps inference; a live (camera or paced)
    # source then keeps only the newest frames instead of queueing stale ones
    prefetch: bool = True


@dataclass
class DetectorConfig:
    # short: BlazeFace short-range (faces within ~2 m; cheapest); full: full-range (~5 m);
    # both: short-range, and full-range on frames where it finds no face (a near face costs
    # the short-range run only). Recall by face size and cost: models/reports/detector.md
    model: str = "both"
    # a frame without a face is looked at once more, shrunk inside a black border: finds
    # close-ups cut by the frame edges (costs a second detector run on face-less frames only)
    closeup_retry: bool = True
    min_score: float = 0.6
    max_faces: int = 4
    min_face_fraction: float = 0.05  # faces narrower than this share of the frame width are ignored
    threads: int = 1


@dataclass
class LivenessConfig:
    models_dir: str = ""  # empty: the models/ folder shipped with the package
    models: list[str] = field(default_factory=lambda: ["liveness_cnn", "liveness_attn"])
    threads: int = 1
    timeout_s: float = 0.5  # a face whose scoring takes longer is not trusted


@dataclass
class DecisionConfig:
    window: int = 5  # frames of one face aggregated into one decision
    min_frames: int = 3  # fewer valid frames than this: uncertain, never live
    max_frame_age_s: float = 1.0  # an older frame is stale: its face cannot be live
    # a fused score up to this many logit units below the threshold is uncertain, not attack;
    # logit units because thresholds sit anywhere in (0, 1) and scores crowd near 0 and 1
    uncertain_margin: float = 0.5
    track_iou: float = 0.3  # box overlap for "the same face" across frames
    lost_after_frames: int = 3  # a face track ends after this many frames without it


@dataclass
class MqttConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "3.1.1"  # 3.1.1 | 5
    client_id: str = ""  # empty: edge_app-<device_id>
    base_topic: str = ""  # empty: edge_app/<device_id>
    keepalive_s: int = 30
    username: str = ""
    password_file: str = ""
    password_env: str = ""  # name of an environment variable holding the password
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    spool_path: str = ""  # empty: <state_dir>/spool.sqlite3
    spool_max_events: int = 100_000
    health_interval_s: float = 30.0
    discovery_prefix: str = "homeassistant"
    # MQTT 5 response topics are honoured only under <base>/verify/result or
    # <base>/check_image/result, or under this prefix when set (e.g. "doors/replies")
    reply_prefix: str = ""
    discovery: bool = True
    # Home Assistant device details: the area it is suggested for, a page to configure or read
    # about the device (device configuration_url), and where to get support (origin support_url)
    discovery_area: str = ""
    discovery_configuration_url: str = ""
    discovery_support_url: str = ""
    # reconnect backoff: the first retry waits reconnect_min_s, each next one twice as long, capped
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0


@dataclass
class LogConfig:
    level: str = "INFO"
    # a status line (fps, faces, decisions by kind, spool depth, broker) every this many seconds; 0: never
    status_interval_s: float = 60.0


@dataclass
class SnapshotConfig:
    """Privacy by default: no frame is written unless ``enabled``; see docs/privacy.md."""

    enabled: bool = False
    dir: str = ""  # empty: <state_dir>/snapshots (created 0700, files 0600)
    decisions: list[str] = field(default_factory=lambda: ["attack"])  # which decisions get a snapshot
    retention_hours: float = 72.0  # older snapshots are deleted (at start and every purge_interval_s)
    purge_interval_s: float = 3600.0
    face_margin: float = 0.25  # the subject's face box grown by this fraction each side stays sharp
    min_interval_s: float = 10.0  # at most one snapshot per this many seconds
    max_files: int = 500  # beyond this the oldest snapshots are deleted


@dataclass
class IndicatorConfig:
    """An output that is on exactly while the camera is capturing."""

    kind: str = "none"  # none | gpiochip | sysfs | file
    chip: str = "gpiochip0"  # gpiochip: chip name or /dev/gpiochipN path
    line: int = -1  # gpiochip: line offset; sysfs: GPIO number
    active_high: bool = True
    path: str = ""  # file: written "1"/"0", e.g. /sys/class/leds/<led>/brightness


@dataclass
class DoctorConfig:
    """Thresholds of ``edge-app doctor``."""

    min_free_mb: int = 200  # free space needed where the spool and snapshots live
    max_cpu_temp_c: float = 80.0  # warn at or above this CPU temperature
    broker_timeout_s: float = 5.0


@dataclass
class ForensicsConfig:
    """Still-image forensics (``edge-app forensics``, MQTT ``check_image``)."""

    model: str = "forensics_cnn"
    threads: int = 1
    threshold: float = 0.0  # 0: the calibrated threshold in the model's metadata
    max_bytes: int = 50_000_000  # encoded images larger than this are refused unread
    max_pixels: int = MAX_FRAME_PIXELS  # decoded size above this is refused before decoding (sized for a 512 MB Pi)
    analysis_max_pixels: int = 4_000_000  # above this: downscale (weakens JPEG traces) or refuse
    oversize: str = "downscale"  # downscale | refuse


@dataclass
class Config:
    device_id: str = ""
    state_dir: str = ""  # empty: ~/.local/state/edge-app (systemd: /var/lib/edge-app)
    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)
    indicator: IndicatorConfig = field(default_factory=IndicatorConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    forensics: ForensicsConfig = field(default_factory=ForensicsConfig)

    def resolved_device_id(self) -> str:
        return self.device_id or socket.gethostname().split(".")[0] or "edge-app"

    def resolved_models_dir(self) -> Path:
        return Path(self.liveness.models_dir) if self.liveness.models_dir else default_models_dir()

    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir).expanduser() if self.state_dir else Path("~/.local/state/edge-app").expanduser()


# Every number has a range: a value outside it (or NaN, or an infinity) stops start-up with
# the key named. The ranges are what a Pi can run and what still makes sense; "(" marks a
# bound that is excluded. test_config checks that no numeric key is missing here.
_RANGES: dict[str, tuple[str, float, float, str]] = {
    "source.fps": ("[", 0, 240, "]"),
    "source.width": ("[", 16, 8192, "]"),
    "source.height": ("[", 16, 8192, "]"),
    "source.lores_width": ("[", 16, 4096, "]"),
    "source.lores_height": ("[", 16, 4096, "]"),
    "source.camera_index": ("[", 0, 15, "]"),
    "detector.min_score": ("(", 0, 1, ")"),
    "detector.max_faces": ("[", 1, 32, "]"),
    "detector.min_face_fraction": ("[", 0, 1, "]"),
    "detector.threads": ("[", 1, 16, "]"),
    "liveness.threads": ("[", 1, 16, "]"),
    "liveness.timeout_s": ("(", 0, 60, "]"),
    "decision.window": ("[", 1, 300, "]"),
    "decision.min_frames": ("[", 1, 300, "]"),
    "decision.max_frame_age_s": ("(", 0, 60, "]"),
    "decision.uncertain_margin": ("[", 0, 20, "]"),
    "decision.track_iou": ("(", 0, 1, "]"),
    "decision.lost_after_frames": ("[", 1, 1000, "]"),
    "mqtt.port": ("[", 1, 65535, "]"),
    "mqtt.keepalive_s": ("[", 5, 65535, "]"),  # MQTT carries it in 16 bits
    "mqtt.spool_max_events": ("[", 1, 10_000_000, "]"),
    "mqtt.health_interval_s": ("[", 1, 86400, "]"),
    "log.status_interval_s": ("[", 0, 86400, "]"),  # 0 turns the status line off
    "mqtt.reconnect_min_s": ("[", 0.1, 3600, "]"),
    "mqtt.reconnect_max_s": ("[", 0.1, 86400, "]"),
    "snapshots.retention_hours": ("(", 0, 87600, "]"),
    "snapshots.purge_interval_s": ("[", 1, 604800, "]"),
    "snapshots.face_margin": ("[", 0, 5, "]"),
    "snapshots.min_interval_s": ("[", 0, 86400, "]"),
    "snapshots.max_files": ("[", 1, 1_000_000, "]"),
    "indicator.line": ("[", -1, 1023, "]"),
    "doctor.min_free_mb": ("[", 0, 1_000_000_000, "]"),
    "doctor.max_cpu_temp_c": ("[", 20, 120, "]"),
    "doctor.broker_timeout_s": ("(", 0, 300, "]"),
    "forensics.threads": ("[", 1, 16, "]"),
    "forensics.threshold": ("[", 0, 1, ")"),
    "forensics.max_bytes": ("[", 1, 100_000_000, "]"),
    "forensics.max_pixels": ("[", 4096, 40_000_000, "]"),
    "forensics.analysis_max_pixels": ("[", 4096, 40_000_000, "]"),
}
# Lengths of strings that end up in protocol fields or file names; any other string (paths,
# topics) at most MAX_STRING, the longest path Linux takes.
_MAX_LENGTHS = {"mqtt.client_id": 128, "device_id": 64}
MAX_STRING = 4096
# Names joined onto models_dir: a plain file name stem, never a path.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")

_CHOICES = {
    "source.kind": ("sample", "files", "synthetic", "picamera2"),
    "detector.model": ("short", "full", "both"),
    "mqtt.protocol": ("3.1.1", "5"),
    "log.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "indicator.kind": ("none", "gpiochip", "sysfs", "file"),
    "forensics.oversize": ("downscale", "refuse"),
}


def _coerce(where: str, value: Any, kind: Any) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if "\x00" in value:
            raise ConfigError(f"{where}: contains a NUL character")
        return value
    if getattr(kind, "__origin__", None) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if any("\x00" in v for v in value):
            raise ConfigError(f"{where}: contains a NUL character")
        return list(value)
    raise ConfigError(f"{where}: unsupported type")  # a bug in this module, not in the file


# Typed by hand from the dataclasses, not pydantic or jsonschema: no extra dependency on the Pi,
# and every error names the file and the key.
def _fill(obj: Any, table: dict, prefix: str, origin: str) -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in table.items():
        where = f"{origin}: {prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{where}: unknown key (known keys{' in [' + prefix[:-1] + ']' if prefix else ''}: {known})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a [{prefix}{key}] table")
            _fill(getattr(obj, key), value, f"{prefix}{key}.", origin)
            continue
        value = _coerce(where, value, kind)
        choices = _CHOICES.get(f"{prefix}{key}")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        setattr(obj, key, value)


def _check_ranges(obj: Any, prefix: str, origin: str) -> None:
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_ranges(value, f"{key}.", origin)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{origin}: {key}: expected a finite number, got {value!r}")
            lo_br, lo, hi, hi_br = _RANGES[key]
            low_ok = value > lo if lo_br == "(" else value >= lo
            high_ok = value < hi if hi_br == ")" else value <= hi
            if not (low_ok and high_ok):
                raise ConfigError(f"{origin}: {key}: {value!r} is outside {lo_br}{lo}, {hi}{hi_br}")
        elif isinstance(value, str) and len(value) > _MAX_LENGTHS.get(key, MAX_STRING):
            raise ConfigError(f"{origin}: {key}: at most {_MAX_LENGTHS.get(key, MAX_STRING)} characters, "
                              f"got {len(value)}")


def validate(cfg: Config, origin: str = "config") -> Config:
    def positive(where: str, value: float) -> None:
        if not value > 0:
            raise ConfigError(f"{origin}: {where}: must be greater than 0, got {value}")

    positive("decision.window", cfg.decision.window)
    positive("decision.min_frames", cfg.decision.min_frames)
    _check_ranges(cfg, "", origin)
    if 0 < cfg.source.fps < 0.01:
        raise ConfigError(f"{origin}: source.fps: {cfg.source.fps!r} is neither 0 (unpaced) nor at least 0.01")
    if cfg.source.width * cfg.source.height > MAX_FRAME_PIXELS:
        raise ConfigError(f"{origin}: source.width x source.height: {cfg.source.width}x{cfg.source.height} is over "
                          f"{MAX_FRAME_PIXELS / 1e6:.1f} MP, more than a Pi's memory allows per frame")
    if cfg.mqtt.reconnect_min_s > cfg.mqtt.reconnect_max_s:
        raise ConfigError(f"{origin}: mqtt.reconnect_min_s ({cfg.mqtt.reconnect_min_s}) exceeds "
                          f"mqtt.reconnect_max_s ({cfg.mqtt.reconnect_max_s})")
    if cfg.forensics.analysis_max_pixels > cfg.forensics.max_pixels:
        raise ConfigError(f"{origin}: forensics.analysis_max_pixels ({cfg.forensics.analysis_max_pixels}) exceeds "
                          f"forensics.max_pixels ({cfg.forensics.max_pixels})")
    for key, names in (("liveness.models", cfg.liveness.models), ("forensics.model", [cfg.forensics.model])):
        for name in names:
            if not _MODEL_NAME.fullmatch(name) or ".." in name:
                raise ConfigError(f"{origin}: {key}: {name!r} is not a model name (letters, digits, _ . -; "
                                  f"the file stem in the models folder, not a path)")
    if len(set(cfg.liveness.models)) != len(cfg.liveness.models):
        raise ConfigError(f"{origin}: liveness.models: a model is named twice")
    models_dir = cfg.resolved_models_dir()
    try:
        if cfg.liveness.models_dir and models_dir.exists() and not models_dir.is_dir():
            raise ConfigError(f"{origin}: liveness.models_dir: {models_dir} is not a folder")
    except OSError as exc:  # a name too long, a loop of links: Path.exists() raises for those
        raise ConfigError(f"{origin}: liveness.models_dir: unusable path ({exc.strerror or exc})") from None
    if cfg.decision.min_frames > cfg.decision.window:
        raise ConfigError(f"{origin}: decision.min_frames ({cfg.decision.min_frames}) exceeds decision.window ({cfg.decision.window})")
    positive("decision.max_frame_age_s", cfg.decision.max_frame_age_s)
    positive("liveness.threads", cfg.liveness.threads)
    positive("detector.threads", cfg.detector.threads)
    positive("source.width", cfg.source.width)
    positive("source.height", cfg.source.height)
    if not 0 < cfg.detector.min_score < 1:
        raise ConfigError(f"{origin}: detector.min_score: must be between 0 and 1, got {cfg.detector.min_score}")
    if not 0 < cfg.mqtt.port < 65536:
        raise ConfigError(f"{origin}: mqtt.port: {cfg.mqtt.port} is not a TCP port")
    if not cfg.liveness.models:
        raise ConfigError(f"{origin}: liveness.models: name at least one model")
    snap = cfg.snapshots
    bad = sorted(set(snap.decisions) - {"live", "attack", "uncertain", "error"})
    if bad:
        raise ConfigError(f"{origin}: snapshots.decisions: {bad} not among live, attack, uncertain, error")
    positive("snapshots.retention_hours", snap.retention_hours)
    positive("snapshots.purge_interval_s", snap.purge_interval_s)
    positive("snapshots.max_files", snap.max_files)
    if snap.face_margin < 0 or snap.min_interval_s < 0:
        raise ConfigError(f"{origin}: snapshots.face_margin and snapshots.min_interval_s must not be negative")
    if cfg.indicator.kind in ("gpiochip", "sysfs") and cfg.indicator.line < 0:
        raise ConfigError(f"{origin}: indicator.line: set the GPIO line for indicator.kind = {cfg.indicator.kind!r}")
    if cfg.indicator.kind == "file" and not cfg.indicator.path:
        raise ConfigError(f"{origin}: indicator.path: set the file for indicator.kind = 'file'")
    positive("doctor.broker_timeout_s", cfg.doctor.broker_timeout_s)
    if cfg.log.status_interval_s < 0:
        raise ConfigError(f"{origin}: log.status_interval_s: must not be negative (0 turns the status line off), "
                          f"got {cfg.log.status_interval_s}")
    return cfg


def load_config(path: str | Path | None = None) -> Config:
    """Defaults, overlaid with the TOML file at ``path`` when given."""
    cfg = Config()
    if path is None:
        return validate(cfg)
    path = Path(path)
    try:
        special = path.exists() and not path.is_file() and not path.is_dir()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if special:  # a FIFO or a device would block or never end
        raise ConfigError(f"{path}: not a regular file; refused")
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable by this user (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:  # a name too long, a loop of links, an I/O error
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    _fill(cfg, table, "", str(path))
    return validate(cfg, str(path))
