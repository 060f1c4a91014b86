"""Benchmarks (``edge-app bench``): timings are ratios measured side by side in one run.

Variants are timed round-robin, each repetition timing each variant once in a shuffled
order, so the noise of a shared machine hits all of them alike and no variant always runs
in the caches its predecessor left (a fixed order made one 128x128 ELA path look 40% slower
than the same code timed two slots later); min and median are reported, never a single
wall-clock figure, and tests never assert on them.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Callable


def interleaved(variants: dict[str, Callable[[], object]], repeat: int, warmup: int = 3) -> dict:
    """{name: {min_ms, median_ms, p95_ms, n}} with variants timed round-robin, shuffled."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    gc_was = gc.isenabled()
    gc.disable()
    order = list(variants.items())
    shuffle = random.Random(0).shuffle  # seeded: the same orders in every run
    try:
        for _ in range(repeat):
            shuffle(order)
            for name, fn in order:
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        if gc_was:
            gc.enable()
    return {name: summarize(ts) for name, ts in times.items()}


def summarize(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {
        "min_ms": ordered[0],
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
        "n": len(ordered),
    }


def default_repeat(pixels: int) -> int:
    # ~1-3 s per size on a 2-core x86 box; large frames need fewer rounds.
    return max(30, min(400, int(60e6 / pixels)))


def ratio(res: dict, a: str, b: str) -> dict:
    return {"min": res[a]["min_ms"] / res[b]["min_ms"], "median": res[a]["median_ms"] / res[b]["median_ms"]}


def fmt_ratio(r: dict) -> str:
    return f"{r['min']:.2f} / {r['median']:.2f}"
