"""Shared helpers for benchmark scripts: timing, peak memory and the figures printed."""

from __future__ import annotations

import json
import resource
import statistics
import time


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeat: int = 7) -> tuple[float, float]:
    """(first call seconds, median of `repeat` further calls in seconds)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def interleaved(ours, theirs, repeat: int = 41) -> tuple[float, float]:
    """Median seconds of each of two functions, called in turns after one warm-up call each: a shared
    machine's speed drifts over seconds, and turns expose both sides to the same drift."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeat):
        for fn, runs in ((ours, a), (theirs, b)):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def report(figures: dict) -> None:
    """The figures one per line, aligned for reading, then as one JSON object on the last line (for scripts)."""
    width = max(map(len, figures), default=0) + 2
    for key, value in figures.items():
        print(f"{key:<{width}} {value}")
    print(json.dumps(figures))
