"""Load, validate and normalise daily OHLCV bars into one `Market`.

Every other module consumes a `Market`; nothing else parses files. Validation happens here, at the edge,
and raises `DataError` with a message that names the rows or symbols at fault.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

SAMPLE_PATH = Path(__file__).parent / "sample_data" / "us6_2013_2023.csv.gz"


def max_upload_bytes() -> int:
    """The file size limit: SCANNER_MAX_UPLOAD_MB (default 200), read at each load so a host can change it."""
    return int(float(os.environ.get("SCANNER_MAX_UPLOAD_MB", "200")) * 1024 * 1024)


PRICE_COLUMNS = ("open", "high", "low", "close")
_EXAMPLES = 5
# Rounding tolerance for open/close vs the high-low range (prices are often rounded to a few decimals).
_RANGE_TOLERANCE = 1e-6

_ALIASES = {
    "symbol": ("symbol", "ticker", "code", "stock", "name", "instrument"),
    "date": ("date", "datetime", "timestamp", "time", "day"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last", "price"),
    "volume": ("volume", "vol", "v"),
    "adj_close": ("adj_close", "adj close", "adjclose", "adjusted_close", "adj. close"),
    "sector": ("sector", "industry", "group"),
}


class DataError(ValueError):
    """Bad input data; the message is meant for the user as is."""


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
    warnings: tuple[str, ...] = ()
    name: str = "data"
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _fingerprint(self))

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
        return Market(self.symbols, self.dates[start:stop], **arrays, sectors=self.sectors, name=self.name,
                      fingerprint=f"{self.fingerprint}[{start}:{stop}]")  # fmt: skip

    def frame(self, symbol: str) -> pd.DataFrame:
        """One symbol's bars as a DataFrame indexed by date, without the dates it has no bar on."""
        j = self.column(symbol)
        df = pd.DataFrame(
            {k: getattr(self, k)[:, j] for k in ("open", "high", "low", "close", "volume")}, index=self.dates
        )
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
        }


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
    h.update(m.dates.asi8.tobytes())
    for a in (m.open, m.high, m.low, m.close, m.volume):
        h.update(np.ascontiguousarray(a).tobytes())
    if m.sectors:
        h.update("\x1f".join(m.sectors).encode())
    return h.hexdigest()


def load_sample() -> Market:
    """The bundled real sample: six US stocks, 2013-2023 (MIT, see sample_data/SOURCE.md)."""
    return load_market(SAMPLE_PATH, name="Sample: 6 US stocks 2013-2023")


def load_market(
    source: str | os.PathLike | BinaryIO | pd.DataFrame,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
) -> Market:
    """Read a CSV/Parquet file (path, file-like with `.name`, or DataFrame) and return a validated Market."""
    if isinstance(source, pd.DataFrame):
        return market_from_frame(source, name=name or "data")
    max_bytes = max_upload_bytes() if max_bytes is None else max_bytes
    filename = str(getattr(source, "name", source))
    stem = Path(filename).name.split(".")[0] or "data"
    raw = _read_bytes(source, max_bytes)
    if not raw.strip():
        raise DataError(f"{Path(filename).name} is empty: expected a header row and at least one bar.")
    frame = _parse(raw, filename)
    return market_from_frame(frame, name=name or Path(filename).name, default_symbol=stem.upper())


def _read_bytes(source: str | os.PathLike | BinaryIO, max_bytes: int) -> bytes:
    if hasattr(source, "read"):
        size = getattr(source, "size", None)
        if size is not None and size > max_bytes:
            raise _too_big(size, max_bytes)
        raw = source.read(max_bytes + 1)
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"File not found: {path}")
        if path.stat().st_size > max_bytes:
            raise _too_big(path.stat().st_size, max_bytes)
        raw = path.read_bytes()
    if len(raw) > max_bytes:
        raise _too_big(len(raw), max_bytes)
    return raw


def _human(n_bytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def _too_big(size: int, limit: int) -> DataError:
    return DataError(
        f"The file is {_human(size)}, over the {_human(limit)} limit. "
        "Upload a smaller file (e.g. Parquet, or fewer symbols) or raise SCANNER_MAX_UPLOAD_MB."
    )


def _parse(raw: bytes, filename: str) -> pd.DataFrame:
    lower = filename.lower()
    try:
        if lower.endswith((".parquet", ".pq")) or raw[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(raw))
        compression = "gzip" if raw[:2] == b"\x1f\x8b" else None
        return pd.read_csv(io.BytesIO(raw), compression=compression, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"Could not read {Path(filename).name} as CSV or Parquet ({first_line}). "
            "Expected a CSV with a header row (symbol,date,open,high,low,close,volume) or a Parquet file."
        ) from None


def _rename_columns(df: pd.DataFrame) -> pd.DataFrame:
    by_key = {str(c).strip().lower().replace("-", "_"): c for c in df.columns}
    rename = {}
    for canonical, aliases in _ALIASES.items():
        for alias in aliases:
            for key in (alias, alias.replace(" ", "_")):
                if key in by_key and by_key[key] not in rename:
                    rename[by_key[key]] = canonical
                    break
            else:
                continue
            break
    out = df.rename(columns=rename)
    return out.loc[:, ~out.columns.duplicated()]


def _where(df: pd.DataFrame, mask: np.ndarray, what: str) -> str:
    """'12 rows have X, e.g. row 5 (AAPL 2021-03-04), ...' with file line numbers (header = line 1)."""
    idx = np.flatnonzero(mask)
    examples = []
    for i in idx[:_EXAMPLES]:
        sym = df["symbol"].iat[i]
        date = df["date"].iat[i]
        date = date.date().isoformat() if isinstance(date, pd.Timestamp) and not pd.isna(date) else date
        examples.append(f"line {int(df['_line'].iat[i])} ({sym} {date})")
    noun = "row has" if len(idx) == 1 else "rows have"
    return f"{len(idx)} {noun} {what}, e.g. " + ", ".join(examples)


def market_from_frame(frame: pd.DataFrame, *, name: str = "data", default_symbol: str = "DATA") -> Market:
    """Validate a long-format frame (one row per symbol and date) and pivot it into a Market."""
    if frame is None or len(frame) == 0:
        raise DataError("The data has no rows: expected at least one bar.")
    df = _rename_columns(frame.reset_index() if _has_date_index(frame) else frame)
    missing = [c for c in ("date", *PRICE_COLUMNS) if c not in df.columns]
    if missing:
        raise DataError(
            f"Missing required column(s): {', '.join(missing)}. Found: {', '.join(map(str, frame.columns))}. "
            "Expected symbol (or ticker), date, open, high, low, close and volume, in any case."
        )
    warnings: list[str] = []
    df = df.copy()
    df["_line"] = np.arange(2, len(df) + 2)
    if "symbol" not in df.columns:
        df["symbol"] = default_symbol
    df["symbol"] = df["symbol"].astype(str).str.strip().str.upper()
    blank_symbol = (df["symbol"] == "") | (df["symbol"].str.lower().isin(("nan", "none")))
    if blank_symbol.any():
        raise DataError(_where(df, blank_symbol.to_numpy(), "no symbol") + ". Fill in the symbol column.")
    if "volume" not in df.columns:
        df["volume"] = np.nan
        warnings.append("No volume column: volume-based indicators will be empty.")

    df["date"] = _parse_dates(df)
    for col in (*PRICE_COLUMNS, "volume"):
        df[col] = _parse_numbers(df, col)

    all_nan = df[list(PRICE_COLUMNS)].isna().all(axis=1).to_numpy()
    some_nan = df[list(PRICE_COLUMNS)].isna().any(axis=1).to_numpy() & ~all_nan
    if some_nan.any():
        raise DataError(_where(df, some_nan, "some but not all of open/high/low/close empty") + ".")
    if all_nan.any():
        warnings.append(f"{int(all_nan.sum())} rows have no prices and were treated as missing bars.")
        df = df[~all_nan]
    _check_prices(df)

    dup = df.duplicated(["symbol", "date"], keep="first").to_numpy()
    if dup.any():
        raise DataError(_where(df, dup, "a duplicate (symbol, date)") + ". Keep one row per symbol and date.")
    sectors = _sectors(df)
    return _pivot(df, sectors, warnings, name)


def _has_date_index(frame: pd.DataFrame) -> bool:
    return isinstance(frame.index, pd.DatetimeIndex) or str(frame.index.name or "").lower() in _ALIASES["date"]


def _parse_dates(df: pd.DataFrame) -> pd.Series:
    col = df["date"]
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    else:
        text = col.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if parsed.isna().any():  # not all ISO: let pandas infer one format for the rest
            retry = pd.to_datetime(text[parsed.isna()], errors="coerce", format="mixed")
            parsed = parsed.where(parsed.notna(), retry)
    bad = parsed.isna().to_numpy()
    if bad.any():
        sample = ", ".join(
            f"line {ln} ({v!r})" for ln, v in zip(df["_line"][bad][:_EXAMPLES], col[bad][:_EXAMPLES], strict=False)
        )
        raise DataError(f"{int(bad.sum())} rows have a date that could not be parsed, e.g. {sample}. Use YYYY-MM-DD.")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _parse_numbers(df: pd.DataFrame, col: str) -> pd.Series:
    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype(float)
    text = raw.astype(str).str.strip()
    empty = text.isin(("", "nan", "NaN", "NA", "null", "None", "-"))
    values = pd.to_numeric(text.where(~empty), errors="coerce")
    bad = (values.isna() & ~empty).to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)[:_EXAMPLES]
        sample = ", ".join(f"line {df['_line'].iat[i]} ({text.iat[i]!r})" for i in idx)
        raise DataError(f"{int(bad.sum())} rows have a non-numeric {col}, e.g. {sample}.")
    return values.astype(float)


def _check_prices(df: pd.DataFrame) -> None:
    o, h, lo, c = (df[k].to_numpy() for k in PRICE_COLUMNS)
    problems = []
    nonpos = (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
    if nonpos.any():
        problems.append(_where(df, nonpos, "a zero or negative price"))
    inverted = h < lo
    if inverted.any():
        problems.append(_where(df, inverted, "high < low"))
    tol = _RANGE_TOLERANCE * np.abs(h)
    outside = ~inverted & ((o > h + tol) | (o < lo - tol) | (c > h + tol) | (c < lo - tol))
    if outside.any():
        problems.append(_where(df, outside, "open or close outside [low, high]"))
    neg_volume = df["volume"].to_numpy() < 0
    if neg_volume.any():
        problems.append(_where(df, neg_volume, "a negative volume"))
    if problems:
        raise DataError("; ".join(problems) + ". Fix or remove these rows and load again.")


def _sectors(df: pd.DataFrame) -> dict[str, str] | None:
    if "sector" not in df.columns:
        return None
    per_symbol = df.assign(sector=df["sector"].astype(str).str.strip()).groupby("symbol")["sector"]
    several = per_symbol.nunique()
    if (several > 1).any():
        names = ", ".join(several[several > 1].index[:_EXAMPLES])
        raise DataError(f"Symbols with more than one sector: {names}. Give each symbol one sector.")
    return per_symbol.first().to_dict()


def _pivot(df: pd.DataFrame, sectors: dict[str, str] | None, warnings: list[str], name: str) -> Market:
    symbols = tuple(sorted(df["symbol"].unique()))
    dates = pd.DatetimeIndex(np.sort(df["date"].unique()))
    rows = dates.get_indexer(df["date"])
    cols = pd.Index(symbols).get_indexer(df["symbol"])
    arrays = {}
    for key in ("open", "high", "low", "close", "volume"):
        a = np.full((len(dates), len(symbols)), np.nan)
        a[rows, cols] = df[key].to_numpy(dtype=float)
        arrays[key] = a
    present = ~np.isnan(arrays["close"])
    gaps = dict(zip(symbols, missing_inside(present).tolist(), strict=True))
    gappy = {s: g for s, g in gaps.items() if g}
    if gappy:
        worst = ", ".join(f"{s} ({g})" for s, g in sorted(gappy.items(), key=lambda kv: -kv[1])[:_EXAMPLES])
        warnings.append(
            f"{len(gappy)} symbols have {sum(gappy.values())} missing bars inside their date range "
            f"(no trading on days other symbols traded), most: {worst}."
        )
    nan_volume = int((np.isnan(arrays["volume"]) & present).sum())
    if nan_volume and "No volume column" not in " ".join(warnings):
        warnings.append(f"{nan_volume} bars have no volume.")
    return Market(
        symbols=symbols,
        dates=dates,
        sectors=tuple(sectors[s] for s in symbols) if sectors else None,
        warnings=tuple(warnings),
        name=name,
        **arrays,
    )
