"""A seeded synthetic universe: realistic-looking daily OHLCV for tests, benchmarks and a labelled demo.

Prices follow a geometric random walk with a market factor, a sector factor and fat-tailed idiosyncratic
noise; some symbols list late or delist early, and a few bars are missing. The same seed gives the same
data on every machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import Market, market_from_frame

SECTORS = ("Technology", "Health", "Financials", "Energy", "Consumer", "Industrials", "Utilities", "Materials")


def synthetic_frame(
    n_symbols: int = 200, n_bars: int = 2520, *, seed: int = 7, missing_bar_prob: float = 0.002
) -> pd.DataFrame:
    """Long-format frame (symbol, date, open, high, low, close, volume, sector)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2014-01-02", periods=n_bars)
    sector_of = rng.integers(0, len(SECTORS), n_symbols)
    market = rng.normal(0.0003, 0.010, n_bars)
    sector = rng.normal(0.0, 0.006, (n_bars, len(SECTORS)))
    beta = rng.uniform(0.6, 1.5, n_symbols)
    idio_vol = rng.uniform(0.008, 0.025, n_symbols)
    idio = rng.standard_t(4, (n_bars, n_symbols)) * idio_vol / np.sqrt(2.0)
    log_ret = market[:, None] * beta + sector[:, sector_of] + idio
    close = rng.uniform(10, 300, n_symbols) * np.exp(np.cumsum(log_ret, axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    gap = rng.normal(0, 0.3, close.shape) * idio_vol * prev
    open_ = np.maximum(prev + gap, 0.01)
    spread = np.abs(rng.normal(0, 1, close.shape)) * idio_vol * close * 0.6
    high = np.maximum(open_, close) + spread * rng.uniform(0.2, 1.0, close.shape)
    low = np.maximum(np.minimum(open_, close) - spread * rng.uniform(0.2, 1.0, close.shape), 0.005)
    volume = np.round(rng.lognormal(13, 0.6, n_symbols) * np.exp(rng.normal(0, 0.4, close.shape)))

    present = rng.random(close.shape) >= missing_bar_prob
    listing = np.where(rng.random(n_symbols) < 0.1, rng.integers(0, n_bars // 2, n_symbols), 0)
    delisting = np.where(rng.random(n_symbols) < 0.05, rng.integers(n_bars // 2, n_bars, n_symbols), n_bars)
    bar = np.arange(n_bars)[:, None]
    present &= (bar >= listing) & (bar < delisting)

    t_idx, s_idx = np.nonzero(present)
    width = len(str(n_symbols - 1))
    names = np.array([f"S{j:0{width}d}" for j in range(n_symbols)])
    rnd = lambda a: np.round(a[t_idx, s_idx], 4)
    frame = pd.DataFrame(
        {
            "symbol": names[s_idx],
            "date": dates[t_idx],
            "open": rnd(open_),
            "high": rnd(high),
            "low": rnd(low),
            "close": rnd(close),
            "volume": volume[t_idx, s_idx],
            "sector": np.array(SECTORS)[sector_of][s_idx],
        }
    )
    # Rounding can push open/close a hair outside the rounded range; widen the range instead.
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    return frame


def synthetic_market(n_symbols: int = 200, n_bars: int = 2520, *, seed: int = 7) -> Market:
    """A validated Market built from `synthetic_frame` (labelled as synthetic)."""
    frame = synthetic_frame(n_symbols, n_bars, seed=seed)
    return market_from_frame(frame, name=f"Synthetic: {n_symbols} symbols x {n_bars} bars (seed {seed})")
