"""Configuration: one TOML file, typed sections, defaults that work on a fresh machine.

An unknown key or a value of the wrong type stops start-up with a message naming the key:
a typo in a door terminal's config must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

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
    discovery: bool = True
    # reconnect backoff: the first retry waits reconnect_min_s, each next one twice as long, capped
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0


@dataclass
class LogConfig:
    level: str = "INFO"


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
    max_pixels: int = 12_500_000  # decoded size above this is refused before decoding (sized for a 512 MB Pi)
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


_CHOICES = {
    "source.kind": ("sample", "files", "synthetic", "picamera2"),
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
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if getattr(kind, "__origin__", None) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    raise ConfigError(f"{where}: unsupported type")  # a bug in this module, not in the file


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


def validate(cfg: Config, origin: str = "config") -> Config:
    def positive(where: str, value: float) -> None:
        if value <= 0:
            raise ConfigError(f"{origin}: {where}: must be greater than 0, got {value}")

    positive("decision.window", cfg.decision.window)
    positive("decision.min_frames", cfg.decision.min_frames)
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
    return cfg


def load_config(path: str | Path | None = None) -> Config:
    """Defaults, overlaid with the TOML file at ``path`` when given."""
    cfg = Config()
    if path is None:
        return validate(cfg)
    path = Path(path)
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
    _fill(cfg, table, "", str(path))
    return validate(cfg, str(path))
