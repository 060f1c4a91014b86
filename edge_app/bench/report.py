"""The benchmark's Markdown report, written from its JSON figures."""

from __future__ import annotations


def _ms(v: dict) -> str:
    return f"{v['min_ms']:.3f} | {v['median_ms']:.3f} | {v['p95_ms']:.3f}"


def _timing_table(rows: dict) -> list[str]:
    lines = ["| step | min ms | median ms | p95 ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_ms(v)} |" for name, v in rows.items()]
    return lines


def markdown(r: dict, pi_estimate: dict | None = None) -> str:
    env = r["environment"]
    out = [
        "# edge_app benchmark",
        "",
        f"Interpreter: **{env['interpreter']}** (ai-edge-litert {env['ai_edge_litert']}), Python {env['python']}, "
        f"numpy {env['numpy']}, Pillow {env['pillow']}, PyWavelets {env['pywavelets']}; {env['cpus']} CPUs "
        f"({env['processor']}), load average {env['load_average_at_start'][0]:.2f} at start, "
        f"{r['load_average_at_end'][0]:.2f} at end. Timings are from one run, round-robin; ratios compare "
        "figures taken side by side in that run.",
        "",
        "## End to end (frame capture to MQTT publish)",
        "",
        f"Every frame with a face ends in a decision event (decision window 1), so each latency includes "
        f"spooling and handing the event to the MQTT client; {r['settings']['frames']} frames per case. "
        "'paced 60 fps' feeds frames like a 60 fps camera (stale frames are dropped when busy); "
        "'unpaced' feeds them as fast as the pipeline takes them (maximum throughput).",
        "",
        "| case | mode | fps | p50 ms | p95 ms | p99 ms | max ms | dropped | faces found |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, modes in r["end_to_end_cases"].items():
        for mode, f in modes.items():
            out.append(f"| {case} | {mode.replace('_', ' ')} | {f['fps']} | {f['p50_ms']} | {f['p95_ms']} | "
                       f"{f['p99_ms']} | {f['max_ms']} | {f['dropped']} | {f['faces']}/{f['frames']} |")
    if "sequential_640x480_one_face" in r:
        s = r["sequential_640x480_one_face"]
        out += ["", f"Straight sequential implementation of the same steps (640x480, one face; no prefetch thread, "
                f"ELA and wavelet residual of the whole frame, each event waited for until acknowledged): "
                f"**{s['fps']} fps**, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms. Our pipeline unpaced: "
                f"**{r['throughput_vs_sequential']}x** its throughput. Most of that gain is computing ELA and the "
                f"wavelet residual on the face crops instead of the whole frame and not waiting for each PUBACK; the "
                f"same pipeline without its prefetch thread runs at {r['no_prefetch_640x480_one_face']['fps']} fps, "
                f"so overlapping capture with inference alone gives {r['throughput_vs_no_prefetch']}x."]
    out += ["", "## Stages at 640x480, one face", ""] + _timing_table(r["stages"])
    out += ["", "## Models (invoke only; int8 vs float32; 1 and 2 threads)", ""] + _timing_table(r["models"])
    out += ["", "| model | file | bytes | XNNPACK partitions | whole graph delegated |", "|---|---|---:|---:|---|"]
    for name, f in r["model_facts"].items():
        out.append(f"| {name} | {f['file']} | {f['bytes']} | {f['xnnpack_partitions']} | {'yes' if f['xnnpack_whole_graph'] else 'no'} |")
    peer = r.get("peer", {})
    if peer.get("available"):
        out.append(f"| peer MiniFASNetV2 float | {peer['file']} | {peer['bytes']} | {peer['xnnpack_partitions']} | "
                   f"{'yes' if peer['xnnpack_whole_graph'] else 'no'} |")
    if "detectors" in r:
        out += ["", "## Face detectors (`detector.model`; detection time per frame)", "",
                "short: BlazeFace short-range 128x128; full: full-range 192x192; both: short-range, then full-range "
                "on frames where it finds no face (a far face or none costs both runs); "
                "close-up retry: a face-less frame looked at again by the short-range model, shrunk "
                "(recall by face size: models/reports/detector.md).", ""] + _timing_table(r["detectors"])
        loop = r.get("detector_frame_loop_640x480", {})
        if loop:
            out += ["", "| detector.model | frame loop fps, 640x480, one face, unpaced | p50 ms | p95 ms |",
                    "|---|---:|---:|---:|"]
            out += [f"| {k} | {f['fps']} | {f['p50_ms']} | {f['p95_ms']} |" for k, f in loop.items()]
    codec = f"; codec backend: {r['ela_codec']}" if r.get("ela_codec") else ""
    if r.get("ela_threads", 1) > 1:
        codec += f", frames coded in strips on up to {r['ela_threads']} threads"
    out += ["", f"## ELA at 640x480 (quality 90{codec})", ""] + _timing_table(r["ela_640x480"])
    out += _timing_table(r["wavelet_640x480_gray_ms"])[2:]
    out += ["", "## Ratios (medians, same run)", "", "| ratio | value |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in r["ratios"].items()]
    out += ["", f"Peak resident memory: {r['peak_rss_mb']} MB. Model files: "
            + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in r["model_files"].items()) + "."]
    if pi_estimate:
        out += ["", "## Raspberry Pi estimate (derived, not measured)", "", pi_estimate["method"], "",
                "| board | factor | per-frame ms (p50 est.) | fps est. |", "|---|---:|---:|---:|"]
        for board, e in pi_estimate["boards"].items():
            out.append(f"| {board} | {e['factor']} | {e['p50_ms']} | {e['fps']} |")
    return "\n".join(out) + "\n"


def pi_estimate(r: dict) -> dict:
    """Scale the measured single-core per-frame work by assumed per-core slowdowns.

    The factors are assumptions from public single-thread comparisons of Cortex-A72
    (Pi 4, 1.8 GHz) and Cortex-A76 (Pi 5, 2.4 GHz) against a current x86-64 server core
    on NEON/AVX2 integer kernels and libjpeg-turbo; they are not measured here.
    """
    case = r["end_to_end_cases"]["640x480 one face"]["unpaced"]
    per_frame = 1000.0 / case["fps"]
    boards = {}
    for board, (lo, hi) in {"Pi 5 (Cortex-A76 2.4 GHz)": (2.0, 3.0), "Pi 4 (Cortex-A72 1.8 GHz)": (4.0, 6.0)}.items():
        boards[board] = {
            "factor": f"{lo:g}-{hi:g}x",
            "p50_ms": f"{r['end_to_end_cases']['640x480 one face']['paced_60fps']['p50_ms'] * lo:.0f}-"
                      f"{r['end_to_end_cases']['640x480 one face']['paced_60fps']['p50_ms'] * hi:.0f}",
            "fps": f"{1000 / (per_frame * hi):.0f}-{1000 / (per_frame * lo):.0f}",
        }
    return {
        "method": "Measured per-frame figures here (640x480, one face, unpaced throughput and paced p50) "
                  "multiplied by an assumed per-core slowdown of 2-3x for a Pi 5 and 4-6x for a Pi 4 "
                  "(public single-thread comparisons of those cores with a current x86-64 core on NEON/AVX2 "
                  "integer kernels and libjpeg-turbo). Both boards have 4 cores, so the two pipeline threads "
                  "overlap as they do here. An estimate to be replaced by a run of `edge-app bench` on the board.",
        "boards": boards,
    }
