"""Weekly and monthly bars of a daily market, for `weekly(expr)` and `monthly(expr)` in rules.

A symbol's period bars are built from its own daily bars: open first, high max, low min, close last, volume
summed; a period in which it has no bar is a NaN row, which the indicator kernels skip (so an indicator on
the period bars equals TA-Lib on that symbol's period bars). A period's value reaches the daily bars from
the first bar after the period ends, never during it: on a Wednesday, `weekly(close)` is last Friday's
close (or the last close of the last week the symbol traded), so nothing looks ahead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import Market

PERIODS = {"weekly": "W-FRI", "monthly": "M"}  # rule function -> pandas period (weeks end on Friday)
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class PeriodView:
    """A daily market's bars per period (`market`: periods x symbols) and, for each daily bar and symbol,
    the row of the last period before the bar's own in which the symbol traded (-1: none yet)."""

    market: Market
    known: np.ndarray  # (daily bars x symbols) int64: the period row whose value the daily bar may use

    def to_daily(self, value: np.ndarray | float) -> np.ndarray:
        """A (periods x symbols) value (or a number) on the daily bars: each bar gets its `known` period's."""
        values = np.broadcast_to(np.asarray(value, dtype=float), self.market.shape)
        padded = np.vstack([np.full((1, values.shape[1]), np.nan), values])  # row 0: no period yet
        return np.take_along_axis(padded, self.known + 1, axis=0)


def period_view(market: Market, function: str) -> PeriodView:
    """The PeriodView of `function` ('weekly' or 'monthly'), built once per dataset and kept on it (as its
    indicator memo is), so the period bars' indicators are memoised too."""
    with _LOCK:
        views = market.__dict__.get("_periods")
        if views is None:
            views = {}
            object.__setattr__(market, "_periods", views)  # Market is frozen; the views are not its data
        if function not in views:
            views[function] = _build(market, PERIODS[function])
        return views[function]


def _build(market: Market, freq: str) -> PeriodView:
    n_bars, n_sym = market.shape
    period = np.asarray(market.dates.to_period(freq).asi8)
    new_period = np.r_[True, period[1:] != period[:-1]]
    starts, of_bar = np.flatnonzero(new_period), np.cumsum(new_period) - 1
    valid = ~np.isnan(market.close)
    rows = np.arange(n_bars)[:, None]
    first = np.minimum.reduceat(np.where(valid, rows, n_bars - 1), starts, axis=0)
    last = np.maximum.reduceat(np.where(valid, rows, -1), starts, axis=0)
    traded = last >= 0
    cols = np.arange(n_sym)[None, :]

    def reduce(op: np.ufunc, a: np.ndarray) -> np.ndarray:
        return np.where(traded, op.reduceat(np.where(valid, a, np.nan), starts, axis=0), np.nan)

    with_volume = valid & ~np.isnan(market.volume)
    volume = np.add.reduceat(np.where(with_volume, market.volume, 0.0), starts, axis=0)
    bars = Market(
        market.symbols,
        pd.DatetimeIndex(market.dates[np.r_[starts[1:] - 1, n_bars - 1]]),  # each period's last date
        open=np.where(traded, market.open[first, cols], np.nan),
        high=reduce(np.fmax, market.high),
        low=reduce(np.fmin, market.low),
        close=np.where(traded, market.close[np.maximum(last, 0), cols], np.nan),
        volume=np.where(np.logical_or.reduceat(with_volume, starts, axis=0), volume, np.nan),
        sectors=market.sectors,
        extra={k: np.where(traded, v[np.maximum(last, 0), cols], np.nan) for k, v in market.extra.items()},
        categories=market.categories,  # own columns: their value on the period's last bar
        name=f"{market.name} ({freq})",
        fingerprint=f"{market.fingerprint}/{freq}",
    )
    # The last period each symbol traded in, up to each period; a daily bar may use the one before its own.
    upto = np.maximum.accumulate(np.where(traded, np.arange(len(starts))[:, None], -1), axis=0)
    before = np.vstack([np.full((1, n_sym), -1), upto[:-1]])
    return PeriodView(bars, np.ascontiguousarray(before[of_bar]))
