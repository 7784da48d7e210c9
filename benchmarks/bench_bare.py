"""Our engine beside a bare Numba loop of the same exits, in the same process: what the engine's structure
(named steps, record arrays, events, limits, a pandas result with metrics) costs over the least code that
could produce the same trades.

The bare loop: shared cash, equal weight (equity / max positions), entries at the next open, a stop and a
target (gaps fill at the open, stop first), a holding period, commission and slippage; it returns only
the equity curve and the trade count. The bare sweep runs it over a grid with `prange`.

    .venv/bin/python benchmarks/bench_bare.py        # last line: one JSON object
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import interleaved, report  # noqa: E402
from engine import BacktestParams, backtest, synthetic_market  # noqa: E402
from engine.optimize import optimize, run_chunk  # noqa: E402  (the optimiser's unit of work: one scan, one parallel call)
from engine.rules import scan  # noqa: E402

N_SYMBOLS, N_BARS, DENSITY = 500, 2520, 0.05
PARAMS = dict(stop_loss=5.0, take_profit=10.0, holding_period=20, max_positions=50, commission=0.05, slippage_bps=5)
GRID = {"stop_loss": [2.0, 4.0, 6.0, 8.0], "take_profit": [5.0, 10.0, 15.0, 20.0]}


@njit(cache=True, nogil=True)
def bare(open_, high, low, close, signal, stop, target, hold, max_pos, comm, slip, capital):
    n_bars, n_sym = close.shape
    shares, entry, held, mark = np.zeros(n_sym), np.zeros(n_sym), np.zeros(n_sym, np.int64), np.zeros(n_sym)
    cash, equity, n_open, n_trades = capital, capital, 0, 0
    curve = np.empty(n_bars)
    for t in range(n_bars):
        if t > 0:
            for s in range(n_sym):
                if signal[t - 1, s] and shares[s] == 0.0 and n_open < max_pos and open_[t, s] > 0.0:
                    fill = open_[t, s] * (1 + slip)
                    value = min(equity / max_pos, cash)
                    if value > 0.0:
                        shares[s] = value / (fill * (1 + comm))
                        entry[s], held[s], mark[s] = fill, 0, fill
                        cash -= shares[s] * fill * (1 + comm)
                        n_open += 1
        value = 0.0
        for s in range(n_sym):
            if shares[s] == 0.0 or np.isnan(close[t, s]):
                value += shares[s] * mark[s]
                continue
            held[s] += 1
            st, tg = entry[s] * (1 - stop), entry[s] * (1 + target)
            px = np.nan
            o = open_[t, s]
            if held[s] > 1 and (o <= st or o >= tg):  # a gap through the stop or the target: the open
                px = o
            elif low[t, s] <= st:
                px = st
            elif high[t, s] >= tg:
                px = tg
            elif held[s] >= hold:
                px = close[t, s]
            if np.isnan(px):
                mark[s] = close[t, s]
                value += shares[s] * mark[s]
                continue
            fill = px * (1 - slip)
            cash += shares[s] * fill * (1 - comm)
            shares[s] = 0.0
            n_open -= 1
            n_trades += 1
        equity = cash + value
        curve[t] = equity
    return curve, n_trades


@njit(cache=True, nogil=True, parallel=True)
def bare_sweep(open_, high, low, close, signal, stops, targets, holds, max_pos, comm, slip, capital):
    out = np.empty(len(stops))
    for c in prange(len(stops)):
        curve, _ = bare(open_, high, low, close, signal, stops[c], targets[c], holds[c], max_pos, comm, slip, capital)
        out[c] = curve[-1]
    return out


def full_grid() -> dict[str, float]:
    """Issue 26's grid: 10 stop x 10 target x 5 holding = 500 combinations on 50 x 2,520 bars, the whole
    `optimize()` call (checks, combination records, scan, kernel, result table) against the bare sweep
    over the same exits on the same signals."""
    market = synthetic_market(50, 2520, seed=42)
    rule = "rsi(14) < 35"
    grid = {
        "stop_loss": list(np.linspace(1.0, 10.0, 10)),
        "take_profit": list(np.linspace(2.0, 20.0, 10)),
        "holding_period": [5, 10, 20, 40, 60],
    }
    base = BacktestParams(max_positions=10, commission=0.05, slippage_bps=5)
    combos = np.array(
        [(s, t, h) for s in grid["stop_loss"] for t in grid["take_profit"] for h in grid["holding_period"]]
    )
    dense = scan(market, rule).matrix
    stops, targets, holds = combos[:, 0] / 100, combos[:, 1] / 100, combos[:, 2].astype(np.int64)
    costs = (10, 0.0005, 0.0005, 100_000.0)
    ours, theirs = interleaved(
        lambda: optimize(market, rule, base, grid),
        lambda: bare_sweep(market.open, market.high, market.low, market.close, dense, stops, targets, holds, *costs),
        repeat=15,
    )
    return {
        "full_grid": "500 combinations on 50x2520",
        "optimize_combos_per_s": round(len(combos) / ours),
        "bare_sweep_combos_per_s": round(len(combos) / theirs),
        "optimize_over_bare_x": round(ours / theirs, 2),
    }


def independent() -> dict[str, object]:
    """The workload a peer would pick: every position independent (max positions = symbols, capital 1e9, so no
    signal waits for cash or a slot), `backtest()` with its metrics and trade table read, beside the bare loop
    of the same exits. `bench_independent.py` times the same run against an earlier commit."""
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY
    params = {**PARAMS, "max_positions": N_SYMBOLS, "initial_capital": 1e9}
    args = (market.open, market.high, market.low, market.close, signals, 0.05, 0.10, 20, N_SYMBOLS)

    def ours() -> None:
        result = backtest(market, signals, **params)
        result.metrics["n_trades"], len(result.trades)

    mine, loop = interleaved(ours, lambda: bare(*args, 0.0005, 0.0005, 1e9))
    return {
        "independent_ms": round(mine * 1e3, 1),
        "independent_bare_ms": round(loop * 1e3, 1),
        "independent_over_bare_x": round(mine / loop, 2),
        "independent_trades": int(bare(*args, 0.0005, 0.0005, 1e9)[1]),
    }


def main() -> None:
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY
    args = (market.open, market.high, market.low, market.close, signals)
    costs = (20, 50, 0.0005, 0.0005, 100_000.0)
    ours, loop = interleaved(lambda: backtest(market, signals, **PARAMS), lambda: bare(*args, 0.05, 0.10, *costs))
    curve, n_bare = bare(*args, 0.05, 0.10, *costs)
    n_ours = backtest(market, signals, **PARAMS).metrics["n_trades"]

    # The grid: 16 combinations of one rule, our optimiser's chunk vs the bare sweep on the same signals.
    base = BacktestParams(**PARAMS)
    combos = pd.DataFrame(
        [(s, t) for s in GRID["stop_loss"] for t in GRID["take_profit"]], columns=list(GRID), dtype=float
    )
    rule = "rsi(14) < 35"
    stops = combos.stop_loss.to_numpy() / 100
    targets = combos.take_profit.to_numpy() / 100
    holds = np.full(len(combos), costs[0], np.int64)
    dense = scan(market, rule).matrix
    grid_ours, grid_bare = interleaved(
        lambda: run_chunk(market, rule, base, combos, None),
        lambda: bare_sweep(
            market.open, market.high, market.low, market.close, dense, stops, targets, holds, *costs[1:]
        ),
        repeat=9,
    )
    figures = {
        "universe": f"{N_SYMBOLS}x{N_BARS}",
        "trades_ours": int(n_ours),
        "trades_bare": int(n_bare),
        "backtest_ms": round(ours * 1e3, 1),
        "bare_loop_ms": round(loop * 1e3, 1),
        "backtest_over_bare_x": round(ours / loop, 2),
        "grid_combinations": len(combos),
        "grid_ms": round(grid_ours * 1e3, 1),
        "bare_sweep_ms": round(grid_bare * 1e3, 1),
        "grid_over_bare_x": round(grid_ours / grid_bare, 2),
        **independent(),
        **full_grid(),
    }
    report(figures)


if __name__ == "__main__":
    main()
