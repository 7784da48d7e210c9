"""The event study at the issue's scale: 2,000 symbols x 5,040 bars with about 200,000 signals, forward returns
for 5 horizons against the universe, the date-clustered summary and the random-entry percentile, warm.

    .venv/bin/python benchmarks/bench_events.py
    .venv/bin/python benchmarks/bench_events.py --symbols 500 --bars 2520 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from engine import forward_returns, synthetic_market


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=5040)
    parser.add_argument("--signals", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    market = synthetic_market(args.symbols, args.bars, seed=1)
    density = args.signals / (args.symbols * args.bars)
    signals = np.random.default_rng(0).random(market.shape) < density
    forward_returns(market, signals)  # compile or load the kernels
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        study = forward_returns(market, signals)
        times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "workload": f"{args.symbols}x{args.bars}, {len(study.events):,} signals, horizons {study.horizons}",
                "seconds_median": round(statistics.median(times), 3),
                "seconds_min": round(min(times), 3),
                "random_draws": "bounded by RANDOM_CELLS",
            }
        )
    )


if __name__ == "__main__":
    main()
