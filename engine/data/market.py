"""The market: bars for many symbols on one calendar, its identity (a fingerprint of its content) and the
words for its flagged issues."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from ..errors import DataError


@dataclass(frozen=True, eq=False)
class Market:
    """Bars for many symbols on one union calendar; arrays are (bars x symbols) float64, NaN = no bar."""

    symbols: tuple[str, ...]
    dates: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sectors: tuple[str, ...] | None = None
    dividend: np.ndarray | None = None  # cash per share on each ex-date (0: none); None: the file had none
    warnings: tuple[str, ...] = ()
    name: str = "data"
    fingerprint: str = field(default="", compare=False)
    dropped_rows: pd.DataFrame | None = field(default=None, repr=False)  # line, symbol, date, reason
    issues: pd.DataFrame | None = field(default=None, repr=False)  # kind (split/outlier), symbol, date, value
    # Own columns (engine/data/columns.py): rule name -> (bars x symbols) float64, carried forward per symbol;
    # a text column holds codes into its sorted labels in `categories`.
    extra: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (prices, volume, dividends, own columns): what holding it in memory costs."""
        arrays = [self.open, self.high, self.low, self.close, self.volume, self.dividend, *self.extra.values()]
        return sum(a.nbytes for a in arrays if a is not None)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _fingerprint(self))

    def __getstate__(self) -> dict:
        """Pickled (e.g. to a Dask worker) without its indicator memo, which belongs to this process."""
        state = dict(self.__dict__)
        state.pop("_indicators", None)
        state.pop("_periods", None)  # its weekly and monthly bars (engine/periods.py), rebuilt on demand
        return state

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def column(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise DataError(f"Unknown symbol {symbol!r}; the data has {', '.join(self.symbols[:10])}") from None

    def window(self, start: int, stop: int) -> Market:
        """Bars [start, stop) only: the market as a backtest of that period sees it (views, no copies)."""
        arrays = {a: getattr(self, a)[start:stop] for a in ("open", "high", "low", "close", "volume")}
        return Market(
            self.symbols,
            self.dates[start:stop],
            **arrays,
            sectors=self.sectors,
            dividend=None if self.dividend is None else self.dividend[start:stop],
            name=self.name,
            fingerprint=f"{self.fingerprint}[{start}:{stop}]",
            extra={k: v[start:stop] for k, v in self.extra.items()},
            categories=self.categories,
        )

    def without(self, symbols) -> Market:
        """The market without these symbols (e.g. the ones flagged for outliers); a new dataset identity."""
        drop = set(symbols)
        keep = [j for j, s in enumerate(self.symbols) if s not in drop]
        if not keep:
            raise DataError("Excluding these symbols would leave no data.")
        arrays = {a: np.ascontiguousarray(getattr(self, a)[:, keep]) for a in self.bar_arrays()}
        present = ~np.isnan(arrays["close"]).all(axis=1)
        arrays = {a: v[present] for a, v in arrays.items()}
        issues = None if self.issues is None else self.issues[~self.issues.symbol.isin(drop)].reset_index(drop=True)
        note = f"Excluded {len(self.symbols) - len(keep)} symbols: {', '.join(sorted(drop & set(self.symbols))[:10])}."
        return Market(
            tuple(self.symbols[j] for j in keep),
            self.dates[present],
            **arrays,  # type: ignore[arg-type]
            sectors=None if self.sectors is None else tuple(self.sectors[j] for j in keep),
            warnings=(*without_flags(self.warnings, issues), note),
            name=self.name,
            dropped_rows=self.dropped_rows,
            issues=issues,
            extra={k: np.ascontiguousarray(v[:, keep][present]) for k, v in self.extra.items()},
            categories=self.categories,
        )

    def bar_arrays(self) -> tuple[str, ...]:
        """The names of its (bars x symbols) arrays: OHLCV, and dividend when the file had one."""
        return ("open", "high", "low", "close", "volume", *(("dividend",) if self.dividend is not None else ()))

    def column_kinds(self) -> dict[str, str]:
        """The own columns rules can use: name -> 'number' or 'text' (`sector` is text when the file had one)."""
        kinds = {k: "text" if k in self.categories else "number" for k in self.extra}
        if self.sectors is not None and "sector" not in kinds:
            kinds["sector"] = "text"
        return kinds

    def own_column(self, name: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
        """(values, None) of a number column, or (codes, labels) of a text column; values broadcast to the
        market's shape (`sector` is one row: a symbol's sector does not change)."""
        if name in self.extra:
            return self.extra[name], self.categories.get(name)
        if name == "sector" and self.sectors is not None:
            labels = tuple(sorted(set(self.sectors)))
            codes = np.array([labels.index(s) for s in self.sectors], float)[None, :]
            return codes, labels
        raise DataError(f"The data has no column {name!r}.")

    def frame(self, symbol: str) -> pd.DataFrame:
        """One symbol's bars as a DataFrame indexed by date, without the dates it has no bar on."""
        j = self.column(symbol)
        df = pd.DataFrame({k: getattr(self, k)[:, j] for k in self.bar_arrays()}, index=self.dates)
        return df[~np.isnan(df["close"].to_numpy())]

    def summary(self) -> dict:
        t, n = self.shape
        present = ~np.isnan(self.close)
        inner_missing = int(missing_inside(present).sum())
        return {
            "symbols": n,
            "first_date": self.dates[0].date().isoformat() if t else None,
            "last_date": self.dates[-1].date().isoformat() if t else None,
            "bars": int(present.sum()),
            "calendar_days": t,
            "missing_bars": inner_missing,
            "sectors": len(set(self.sectors)) if self.sectors else 0,
            "dividends": int(np.count_nonzero(self.dividend > 0)) if self.dividend is not None else 0,
            "own_columns": len(self.extra),
        }


def without_flags(warnings: tuple[str, ...], issues: pd.DataFrame | None) -> tuple[str, ...]:
    """The warnings with the split and outlier ones rebuilt from these issues (some were fixed or excluded)."""
    kept = [w for w in warnings if not w.startswith(("Likely splits", "One-day moves"))]
    return (*kept, *issue_warnings(issues))


def missing_inside(present: np.ndarray) -> np.ndarray:
    """Per symbol: bars missing between its first and last bar (not before listing or after delisting)."""
    rows = np.arange(present.shape[0])[:, None]
    first = present.argmax(axis=0)
    last = present.shape[0] - 1 - present[::-1].argmax(axis=0)
    inside = (rows >= first) & (rows <= last) & present.any(axis=0)
    return (inside & ~present).sum(axis=0)


def _fingerprint(m: Market) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update("\x1f".join(m.symbols).encode())
    h.update(np.ascontiguousarray(m.dates.asi8).data)  # hashed in place, not copied
    for name in m.bar_arrays():
        h.update(np.ascontiguousarray(getattr(m, name)).data)  # hashed in place, not copied
    if m.sectors:
        h.update("\x1f".join(m.sectors).encode())
    for name in sorted(m.extra):  # own columns: a dataset with other columns is another dataset
        h.update(f"\x1e{name}\x1f{chr(31).join(m.categories.get(name, ()))}".encode())
        h.update(np.ascontiguousarray(m.extra[name]).data)
    return h.hexdigest()


def issue_warnings(issues: pd.DataFrame | None) -> list[str]:
    if issues is None or issues.empty:
        return []
    out = []
    splits = issues[issues.kind == "split"]
    if len(splits):
        listed = ", ".join(f"{r.symbol} {r.date.date()} ({_ratio_text(r.value)})" for r in splits.head(10).itertuples())
        out.append(
            f"Likely splits ({len(splits):,}): {listed}{' ...' if len(splits) > 10 else ''}. Prices before "
            "them are not comparable: choose adjusted prices or back-adjust the detected splits."
        )
    moves = issues[issues.kind == "outlier"]
    if len(moves):
        listed = ", ".join(f"{r.symbol} {r.date.date()} ({r.value:+,.0f}%)" for r in moves.head(10).itertuples())
        out.append(
            f"One-day moves beyond the outlier threshold ({len(moves):,} on {moves.symbol.nunique():,} symbols): "
            f"{listed}{' ...' if len(moves) > 10 else ''}. Check them, or exclude these symbols."
        )
    return out


def _ratio_text(ratio: float) -> str:
    f = Fraction(ratio).limit_denominator(10)
    kind = "split" if ratio > 1 else "reverse split"
    return f"{f.numerator}:{f.denominator} {kind}"
