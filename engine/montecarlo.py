"""Monte Carlo robustness: resample a backtest's trades to see the spread of outcomes luck alone allows.

Each trade's return is taken on portfolio equity (pnl / equity before its entry), so compounding a
sequence of them gives an equity path. `bootstrap` draws trades with replacement (final return and
drawdown vary); `shuffle` keeps the same trades in a random order (the final return is fixed, the
drawdown is not). Everything is vectorised over (simulations x trades); seeded, so reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import params as table
from .backtest import BacktestResult
from .data import DataError

PERCENTILES = (5, 25, 50, 75, 95)
MAX_CELLS = 50_000_000  # simulations x trades held at once (400 MB of float64)


def trade_returns(result: BacktestResult) -> np.ndarray:
    """Each trade's pnl as a fraction of the portfolio equity at the close before its entry, in entry order."""
    trades = result.trades
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

    def summary(self) -> pd.DataFrame:
        """Percentiles (rows p5 .. p95) of final return and max drawdown."""
        return pd.DataFrame(
            {
                "final return %": np.percentile(self.final_return_pct, PERCENTILES),
                "max drawdown %": np.percentile(self.max_drawdown_pct, PERCENTILES),
            },
            index=[f"p{p}" for p in PERCENTILES],
        )

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
) -> MonteCarloResult:
    """Simulate n_simulations equity paths of n_trades (default: as many as the backtest had) trades."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        raise DataError("Monte Carlo needs at least 2 closed trades; this backtest has fewer.")
    if method not in ("bootstrap", "shuffle"):
        raise DataError(f"Unknown Monte Carlo method {method!r}; choose 'bootstrap' or 'shuffle'.")
    n_trades = int(n_trades or len(r))
    if method == "shuffle":
        n_trades = len(r)
    if n_simulations < 1 or n_simulations * n_trades > MAX_CELLS:
        raise DataError(f"{n_simulations:,} simulations x {n_trades:,} trades is over the limit of "
                        f"{MAX_CELLS:,}; use fewer simulations.")  # fmt: skip
    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        draws = r[rng.integers(0, len(r), size=(n_simulations, n_trades))]
    else:
        draws = rng.permuted(np.broadcast_to(r, (n_simulations, n_trades)), axis=1)
    paths = np.cumprod(1.0 + draws, axis=1)
    np.maximum(paths, 0.0, out=paths)  # a loss beyond -100% is ruin, not negative equity
    peaks = np.maximum(np.maximum.accumulate(paths, axis=1), 1.0)
    max_dd = ((paths / peaks).min(axis=1) - 1.0) * 100.0
    bands = np.percentile(paths, PERCENTILES, axis=0).T
    start = np.ones((1, len(PERCENTILES)))
    band_frame = pd.DataFrame(np.vstack([start, bands]), columns=[f"p{p}" for p in PERCENTILES])
    band_frame.index.name = "trade"
    samples = np.hstack([np.ones((min(n_samples, n_simulations), 1)), paths[:n_samples]])
    return MonteCarloResult((paths[:, -1] - 1.0) * 100.0, np.minimum(max_dd, 0.0), band_frame, samples, method, seed)


def settings_used(result: BacktestResult, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Monte Carlo settings (the table's `montecarlo` group by name; missing ones are defaults) as the
    run cache keys them with the backtest's parameters: the same for the page and the API."""
    s = {p.name: p.default for p in table.group("montecarlo")} | (settings or {})
    n_trades = len(trade_returns(result)) if s["method"] == "shuffle" else s["n_trades"] or len(trade_returns(result))
    return {"backtest": result.params, "method": s["method"], "n_sims": s["n_simulations"], "n_trades": n_trades,
            "seed": s["seed"]}  # fmt: skip


def simulate(result: BacktestResult, settings: dict[str, Any] | None = None) -> MonteCarloResult:
    """Monte Carlo of a backtest's trades with the table's settings (see `settings_used`)."""
    s = settings_used(result, settings)
    return monte_carlo(trade_returns(result), s["n_sims"], s["n_trades"], s["method"], s["seed"])
