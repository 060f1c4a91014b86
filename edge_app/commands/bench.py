"""``edge-app bench``: the benchmark suite (never part of the tests)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from edge_app.commands import add_common, config_from_args, non_negative_int


class _Tee(io.TextIOBase):
    """stdout that is also kept, for ``bench ela --report``."""

    def __init__(self, stream) -> None:
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_ela(args: argparse.Namespace) -> int:
    from edge_app.bench.ela import main as ela_main

    argv = []
    for option, value in (("--json", args.json), ("--repeat", args.repeat), ("--only", args.only),
                          ("--image", args.image), ("--quality", args.quality)):
        if value is not None:
            argv += [option, str(value)]
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        rc = ela_main(argv)
    if args.report:
        args.report.write_text("# ELA and wavelet residual against the JPEG codec floor\n\n"
                               f"`edge-app bench ela {' '.join(argv)}`\n\n```\n{tee.kept.getvalue()}```\n")
        print(f"report: {args.report}", file=sys.stderr)
    return rc


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the device path and write a Markdown report and JSON figures",
        description="Time every stage, int8 against float models, ELA against the codec floor, and the whole "
        "pipeline end to end (frame capture to MQTT publish) on the built-in sample at 640x480 and 1280x720, "
        "with one face and with none. Starts a private mosquitto when no broker answers on 127.0.0.1:1883. "
        "'edge-app bench ela' runs only the ELA/wavelet benchmark, 'edge-app bench forensics' the still-image "
        "forensics per image size.",
    )
    p.add_argument("what", nargs="?", choices=("all", "ela", "forensics"), default="all",
                   help="all (default), ela or forensics")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the figures as JSON (default: bench-results.json; ela: only when given)")
    p.add_argument("--report", type=Path, metavar="FILE",
                   help="write the Markdown report (default: bench-report.md; ela: its printed table, only when given)")
    p.add_argument("--frames", type=non_negative_int, default=600, help="frames per end-to-end case (default 600)")
    p.add_argument("--repeat", type=non_negative_int,
                   help="rounds per stage timing (default 200; ela: rounds per size, default by size 30-400)")
    ela = p.add_argument_group("ela only")
    ela.add_argument("--only", choices=("frames", "crop"), help="time only the three frame sizes, or only the 128x128 crop")
    ela.add_argument("--image", type=Path, help="photo to use (default: a NUAA frame, else a synthetic textured image)")
    ela.add_argument("--quality", type=int, help="JPEG quality (default 90)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "ela":
        return run_ela(args)
    if args.only or args.image or args.quality is not None:
        raise SystemExit("edge-app bench: --only, --image and --quality belong to 'edge-app bench ela'")
    cfg = config_from_args(args)
    if args.what == "forensics":
        from edge_app.bench.forensics import main as forensics_main

        return forensics_main(["--json", str(args.json)] if args.json else [], cfg.resolved_models_dir())
    from edge_app.bench.pipeline import run_suite
    from edge_app.bench.report import markdown, pi_estimate

    results = run_suite(cfg.resolved_models_dir(), args.frames, args.repeat or 200,
                        progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    results["pi_estimate"] = pi_estimate(results)
    json_path = args.json or Path("bench-results.json")
    report_path = args.report or Path("bench-report.md")
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results, results["pi_estimate"])
    report_path.write_text(report)
    print(report)
    print(f"figures: {json_path}; report: {report_path}", file=sys.stderr)
    return 0
