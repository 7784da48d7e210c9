"""Load, validate and normalise daily OHLCV bars into one `Market`.

Every other module consumes a `Market`; nothing else parses files. Validation happens here, at the edge:
every bad row is found with its line (CSV) or row (Parquet, DataFrame) and reason. With
`on_bad_rows="raise"` (the default) they are reported in one `DataError`; with `"drop"` the rest loads and
`market.dropped_rows` lists what was left out. Files are read with Arrow: columns are typed, symbols and
dates are parsed once per distinct value, and compressed input is limited while it is decompressed.

After loading, likely splits (an overnight price ratio near 2:1, 3:2, 10:1 ... or its inverse) and one-day
moves beyond `outlier_pct` are listed in `market.issues` and `market.warnings`. `prices="adjusted"` scales
OHLC by adj_close/close; `prices="split_adjusted"` back-adjusts the detected splits.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

SAMPLE_PATH = Path(__file__).parent / "sample_data" / "us6_2013_2023.csv.gz"
PRICE_COLUMNS = ("open", "high", "low", "close")
MAX_EXPANSION = 100  # real price files compress 3-10:1; more than this is a decompression bomb
SPLIT_RATIOS = (2.0, 3.0, 1.5, 4.0, 5.0, 7.0, 10.0, 1 / 2, 1 / 3, 2 / 3, 1 / 4, 1 / 5, 1 / 7, 1 / 10)
SPLIT_TOLERANCE = 0.03  # a split's overnight ratio is within 3% of the ratio (a -52% crash day is ~5% off 2:1)
_EXAMPLES = 5
_RANGE_TOLERANCE = 1e-6  # open/close vs the high-low range: prices are often rounded
_NULLS = ["", "nan", "NaN", "NA", "N/A", "null", "NULL", "None", "none", "-"]
_SYMBOL_OK = re.compile(r"^[A-Z0-9^=._-][A-Z0-9 ._&/:^=-]{0,31}$")
_OFFSET = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_DAY_FIRST = ("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%d/%m/%y", "%d.%m.%y")
_MONTH_FIRST = ("%m/%d/%Y", "%m.%d.%Y", "%m-%d-%Y", "%m/%d/%y")
_OTHER_FORMATS = ("%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%d %b %Y", "%b %d %Y", "%d-%b-%Y", "%b %d, %Y")

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

OnBadRows = Literal["raise", "drop"]
Prices = Literal["raw", "adjusted", "split_adjusted"]


def max_upload_bytes() -> int:
    """The file size limit: SCANNER_MAX_UPLOAD_MB (default 200), read at each load so a host can change it."""
    return int(float(os.environ.get("SCANNER_MAX_UPLOAD_MB", "200")) * 1024 * 1024)


def max_decompressed_bytes() -> int:
    """Decompressed size limit: SCANNER_MAX_DECOMPRESSED_MB (default 1024)."""
    return int(float(os.environ.get("SCANNER_MAX_DECOMPRESSED_MB", "1024")) * 1024 * 1024)


class DataError(ValueError):
    """Bad input data; the message is meant for the user as is."""


class BadRowsError(DataError):
    """Rows that cannot be loaded; `rows` lists each (line, symbol, date, reason). Load again with
    on_bad_rows="drop" to leave them out."""

    def __init__(self, message: str, rows: pd.DataFrame) -> None:
        super().__init__(message)
        self.rows = rows


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
    dropped_rows: pd.DataFrame | None = field(default=None, repr=False)  # line, symbol, date, reason
    issues: pd.DataFrame | None = field(default=None, repr=False)  # kind (split/outlier), symbol, date, value

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _fingerprint(self))

    def __getstate__(self) -> dict:
        """Pickled (e.g. to a Dask worker) without its indicator memo, which belongs to this process."""
        state = dict(self.__dict__)
        state.pop("_indicators", None)
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
            name=self.name,
            fingerprint=f"{self.fingerprint}[{start}:{stop}]",
        )

    def without(self, symbols) -> Market:
        """The market without these symbols (e.g. the ones flagged for outliers); a new dataset identity."""
        drop = set(symbols)
        keep = [j for j, s in enumerate(self.symbols) if s not in drop]
        if not keep:
            raise DataError("Excluding these symbols would leave no data.")
        arrays = {
            a: np.ascontiguousarray(getattr(self, a)[:, keep]) for a in ("open", "high", "low", "close", "volume")
        }
        present = ~np.isnan(arrays["close"]).all(axis=1)
        arrays = {a: v[present] for a, v in arrays.items()}
        issues = None if self.issues is None else self.issues[~self.issues.symbol.isin(drop)].reset_index(drop=True)
        note = f"Excluded {len(self.symbols) - len(keep)} symbols: {', '.join(sorted(drop & set(self.symbols))[:10])}."
        return Market(
            tuple(self.symbols[j] for j in keep),
            self.dates[present],
            **arrays,  # type: ignore[arg-type]
            sectors=None if self.sectors is None else tuple(self.sectors[j] for j in keep),
            warnings=(*_without_flags(self.warnings, issues), note),
            name=self.name,
            dropped_rows=self.dropped_rows,
            issues=issues,
        )

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


def _without_flags(warnings: tuple[str, ...], issues: pd.DataFrame | None) -> tuple[str, ...]:
    kept = [w for w in warnings if not w.startswith(("Likely splits", "One-day moves"))]
    return (*kept, *_issue_warnings(issues))


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


@dataclass(frozen=True)
class LoadOptions:
    """How to read a file: what to do with bad rows, which prices to use, how to read dates."""

    on_bad_rows: OnBadRows = "raise"
    prices: Prices = "raw"
    date_format: str | None = None  # None (detect), "dayfirst", "monthfirst" or a strftime format
    intraday: Literal["refuse", "daily"] = "refuse"  # "daily": resample intraday bars to daily ones
    outlier_pct: float = 50.0

    def __post_init__(self) -> None:
        if self.on_bad_rows not in ("raise", "drop"):
            raise DataError(f"on_bad_rows must be 'raise' or 'drop', not {self.on_bad_rows!r}.")
        if self.prices not in ("raw", "adjusted", "split_adjusted"):
            raise DataError(f"prices must be 'raw', 'adjusted' or 'split_adjusted', not {self.prices!r}.")
        if self.intraday not in ("refuse", "daily"):
            raise DataError(f"intraday must be 'refuse' or 'daily', not {self.intraday!r}.")
        if not (isinstance(self.outlier_pct, int | float) and 1 <= self.outlier_pct <= 10_000):
            raise DataError(f"outlier_pct must be between 1 and 10,000 (percent), not {self.outlier_pct!r}.")


def load_market(
    source: str | os.PathLike | BinaryIO | pd.DataFrame,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
    on_bad_rows: OnBadRows = "raise",
    prices: Prices = "raw",
    date_format: str | None = None,
    intraday: Literal["refuse", "daily"] = "refuse",
    outlier_pct: float = 50.0,
) -> Market:
    """Read a CSV/Parquet file (path, file-like with `.name`, or DataFrame) and return a validated Market.

    Any failure is a DataError whose message says what is wrong and how to fix it; never another exception.
    """
    opts = LoadOptions(on_bad_rows, prices, date_format, intraday, outlier_pct)
    if isinstance(source, pd.DataFrame):
        return market_from_frame(source, name=name or "data", options=opts)
    max_bytes = max_upload_bytes() if max_bytes is None else max_bytes
    filename = str(getattr(source, "name", source))
    stem = Path(filename).name.split(".")[0] or "data"
    raw = _read_bytes(source, max_bytes)
    if not raw.strip():
        raise DataError(f"{Path(filename).name} is empty: expected a header row and at least one bar.")
    try:
        if filename.lower().endswith((".parquet", ".pq")) or raw[:4] == b"PAR1":
            table, numbering, ragged = _read_parquet(raw, filename), _Numbering("row", 1), None
        else:
            table, numbering, ragged = _read_csv(_decompress(_unzip(raw, filename), filename), filename, opts)
        return _build(table, name or Path(filename).name, stem.upper(), opts, numbering, ragged)
    except DataError:
        raise
    except (pa.ArrowException, ValueError, TypeError, OverflowError, MemoryError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"Could not read {Path(filename).name} ({first}). Expected a CSV with a header row "
            "(symbol,date,open,high,low,close,volume) or a Parquet file."
        ) from None
    finally:
        pa.default_memory_pool().release_unused()  # Arrow's buffers go back to the system, not its pool


def market_from_frame(
    frame: pd.DataFrame, *, name: str = "data", default_symbol: str = "DATA", options: LoadOptions | None = None
) -> Market:
    """Validate a long-format frame (one row per symbol and date) and pivot it into a Market."""
    if frame is None or len(frame) == 0:
        raise DataError("The data has no rows: expected at least one bar.")
    df = frame.reset_index() if _has_date_index(frame) else frame
    columns = {}
    for i, col in enumerate(df.columns):
        values = df.iloc[:, i]
        if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
        columns[str(col)] = pa.array(values, from_pandas=True)
    try:
        table = pa.table(list(columns.values()), names=list(columns))
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"Could not read the data frame: {str(exc)[:200]}") from None
    return _build(table, name, default_symbol, options or LoadOptions(), _Numbering("row", 1))


def _has_date_index(frame: pd.DataFrame) -> bool:
    return isinstance(frame.index, pd.DatetimeIndex) or str(frame.index.name or "").lower() in _ALIASES["date"]


# --- reading bytes ----------------------------------------------------------------------------------------


def _read_bytes(source: str | os.PathLike | BinaryIO, max_bytes: int) -> bytes:
    if hasattr(source, "read"):
        size = getattr(source, "size", None)
        if size is not None and size > max_bytes:
            raise too_big(size, max_bytes)
        raw = source.read(max_bytes + 1)
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"File not found: {path}")
        if path.stat().st_size > max_bytes:
            raise too_big(path.stat().st_size, max_bytes)
        raw = path.read_bytes()
    if len(raw) > max_bytes:
        raise too_big(len(raw), max_bytes)
    return raw


def _human(n_bytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def too_big(size: int, limit: int) -> DataError:
    return DataError(
        f"The file is {_human(size)}, over the {_human(limit)} limit. "
        "Upload a smaller file (e.g. Parquet, or fewer symbols) or raise SCANNER_MAX_UPLOAD_MB."
    )


def _decompress(raw: bytes, filename: str) -> bytes:
    """gzip input, decompressed in pieces and refused as soon as it exceeds the limits (never all of it)."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    limit = min(max_decompressed_bytes(), MAX_EXPANSION * len(raw))
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while chunk := stream.read(8 * 1024 * 1024):
                out.write(chunk)
                if out.tell() > limit:
                    why = (
                        f"more than {MAX_EXPANSION}:1, which real price files never do"
                        if limit < max_decompressed_bytes()
                        else f"over the {_human(limit)} limit (SCANNER_MAX_DECOMPRESSED_MB)"
                    )
                    raise DataError(
                        f"{Path(filename).name} expands to over {_human(out.tell())} when "
                        f"decompressed: {why}. Upload the file uncompressed or as Parquet."
                    )
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{Path(filename).name} is not a complete gzip file ({exc}). Compress it again or upload it uncompressed."
        ) from None
    return out.getvalue()


def _unzip(raw: bytes, filename: str) -> bytes:
    """The one CSV inside a zip archive, read within the same limits as gzip; anything else says to unzip."""
    if raw[:4] != b"PK\x03\x04":
        return raw
    shown = Path(filename).name
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
            if len(members) != 1 or not members[0].filename.lower().endswith((".csv", ".txt", ".tsv")):
                names = ", ".join(m.filename for m in members[:3]) + (", ..." if len(members) > 3 else "")
                raise DataError(
                    f"{shown} is a zip archive of {len(members)} files ({names[:120]}): unzip it and "
                    "upload the CSV or Parquet file itself (one archive can hold one CSV)."
                )
            limit = min(max_decompressed_bytes(), MAX_EXPANSION * len(raw))
            with archive.open(members[0]) as stream:
                out = stream.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise DataError(
            f"{shown} is not a readable zip archive ({str(exc)[:100]}): unzip it and upload the CSV itself."
        ) from None
    if len(out) > limit:
        raise DataError(
            f"{shown} expands to over {_human(limit)} when unzipped: upload the CSV uncompressed or as Parquet."
        )
    return out


def _read_parquet(raw: bytes, filename: str) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{Path(filename).name} is not a readable Parquet file ({str(exc)[:160]}). "
            "It may be truncated: export it again."
        ) from None


@dataclass(frozen=True)
class _Numbering:
    """How messages name a row: 'line' numbers in a CSV (header = line 1), 'row' numbers otherwise."""

    word: str
    first: int
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # CSV lines read as no row

    def numbers(self, idx: np.ndarray) -> np.ndarray:
        base = np.asarray(idx, np.int64) + self.first
        if not len(self.skipped):
            return base
        # The k-th kept row sits after every skipped line numbered at or below it.
        out = base.copy()
        for _ in range(2):
            out = base + np.searchsorted(self.skipped, out, side="right")
        return out


def _sniff(text: bytes) -> tuple[str, str]:
    """(delimiter, decimal mark) from the first lines: , ; tab or |, and a decimal comma where used."""
    head = text[:65536].decode("utf-8", errors="replace").splitlines()[:20]
    if not head:
        return ",", "."
    header = head[0]
    delimiter = max((",", ";", "\t", "|"), key=lambda d: (header.count(d), d == ","))
    decimal = "."
    if delimiter != ",":
        body = "\n".join(head[1:])
        if re.search(r"\d,\d", body) and not re.search(r"\d\.\d", body):
            decimal = ","
    return delimiter, decimal


def _read_csv(text: bytes, filename: str, opts: LoadOptions) -> tuple[pa.Table, _Numbering, pd.DataFrame | None]:
    """The CSV as a table of strings, how its rows are numbered, and the ragged lines left out (if any)."""
    if text[:3] == b"\xef\xbb\xbf":
        text = text[3:]
    if b"\r" in text[:65536] and b"\n" not in text[:65536]:  # old Mac line endings (CR only)
        text = text.replace(b"\r", b"\n")
    head = text[:4096]
    if head.count(b"\x00") > len(head) // 20 or (head[:1] == b"\x00" and b"\n" not in head):
        raise DataError(f"{Path(filename).name} is binary, not a CSV or Parquet file.")
    delimiter, decimal = _sniff(text)
    first_line = text.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip("\r")
    names = next(csv.reader([first_line], delimiter=delimiter), [])
    internal = [f"c{i}" for i in range(len(names))]
    convert = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(internal, pa.string()),
        strings_can_be_null=True,
        null_values=_NULLS,
        quoted_strings_can_be_null=True,
    )
    read = dict(column_names=internal, skip_rows=1)
    skipped: list[int] = []
    dropped = None
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text),
            read_options=pa_csv.ReadOptions(**read),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False),
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        if "columns" not in str(exc):
            raise DataError(f"Could not read {Path(filename).name} as CSV: {str(exc)[:200]}") from None
        ragged: list[tuple[int, str]] = []

        def handler(row) -> str:
            if row.text.strip():
                ragged.append((row.number, row.text[:60]))
            else:
                skipped.append(row.number)
            return "skip"

        table = pa_csv.read_csv(
            io.BytesIO(text),
            read_options=pa_csv.ReadOptions(**read, use_threads=False),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=handler, ignore_empty_lines=False
            ),
            convert_options=convert,
        )
        if ragged:
            rows = pd.DataFrame(
                {
                    "line": [n for n, _ in ragged],
                    "symbol": "",
                    "date": "",
                    "reason": f"field count is not the header's {len(names)}",
                }
            )
            if opts.on_bad_rows == "raise":
                _required_columns(names)  # a header without the columns is the news, not its ragged rows
                examples = ", ".join(f"line {n} ({t!r})" for n, t in ragged[:_EXAMPLES])
                message = (
                    f"{len(ragged)} {'row does' if len(ragged) == 1 else 'rows do'} not have the header's "
                    f"{len(names)} fields, "
                    f"e.g. {examples}. Fix these lines, or load without them."
                )
                raise BadRowsError(message, rows) from None
            skipped.extend(n for n, _ in ragged)
            dropped = rows
    table = table.rename_columns(names)
    if decimal == ",":
        table = pa.table(
            [
                pc.replace_substring(col, ",", ".") if n.strip().lower() in _NUMERIC_NAMES else col
                for n, col in zip(names, table.columns, strict=True)
            ],
            names=names,
        )
    return table, _Numbering("line", 2, np.array(sorted(skipped), np.int64)), dropped


_NUMERIC_NAMES = {a for key in ("open", "high", "low", "close", "volume", "adj_close") for a in _ALIASES[key]}


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _check_header(names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = _norm(n)
        if key in seen:
            raise DataError(
                f"Column {n.strip()!r} appears twice (columns {seen[key] + 1} and {i + 1}). Keep one "
                "column of each name."
            )
        seen[key] = i


def _map_columns(names: list[str]) -> dict[str, str]:
    """canonical name -> the file's column name, by the alias table (first alias that is present wins)."""
    _check_header(names)
    by_key = {_norm(n).replace(" ", "_"): n for n in names} | {_norm(n): n for n in names}
    out: dict[str, str] = {}
    used: set[str] = set()
    for canonical, aliases in _ALIASES.items():
        for alias in aliases:
            for key in (alias, alias.replace(" ", "_")):
                if key in by_key and by_key[key] not in used:
                    out[canonical] = by_key[key]
                    used.add(by_key[key])
                    break
            if canonical in out:
                break
    return out


def _required_columns(names: list[str]) -> dict[str, str]:
    """_map_columns, or a DataError naming the required columns the header lacks."""
    cols = _map_columns(names)
    missing = [c for c in ("date", *PRICE_COLUMNS) if c not in cols]
    if missing:
        raise DataError(
            f"Missing required column(s): {', '.join(missing)}. Found: {', '.join(names)}. "
            "Expected symbol (or ticker), date, open, high, low, close and volume, in any case."
        )
    return cols


# --- building the market ----------------------------------------------------------------------------------

_REASONS = (
    "no symbol",
    "a symbol with characters other than A-Z, 0-9 and . - _ ^ / : & = (e.g. an invisible or look-alike letter)",
    "a date that could not be parsed (or is outside 1677-2262)",
    "a non-numeric value",
    "some but not all of open/high/low/close empty",
    "an infinite price or volume",
    "a zero or negative price",
    "high < low",
    "open or close outside [low, high]",
    "a negative volume",
    "a duplicate (symbol, date)",
    "a date in the other day/month order than the rest of the file (the file mixes both: fix these rows, "
    "or choose the date format)",
)
(
    R_NO_SYMBOL,
    R_BAD_SYMBOL,
    R_BAD_DATE,
    R_NON_NUMERIC,
    R_SOME_EMPTY,
    R_INFINITE,
    R_NONPOSITIVE,
    R_HIGH_LOW,
    R_OUTSIDE,
    R_NEG_VOLUME,
    R_DUPLICATE,
    R_OTHER_ORDER,
) = range(1, len(_REASONS) + 1)


def _build(
    table: pa.Table,
    name: str,
    default_symbol: str,
    opts: LoadOptions,
    numbering: _Numbering,
    ragged: pd.DataFrame | None = None,
) -> Market:
    """Validate the columns row by row, report or drop bad rows, pivot, then flag splits and outliers."""
    names = [str(n) for n in table.column_names]
    cols = _required_columns(names)
    if table.num_rows == 0:
        raise DataError("The data has no rows: expected at least one bar.")
    blank = _blank_rows(table)
    if blank.any():  # empty lines in a CSV: not rows at all
        numbering = replace(
            numbering, skipped=np.sort(np.concatenate([numbering.skipped, numbering.numbers(np.flatnonzero(blank))]))
        )
        table = table.filter(pa.array(~blank))
        if table.num_rows == 0:
            raise DataError("The data has no rows: expected at least one bar.")
    n = table.num_rows
    reason = np.zeros(n, np.int8)
    detail = np.empty(n, object)  # the offending text, for examples

    sym_codes, symbols = _symbols(table, cols.get("symbol"), default_symbol, reason, detail)
    when, raw_dates = _dates(table.column(cols["date"]), opts.date_format, reason, detail)
    warnings: list[str] = []
    values = {}
    for key in (*PRICE_COLUMNS, "volume", "adj_close"):
        if key in cols:
            values[key] = _numbers(table.column(cols[key]), key, reason, detail)
    if "volume" not in values:
        values["volume"] = np.full(n, np.nan)
        warnings.append("No volume column: volume-based indicators will be empty.")
    sector = _sector_codes(table.column(cols["sector"])) if "sector" in cols else None
    del table

    prices = np.column_stack([values[k] for k in PRICE_COLUMNS])
    empty = np.isnan(prices)
    all_empty = empty.all(axis=1) & (reason == 0)
    _flag(reason, empty.any(axis=1) & ~empty.all(axis=1), R_SOME_EMPTY)
    with np.errstate(invalid="ignore"):
        o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
        v = values["volume"]
        _flag(reason, np.isinf(prices).any(axis=1) | np.isinf(v), R_INFINITE)
        _flag(reason, (prices <= 0).any(axis=1), R_NONPOSITIVE)
        _flag(reason, h < lo, R_HIGH_LOW)
        tol = _RANGE_TOLERANCE * np.abs(h)
        _flag(reason, (o > h + tol) | (o < lo - tol) | (c > h + tol) | (c < lo - tol), R_OUTSIDE)
        _flag(reason, v < 0, R_NEG_VOLUME)

    report = _report(reason > 0, reason, detail, sym_codes, symbols, when.astype("datetime64[D]"), raw_dates, numbering)
    ok = (reason == 0) & ~all_empty
    n_empty = int(all_empty.sum())
    if ok.any():
        when, values, sym_codes, ok, sector, resampled = _daily(when, values, sym_codes, ok, sector, opts, symbols)
        if resampled:
            reason, detail, raw_dates = np.zeros(len(ok), np.int8), np.empty(len(ok), object), None
    day = when.astype("datetime64[D]")
    dup = _duplicates(day, sym_codes, ok)
    if dup.any():
        reason[dup] = R_DUPLICATE
        report = pd.concat(
            [report, _report(dup, reason, detail, sym_codes, symbols, day, raw_dates, numbering)], ignore_index=True
        )
    ok &= ~dup
    if ragged is not None:
        report = pd.concat([ragged, report], ignore_index=True)
    if len(report) and opts.on_bad_rows == "raise":
        raise BadRowsError(_bad_rows_message(report, numbering.word), report)
    if len(report):
        counts = report.reason.value_counts()
        warnings.append(
            f"Left out {len(report):,} bad rows: "
            + ", ".join(f"{k} ({v:,})" for k, v in counts.items())
            + ". See the dropped rows report."
        )
    if n_empty:
        warnings.append(f"{n_empty} rows have no prices and were treated as missing bars.")
    if not ok.any():
        raise DataError("No valid rows are left to load: every row has a problem (see the report).")
    if opts.prices == "adjusted":
        values = _adjusted(values, ok)
    elif "adj_close" in values and not np.isnan(values["adj_close"][ok]).all():
        warnings.append(
            "The file has an adj_close column; prices are as in the file. Choose adjusted prices to "
            "use it (splits and dividends)."
        )
    sectors = _sectors(sector, sym_codes, symbols, ok) if sector is not None else None
    market = _pivot(
        day[ok], sym_codes[ok], symbols, {k: values[k][ok] for k in (*PRICE_COLUMNS, "volume")}, sectors, warnings, name
    )
    return _flag_and_adjust(market, opts, report)


def _flag(reason: np.ndarray, mask: np.ndarray | np.bool_, code: int) -> None:
    """Record a reason on rows that have none yet (the first problem found is the one reported)."""
    reason[(reason == 0) & np.asarray(mask, bool)] = code


def _blank_rows(table: pa.Table) -> np.ndarray:
    blank = np.ones(table.num_rows, bool)
    for col in table.columns:
        blank &= np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), bool)
    return blank


def _sector_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(code per row, sector names): the sector column, dictionary-encoded (blank = 'Unknown')."""
    encoded = pc.dictionary_encode(pc.cast(col, pa.string())).combine_chunks()
    indices, nulls = _codes(encoded)
    names = [str(x).strip() or "Unknown" for x in encoded.dictionary.to_pylist()] + ["Unknown"]
    return np.where(nulls, len(names) - 1, indices), names


def _codes(encoded: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 index into the dictionary per row, null mask) of a dictionary-encoded column."""
    nulls = np.asarray(pc.is_null(encoded.indices).to_numpy(zero_copy_only=False), bool)
    indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, nulls


def _symbols(table, column, default, reason, detail) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-row symbol codes into the sorted tuple of valid symbols; symbols are normalised (NFKC, trimmed,
    upper-case) once per distinct value, and rows with a blank or invalid symbol are flagged."""
    n = table.num_rows
    if column is None:
        return np.zeros(n, np.int64), (default,)
    encoded = pc.dictionary_encode(pc.cast(table.column(column), pa.string())).combine_chunks()
    indices, nulls = _codes(encoded)
    raw = encoded.dictionary.to_pylist()
    normal = [unicodedata.normalize("NFKC", s).strip().upper() for s in raw]
    state = np.array(
        [0 if s == "" or s in ("NAN", "NONE") else 2 if not _SYMBOL_OK.match(s) else 1 for s in normal] + [0], np.int8
    )
    safe_idx = np.where(nulls, len(raw), indices)
    row_state = state[safe_idx]
    _flag(reason, row_state == 0, R_NO_SYMBOL)
    bad_sym = row_state == 2
    _flag(reason, bad_sym, R_BAD_SYMBOL)
    shown = np.array([*(repr(s)[:40] for s in raw), ""], dtype=object)
    detail[bad_sym] = shown[safe_idx[bad_sym]]
    valid = sorted({s for s, st in zip(normal, state[:-1], strict=True) if st == 1})
    position = {s: i for i, s in enumerate(valid)}
    code_of = np.array([position.get(s, 0) for s in normal] + [0], np.int64)
    return code_of[safe_idx], tuple(valid) or (default,)


def _dates(col: pa.ChunkedArray, date_format, reason, detail) -> tuple[np.ndarray, np.ndarray | None]:
    """(datetime64[ns] per row, NaT where unparseable; the raw text per row for messages, if text)."""
    n = len(col)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        series = col.to_pandas()
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            series = series.dt.tz_localize(None)  # the exchange's wall-clock date, not UTC's
        when = _in_range(series)
        raw = None  # typed dates need no text for messages: none can fail to parse
    else:
        encoded = pc.dictionary_encode(pc.cast(col, pa.string())).combine_chunks()
        indices, nulls = _codes(encoded)
        texts = [str(s).strip() for s in encoded.dictionary.to_pylist()]
        parsed = np.append(parse_date_texts(texts, date_format), np.datetime64("NaT", "ns"))
        in_other_order = _in_other_order(texts, parsed[:-1]) if date_format is None else np.zeros(len(texts), bool)
        other = np.append(in_other_order, False)
        idx = np.where(nulls, len(texts), indices)
        when = parsed[idx]
        raw = np.array([*texts, ""], dtype=object)[idx]
        _flag(reason, other[idx], R_OTHER_ORDER)
    bad = np.isnat(when)
    _flag(reason, bad, R_BAD_DATE)
    if raw is not None:
        mark = bad & (detail == None)  # noqa: E711
        detail[mark] = [repr(t)[:40] for t in raw[mark]]
    assert len(when) == n
    return when, raw


def parse_date_texts(texts: list[str], date_format: str | None = None) -> np.ndarray:
    """Distinct date texts -> datetime64[ns] (NaT where unparseable). Offsets such as -05:00 are dropped so
    the exchange's own date is kept. Day/month order is detected from all the values; when both orders fit
    every value and disagree, DataError asks which (date_format='dayfirst' or 'monthfirst')."""
    cleaned = [_OFFSET.sub(r"\1", t) for t in texts]
    out = np.full(len(cleaned), np.datetime64("NaT"), "datetime64[ns]")
    if not cleaned:
        return out
    s = pd.Series(cleaned, dtype=object)
    iso = s.str.match(_ISO).fillna(False).to_numpy(bool)
    if iso.any():
        out[iso] = _in_range(pd.to_datetime(s[iso], errors="coerce", format="ISO8601"))
    rest = ~iso & (s != "").to_numpy()
    if not rest.any():
        return out
    texts_rest = s[rest]
    if date_format in (None, "dayfirst", "monthfirst"):
        groups = {"dayfirst": _DAY_FIRST, "monthfirst": _MONTH_FIRST}
        candidates = [*(groups[date_format] if date_format else (*_DAY_FIRST, *_MONTH_FIRST)), *_OTHER_FORMATS]
    else:
        candidates = [date_format]
    results = {}
    for fmt in candidates:
        parsed = pd.to_datetime(texts_rest, format=fmt, errors="coerce")
        if parsed.notna().any():
            results[fmt] = parsed
    if not results:
        return out
    best = max(results.values(), key=lambda p: p.notna().sum())
    full = [fmt for fmt, p in results.items() if p.notna().all()]
    if date_format is None and len(full) > 1:
        first = results[full[0]]
        for fmt in full[1:]:
            differ = (results[fmt] != first).to_numpy()
            if differ.any():
                example = texts_rest[differ].iloc[0]
                a, b = first[differ].iloc[0].date(), results[fmt][differ].iloc[0].date()
                raise DataError(
                    f"Dates such as {example!r} can be read two ways ({a} or {b}): the file does not "
                    "say whether the day or the month comes first. Choose the date format "
                    "(date_format='dayfirst' or 'monthfirst'; on the Data page: Date format)."
                )
    out[rest] = _in_range(best)
    return out


def _in_other_order(texts: list[str], parsed: np.ndarray) -> np.ndarray:
    """Which unparsed texts are dates in a day/month order: the file chose the other order for the rest, so
    these would be read in a second order. They are named, never read mixed."""
    out = np.zeros(len(texts), bool)
    unparsed = np.flatnonzero(np.isnat(parsed))
    if len(unparsed):
        candidates = pd.Series([texts[i] for i in unparsed], dtype=object)
        for fmt in (*_DAY_FIRST, *_MONTH_FIRST):
            out[unparsed] |= pd.to_datetime(candidates, format=fmt, errors="coerce").notna().to_numpy()
    return out


def _in_range(parsed: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """datetime64[ns], NaT for dates outside 1677-09-22 .. 2262-04-11 (what nanosecond timestamps hold)."""
    values = pd.DatetimeIndex(parsed)
    inside = (values >= pd.Timestamp.min) & (values <= pd.Timestamp.max)
    out = np.full(len(values), np.datetime64("NaT"), "datetime64[ns]")
    out[inside] = values[inside].as_unit("ns").to_numpy()
    return out


def _numbers(col: pa.ChunkedArray, key: str, reason, detail) -> np.ndarray:
    """float64 per row (NaN where empty); a non-numeric cell flags its row."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), float)
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan)
    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    try:
        return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), float)
    except pa.ArrowInvalid:
        pass
    series = text.to_pandas()
    values = pd.to_numeric(series, errors="coerce").to_numpy(float)
    bad = np.isnan(values) & series.notna().to_numpy() & ~series.isin(_NULLS).to_numpy()
    _flag(reason, bad, R_NON_NUMERIC)
    mark = bad & (detail == None)  # noqa: E711
    detail[mark] = [f"{key} {t!r}"[:50] for t in series[mark]]
    return values


def _daily(when, values, sym_codes, ok, sector, opts, symbols):
    """Daily bars as they are; intraday timestamps (several per symbol and day) are refused with a clear
    message or, with intraday='daily', resampled: first open, max high, min low, last close, summed volume."""
    day = when.astype("datetime64[D]")
    if not (when[ok] != day[ok].astype("datetime64[ns]")).any():
        return when, values, sym_codes, ok, sector, False
    idx = np.flatnonzero(ok)
    key = pd.DataFrame({"s": sym_codes[idx], "d": day[idx], "t": when[idx]})
    per_day = key.groupby(["s", "d"]).t.nunique()
    if (per_day <= 1).all():
        return day.astype("datetime64[ns]"), values, sym_codes, ok, sector, False
    (s, d), count = per_day.idxmax(), int(per_day.max())
    if opts.intraday != "daily":
        raise DataError(
            f"This looks like intraday data: {symbols[s]} has {count} bars on {pd.Timestamp(d).date()}. "
            "The app uses daily bars: load a daily file, or choose to resample intraday bars to "
            "daily (intraday='daily'; on the Data page: Intraday bars)."
        )
    frame = pd.DataFrame({k: v[idx] for k, v in values.items()}).assign(s=key.s, d=key.d, t=key.t)
    if sector is not None:
        frame["sector"] = sector[0][idx]
    frame = frame.sort_values(["s", "d", "t"], kind="stable")
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    agg |= {k: "last" for k in ("adj_close", "sector") if k in frame}
    daily = frame.groupby(["s", "d"], sort=False).agg(agg).reset_index()
    m = len(daily)
    out_values = {k: daily[k].to_numpy(float) for k in values}
    return (
        daily.d.to_numpy("datetime64[ns]"),
        out_values,
        daily.s.to_numpy(np.int64),
        np.ones(m, bool),
        (daily.sector.to_numpy(np.int64), sector[1]) if sector is not None else None,
        True,
    )


def _duplicates(day: np.ndarray, sym: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Rows repeating an earlier valid row's (symbol, date): all but the first are duplicates."""
    idx = np.flatnonzero(ok)
    if not len(idx):
        return np.zeros(len(ok), bool)
    key = day[idx].astype(np.int64) * (int(sym.max()) + 1) + sym[idx]
    order = np.argsort(key, kind="stable")
    repeat = np.zeros(len(idx), bool)
    repeat[order[1:]] = key[order[1:]] == key[order[:-1]]
    out = np.zeros(len(ok), bool)
    out[idx[repeat]] = True
    return out


def _report(bad, reason, detail, sym_codes, symbols, day, raw_dates, numbering) -> pd.DataFrame:
    idx = np.flatnonzero(bad)
    if not len(idx):
        return pd.DataFrame(columns=["line", "symbol", "date", "reason"])
    r = reason[idx]
    symbol_ok = (r != R_NO_SYMBOL) & (r != R_BAD_SYMBOL)
    sym = np.where(
        symbol_ok,
        np.array(symbols, dtype=object)[np.minimum(sym_codes[idx], len(symbols) - 1)],
        np.where(r == R_BAD_SYMBOL, detail[idx], ""),
    )
    dates = pd.DatetimeIndex(day[idx]).strftime("%Y-%m-%d").to_numpy(object)
    if raw_dates is not None:
        dates = np.where(pd.isna(day[idx]), raw_dates[idx], dates)
    texts = np.array(_REASONS, dtype=object)[r - 1]
    with_detail = (r == R_NON_NUMERIC) & (detail[idx] != None)  # noqa: E711
    texts = np.where(with_detail, np.char.add("a non-numeric ", detail[idx].astype(str)), texts)
    return pd.DataFrame({"line": numbering.numbers(idx), "symbol": sym, "date": dates, "reason": texts})


def _rows_have(n: int) -> str:
    return "row has" if n == 1 else "rows have"


def _bad_rows_message(report: pd.DataFrame, word: str) -> str:
    """'12 rows have high < low, e.g. line 5 (AAPL 2021-03-04), ...; 3 rows have ...'"""
    parts = []
    generic = report.reason.str.replace(r"^a non-numeric (\w+) .*$", r"a non-numeric \1", regex=True)
    for text, rows in report.groupby(generic, sort=False):
        examples = []
        for _, row in rows.head(_EXAMPLES).iterrows():
            where = " ".join(str(x) for x in (row.symbol, row.date) if str(x))
            extra = f" {row.reason.split(' ', 3)[-1]}" if row.reason.startswith("a non-numeric") else ""
            examples.append(f"{word} {row.line} ({where}{extra})" if where else f"{word} {row.line}")
        parts.append(f"{len(rows):,} {_rows_have(len(rows))} {text}, e.g. " + ", ".join(examples))
    n = len(report)
    rows_word = "row" if n == 1 else "rows"
    return (
        "; ".join(parts) + f". Fix or remove these rows, or load without them ({n:,} {rows_word}; on_bad_rows='drop')."
    )


def _adjusted(values: dict[str, np.ndarray], ok: np.ndarray) -> dict[str, np.ndarray]:
    """OHLC scaled by adj_close / close (splits and dividends), close replaced by adj_close."""
    if "adj_close" not in values:
        raise DataError(
            "Adjusted prices need an adj_close column, and this file has none. Load the prices as "
            "they are, or back-adjust the detected splits."
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = values["adj_close"] / values["close"]
    bad = ok & ~(np.isfinite(factor) & (factor > 0))
    if bad.any():
        raise DataError(
            f"{int(bad.sum()):,} rows have no usable adj_close, so adjusted prices cannot be computed "
            "for them. Load the prices as they are instead."
        )
    out = dict(values)
    for key in ("open", "high", "low"):
        out[key] = values[key] * factor
    out["close"] = values["adj_close"]
    return out


def _sectors(sector: tuple[np.ndarray, list[str]], sym_codes, symbols, ok) -> dict[str, str]:
    codes, names = sector
    pairs = np.unique(sym_codes[ok] * len(names) + codes[ok])
    sym_of, sector_of = np.divmod(pairs, len(names))
    counts = np.bincount(sym_of, minlength=len(symbols))
    if (counts > 1).any():
        listed = ", ".join(symbols[i] for i in np.flatnonzero(counts > 1)[:_EXAMPLES])
        raise DataError(f"Symbols with more than one sector: {listed}. Give each symbol one sector.")
    return {symbols[i]: names[c] for i, c in zip(sym_of, sector_of, strict=True)}


def _pivot(day, sym, symbols, values, sectors, warnings, name) -> Market:
    used = np.unique(sym)
    if len(used) < len(symbols):  # symbols whose every row was dropped
        remap = np.full(len(symbols), -1)
        remap[used] = np.arange(len(used))
        sym, symbols = remap[sym], tuple(symbols[i] for i in used)
    codes, uniques = pd.factorize(day.view(np.int64))  # hashing: faster than sorting 10 M dates
    order = np.argsort(uniques)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    dates, rows = uniques[order].view("datetime64[D]"), rank[codes]
    arrays = {}
    for key, v in values.items():
        a = np.full((len(dates), len(symbols)), np.nan)
        a[rows, sym] = v
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
        dates=pd.DatetimeIndex(dates.astype("datetime64[ns]")),
        sectors=tuple(sectors[s] for s in symbols) if sectors else None,
        warnings=tuple(warnings),
        name=name,
        **arrays,  # type: ignore[arg-type]  # open, high, low, close, volume by name
    )


# --- corporate actions and outliers -------------------------------------------------------------------------


def detect_splits(market: Market, tolerance: float = SPLIT_TOLERANCE) -> pd.DataFrame:
    """Likely splits: bars whose previous close / open is within `tolerance` of a split ratio (2:1, 3:2,
    10:1, ... or the inverse for reverse splits), and whose new price level holds: the median of the next
    5 closes is within 15% of the ratio to the median of the previous 5 (a penny stock ticking between two
    prices, or a crash that rebounds, is not a split). Columns: symbol, date, ratio (2.0 = 2-for-1)."""
    from . import _indicator_kernels as k

    prev_close = k.shift_valid(np.ascontiguousarray(market.close), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        overnight = prev_close / market.open
    found = []
    for ratio in SPLIT_RATIOS:
        rows, cols = np.nonzero(np.abs(overnight / ratio - 1.0) < tolerance)
        for i, j in zip(rows, cols, strict=True):
            if _level_holds(market.close[:, j], int(i), ratio):
                found.append((market.symbols[j], market.dates[i], ratio, i, j))
    frame = pd.DataFrame(found, columns=["symbol", "date", "ratio", "bar", "col"])
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def _level_holds(close: np.ndarray, bar: int, ratio: float, n: int = 5) -> bool:
    valid = np.flatnonzero(~np.isnan(close))
    at = int(np.searchsorted(valid, bar))
    before, after = close[valid[max(0, at - n) : at]], close[valid[at : at + n]]
    if not len(before) or not len(after):
        return False
    return abs(np.median(before) / np.median(after) / ratio - 1.0) < 0.15


def detect_outliers(market: Market, threshold_pct: float = 50.0, splits: pd.DataFrame | None = None) -> pd.DataFrame:
    """One-day close-to-close moves beyond threshold_pct (after any split on that bar), per symbol and date."""
    from . import _indicator_kernels as k

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


def _issue_warnings(issues: pd.DataFrame | None) -> list[str]:
    if issues is None or issues.empty:
        return []
    out = []
    splits = issues[issues.kind == "split"]
    if len(splits):
        listed = ", ".join(f"{r.symbol} {r.date.date()} ({_ratio_text(r.value)})" for r in splits.head(10).itertuples())
        out.append(
            f"Likely splits ({len(splits)}): {listed}{' ...' if len(splits) > 10 else ''}. Prices before "
            "them are not comparable: choose adjusted prices or back-adjust the detected splits."
        )
    moves = issues[issues.kind == "outlier"]
    if len(moves):
        listed = ", ".join(f"{r.symbol} {r.date.date()} ({r.value:+,.0f}%)" for r in moves.head(10).itertuples())
        out.append(
            f"One-day moves beyond the outlier threshold ({len(moves)} on {moves.symbol.nunique()} symbols): "
            f"{listed}{' ...' if len(moves) > 10 else ''}. Check them, or exclude these symbols."
        )
    return out


def _ratio_text(ratio: float) -> str:
    from fractions import Fraction

    f = Fraction(ratio).limit_denominator(10)
    kind = "split" if ratio > 1 else "reverse split"
    return f"{f.numerator}:{f.denominator} {kind}"


def _flag_and_adjust(market: Market, opts: LoadOptions, dropped: pd.DataFrame) -> Market:
    splits = detect_splits(market)
    if opts.prices == "split_adjusted" and len(splits):
        factor = np.ones(market.shape)
        for row in splits.itertuples():
            factor[: row.bar, row.col] /= row.ratio
        market = Market(
            market.symbols,
            market.dates,
            market.open * factor,
            market.high * factor,
            market.low * factor,
            market.close * factor,
            market.volume / factor,
            market.sectors,
            (*market.warnings, f"Back-adjusted {len(splits)} detected splits."),
            market.name,
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
        warnings=(*market.warnings, *_issue_warnings(issues)),
        fingerprint=market.fingerprint,
        dropped_rows=dropped if len(dropped) else None,
        issues=issues,
    )
