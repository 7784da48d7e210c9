"""The event study at the issue's scale: 2,000 symbols x 5,040 bars with about 200,000 signals (`rsi(14) < 27`
ranked by `roc(20)`), forward returns for 5 horizons against the universe, the date-clustered summary with the
random-entry percentile, and the ranking's factor quantiles and IC among the hits, warm; then the factor on
the whole universe (every symbol on every bar) on its own.

    .venv/bin/python benchmarks/bench_events.py
    .venv/bin/python benchmarks/bench_events.py --symbols 500 --bars 2520 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from engine import forward_returns, scan, synthetic_market
from engine.factors import factor_returns


def _median_seconds(work: Callable[[], object], repeat: int) -> float:
    work()  # compile or load the kernels
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=5040)
    parser.add_argument("--rule", default="rsi(14) < 27")
    parser.add_argument("--factor", default="roc(20)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    market = synthetic_market(args.symbols, args.bars, seed=1)

    def scanner_section() -> None:  # what the Scanner computes for "<rule> rank by <factor>"
        forward_returns(market, scan(market, args.rule))
        factor_returns(market, args.factor, universe_rule=args.rule)

    study = forward_returns(market, scan(market, args.rule))
    print(
        json.dumps(
            {
                "workload": f"{args.symbols}x{args.bars}, {len(study.events):,} signals of {args.rule!r}, "
                f"horizons {study.horizons}, factor {args.factor!r} in 5 quantiles",
                "events_seconds": _median_seconds(
                    lambda: forward_returns(market, scan(market, args.rule)), args.repeat
                ),
                "events_and_factor_on_hits_seconds": _median_seconds(scanner_section, args.repeat),
                "factor_whole_universe_seconds": _median_seconds(
                    lambda: factor_returns(market, args.factor), args.repeat
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
