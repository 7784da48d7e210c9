"""Backtest engine speed and memory on a synthetic 500 symbols x 2,520 bars universe, ~5% signal density.

Prints a table, then (last line) one JSON object. Run: .venv/bin/python benchmarks/bench_engine.py
vectorbt's Portfolio.from_signals is timed beside it when vectorbt is importable (it is not a project
dependency: install it into a separate venv to compare).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, report, timed  # noqa: E402
from engine import RiskLimits, Sizing, backtest, synthetic_market  # noqa: E402

N_SYMBOLS, N_BARS, DENSITY = 500, 2520, 0.05
PARAMS = dict(stop_loss=5.0, take_profit=10.0, holding_period=20, max_positions=50, commission=0.05, slippage_bps=5)


def main() -> None:
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY
    input_mb = sum(getattr(market, a).nbytes for a in ("open", "high", "low", "close", "volume")) / 1e6
    rss_before = peak_rss_mb()

    first, warm = timed(lambda: backtest(market, signals, **PARAMS), repeat=31)
    result = backtest(market, signals, **PARAMS)
    limited = dict(PARAMS, sizing=Sizing("volatility_target"), limits=RiskLimits.defaults())
    first_lim, warm_lim = timed(lambda: backtest(market, signals, **limited), repeat=31)
    cells = N_SYMBOLS * N_BARS
    figures = {
        "universe": f"{N_SYMBOLS}x{N_BARS}",
        "signals": int(signals.sum()),
        "trades": int(result.metrics["n_trades"]),
        "first_call_s": round(first, 3),
        "warm_ms": round(warm * 1e3, 2),
        "cells_per_s": round(cells / warm),
        "warm_ms_voltarget_all_limits": round(warm_lim * 1e3, 2),
        "limits_slowdown_x": round(warm_lim / warm, 2),
        "input_arrays_mb": round(input_mb, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_growth_mb": round(peak_rss_mb() - rss_before, 1),
    }
    try:
        import vectorbt as vbt  # noqa: F401

        figures.update(_vectorbt(market, signals, warm))
    except ImportError:
        figures["vectorbt"] = "not installed"
    report(figures)


def _vectorbt(market, signals, our_warm: float) -> dict:
    import pandas as pd
    import vectorbt as vbt

    close = pd.DataFrame(market.close, index=market.dates, columns=market.symbols)
    entries = pd.DataFrame(np.roll(signals, 1, axis=0), index=market.dates, columns=market.symbols)
    kw = dict(open=market.open, high=market.high, low=market.low, sl_stop=0.05, tp_stop=0.10, fees=0.0005)
    kw.update(slippage=0.0005, init_cash=100_000, cash_sharing=True, group_by=True, size=0.02, size_type="percent")
    first, warm = timed(lambda: vbt.Portfolio.from_signals(close, entries, **kw), repeat=3)
    return {
        "vectorbt_first_s": round(first, 2),
        "vectorbt_warm_ms": round(warm * 1e3, 1),
        "speedup_vs_vectorbt_x": round(warm / our_warm, 1),
    }


if __name__ == "__main__":
    main()
