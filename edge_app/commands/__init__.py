"""Subcommands of ``edge-app``; shared option helpers for them."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_app.config import Config, ConfigError, load_config


# argparse ``type=`` callables: argparse has no range-checked number types, and these keep its
# usage-and-exit-2 handling.
def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a negative count is refused with the subcommand's usage)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (0 means no limit)")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0 (0 means unpaced)")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="TOML config file (default: built-in defaults)")
    parser.add_argument("--models-dir", type=Path, help="folder with the .tflite models and their JSON metadata")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="override log.level")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, not the stream it was created with (tests and
    embedding programs swap sys.stderr; a handler holding a closed stream loses records)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class OneLineFormatter(logging.Formatter):
    """Tracebacks folded onto the record's line: journald shows one entry per event."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def setup_logging(level: str) -> None:
    # Under systemd, journald adds its own timestamps; elsewhere a timestamp helps.
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = _StderrHandler()
    handler.setFormatter(OneLineFormatter(fmt) if journald else logging.Formatter(fmt))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)


def config_from_args(args: argparse.Namespace) -> Config:
    """Config file plus command-line overrides; a bad config exits with its message."""
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"edge-app: configuration error: {exc}") from None
    if getattr(args, "models_dir", None):
        cfg.liveness.models_dir = str(args.models_dir)
    if getattr(args, "log_level", None):
        cfg.log.level = args.log_level
    setup_logging(cfg.log.level)
    return cfg
