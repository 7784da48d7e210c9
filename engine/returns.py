"""Return tables of an equity curve beside its benchmark, for the tear sheet: the worst drawdowns, returns by
year, returns over the usual periods (month to date ... all) and the equity-based metrics side by side.

Conventions follow QuantStats' tear sheet: periods up to a year are cumulative returns; 3Y, 5Y and All are
annualised (CAGR); a drawdown runs from a peak to the first close back at it (its recovery), or is ongoing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .metrics import cagr_pct, drawdown_pct, periods_per_year, underwater


def drawdown_periods(equity: pd.Series, n: int = 5) -> pd.DataFrame:
    """The n deepest drawdowns: start (the peak), valley, recovery (NaT while ongoing), depth in %, and days
    from the peak to the recovery (or to the last date). The episodes are the metrics' (`underwater`)."""
    dd = drawdown_pct(equity.to_numpy(float))
    starts, ends = underwater(dd)
    dates, last = equity.index, len(dd) - 1
    valleys = [s + int(np.argmin(dd[s:e])) for s, e in zip(starts, ends, strict=True)]
    frame = pd.DataFrame(
        {
            "start": dates[starts - 1],  # the bar before the first one under water: the peak
            "valley": dates[valleys],
            "recovery": [dates[e] if e <= last else pd.NaT for e in ends],
            "depth_pct": dd[valleys],
            "days": (dates[np.minimum(ends, last)] - dates[starts - 1]).days.astype(int),
        },
        columns=["start", "valley", "recovery", "depth_pct", "days"],
    )
    return frame.sort_values("depth_pct", kind="stable").head(n).reset_index(drop=True)


def yearly_returns(equity: pd.Series, benchmark: pd.Series) -> pd.DataFrame:
    """Each calendar year's return in % (the first year from the first close), strategy and benchmark."""
    out = {}
    for name, curve in (("strategy", equity), ("benchmark", benchmark)):
        year_end = curve.groupby(curve.index.year).last()
        before = year_end.shift(1)
        before.iloc[0] = curve.iloc[0]
        out[name] = (year_end / before - 1.0) * 100.0
    frame = pd.DataFrame(out)
    frame.index.name = "year"
    return frame


PERIODS = ("MTD", "3M", "6M", "YTD", "1Y", "3Y (ann.)", "5Y (ann.)", "All (ann.)")


def period_returns(equity: pd.Series, benchmark: pd.Series) -> pd.DataFrame:
    """Returns in % over the usual periods to the last date, strategy and benchmark; NaN where the history
    is shorter than the period."""
    last = equity.index[-1]
    starts = {
        "MTD": last.to_period("M").start_time,
        "3M": last - pd.DateOffset(months=3),
        "6M": last - pd.DateOffset(months=6),
        "YTD": last.to_period("Y").start_time,
        "1Y": last - pd.DateOffset(years=1),
        "3Y (ann.)": last - pd.DateOffset(years=3),
        "5Y (ann.)": last - pd.DateOffset(years=5),
        "All (ann.)": equity.index[0],
    }
    rows = {}
    for period, since in starts.items():
        pair = (("strategy", equity), ("benchmark", benchmark))
        rows[period] = {name: _since(curve, since, period) for name, curve in pair}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "period"
    return frame


def _since(curve: pd.Series, since: pd.Timestamp, period: str) -> float:
    """The return from the last close before `since` (the first close for 'All') to the end, annualised for
    the multi-year periods; NaN when the history starts after `since`."""
    part = curve
    if period != "All (ann.)":
        if since < curve.index[0]:
            return math.nan
        before = curve.index[curve.index < since]
        part = curve[curve.index >= before[-1]] if len(before) else curve
    if "ann." in period:
        return cagr_pct(part.to_numpy(float), part.index)
    return (float(part.iloc[-1]) / float(part.iloc[0]) - 1.0) * 100.0


def equity_metrics(equity: pd.Series, risk_free_pct: float = 0.0) -> dict[str, float]:
    """What an equity curve alone says (so the benchmark has the same figures as the strategy): total return,
    CAGR, volatility, Sharpe, Sortino, max drawdown, Calmar, best and worst day, share of up days."""
    values = equity.to_numpy(float)
    ppy = periods_per_year(equity.index)
    ret = np.diff(values) / values[:-1] if len(values) > 1 else np.zeros(0)
    excess = ret - risk_free_pct / 100.0 / ppy
    sd = float(np.std(ret, ddof=1)) if len(ret) > 1 else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2))) if len(ret) else math.nan
    max_dd = float(np.min(values / np.maximum.accumulate(values) - 1.0)) * 100.0 if len(values) else math.nan
    cagr = cagr_pct(values, equity.index)
    return {
        "total_return_pct": (values[-1] / values[0] - 1.0) * 100.0 if len(values) else math.nan,
        "cagr_pct": cagr,
        "volatility_pct": sd * math.sqrt(ppy) * 100.0,
        "sharpe": float(np.mean(excess)) / sd * math.sqrt(ppy) if sd > 0 else math.nan,
        "sortino": float(np.mean(excess)) / downside * math.sqrt(ppy) if downside > 0 else math.nan,
        "max_drawdown_pct": max_dd,
        "calmar": cagr / abs(max_dd) if max_dd < 0 else math.nan,
        "best_day_pct": float(np.max(ret)) * 100.0 if len(ret) else math.nan,
        "worst_day_pct": float(np.min(ret)) * 100.0 if len(ret) else math.nan,
        "up_days_pct": float(np.mean(ret > 0)) * 100.0 if len(ret) else math.nan,
    }
