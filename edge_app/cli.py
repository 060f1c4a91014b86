"""``edge-app``: the device's command line. Each subcommand lives in ``edge_app/commands``
as a module with ``register(subparsers)``; adding a command is adding a module and its
name to ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from edge_app import __version__

COMMANDS = ("run", "liveness", "doctor", "forensics", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-app",
        description="Face-liveness terminal: camera frames -> faces -> int8 TFLite liveness -> MQTT decisions.",
    )
    parser.add_argument("--version", action="version", version=f"edge-app {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edge_app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from edge_app.memory import return_freed_memory

    # every command decodes images; a 512 MB Pi must see each stage's memory come back
    return_freed_memory()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # a mistyped option is reported with the usage of the subcommand it was given to
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
