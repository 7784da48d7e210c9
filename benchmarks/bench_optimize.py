"""Grid-search throughput and memory: 10 stop x 10 target x 5 holding = 500 combinations on 50 x 2,520 bars.

Prints combinations per second and the peak RSS growth during the run, for our grid (twice, with 100
and 500 combinations, to show memory is flat in the number of combinations) and, when vectorbt can be
imported, for vectorbt's Portfolio.from_signals with the same grid tiled into columns, in the same run.
`make bench-vectorbt` builds a separate venv with vectorbt and runs this script there.
Last line: one JSON object.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import report  # noqa: E402
from engine import BacktestParams, synthetic_market  # noqa: E402
from engine.optimize import optimize  # noqa: E402
from engine.rules import scan  # noqa: E402

N_SYMBOLS, N_BARS = 50, 2520
RULE = "rsi(14) < 35"
STOPS = list(np.linspace(1.0, 10.0, 10))
TARGETS = list(np.linspace(2.0, 20.0, 10))
HOLDS = [5, 10, 20, 40, 60]
BASE = BacktestParams(max_positions=10, commission=0.05, slippage_bps=5)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def measure(fn) -> tuple[float, float, object]:
    """(seconds, peak RSS growth in MB while fn ran, fn's result), sampling RSS every 5 ms."""
    start_rss, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    return seconds, max(peak[0], rss_mb()) - start_rss, out


def main() -> None:
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    grid = {"stop_loss": STOPS, "take_profit": TARGETS, "holding_period": HOLDS}
    small = {"stop_loss": STOPS, "take_profit": TARGETS, "holding_period": HOLDS[:1]}
    optimize(market, RULE, BASE, small)  # compile / load the Numba cache
    s100, m100, _ = measure(lambda: optimize(market, RULE, BASE, small))
    s500, m500, result = measure(lambda: optimize(market, RULE, BASE, grid))
    figures = {
        "grid": f"{len(result.table)} combinations on {N_SYMBOLS}x{N_BARS}",
        "combos_per_s": round(len(result.table) / s500),
        "seconds_500": round(s500, 3),
        "rss_growth_mb_100_combos": round(m100, 1),
        "rss_growth_mb_500_combos": round(m500, 1),
        "best": {k: round(v, 2) for k, v in (result.best_params() or {}).items()},
    }
    try:
        import vectorbt  # noqa: F401

        figures.update(vectorbt_grid(market))
        figures["speedup_vs_vectorbt_x"] = round(figures["combos_per_s"] / figures["vectorbt_combos_per_s"], 1)
    except ImportError:
        figures["vectorbt"] = "not installed (run: make bench-vectorbt)"
    report(figures)


def vectorbt_grid(market) -> dict:
    """The same 500 combinations as vectorbt users write them: the grid tiled into columns, one call.
    vectorbt has no holding-period stop, so each holding period is an exit signal h bars after entry."""
    import pandas as pd
    import vectorbt as vbt

    signals = scan(market, RULE).matrix
    entries = np.roll(signals, 1, axis=0)
    entries[0] = False
    combos = [(s, t, h) for h in HOLDS for s in STOPS for t in TARGETS]
    n = N_SYMBOLS

    def run(k: int):
        close = pd.DataFrame(np.tile(market.close, k))
        ent = np.tile(entries, k)
        ex = np.concatenate([np.roll(entries, h, axis=0) for _, _, h in combos[:k]], axis=1)
        sl = np.repeat([c[0] / 100 for c in combos[:k]], n)
        tp = np.repeat([c[1] / 100 for c in combos[:k]], n)
        pf = vbt.Portfolio.from_signals(
            close,
            ent,
            ex,
            sl_stop=sl,
            tp_stop=tp,
            size=0.1,
            size_type="percent",
            fees=0.0005,
            slippage=0.0005,
            init_cash=100_000,
            cash_sharing=True,
            group_by=np.repeat(np.arange(k), n),
            freq="1D",
        )
        return pf.sharpe_ratio()

    run(2)  # compile
    seconds, mem, sharpe = measure(lambda: run(len(combos)))
    return {
        "vectorbt_version": vbt.__version__,
        "vectorbt_combos_per_s": round(len(combos) / seconds, 1),
        "vectorbt_seconds": round(seconds, 2),
        "vectorbt_rss_growth_mb": round(mem, 1),
        "vectorbt_sharpe_columns": int(len(sharpe)),
    }


if __name__ == "__main__":
    main()
