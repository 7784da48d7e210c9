"""Where a backtest's time goes, each part in turns with the bare loop of bench_bare.py (so the machine's drift
hits both alike): the kernel (`_kernels.simulate`), the result tables and metrics (`backtest._result`) and the
whole `backtest()`. Run it in two checkouts to see which part a change made slower.

    .venv/bin/python benchmarks/bench_parts.py        # last line: one JSON object
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import interleaved, report  # noqa: E402
from benchmarks.bench_bare import DENSITY, N_BARS, N_SYMBOLS, PARAMS, bare  # noqa: E402
from engine import _kernels as k  # noqa: E402
from engine import backtest, synthetic_market  # noqa: E402
from engine.backtest import BacktestParams, _result, kernel_inputs, read_only, signal_matrix  # noqa: E402


def main() -> None:
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY
    params = BacktestParams(**PARAMS)
    entries, priority = signal_matrix(market, signals)
    bars, combo, shared = kernel_inputs(market, params)
    args = [read_only(a) for a in (bars, entries, priority, combo, shared)]
    out = k.simulate(*args)
    loop_args = (market.open, market.high, market.low, market.close, signals, 0.05, 0.10, 20, 50, 5e-4, 5e-4, 1e5)
    parts = {
        "kernel": lambda: k.simulate(*args),
        "result": lambda: _result(market, params, out, signals),
        "backtest": lambda: backtest(market, signals, params),
    }
    figures: dict[str, object] = {"universe": f"{N_SYMBOLS}x{N_BARS}"}
    for name, fn in parts.items():
        ours, loop = interleaved(fn, lambda: bare(*loop_args), repeat=61)
        figures[f"{name}_ms"] = round(ours * 1e3, 2)
        figures[f"{name}_over_bare_x"] = round(ours / loop, 3)
    report(figures)


if __name__ == "__main__":
    main()
