"""What happened after a hit: the forward returns of every scan signal, against a benchmark and against random
entries, with intervals that respect that many stocks hitting on one day are not independent.

A portfolio backtest answers a different question (its cash, slots, sizing and exits decide which hits trade);
an event study measures the screen itself: every signal counts, entered at the next open (or the signal's
close) and held h bars, whatever else is held.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import _event_kernels as k
from .backtest import signal_matrix
from .data import Market
from .data.quality import trades_on_flagged
from .errors import InputError

HORIZONS = (1, 5, 10, 20, 60)
ENTRIES = ("next_open", "close")
Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval (statsmodels' default for clusters)
RANDOM_DRAWS = 1_000
RANDOM_CELLS = 2e7  # random events drawn in all at most (draws x events): bounded work, as the luck test's
_NO_BENCH = np.zeros((0, 0))  # random entries' plain returns (no benchmark to subtract)


@dataclass(frozen=True)
class EventStudy:
    """One row per signal (`events`), one per horizon (`summary`), and how the study was made."""

    events: pd.DataFrame
    summary: pd.DataFrame
    horizons: tuple[int, ...]
    entry: str
    benchmark: str | None
    cooldown: int
    open_events: int  # signals too near the end for even the shortest horizon: listed, never dropped
    path: pd.DataFrame  # per bar 0..longest horizon: the mean cumulative excess (or return) and its 95% band

    @property
    def tested(self) -> str:
        """The column family the intervals are about: excess returns with a benchmark, else returns."""
        return "excess" if self.benchmark is not None else "ret"

    @property
    def by_year(self) -> pd.DataFrame:
        """Per signal year and horizon: events and the mean return and excess."""
        years = pd.DatetimeIndex(self.events["date"]).year
        columns = {f"{kind}_{h}": "mean" for h in self.horizons for kind in ("ret", "excess")}
        present = {c: f for c, f in columns.items() if c in self.events}
        table = self.events.groupby(years)[list(present)].mean()
        table.insert(0, "events", self.events.groupby(years).size())
        return table.rename_axis("year")

    def by_symbol(self, horizon: int | None = None, top: int = 10) -> pd.DataFrame:
        """The `top` best and worst symbols by mean return at a horizon (the longest by default), with counts."""
        h = horizon or self.horizons[-1]
        grouped = self.events.groupby("symbol", observed=True)[f"ret_{h}"].agg(["count", "mean"]).dropna()
        ranked = grouped.sort_values("mean", ascending=False)
        return pd.concat([ranked.head(top), ranked.tail(top)]).drop_duplicates().rename_axis("symbol")


def forward_returns(
    market: Market,
    signals: Any,
    horizons: Sequence[int] = HORIZONS,
    *,
    entry: str = "next_open",
    cooldown: int = 0,
    benchmark: str | None = "universe",
    random_draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> EventStudy:
    """The event study of a scan's signals (a `Signals` or a (bars x symbols) bool matrix).

    For each signal at bar t and horizon h: `ret_h` = close(t+h) / entry - 1 (entry: the open of t+1, or the
    close of t), `excess_h` = ret_h minus the benchmark's return over the same span ("universe": the equal-weight
    mean over every symbol priced at both ends; a symbol: its own; None: no excess), `mfe_h` / `mae_h` = the
    highest / lowest close over bars t+1..t+h over the entry, minus 1. A horizon past the data is NaN, never a
    shorter return. `cooldown=N` drops a signal within N bars of the previous counted event on its symbol."""
    hs = _horizons(horizons)
    if entry not in ENTRIES:
        raise InputError(f"entry must be one of {', '.join(ENTRIES)}; got {entry!r}.")
    if int(cooldown) != cooldown or cooldown < 0:
        raise InputError(f"cooldown is a whole number of bars, 0 or more; got {cooldown!r}.")
    if benchmark not in (None, "universe") and benchmark not in market.symbols:
        raise InputError(f"The benchmark {benchmark!r} is not a symbol of this dataset (or use 'universe' or None).")
    matrix, _ = signal_matrix(market, signals)
    bars, symbols = (a.astype(np.int64) for a in np.nonzero(matrix))  # in bar order, then symbol order
    keep = k.keep_after_cooldown(bars, symbols, len(market.symbols), int(cooldown))
    bars, symbols = bars[keep], symbols[keep]
    next_open = entry == "next_open"
    entry_bar, price = k.entry_prices(market.open, market.close, bars, symbols, next_open)
    h_arr = np.array(hs, np.int64)
    ret, mfe, mae = k.forward_paths(market.close, bars, symbols, price, h_arr)
    bench = _benchmark_returns(market, h_arr, next_open, benchmark)
    excess = None if bench is None else ret - bench[bars]
    dates = market.dates.to_numpy()
    events = pd.DataFrame(
        {
            "symbol": pd.Categorical.from_codes(symbols, categories=list(market.symbols)),
            "date": dates[bars],
            "entry_date": np.where(entry_bar >= 0, dates[np.maximum(entry_bar, 0)], np.datetime64("NaT")),
            "entry_price": price,
        }
    )
    for j, h in enumerate(hs):
        events[f"ret_{h}"] = ret[:, j]
        if excess is not None:
            events[f"excess_{h}"] = excess[:, j]
        events[f"mfe_{h}"] = mfe[:, j]
        events[f"mae_{h}"] = mae[:, j]
    events["open"] = bars + min(hs) >= len(dates)  # no horizon has ended yet
    summary = _summary(market, events, bars, symbols, hs, next_open, excess is not None, random_draws, seed)
    path = _drift(market, bars, symbols, price, max(hs), next_open, benchmark, random_draws, seed)
    return EventStudy(events, summary, hs, entry, benchmark, int(cooldown), int(events["open"].sum()), path)


MAX_PATH_BARS = 260  # the drift curve covers at most this many bars after the signal


def _drift(
    market: Market,
    bars: np.ndarray,
    symbols: np.ndarray,
    price: np.ndarray,
    longest: int,
    next_open: bool,
    benchmark: str | None,
    random_draws: int,
    seed: int,
) -> pd.DataFrame:
    """The event-study drift: per bar d after the signal, the mean cumulative excess return (or return) of the
    events measured at d, with its date-clustered 95% band, and where 95% of the means of as many random entries
    fall (`random_low`, `random_high`); day 0 is the entry (0 by definition)."""
    days = np.arange(1, min(longest, MAX_PATH_BARS) + 1, dtype=np.int64)
    ret, _, _ = k.forward_paths(market.close, bars, symbols, price, days)
    bench = _benchmark_returns(market, days, next_open, benchmark)
    tested = ret if bench is None else ret - bench[bars]
    clusters = np.unique(bars, return_inverse=True)[1].astype(np.int64)
    random_low, random_high = _random_band(market, bars, symbols, days, next_open, bench, random_draws, seed)
    rows = [
        {"bar": 0, "mean": 0.0, "low": 0.0, "high": 0.0, "random_low": 0.0, "random_high": 0.0, "events": len(bars)}
    ]
    for j, d in enumerate(days):
        n, mean, se, _ = k.clustered_mean(np.ascontiguousarray(tested[:, j]), clusters)
        rows.append(
            {
                "bar": int(d),
                "mean": mean,
                "low": mean - Z_95 * se,
                "high": mean + Z_95 * se,
                "random_low": random_low[j],
                "random_high": random_high[j],
                "events": n,
            }
        )
    return pd.DataFrame(rows).set_index("bar")


RANDOM_PAIRS = 20_000  # single random entries whose spread gives the random band of a large study's drift


def _random_band(
    market: Market,
    bars: np.ndarray,
    symbols: np.ndarray,
    days: np.ndarray,
    next_open: bool,
    bench: np.ndarray | None,
    random_draws: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per bar after the signal, where the middle 95% of the mean cumulative (excess) return of as many random
    entries as the real ones falls: the 2.5th and 97.5th percentiles of up to `random_draws` drawn sets while
    100 or more fit in RANDOM_CELLS; past that, the normal the mean of n random entries tends to, its moments
    read from RANDOM_PAIRS single random entries. No draws, no band (NaN)."""
    n = len(bars)
    if not n or random_draws <= 0:
        return np.full(len(days), np.nan), np.full(len(days), np.nan)
    entry_px, offset = (market.open if next_open else market.close), int(next_open)
    bench_arr = _NO_BENCH if bench is None else bench
    draws = min(int(random_draws), int(RANDOM_CELLS // (n * len(days))))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bar no random entry reaches is NaN
        if draws >= 100:
            drawn = k.random_means(market.close, entry_px, offset, symbols, bars, days, draws, seed, n, bench_arr)
            return np.nanpercentile(drawn, 2.5, axis=0), np.nanpercentile(drawn, 97.5, axis=0)
        single = k.random_means(market.close, entry_px, offset, symbols, bars, days, RANDOM_PAIRS, seed, 1, bench_arr)
        mean, half = np.nanmean(single, axis=0), Z_95 * np.nanstd(single, axis=0) / np.sqrt(n)
    return mean - half, mean + half


MAX_HORIZON = 2_520


def study_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The table's `events` settings (by field name, as user values) -> forward_returns' keywords: the horizons'
    text parsed ("1, 5, 20"), benchmark "none" as None."""
    text = str(values.get("horizons", "")).replace(" ", "")
    try:
        horizons = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise InputError(f"Horizons are whole numbers of bars, comma-separated, e.g. 1,5,20; got {text!r}.") from None
    if any(h > MAX_HORIZON for h in horizons):
        raise InputError(f"A horizon is at most {MAX_HORIZON:,} bars; got {max(horizons):,}.")
    benchmark = str(values.get("benchmark", "universe")).strip()
    return {
        "horizons": _horizons(horizons),
        "entry": values.get("entry", "next_open"),
        "cooldown": int(values.get("cooldown", 0)),
        "benchmark": None if benchmark.lower() in ("", "none") else benchmark,
    }


def _horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    hs = tuple(sorted({int(h) for h in horizons}))
    if not hs or any(h < 1 for h in hs) or any(int(h) != h for h in horizons):
        raise InputError(f"Horizons are whole numbers of bars, 1 or more; got {list(horizons)!r}.")
    return hs


def _benchmark_returns(market: Market, h_arr: np.ndarray, next_open: bool, benchmark: str | None) -> np.ndarray | None:
    """(bars x horizons): the benchmark's return from each bar's entry over each span (None without one)."""
    if benchmark is None:
        return None
    if benchmark == "universe":
        return k.universe_returns(market.open, market.close, h_arr, next_open)
    j = market.column(benchmark)
    return k.universe_returns(market.open[:, j : j + 1], market.close[:, j : j + 1], h_arr, next_open)


def _summary(
    market: Market,
    events: pd.DataFrame,
    bars: np.ndarray,
    symbols: np.ndarray,
    hs: tuple[int, ...],
    next_open: bool,
    has_excess: bool,
    random_draws: int,
    seed: int,
) -> pd.DataFrame:
    """One row per horizon: counts, mean, median, hit rate, mean excess with its date-clustered interval, and
    where the mean falls among random entries."""
    clusters = np.unique(bars, return_inverse=True)[1].astype(np.int64)  # the signal date of each event
    pctile = _random_percentiles(market, events, bars, symbols, hs, next_open, random_draws, seed)
    rows = []
    for j, h in enumerate(hs):
        r = events[f"ret_{h}"].to_numpy()
        finite = np.isfinite(r)
        tested = events[f"excess_{h}"].to_numpy() if has_excess else r
        n, mean_t, se, n_dates = k.clustered_mean(tested, clusters)
        independent = int(k.keep_after_cooldown(bars[finite], symbols[finite], len(market.symbols), h - 1).sum())
        mean = float(np.nanmean(r)) if finite.any() else np.nan
        rows.append(
            {
                "horizon": h,
                "events": int(finite.sum()),
                "independent": independent,
                "open": int((bars + h >= len(market.dates)).sum()),
                "missing": int((~finite & (bars + h < len(market.dates))).sum()),
                "mean": mean,
                "median": float(np.nanmedian(r)) if finite.any() else np.nan,
                "hit_rate": float((r[finite] > 0).mean()) if finite.any() else np.nan,
                "mean_excess": mean_t if has_excess else np.nan,
                "se": se,
                "t_stat": mean_t / se if se > 0 else np.nan,
                "ci_low": mean_t - Z_95 * se,
                "ci_high": mean_t + Z_95 * se,
                "dates": n_dates,
                "random_pctile": pctile[j],
            }
        )
    return pd.DataFrame(rows).set_index("horizon")


def _random_percentiles(
    market: Market,
    events: pd.DataFrame,
    bars: np.ndarray,
    symbols: np.ndarray,
    hs: tuple[int, ...],
    next_open: bool,
    random_draws: int,
    seed: int,
) -> list[float]:
    """Per horizon, the percentile of the events' mean return among the means of `random_draws` sets of as many
    random events (symbols and dates drawn from the real ones'). Up to RANDOM_CELLS events in all the sets are
    drawn (seeded); past it the percentile is read from the normal the random mean tends to, whose mean and
    variance are computed exactly over every (date, symbol) pair: with that many events the two agree to
    within the draws' own noise, in a fraction of the time."""
    means = [float(np.nanmean(events[f"ret_{h}"])) if events[f"ret_{h}"].notna().any() else np.nan for h in hs]
    if random_draws <= 0 or not len(bars):
        return [np.nan] * len(hs)
    entry_px, offset, h_arr = (market.open if next_open else market.close), int(next_open), np.array(hs, np.int64)
    if len(bars) * random_draws <= RANDOM_CELLS:
        drawn = k.random_means(
            market.close, entry_px, offset, symbols, bars, h_arr, int(random_draws), seed, len(bars), _NO_BENCH
        )
        return [
            float((drawn[:, j][np.isfinite(drawn[:, j])] < m).mean() * 100.0) if np.isfinite(m) else np.nan
            for j, m in enumerate(means)
        ]
    dates, date_count = np.unique(bars, return_counts=True)
    names, name_count = np.unique(symbols, return_counts=True)
    s0, s1, s2 = k.random_moments(
        market.close, entry_px, offset, dates, date_count / len(bars), names, name_count / len(bars), h_arr
    )
    out = []
    for j, m in enumerate(means):
        mu = s1[j] / s0[j] if s0[j] > 0 else np.nan
        sd = np.sqrt(max(s2[j] / s0[j] - mu * mu, 0.0) / (len(bars) * s0[j])) if s0[j] > 0 else np.nan
        out.append(float(50.0 * (1.0 + math.erf((m - mu) / (sd * math.sqrt(2.0))))) if sd > 0 else np.nan)
    return out


def event_figures(study: EventStudy) -> dict[str, float]:
    """The run history's summary of a study: events, and per horizon the mean excess (or mean) and its t."""
    out: dict[str, float] = {"events": float(len(study.events))}
    for h, row in study.summary.iterrows():
        out[f"mean_{h}"] = float(row["mean_excess"] if study.benchmark is not None else row["mean"])
        out[f"t_{h}"] = float(row["t_stat"])
    return out


def flagged_events(market: Market, study: EventStudy) -> pd.DataFrame:
    """The signals whose next bars (up to the longest horizon) cross a bar the loader flagged (a likely split
    or outlier), best return first, with the flags crossed: their returns may be the data's, not the rule's."""
    h = study.horizons[-1]
    bar = market.dates.get_indexer(pd.DatetimeIndex(study.events["date"]))
    end = np.minimum(bar + h, len(market.dates) - 1)
    spans = pd.DataFrame(
        {
            "position_id": np.arange(len(bar)),
            "symbol": study.events["symbol"].astype(str),
            "entry_date": study.events["date"],
            "exit_date": market.dates[end],
            "return_pct": study.events[f"ret_{h}"] * 100.0,
        }
    )
    return trades_on_flagged(market, spans)


MAX_SWEEP = 50  # rule-number values one sweep may try


def sweep(
    market: Market,
    rule: str,
    number: int,
    values: Sequence[float],
    horizon: int = 20,
    **settings: Any,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The event study at one horizon over a range of one rule number (`rule.<number>` as on Optimize): per value
    the events, the mean excess (or mean) with its date-clustered interval and t; and the best value's figures
    deflated for how many were tried: its two-sided p and the Sidak-adjusted p, 1 - (1 - p)^K, so "below 25
    beats below 30" is not read from noise."""
    from .rules import scan, substitute_numbers

    tried = list(dict.fromkeys(float(v) for v in values))
    if not 2 <= len(tried) <= MAX_SWEEP:
        raise InputError(f"A sweep tries 2 to {MAX_SWEEP} values of a rule number; got {len(tried)}.")
    rows = []
    for v in tried:
        text = substitute_numbers(rule, {number: v})
        study = forward_returns(market, scan(market, text), (horizon,), random_draws=0, **settings)
        row = study.summary.loc[horizon]
        tested = row["mean_excess"] if study.benchmark is not None else row["mean"]
        rows.append(
            {
                "value": v,
                "rule": text,
                "events": int(row["events"]),
                "mean": tested,
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "t_stat": row["t_stat"],
            }
        )
    table = pd.DataFrame(rows).set_index("value")
    finite = table["t_stat"].dropna()
    if finite.empty:
        return table, {"best": np.nan, "t_stat": np.nan, "p": np.nan, "p_deflated": np.nan, "tried": len(tried)}
    best = float(finite.idxmax())  # the value a user would pick: the highest t
    t = float(finite.loc[best])
    p = math.erfc(abs(t) / math.sqrt(2.0))  # two-sided normal p of the best t
    return table, {"best": best, "t_stat": t, "p": p, "p_deflated": 1.0 - (1.0 - p) ** len(tried), "tried": len(tried)}
