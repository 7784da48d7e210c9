"""Quality after loading: likely splits and one-day outliers, flagged in `market.issues` and
`market.warnings`; back-adjusting the detected splits when asked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .. import _indicator_kernels as k
from ..errors import DataError
from .market import Market, issue_warnings, without_flags
from .read import LoadOptions

WHOLE_RATIOS = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0)
SPLIT_RATIOS = (*WHOLE_RATIOS, 1.5, *(1 / r for r in WHOLE_RATIOS), 2 / 3)
# After a gap the price has drifted while the symbol did not trade: a consolidation of 1:10 or more is read
# with a wider tolerance, the roundest ratio first (a 1:100 seen as 0.040 -> 4.75 is 1:100, not 1:119).
ROUND_RATIOS = (10.0, 100.0, 1000.0, 20.0, 50.0, 200.0, 500.0, 25.0, 250.0)
GAP_BARS = 5  # missing bars before a bar that make it a gap


SPLIT_TOLERANCE = 0.03  # a split's overnight ratio is within 3% of the ratio (a -52% crash day is ~5% off 2:1)


def gap_tolerance(missing: int) -> float:
    """How far a ratio may drift over `missing` bars without a trade: 5% x sqrt(bars), at most 35%."""
    return min(0.35, 0.05 * float(np.sqrt(missing)))


def detect_splits(market: Market, tolerance: float = SPLIT_TOLERANCE) -> pd.DataFrame:
    """Likely splits: bars whose previous close / open is within `tolerance` of a split ratio (2:1, 3:2,
    10:1, 1:100 ... any whole ratio, or the inverse for reverse splits and consolidations), and whose new
    price level holds: the median of the next 5 closes is within 15% of the ratio to the median of the
    previous 5 (a penny stock ticking between two prices, or a crash that rebounds, is not a split). A move
    of 10x or more after a gap of missing bars (`GAP_BARS`) is read with `gap_tolerance`, as the roundest
    ratio that fits. Columns: symbol, date, ratio (2.0 = 2-for-1)."""
    prev_close = k.shift_valid(np.ascontiguousarray(market.close), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        overnight = prev_close / market.open
    # Only bars that moved at least as far as the nearest ratio to 1 (3:2 or 2:3) can be splits.
    nearest_up, nearest_down = min(r for r in SPLIT_RATIOS if r > 1), max(r for r in SPLIT_RATIOS if r < 1)
    with np.errstate(invalid="ignore"):
        far = (overnight > nearest_up * (1 - tolerance)) | (overnight < nearest_down * (1 + tolerance))
    rows, cols = np.nonzero(far)
    moved = overnight[rows, cols]
    found = []
    for ratio in SPLIT_RATIOS:
        for i, j in zip(*(x[np.abs(moved / ratio - 1.0) < tolerance] for x in (rows, cols)), strict=True):
            if _level_holds(market.close[:, j], int(i), ratio):
                found.append((market.symbols[j], market.dates[i], ratio, i, j))
    seen = {(i, j) for *_, i, j in found}
    days = market.dates.values.astype("datetime64[D]")
    for i, j, m in zip(rows, cols, moved, strict=True):
        if (int(i), int(j)) in seen or not (m >= 9.0 or m <= 1 / 9.0):  # the cheap tests first: a load runs this
            continue
        missing = _missing_before(market.close[:, j], days, int(i))
        if missing < GAP_BARS:
            continue
        within = gap_tolerance(missing)
        round_ratio = _roundest(float(m), within)
        if round_ratio is not None and _level_holds(market.close[:, j], int(i), round_ratio, within=within):
            found.append((market.symbols[j], market.dates[i], round_ratio, int(i), int(j)))
    frame = pd.DataFrame(found, columns=["symbol", "date", "ratio", "bar", "col"])
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def _missing_before(close: np.ndarray, days: np.ndarray, bar: int) -> int:
    """Weekdays without a price between this bar and the symbol's previous one (`days`: the dates as
    datetime64[D]; a gap in the whole dataset's calendar counts too: the symbol did not trade then either)."""
    before = np.flatnonzero(~np.isnan(close[:bar]))
    if not len(before):
        return 0
    return max(int(np.busday_count(days[before[-1]], days[bar])) - 1, 0)


def _roundest(move: float, within: float) -> float | None:
    """The roundest ratio of 10 or more (or its inverse) within `within` of the move, or None."""
    up = move if move > 1 else 1 / move
    for ratio in ROUND_RATIOS:
        if abs(up / ratio - 1.0) < within:
            return ratio if move > 1 else 1 / ratio
    return None


def _level_holds(close: np.ndarray, bar: int, ratio: float, n: int = 5, within: float = 0.15) -> bool:
    valid = np.flatnonzero(~np.isnan(close))
    at = int(np.searchsorted(valid, bar))
    before, after = close[valid[max(0, at - n) : at]], close[valid[at : at + n]]
    if not len(before) or not len(after):
        return False
    return abs(np.median(before) / np.median(after) / ratio - 1.0) < max(within, 0.15)


def detect_outliers(market: Market, threshold_pct: float = 50.0, splits: pd.DataFrame | None = None) -> pd.DataFrame:
    """One-day close-to-close moves beyond threshold_pct (after any split on that bar), per symbol and date."""
    prev_close = k.shift_valid(np.ascontiguousarray(market.close), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        move = market.close / prev_close
    if splits is not None and len(splits):
        move[splits.bar.to_numpy(), splits.col.to_numpy()] *= splits.ratio.to_numpy()
    pct = (move - 1.0) * 100.0
    with np.errstate(invalid="ignore"):
        rows, cols = np.nonzero(np.abs(pct) > threshold_pct)
    frame = pd.DataFrame(
        {"symbol": [market.symbols[j] for j in cols], "date": market.dates[rows], "move_pct": pct[rows, cols]}
    )
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def flagged_bars(market: Market) -> np.ndarray:
    """(bars x symbols) bool: the bars flagged as likely splits or outliers (market.issues)."""
    mask = np.zeros(market.shape, bool)
    issues = market.issues
    if issues is None or issues.empty:
        return mask
    rows = market.dates.get_indexer(pd.DatetimeIndex(issues.date))
    cols = pd.Index(market.symbols).get_indexer(issues.symbol)
    ok = (rows >= 0) & (cols >= 0)
    mask[rows[ok], cols[ok]] = True
    return mask


def trades_on_flagged(market: Market, positions: pd.DataFrame) -> pd.DataFrame:
    """The positions that held through a flagged bar (its move is in their return: after the entry bar, up to
    the exit bar), with the flagged bars they crossed, best return first."""
    issues = market.issues
    columns = [*positions.columns, "flagged"]
    if issues is None or issues.empty or positions.empty:
        return pd.DataFrame(columns=columns)
    spans = positions[["position_id", "entry_date", "exit_date"]].assign(symbol=positions.symbol.astype(str))
    flags = issues[["symbol", "date", "kind"]].assign(date=lambda f: pd.to_datetime(f.date))
    pairs = spans.merge(flags, on="symbol")  # each position with its symbol's flags
    hit = pairs[(pairs.date > pairs.entry_date) & (pairs.date <= pairs.exit_date)]
    words = (hit.kind + " " + hit.date.dt.strftime("%Y-%m-%d")).groupby(hit.position_id).agg(", ".join)
    out = positions[positions.position_id.isin(words.index)]
    return out.assign(flagged=out.position_id.map(words)).sort_values("return_pct", ascending=False)


def back_adjusted(market: Market, splits: pd.DataFrame) -> dict[str, np.ndarray | None]:
    """The bar arrays with each split (rows of bar, col, ratio) back-adjusted: prices before it divided by its
    ratio, volume multiplied, a dividend (per share) scaled as the prices."""
    factor = np.ones(market.shape)
    for row in splits.itertuples():
        factor[: row.bar, row.col] /= row.ratio
    return {
        "open": market.open * factor,
        "high": market.high * factor,
        "low": market.low * factor,
        "close": market.close * factor,
        "volume": market.volume / factor,
        "dividend": None if market.dividend is None else market.dividend * factor,
    }


def flag_and_adjust(market: Market, opts: LoadOptions, dropped: pd.DataFrame) -> Market:
    splits = detect_splits(market)
    if opts.prices == "split_adjusted" and len(splits):
        market = replace(
            market,
            **back_adjusted(market, splits),  # type: ignore[arg-type]  # the bar arrays by name
            warnings=(*market.warnings, f"Back-adjusted {len(splits):,} detected splits."),
            fingerprint="",
        )
        splits = splits.iloc[0:0]
    outliers = detect_outliers(market, opts.outlier_pct, splits)
    issues = pd.concat(
        [
            splits.assign(kind="split").rename(columns={"ratio": "value"})[["kind", "symbol", "date", "value"]],
            outliers.assign(kind="outlier").rename(columns={"move_pct": "value"})[["kind", "symbol", "date", "value"]],
        ],
        ignore_index=True,
    )
    return replace(
        market,
        warnings=(*market.warnings, *issue_warnings(issues), *survivors_warning(market)),
        fingerprint=market.fingerprint,
        dropped_rows=dropped if len(dropped) else None,
        issues=issues,
    )


SURVIVOR_BARS = 1_260  # about five years of daily bars: a history long enough for some symbols to have ended
SURVIVOR_SYMBOLS = 5


def survivors_warning(market: Market) -> tuple[str, ...]:
    """A warning when every symbol of a long history trades on its last date: over years some stop trading
    (delisted, merged, bankrupt), so a list where none did is likely today's survivors only."""
    n_bars, n_symbols = market.shape
    if n_bars < SURVIVOR_BARS or n_symbols < SURVIVOR_SYMBOLS or not np.all(np.isfinite(market.close[-1])):
        return ()
    years = (market.dates[-1] - market.dates[0]).days / 365.25
    return (
        f"Likely survivors only: all {n_symbols:,} symbols trade on the last date of a {years:,.0f}-year history; "
        "symbols that stopped trading are missing, so results are biased upward. Include delisted symbols (their "
        "bars up to the last one) for honest results.",
    )


def fix_flag(market: Market, kind: str, symbol: str, date: str | pd.Timestamp) -> Market:
    """One flagged bar fixed, the rest of the data as it was: a new dataset (a new fingerprint and id).
    kind 'adjust' back-adjusts the split flagged on that bar (prices before it divided by its ratio, volume
    multiplied, as `prices='split_adjusted'` does for every split); 'drop' leaves that one bar out (the
    symbol has no bar that day). The bar's flags leave `market.issues` and the warnings say what was done."""
    when = pd.Timestamp(date)
    issues = market.issues if market.issues is not None else pd.DataFrame(columns=["kind", "symbol", "date", "value"])
    here = (issues.symbol == symbol) & (pd.DatetimeIndex(issues.date) == when)
    if not here.any():
        raise DataError(f"No flagged bar of {symbol} on {when.date()}: choose one of the flagged bars listed.")
    col, bar = market.column(symbol), int(market.dates.get_loc(when))
    extra = dict(market.extra)
    arrays: dict[str, np.ndarray | None]
    if kind == "adjust":
        split = issues[here & (issues.kind == "split")]
        if split.empty:
            raise DataError(f"{symbol} on {when.date()} is flagged as an outlier, not a split: drop the bar instead.")
        ratio = float(split.value.iloc[0])
        arrays = back_adjusted(market, pd.DataFrame({"bar": [bar], "col": [col], "ratio": [ratio]}))
        done = f"Back-adjusted the {symbol} split on {when.date()} (x{ratio:g})."
    elif kind == "drop":
        copies = {name: np.array(getattr(market, name), dtype=float) for name in market.bar_arrays()}
        extra = {name: v.copy() for name, v in extra.items()}
        for a in (*copies.values(), *extra.values()):
            a[bar, col] = np.nan
        arrays = {**copies}
        done = f"Left out the {symbol} bar of {when.date()}."
    else:
        raise DataError(f"Unknown fix {kind!r}: 'adjust' (a split) or 'drop' (the bar).")
    left = issues[~here].reset_index(drop=True)
    return replace(
        market,
        **arrays,  # type: ignore[arg-type]  # open, high, low, close, volume (and dividend) by name
        extra=extra,
        issues=left,
        warnings=(*without_flags(market.warnings, left), done),
        fingerprint="",
    )
