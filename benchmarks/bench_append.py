"""Appending one day of bars to a family: 2,000 symbols x 5,040 bars plus one new bar each, timed warm. The
usual case writes below the newest version's arrays (O(new bars)); appending to an older version copies the
history once. Peak memory above what the caller holds is traced (tracemalloc sees numpy's arrays). Then the
whole service path, which also stores the new version (its Parquet file is written whole).

    .venv/bin/python benchmarks/bench_append.py
    .venv/bin/python benchmarks/bench_append.py --symbols 500 --bars 2520
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import tracemalloc

from engine import synthetic_market
from engine.data import Market, append, market_from_frame
from engine.server.datasets import to_frame


def _timed(base: Market, day: Market) -> tuple[Market, float, float]:
    """(the new version, seconds, peak MB traced above the inputs)."""
    tracemalloc.start()
    started = time.perf_counter()
    merged, _ = append(base, day)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return merged, seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=5040)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    whole = synthetic_market(args.symbols, args.bars + args.repeat + 1, seed=1)
    frame = to_frame(whole)
    days = [market_from_frame(frame[frame.date == d], name="day") for d in whole.dates[args.bars :]]
    family = market_from_frame(frame[frame.date < whole.dates[args.bars]], name="family")
    version, _ = append(family, days[0])  # warm (the day goes below the loaded arrays)
    below = []
    for day in days[1:]:
        version, seconds, peak = _timed(version, day)
        below.append((seconds, peak))
    _, copy_seconds, copy_peak = _timed(family, days[1])  # an older version: the history is copied once
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SCANNER_CACHE_DIR"] = cache
        from engine.server import service

        service.create_family("bench", family, "user:bench@example.org")
        started = time.perf_counter()
        service.append_to_family("bench", days[0], "user:bench@example.org")
        stored = time.perf_counter() - started
    print(
        json.dumps(
            {
                "workload": f"{args.symbols}x{args.bars} + 1 bar per symbol, {len(below)} appends",
                "family_arrays_mb": round(family.nbytes / 2**20, 1),
                "new_day_mb": round(days[1].nbytes / 2**20, 3),
                "append_seconds_median": round(statistics.median(s for s, _ in below), 3),
                "append_peak_mb_median": round(statistics.median(p for _, p in below), 3),
                "append_to_older_version_seconds": round(copy_seconds, 3),
                "append_to_older_version_peak_mb": round(copy_peak, 1),
                "service_append_and_store_seconds": round(stored, 3),
                "same_id_as_a_fresh_load": version.fingerprint == market_from_frame(frame).fingerprint,
            }
        )
    )


if __name__ == "__main__":
    main()
