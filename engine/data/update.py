"""New bars onto a dataset: the next version of a family (engine/server/families.py).

`append(market, new)` takes recent bars (a Market, a frame or a file, read by the loader with its checks),
possibly overlapping the end of the history and possibly with new symbols. An overlapping bar equal to the
stored one (every price and the volume within 1e-9 relative) is dropped; one that differs is **restated
history**: by default the append is refused with the differing bars and a likely cause per symbol, and
`on_restated="replace"` takes the source's bars for those symbols from its first bar on (and says so).
The splits and outliers the loader flags on the new bars, and on the bar where old meets new, join the
dataset's flags.

    merged, report = append(market, load_market("today.csv"))
    report.bars_added, report.symbols_added, report.restated
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .build import load_market, market_from_frame
from .growth import grown
from .market import Market, without_flags
from .quality import SPLIT_RATIOS, SPLIT_TOLERANCE, detect_outliers, detect_splits, survivors_warning
from .read import LoadOptions

OnRestated = Literal["refuse", "replace"]
RTOL = 1e-9
SHOWN = 20  # restated bars listed in a message


@dataclass(frozen=True)
class AppendReport:
    """What an append changed: `bars_added` (bars with a date or symbol the dataset lacked), `new_dates`
    (dates after its last), `symbols_added`, `symbols_gone` (symbols with a bar on the old last date and none
    after it while others have), `equal_overlap` (overlapping bars equal to the stored ones, dropped),
    `restated` (symbol, date, field, old, new, ratio of every differing value), `causes` (symbol -> likely
    cause), `replaced` (symbols whose history from the source's first bar was taken), `flags` (the new
    flagged bars: kind, symbol, date, value), `below` (only bars after the old last date: a store may keep
    the new version as its new bars over the old)."""

    bars_added: int
    new_dates: int
    symbols_added: tuple[str, ...]
    symbols_gone: tuple[str, ...]
    equal_overlap: int
    restated: pd.DataFrame
    causes: dict[str, str]
    replaced: tuple[str, ...]
    flags: pd.DataFrame
    below: bool = False  # only bars after the old last date were added: the old bars are exactly as stored

    @property
    def changed(self) -> bool:
        """Does the append make a new version (anything added or replaced)?"""
        return bool(self.bars_added or self.replaced)

    def summary(self) -> str:
        """One line for the Data page, the CLI and the version list."""
        parts = [f"{self.bars_added:,} bars added ({self.new_dates:,} new dates)"]
        if self.symbols_added:
            parts.append(f"symbols added: {_names(self.symbols_added)}")
        if self.symbols_gone:
            parts.append(f"no new bars for: {_names(self.symbols_gone)}")
        if self.replaced:
            parts.append(f"history replaced for: {_names(self.replaced)}")
        if len(self.flags):
            parts.append(f"{len(self.flags):,} new flagged bars")
        return "; ".join(parts) + "."


class RestatedHistory(DataError):
    """The new bars disagree with stored ones: the append was refused; `table` lists the differing values."""

    def __init__(self, message: str, table: pd.DataFrame, causes: dict[str, str]) -> None:
        super().__init__(message)
        self.table = table
        self.causes = causes


def restated_bars(market: Market, new: Market, options: LoadOptions | None = None) -> pd.DataFrame:
    """The stored values the new bars restate (symbol, date, field, old, new, ratio): what `append` would refuse,
    found without merging anything (a refresh that replaces them first fetches those symbols' whole history)."""
    incoming = _loaded(new, options or LoadOptions(), market.name)
    _check_columns(market, incoming)
    return _restated(market, incoming)[0]


def append(
    market: Market,
    new: Market | pd.DataFrame | str | os.PathLike | BinaryIO,
    *,
    on_restated: OnRestated = "refuse",
    options: LoadOptions | None = None,
) -> tuple[Market, AppendReport]:
    """The dataset with the new bars added, and what changed. RestatedHistory when overlapping bars differ
    and `on_restated` is "refuse"; DataError when the new bars cannot join (other own columns).

    Bars only after the last date, of known symbols, are written below the stored arrays: into their spare
    rows when this version is the newest of its buffer (O(new bars) work and memory), else into a copy with
    spare rows. Anything else (new symbols, filled holes, a replaced history) is merged on the union calendar."""
    if on_restated not in ("refuse", "replace"):
        raise DataError(f"on_restated is 'refuse' or 'replace'; got {on_restated!r}.")
    opts = options or LoadOptions()
    incoming = _loaded(new, opts, market.name)
    _check_columns(market, incoming)
    restated, equal = _restated(market, incoming)
    causes = _causes(restated)
    if len(restated) and on_restated == "refuse":
        raise RestatedHistory(_restated_message(restated, causes), restated, causes)
    last = market.dates[-1]
    merged = None if causes else _below(market, incoming)
    below = merged is not None
    replaced = tuple(sorted(causes))
    if merged is None:
        merged = _union(market, incoming, replaced)
        bars_added = _count(merged.close) - _count(market.close)
        detected = _detected(merged, opts.outlier_pct)
    else:  # only rows below the old ones are new: their flags come from their own moves
        bars_added = _count(merged.close[len(market.dates) :])
        detected = _flags_below(merged, len(market.dates), opts.outlier_pct)
    when = pd.DatetimeIndex(detected.date)
    flags = detected[(when > last) | (detected.symbol.isin(replaced) & (when <= last))]
    kept = _issues(market)
    issues = pd.concat([kept[~kept.symbol.isin(replaced)], flags], ignore_index=True)  # a replaced history afresh
    notes = [w for w in incoming.warnings if not w.startswith(("Likely splits", "One-day moves"))]
    merged = replace(
        merged,
        issues=issues.reset_index(drop=True),
        warnings=tuple(
            dict.fromkeys(
                (
                    *(w for w in without_flags(market.warnings, issues) if not w.startswith("Likely survivors")),
                    *notes,
                    *survivors_warning(merged),
                )
            )
        ),
        dropped_rows=market.dropped_rows,
        fingerprint=merged.fingerprint,
    )
    known = () if merged.symbols == market.symbols else set(market.symbols)  # the usual day: nothing new
    added = tuple(s for s in merged.symbols if known and s not in known)
    report = AppendReport(
        bars_added=bars_added,
        new_dates=int((merged.dates > last).sum()),
        symbols_added=added,
        symbols_gone=_gone(market, merged) if len(added) < len(merged.symbols) else (),
        equal_overlap=equal,
        restated=restated,
        causes=causes,
        replaced=replaced,
        flags=flags.reset_index(drop=True),
        below=below,
    )
    return merged, report


FLAG_CONTEXT = 60  # bars before the new ones that split and outlier detection looks at


def _flags_below(merged: Market, n_old: int, outlier_pct: float) -> pd.DataFrame:
    """The loader's flags on the rows below `n_old`, at O(new bars) cost: only a symbol whose new bars moved as
    far as a split or an outlier must (its previous close over its open beyond 3:2 or 2:3, or close to close
    beyond `outlier_pct`) can be flagged, and the detectors then run on those symbols' last FLAG_CONTEXT bars."""
    previous = np.full(merged.shape[1], np.nan)  # each symbol's last close before the new rows
    for row in range(n_old - 1, max(-1, n_old - 1 - FLAG_CONTEXT), -1):
        previous = np.where(np.isnan(previous), merged.close[row], previous)
        if not np.isnan(previous).any():
            break
    up = min(r for r in SPLIT_RATIOS if r > 1) * (1 - SPLIT_TOLERANCE)  # as detect_splits' first test
    down = max(r for r in SPLIT_RATIOS if r < 1) * (1 + SPLIT_TOLERANCE)
    far = np.zeros(merged.shape[1], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for row in range(n_old, merged.shape[0]):
            close, overnight = merged.close[row], previous / merged.open[row]
            far |= (overnight > up) | (overnight < down) | (np.abs(close / previous - 1.0) * 100.0 > outlier_pct)
            previous = np.where(np.isnan(close), previous, close)
    cols = np.flatnonzero(far)
    if not len(cols):
        return pd.DataFrame(columns=["kind", "symbol", "date", "value"])
    start = max(0, n_old - FLAG_CONTEXT)
    recent = Market(
        symbols=tuple(merged.symbols[j] for j in cols),
        dates=merged.dates[start:],
        **{name: getattr(merged, name)[start:, cols] for name in _PRICES},  # type: ignore[arg-type]
    )
    return _detected(recent, outlier_pct)


def _count(close: np.ndarray) -> int:
    return int(np.count_nonzero(~np.isnan(close)))


def _gone(market: Market, merged: Market) -> tuple[str, ...]:
    """Symbols with a bar on the old last date and none after it, while the new dates exist."""
    n_old = merged.dates.searchsorted(market.dates[-1], side="right")
    if n_old == len(merged.dates):
        return ()
    same = merged.symbols == market.symbols  # the usual append: no column lookup at all
    cols = slice(None) if same else pd.Index(merged.symbols).get_indexer(market.symbols)
    had = ~np.isnan(merged.close[n_old - 1, cols])
    later = (~np.isnan(merged.close[n_old:, cols])).any(axis=0)
    return tuple(s for s, h, lt in zip(market.symbols, had, later, strict=True) if h and not lt)


def _below(market: Market, incoming: Market) -> Market | None:
    """The fast path: the new bars are all after the last date (the overlap equal and already stored) and of
    known symbols; None when the general merge is needed."""
    cols = _positions(market.symbols, incoming.symbols)
    if cols is None:
        return None
    after = incoming.dates > market.dates[-1]
    if not after.all():  # the overlap: every bar it has must be stored already (else a hole is filled)
        old_rows = market.dates.get_indexer(incoming.dates[~after])
        fills = ~np.isnan(incoming.close[~after])
        if (old_rows < 0).any() or (fills & np.isnan(market.close[np.ix_(old_rows, cols)])).any():
            return None
    if not after.any():
        return market  # nothing new: the overlap is stored already
    k, m = int(after.sum()), len(market.symbols)

    every = bool(after.all()) and len(cols) == m and bool((cols == np.arange(m)).all())

    def rows_of(values: np.ndarray | None, fill: float = np.nan) -> np.ndarray:
        if values is not None and every:  # the usual day: the new data's own rows, as they are
            return values
        out = np.full((k, m), fill)
        if values is not None:
            out[:, cols] = values[after]
        return out

    present = ~np.isnan(rows_of(incoming.close))
    arrays = {name: grown(getattr(market, name), rows_of(getattr(incoming, name))) for name in _PRICES}
    if market.dividend is not None:  # no dividend column in the new bars: none paid on them
        paid = rows_of(incoming.dividend) if incoming.dividend is not None else np.where(present, 0.0, np.nan)
        arrays["dividend"] = grown(market.dividend, paid)
    extra = {}
    for name, values in market.extra.items():  # own columns: the new bars', else the last value carried on
        fresh = rows_of(incoming.extra.get(name)) if name in incoming.extra else _carried(values, present)
        extra[name] = grown(values, fresh)
    return Market(
        symbols=market.symbols,
        dates=_dates_below(market.dates, incoming.dates[after]),
        sectors=market.sectors,
        name=market.name,
        extra=extra,
        categories=market.categories,
        **arrays,  # type: ignore[arg-type]  # open, high, low, close, volume (and dividend) by name
    )


_PRICES = ("open", "high", "low", "close", "volume")


def _positions(known: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray | None:
    """Where each wanted symbol is among the known ones (None when one is not), walking the two tuples side by
    side (the loader sorts symbols): no index or hash table of the universe for a day's bars."""
    if wanted == known:
        return np.arange(len(known))
    out = np.empty(len(wanted), np.int64)
    at = 0
    for i, symbol in enumerate(wanted):
        while at < len(known) and known[at] < symbol:
            at += 1
        if at == len(known) or known[at] != symbol:
            return (
                None if list(wanted) == sorted(wanted) and list(known) == sorted(known) else _looked_up(known, wanted)
            )
        out[i] = at
    return out


def _looked_up(known: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray | None:
    """Positions through a dict (symbols out of order, or one unknown: None)."""
    column = {s: i for i, s in enumerate(known)}
    return None if any(s not in column for s in wanted) else np.array([column[s] for s in wanted], np.int64)


def _dates_below(dates: pd.DatetimeIndex, new: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The calendar with later dates added, as one int64 array (DatetimeIndex.append goes through objects)."""
    ticks = np.empty(len(dates) + len(new), np.int64)
    ticks[: len(dates)] = dates.asi8
    ticks[len(dates) :] = new.as_unit(dates.unit).asi8
    return pd.DatetimeIndex(ticks.view(f"M8[{dates.unit}]"), copy=False)


def _carried(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each symbol's last value carried onto its new bars (NaN where it has no bar)."""
    last = pd.DataFrame(values).ffill().to_numpy()[-1]
    return np.where(present, last[None, :], np.nan)


def _union(market: Market, incoming: Market, replaced: tuple[str, ...]) -> Market:
    """The general merge on the union of dates and symbols: every bar the new data has wins (equal, new, or
    the source's history of a replaced symbol from its first bar on)."""
    symbols = tuple(sorted(set(market.symbols) | set(incoming.symbols)))
    column = {s: i for i, s in enumerate(symbols)}
    dates = market.dates.union(incoming.dates)
    old_rows, new_rows = dates.get_indexer(market.dates), dates.get_indexer(incoming.dates)
    old_cols = np.array([column[s] for s in market.symbols], np.int64)
    new_cols = np.array([column[s] for s in incoming.symbols], np.int64)
    shape = (len(dates), len(symbols))

    def placed(values: np.ndarray | None, rows: np.ndarray, cols: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full(shape, fill)
        if values is not None:
            out[np.ix_(rows, cols)] = values
        return out

    take = ~np.isnan(placed(incoming.close, new_rows, new_cols))
    cleared = np.zeros(shape, bool)
    for symbol in replaced:  # the source's history for it from its first bar on
        col = column[symbol]
        cleared[int(np.argmax(take[:, col])) :, col] = True
    fields = market.bar_arrays()
    arrays = {}
    for name in (*fields, *market.extra):
        merged = placed(getattr(market, name) if name in fields else market.extra[name], old_rows, old_cols)
        if name == "dividend" and incoming.dividend is None:
            fresh = np.where(take, 0.0, np.nan)  # no dividend column: none paid on the new bars
        else:
            fresh = placed(getattr(incoming, name) if name in fields else incoming.extra.get(name), new_rows, new_cols)
        merged[cleared] = np.nan
        merged = np.where(take, fresh, merged)
        if name in market.extra and name not in incoming.extra:  # an own column carried forward onto new bars
            merged = np.where(take, pd.DataFrame(merged).ffill().to_numpy(), merged)
        arrays[name] = merged
    sectors = None
    if market.sectors is not None or incoming.sectors is not None:
        known = dict(zip(incoming.symbols, incoming.sectors or (), strict=False))
        known |= dict(zip(market.symbols, market.sectors or (), strict=False))
        sectors = tuple(known.get(s, "") for s in symbols)
    return Market(
        symbols=symbols,
        dates=dates,
        open=arrays["open"],
        high=arrays["high"],
        low=arrays["low"],
        close=arrays["close"],
        volume=arrays["volume"],
        dividend=arrays.get("dividend"),
        sectors=sectors,
        name=market.name,
        extra={k: arrays[k] for k in market.extra},
        categories=market.categories,
    )


def _loaded(new, options: LoadOptions, name: str) -> Market:
    if isinstance(new, Market):
        return new
    if isinstance(new, pd.DataFrame):
        return market_from_frame(new, name=name, options=options)
    return load_market(
        new,
        name=name,
        on_bad_rows=options.on_bad_rows,
        prices=options.prices,
        date_format=options.date_format,
        intraday=options.intraday,
        outlier_pct=options.outlier_pct,
    )


def _check_columns(market: Market, incoming: Market) -> None:
    mine, theirs = set(market.extra), set(incoming.extra)
    if theirs - mine:
        raise DataError(
            f"The new bars have columns the dataset lacks ({', '.join(sorted(theirs - mine))}): upload the "
            "whole history with them as a new dataset, or leave them out of the new bars."
        )
    for name in mine & theirs:
        if market.categories.get(name) != incoming.categories.get(name):
            raise DataError(
                f"The text column {name!r} has other values in the new bars than in the dataset: upload the "
                "whole history as a new dataset."
            )
    if (market.dividend is None) != (incoming.dividend is None) and incoming.dividend is not None:
        raise DataError("The new bars have a dividend column the dataset lacks: upload the whole history instead.")


def _restated(market: Market, incoming: Market) -> tuple[pd.DataFrame, int]:
    """(every differing overlapping value, how many overlapping bars are equal). The overlap: bars of symbols
    the dataset has, on dates it has, present in both."""
    common = [s for s in incoming.symbols if s in market.symbols]
    shared_dates = incoming.dates.intersection(market.dates)
    empty = pd.DataFrame(columns=["symbol", "date", "field", "old", "new", "ratio"])
    if not common or not len(shared_dates):
        return empty, 0
    old_r, new_r = market.dates.get_indexer(shared_dates), incoming.dates.get_indexer(shared_dates)
    old_c = np.array([market.column(s) for s in common])
    new_c = np.array([incoming.column(s) for s in common])
    both = ~np.isnan(market.close[np.ix_(old_r, old_c)]) & ~np.isnan(incoming.close[np.ix_(new_r, new_c)])
    differ = np.zeros_like(both)
    rows = []
    for name in ("open", "high", "low", "close", "volume"):
        old = getattr(market, name)[np.ix_(old_r, old_c)]
        new = getattr(incoming, name)[np.ix_(new_r, new_c)]
        same = np.isclose(new, old, rtol=RTOL, atol=0.0, equal_nan=True)
        bad = both & ~same
        differ |= bad
        r, c = np.nonzero(bad)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = new[r, c] / old[r, c]
        rows.append(
            pd.DataFrame(
                {
                    "symbol": [common[j] for j in c],
                    "date": shared_dates[r],
                    "field": name,
                    "old": old[r, c],
                    "new": new[r, c],
                    "ratio": ratio,
                }
            )
        )
    table = pd.concat(rows, ignore_index=True).sort_values(["symbol", "date", "field"], ignore_index=True)
    return (table if len(table) else empty), int((both & ~differ).sum())


def _causes(restated: pd.DataFrame) -> dict[str, str]:
    """Per restated symbol, what likely happened: one ratio on every price back from a date is the source
    applying a split (a round ratio) or an adjustment; anything else is corrected bars."""
    out = {}
    for symbol, rows in restated.groupby("symbol", sort=True):
        prices = rows[rows.field != "volume"]
        ratios = prices.ratio.to_numpy(dtype=float)
        last = pd.Timestamp(rows.date.max()).date()
        if len(ratios) and np.all(np.isfinite(ratios)) and np.ptp(ratios) <= 1e-6 * abs(ratios.mean()):
            ratio = float(ratios.mean())
            split = any(abs(ratio / r - 1.0) < 1e-3 for r in SPLIT_RATIOS)
            what = "a split applied by the source" if split else "an adjustment applied by the source"
            out[str(symbol)] = f"ratio {ratio:.4g} on every price from {last} back: {what}"
        else:
            out[str(symbol)] = f"{rows.date.nunique():,} bars differ (last {last}): bars corrected by the source"
    return out


def _restated_message(restated: pd.DataFrame, causes: dict[str, str]) -> str:
    listed = "; ".join(f"{s}: {c}" for s, c in list(causes.items())[:5])
    more = f" and {len(causes) - 5} more" if len(causes) > 5 else ""
    return (
        f"Restated history: {restated[['symbol', 'date']].drop_duplicates().shape[0]:,} stored bars of "
        f"{len(causes):,} symbols differ in the new data ({listed}{more}). Nothing was appended. Append with "
        "on_restated='replace' to take the source's history for those symbols, or fix the new file."
    )


def _issues(market: Market) -> pd.DataFrame:
    if market.issues is None:
        return pd.DataFrame(columns=["kind", "symbol", "date", "value"])
    return market.issues


def _detected(market: Market, outlier_pct: float) -> pd.DataFrame:
    """The loader's flags (likely splits, one-day moves) of every bar."""
    splits = detect_splits(market)
    outliers = detect_outliers(market, outlier_pct, splits)
    return pd.concat(
        [
            splits.assign(kind="split").rename(columns={"ratio": "value"})[["kind", "symbol", "date", "value"]],
            outliers.assign(kind="outlier").rename(columns={"move_pct": "value"})[["kind", "symbol", "date", "value"]],
        ],
        ignore_index=True,
    )


def _names(symbols: tuple[str, ...], shown: int = 8) -> str:
    return ", ".join(symbols[:shown]) + (f" and {len(symbols) - shown} more" if len(symbols) > shown else "")
