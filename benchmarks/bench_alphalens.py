"""Factor quantiles and IC: this engine's `factor_returns` beside alphalens-reloaded on the same factor, timed in
turns, and their quantile means and mean IC compared on the same data (close-to-close returns, as alphalens).

alphalens lives in its own venv (`make bench-alphalens`), as vectorbt does for `make bench-vectorbt`:

    .venv-bench-alphalens/bin/python benchmarks/bench_alphalens.py --symbols 200 --bars 2520
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import synthetic_market  # noqa: E402
from engine.factors import factor_returns  # noqa: E402
from engine.rules import expression_values  # noqa: E402


def alphalens_study(market, factor: str, quantiles: int, horizons: tuple[int, ...]) -> tuple[pd.DataFrame, pd.Series]:
    """alphalens' quantile means (rows: quantile, columns: horizon) and mean IC per horizon."""
    import alphalens as al

    cols = list(market.symbols)
    prices = pd.DataFrame(market.close, index=market.dates, columns=cols)
    values = pd.DataFrame(expression_values(market, factor), index=market.dates, columns=cols).stack()
    values.index.names = ["date", "asset"]
    data = al.utils.get_clean_factor_and_forward_returns(
        values, prices, quantiles=quantiles, periods=horizons, max_loss=1.0
    )
    means, _ = al.performance.mean_return_by_quantile(data, demeaned=False)
    ic = al.performance.factor_information_coefficient(data).mean()
    return means, ic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--factor", default="roc(20)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    market = synthetic_market(args.symbols, args.bars, seed=1)
    horizons, quantiles = (1, 5, 10), 5
    ours = factor_returns(market, args.factor, quantiles, horizons, entry="close")  # compile first
    theirs_means, theirs_ic = alphalens_study(market, args.factor, quantiles, horizons)
    times: dict[str, list[float]] = {"engine": [], "alphalens": []}
    for _ in range(args.rounds):  # in turns: both meet the same drift of a shared machine
        started = time.perf_counter()
        factor_returns(market, args.factor, quantiles, horizons, entry="close")
        times["engine"].append(time.perf_counter() - started)
        started = time.perf_counter()
        alphalens_study(market, args.factor, quantiles, horizons)
        times["alphalens"].append(time.perf_counter() - started)
    theirs_by_q = theirs_means.to_numpy()  # rows: quantile; columns: periods
    print(
        json.dumps(
            {
                "workload": f"{args.symbols}x{args.bars}, factor {args.factor}, {quantiles} quantiles, {horizons}",
                "engine_s": round(statistics.median(times["engine"]), 3),
                "alphalens_s": round(statistics.median(times["alphalens"]), 3),
                "max_quantile_mean_difference": float(np.nanmax(np.abs(ours.by_quantile.to_numpy() - theirs_by_q))),
                "mean_ic": {"engine": ours.ic["mean"].round(5).tolist(), "alphalens": theirs_ic.round(5).tolist()},
            }
        )
    )


if __name__ == "__main__":
    main()
