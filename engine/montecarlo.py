"""Monte Carlo robustness: resample a backtest's trades to see the spread of outcomes luck alone allows.

Each trade's return is taken on portfolio equity (pnl / equity before its entry), so compounding a
sequence of them gives an equity path. `bootstrap` draws trades with replacement (final return and
drawdown vary); `shuffle` keeps the same trades in a random order (the final return is fixed, the
drawdown is not). Trades that overlap in time compound one after another here, so these two are not
centred on the backtest's own return when positions were held side by side. `daily_blocks` resamples
the backtest's daily portfolio returns in blocks of `block_bars` (a block bootstrap keeps volatility
clusters and the overlap of positions); its unresampled path is the backtest's equity curve.

Compounding stops at ruin: a return of -100% or worse leaves the path at zero for good (two -150% trades
never multiply back to a gain). Everything is vectorised over (simulations x steps); seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import params as table
from .backtest import BacktestResult
from .data import DataError
from .metrics import bar_returns

PERCENTILES = (5, 25, 50, 75, 95)
RESAMPLING_METHODS = ("bootstrap", "shuffle", "daily_blocks")
MAX_CELLS = 50_000_000  # simulations x trades held at once (400 MB of float64)


def trade_returns(result: BacktestResult) -> np.ndarray:
    """Each position's pnl (its exit fills summed) as a fraction of the portfolio equity at the close before
    its entry, in entry order."""
    trades = result.positions
    if trades.empty:
        return np.empty(0)
    equity = result.equity["equity"].to_numpy()
    before = np.where(trades.entry_bar > 0, equity[np.maximum(trades.entry_bar - 1, 0)], result.params.initial_capital)
    return trades.pnl.to_numpy() / before


@dataclass
class MonteCarloResult:
    final_return_pct: np.ndarray  # per simulation
    max_drawdown_pct: np.ndarray  # per simulation (<= 0)
    bands: pd.DataFrame  # equity (start = 1) percentiles after each trade; columns p5 .. p95
    samples: np.ndarray  # a few whole paths to draw, (k x trades + 1)
    method: str
    seed: int
    step: str = "trade"  # what one step of a path is: a trade, or a bar (daily_blocks)

    def summary(self) -> pd.DataFrame:
        """Percentiles (rows p5 .. p95) of final return and max drawdown."""
        return pd.DataFrame(
            {
                "final return %": np.percentile(self.final_return_pct, PERCENTILES),
                "max drawdown %": np.percentile(self.max_drawdown_pct, PERCENTILES),
            },
            index=[f"p{p}" for p in PERCENTILES],
        )

    def key_figures(self) -> dict[str, float]:
        """What the run history records of a simulation: the median final return and the chance of a loss."""
        return {
            "p50_return_pct": float(self.summary().loc["p50", "final return %"]),
            "p_loss": self.probability_of_loss(),
        }

    def probability_of_loss(self) -> float:
        return float((self.final_return_pct < 0).mean())

    def probability_of_drawdown_worse_than(self, threshold_pct: float) -> float:
        return float((self.max_drawdown_pct < -abs(threshold_pct)).mean())


def monte_carlo(
    returns: np.ndarray,
    n_simulations: int = 10_000,
    n_trades: int | None = None,
    method: str = "bootstrap",
    seed: int = 0,
    n_samples: int = 50,
    block_bars: int = 20,
) -> MonteCarloResult:
    """Simulate n_simulations equity paths of n_trades (default: as many as given) steps. For `daily_blocks`
    the returns are daily portfolio returns and paths are as long as the backtest."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        raise DataError("Monte Carlo needs at least 2 closed trades; this backtest has fewer.")
    if method not in RESAMPLING_METHODS:
        raise DataError(f"Unknown Monte Carlo method {method!r}; choose one of {', '.join(RESAMPLING_METHODS)}.")
    n_trades = len(r) if method != "bootstrap" else int(n_trades or len(r))
    if n_simulations < 1 or n_simulations * n_trades > MAX_CELLS:
        raise DataError(
            f"{n_simulations:,} simulations x {n_trades:,} steps is over the limit of "
            f"{MAX_CELLS:,}; use fewer simulations."
        )
    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        draws = r[rng.integers(0, len(r), size=(n_simulations, n_trades))]
    elif method == "shuffle":
        draws = rng.permuted(np.broadcast_to(r, (n_simulations, n_trades)), axis=1)
    else:
        draws = r[block_indices(rng, len(r), max(1, min(block_bars, len(r))), n_simulations)]
    paths = compound(draws)
    peaks = np.maximum(np.maximum.accumulate(paths, axis=1), 1.0)
    max_dd = ((paths / peaks).min(axis=1) - 1.0) * 100.0
    bands = np.percentile(paths, PERCENTILES, axis=0).T
    start = np.ones((1, len(PERCENTILES)))
    band_frame = pd.DataFrame(np.vstack([start, bands]), columns=[f"p{p}" for p in PERCENTILES])
    band_frame.index.name = "bar" if method == "daily_blocks" else "trade"
    samples = np.hstack([np.ones((min(n_samples, n_simulations), 1)), paths[:n_samples]])
    return MonteCarloResult(
        (paths[:, -1] - 1.0) * 100.0,
        np.minimum(max_dd, 0.0),
        band_frame,
        samples,
        method,
        seed,
        "bar" if method == "daily_blocks" else "trade",
    )


def compound(returns: np.ndarray) -> np.ndarray:
    """Equity paths (start 1) from per-step returns, clipped at ruin: a step of -100% or worse sets the path
    to 0 and it stays there (the growth factor is floored at 0 inside the product)."""
    return np.cumprod(np.maximum(1.0 + returns, 0.0), axis=-1)


def block_indices(rng: np.random.Generator, n: int, block: int, n_paths: int) -> np.ndarray:
    """(n_paths x n) indices into n returns: blocks of `block` consecutive bars starting at random bars."""
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_paths, n_blocks))
    return (starts[:, :, None] + np.arange(block)).reshape(n_paths, -1)[:, :n]


def daily_returns(result: BacktestResult) -> np.ndarray:
    """The backtest's bar-to-bar portfolio returns: compounded in order they give its equity curve."""
    return bar_returns(result.equity["equity"].to_numpy())


def montecarlo_settings(result: BacktestResult, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Monte Carlo settings (the table's `montecarlo` group by name; missing ones are defaults) as the
    run cache keys them with the backtest's parameters: the same for the page and the API."""
    s = {p.name: p.default for p in table.group("montecarlo")} | (settings or {})
    used = {"backtest": result.params, "method": s["method"], "n_sims": s["n_simulations"], "seed": s["seed"]}
    if s["method"] == "bootstrap":
        used["n_trades"] = s["n_trades"] or len(result.positions)
    elif s["method"] == "daily_blocks":
        used["block_bars"] = s["block_bars"]
    return used


def run_montecarlo(result: BacktestResult, settings: dict[str, Any] | None = None) -> MonteCarloResult:
    """Monte Carlo of a backtest with the table's settings (see `montecarlo_settings`)."""
    s = montecarlo_settings(result, settings)
    returns = daily_returns(result) if s["method"] == "daily_blocks" else trade_returns(result)
    return monte_carlo(
        returns, s["n_sims"], s.get("n_trades"), s["method"], s["seed"], block_bars=s.get("block_bars", 20)
    )
