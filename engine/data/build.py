"""Building the market from an Arrow table: every row checked (its line and reason kept), dates parsed once
per distinct text, intraday bars refused or resampled, bad rows reported or dropped, then pivoted to
(bars x symbols) arrays."""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadRowsError, DataError, InputError
from . import _row_kernels as rk
from .columns import place, read_row_columns, used_labels
from .growth import with_room
from .market import Market, missing_inside
from .quality import flag_and_adjust
from .read import (
    ALIASES,
    EXAMPLES,
    NULLS,
    PRICE_COLUMNS,
    Intraday,
    LoadOptions,
    Numbering,
    OnBadRows,
    Prices,
    decompress,
    local_parquet,
    read_bytes,
    read_csv,
    read_parquet,
    required_columns,
    unzip,
)

SAMPLE_PATH = Path(__file__).parents[1] / "sample_data" / "us6_2013_2023.csv.gz"


OWN = "own:"  # the key prefix of own columns among the per-row values


_RANGE_TOLERANCE = 1e-6  # open/close vs the high-low range: prices are often rounded


_SYMBOL_OK = re.compile(r"^[A-Z0-9^=._-][A-Z0-9 ._&/:^=-]{0,31}$")


_OFFSET = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


_DAY_FIRST = ("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%d/%m/%y", "%d.%m.%y")


_MONTH_FIRST = ("%m/%d/%Y", "%m.%d.%Y", "%m-%d-%Y", "%m/%d/%y")


_OTHER_FORMATS = ("%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%d %b %Y", "%b %d %Y", "%d-%b-%Y", "%b %d, %Y")


def load_sample() -> Market:
    """The bundled real sample: six US stocks, 2013-2023 (MIT, see sample_data/SOURCE.md)."""
    return load_market(SAMPLE_PATH, name="Sample: 6 US stocks 2013-2023")


def load_market(
    source: str | os.PathLike | BinaryIO | pd.DataFrame,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
    on_bad_rows: OnBadRows = LoadOptions.on_bad_rows,
    prices: Prices = LoadOptions.prices,
    date_format: str | None = LoadOptions.date_format,
    intraday: Intraday = LoadOptions.intraday,
    outlier_pct: float = LoadOptions.outlier_pct,
) -> Market:
    """Read a CSV/Parquet file (path, file-like with `.name`, or DataFrame) and return a validated Market.
    The options are the parameter table's `load` rows (`LoadOptions`). `max_bytes` is an upload's size limit
    (the dashboard and the API pass SCANNER_MAX_UPLOAD_MB); without it a local file is limited only by the
    memory loading it needs, checked against what the machine has available before reading.

    Any failure is an InputError (DataError, or ParamError for an option out of range) whose message says
    what is wrong and how to fix it; never another exception.
    """
    opts = LoadOptions(
        on_bad_rows=on_bad_rows, prices=prices, date_format=date_format, intraday=intraday, outlier_pct=outlier_pct
    )
    if isinstance(source, pd.DataFrame):
        return market_from_frame(source, name=name or "data", options=opts)
    filename = str(getattr(source, "name", source))
    stem = Path(filename).name.split(".")[0] or "data"
    with _reading(filename):
        table, numbering, ragged = _read(source, filename, max_bytes, opts)
        held = [table]
        del table  # _build frees each column once converted
        return _build(held, name or Path(filename).name, stem.upper(), opts, numbering, ragged)


def read_table(
    source: str | os.PathLike | BinaryIO | pd.DataFrame, max_bytes: int | None = None
) -> tuple[pa.Table, str]:
    """(the file's columns as Arrow, its name), read as `load_market` reads a file, without building a market:
    for a second file of columns (engine/data/columns.py)."""
    if isinstance(source, pd.DataFrame):
        return _frame_table(source), "the table"
    filename = str(getattr(source, "name", source))
    with _reading(filename):
        return _read(source, filename, max_bytes, LoadOptions())[0], Path(filename).name


def _read(
    source, filename: str, max_bytes: int | None, opts: LoadOptions
) -> tuple[pa.Table, Numbering, pd.DataFrame | None]:
    path = local_parquet(source, max_bytes)
    if path is not None:  # its footer was read: a Parquet file, read from disk
        return read_parquet(path, filename), Numbering("row", 1), None
    raw = read_bytes(source, max_bytes)
    if not raw.strip():
        raise DataError(f"{Path(filename).name} is empty: expected a header row and at least one bar.")
    if filename.lower().endswith((".parquet", ".pq")) or raw[:4] == b"PAR1":
        return read_parquet(raw, filename), Numbering("row", 1), None
    return read_csv(decompress(unzip(raw, filename), filename), filename, opts)


@contextlib.contextmanager
def _reading(filename: str) -> Iterator[None]:
    """Any failure while reading is an InputError that says what is wrong and how to fix it."""
    try:
        yield
    except InputError:
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
    return _build([_frame_table(frame)], name, default_symbol, options or LoadOptions(), Numbering("row", 1))


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    df = frame.reset_index() if _has_date_index(frame) else frame
    columns = {}
    for i, col in enumerate(df.columns):
        values = df.iloc[:, i]
        categorical = isinstance(values.dtype, pd.CategoricalDtype)
        if values.dtype == object or categorical:
            values = values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
        array = pa.array(values, from_pandas=True)
        columns[str(col)] = array.dictionary_encode() if categorical else array  # categorical: text (labels)
    try:
        return pa.table(list(columns.values()), names=list(columns))
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"Could not read the data frame: {str(exc)[:200]}") from None


def _has_date_index(frame: pd.DataFrame) -> bool:
    return isinstance(frame.index, pd.DatetimeIndex) or str(frame.index.name or "").lower() in ALIASES["date"]


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
    "a negative dividend",
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
    R_NEG_DIVIDEND,
) = range(1, len(_REASONS) + 1)
assert (R_SOME_EMPTY, R_INFINITE, R_NONPOSITIVE, R_HIGH_LOW, R_OUTSIDE, R_NEG_VOLUME, R_NEG_DIVIDEND) == (
    rk.SOME_EMPTY,
    rk.INFINITE,
    rk.NONPOSITIVE,
    rk.HIGH_LOW,
    rk.OUTSIDE,
    rk.NEG_VOLUME,
    rk.NEG_DIVIDEND,
)  # the price checks' kernel writes these codes


def _build(
    held: list[pa.Table],
    name: str,
    default_symbol: str,
    opts: LoadOptions,
    numbering: Numbering,
    ragged: pd.DataFrame | None = None,
) -> Market:
    """Validate the columns row by row, report or drop bad rows, pivot, then flag splits and outliers.
    `held` is a one-item list this empties: nothing else keeps the file's table, so each of its columns is
    freed as soon as it is converted (at 10 M rows the table is most of the loader's peak memory)."""
    table = held.pop()
    names = [str(n) for n in table.column_names]
    cols = required_columns(names)
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
    table = table.drop_columns([cols[key] for key in ("symbol", "date") if key in cols])
    warnings: list[str] = []
    values = {}
    for key in (*PRICE_COLUMNS, "volume", "adj_close", "dividend"):
        if key in cols:
            values[key] = _numbers(table.column(cols[key]), key, reason, detail)
            table = table.drop_columns([cols[key]])
    if "volume" not in values:
        values["volume"] = np.full(n, np.nan)
        warnings.append("No volume column: volume-based indicators will be empty.")
    sector = _sector_codes(table.column(cols["sector"])) if "sector" in cols else None
    own_names = [c for c in table.column_names if c not in cols.values() and not c.startswith("__index_level")]
    own = read_row_columns(table, own_names)
    del table
    pa.default_memory_pool().release_unused()  # the file's columns, freed, go back to the system now
    warnings += own.notes  # a column not loaded is named, never dropped silently
    values |= {OWN + k: v for k, v in own.values.items()}

    div = values.get("dividend", np.empty(0))
    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    all_empty = rk.price_problems(o, h, lo, c, values["volume"], div, reason, _RANGE_TOLERANCE)
    if "dividend" in values:
        values["dividend"] = np.nan_to_num(div, nan=0.0)  # a blank: no dividend that day

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
        warnings.append(f"{n_empty:,} rows have no prices and were treated as missing bars.")
    if not ok.any():
        raise DataError("No valid rows are left to load: every row has a problem (see the report).")
    bar_columns = (*PRICE_COLUMNS, "volume", *(["dividend"] if "dividend" in values else []))
    if opts.prices == "adjusted":
        values = _adjusted(values, ok)
        if "dividend" in values:
            warnings.append(
                "The file has a dividend column and the prices are adjusted, which already includes "
                "dividends: a backtest would count them twice. Load raw prices to use the dividend column."
            )
    elif "adj_close" in values and not np.isnan(values["adj_close"][ok]).all():
        warnings.append(
            "The file has an adj_close column; prices are as in the file. Choose adjusted prices to "
            "use it (splits and dividends)."
        )
    sectors = _sectors(sector, sym_codes, symbols, ok) if sector is not None else None
    own_values = {k.removeprefix(OWN): v[ok] for k, v in values.items() if k.startswith(OWN)}
    everything = bool(ok.all())  # no copy of the columns when every row is kept
    bars = {k: values[k] if everything else values[k][ok] for k in bar_columns}
    del values
    market = _pivot(day[ok], sym_codes[ok], symbols, bars, sectors, warnings, name, own_values, own.labels)
    return flag_and_adjust(market, opts, report)


def _flag(reason: np.ndarray, mask: np.ndarray | np.bool_, code: int) -> None:
    """Record a reason on rows that have none yet (the first problem found is the one reported)."""
    reason[(reason == 0) & np.asarray(mask, bool)] = code


def _blank_rows(table: pa.Table) -> np.ndarray:
    """Rows with every cell empty (blank CSV lines); none when some column has no empty cell."""
    if any(col.null_count == 0 for col in table.columns):
        return np.zeros(table.num_rows, bool)
    blank = np.ones(table.num_rows, bool)
    for col in table.columns:
        blank &= np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), bool)
    return blank


def _sector_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(code per row, sector names): the sector column, dictionary-encoded (blank = 'Unknown')."""
    encoded = _encoded(col)
    indices, nulls = _codes(encoded)
    names = [str(x).strip() or "Unknown" for x in encoded.dictionary.to_pylist()] + ["Unknown"]
    return np.where(nulls, len(names) - 1, indices), names


def _encoded(col: pa.ChunkedArray) -> pa.DictionaryArray:
    """A text column dictionary-encoded (each distinct value once); other types as their text. Large text is
    encoded as it is: a cast to plain text would copy every value first."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    encoded = pc.dictionary_encode(col).combine_chunks()
    return (
        encoded
        if pa.types.is_string(encoded.type.value_type)
        else encoded.cast(pa.dictionary(encoded.type.index_type, pa.string()))
    )


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
    encoded = _encoded(table.column(column))
    indices, nulls = _codes(encoded)
    raw = encoded.dictionary.to_pylist()
    normal = [normal_symbol(s) for s in raw]
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


def normal_symbol(text: str) -> str:
    """A symbol as the loader keeps it: NFKC-normalised (full-width letters become ASCII), trimmed, upper case."""
    return unicodedata.normalize("NFKC", text).strip().upper()


def row_symbols(col: pa.ChunkedArray, symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(code into `symbols` per row, whether the row's symbol is one of them), normalised as the loader does."""
    encoded = _encoded(col)
    indices, nulls = _codes(encoded)
    position = {s: i for i, s in enumerate(symbols)}
    raw = encoded.dictionary.to_pylist()
    code_of = np.array([position.get(normal_symbol(str(s)), -1) for s in raw] + [-1], np.int64)
    codes = code_of[np.where(nulls, len(code_of) - 1, indices)]
    return np.maximum(codes, 0), codes >= 0


def row_dates(col: pa.ChunkedArray) -> np.ndarray:
    """datetime64[ns] per row, NaT where a date cannot be read (as the loader reads dates)."""
    n = len(col)
    reason = np.zeros(n, np.int8)
    when, _ = _dates(col, None, reason, np.empty(n, object))
    return np.where(reason == 0, when, np.datetime64("NaT", "ns"))


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
        encoded = _encoded(col)
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
    bad = np.isnan(values) & series.notna().to_numpy() & ~series.isin(NULLS).to_numpy()
    _flag(reason, bad, R_NON_NUMERIC)
    mark = bad & (detail == None)  # noqa: E711
    detail[mark] = [f"{key} {t!r}"[:50] for t in series[mark]]
    return values


def _daily(when, values, sym_codes, ok, sector, opts, symbols):
    """Daily bars as they are; intraday timestamps (several per symbol and day) are refused with a clear
    message or, with intraday='daily', resampled: first open, max high, min low, last close, summed volume."""
    day = when.astype("datetime64[D]")
    if not (when.view(np.int64)[ok] % (86_400 * 10**9)).any():  # every valid row at midnight
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
    agg |= {"dividend": "sum"} if "dividend" in frame else {}
    agg |= {k: "last" for k in frame if k in ("adj_close", "sector") or k.startswith(OWN)}
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
        for _, row in rows.head(EXAMPLES).iterrows():
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
    sym, code = sym_codes[ok], codes[ok]
    first = np.full(len(symbols), -1, np.int64)
    first[sym] = code  # one of each symbol's rows wins; any other row that differs is a second sector
    mixed = np.unique(sym[code != first[sym]])
    if len(mixed):
        listed = ", ".join(symbols[i] for i in mixed[:EXAMPLES])
        raise DataError(f"Symbols with more than one sector: {listed}. Give each symbol one sector.")
    return {symbols[i]: names[first[i]] for i in np.flatnonzero(first >= 0)}


def _pivot(day, sym, symbols, values, sectors, warnings, name, own=None, labels=None) -> Market:
    used = np.flatnonzero(np.bincount(sym, minlength=len(symbols)))
    if len(used) < len(symbols):  # symbols whose every row was dropped
        remap = np.full(len(symbols), -1)
        remap[used] = np.arange(len(used))
        sym, symbols = remap[sym], tuple(symbols[i] for i in used)
    # Days since 1970 span at most 213,000 values (what datetime64[ns] holds): the calendar is the days some
    # row has, and a row's bar is its day's rank among them (no sort or hash of 10 M dates).
    offset = day.view(np.int64) - day.view(np.int64).min()
    has_day = np.zeros(int(offset.max()) + 1, bool)
    has_day[offset] = True
    dates = (np.flatnonzero(has_day) + day.view(np.int64).min()).view("datetime64[D]")
    rows = (np.cumsum(has_day) - 1)[offset]
    del offset
    arrays = {}
    for key in list(values):  # each row column freed once placed (the caller keeps none)
        a = with_room(len(dates), len(symbols))  # an append of a few days writes below, not a copy
        a[rows, sym] = values.pop(key)
        arrays[key] = a
    present = ~np.isnan(arrays["close"])
    gaps = dict(zip(symbols, missing_inside(present).tolist(), strict=True))
    gappy = {s: g for s, g in gaps.items() if g}
    if gappy:
        worst = ", ".join(f"{s} ({g})" for s, g in sorted(gappy.items(), key=lambda kv: -kv[1])[:EXAMPLES])
        warnings.append(
            f"{len(gappy):,} symbols have {sum(gappy.values()):,} missing bars inside their date range "
            f"(no trading on days other symbols traded), most: {worst}."
        )
    nan_volume = int((np.isnan(arrays["volume"]) & present).sum())
    if nan_volume and "No volume column" not in " ".join(warnings):
        warnings.append(f"{nan_volume} bars have no volume.")
    calendar = pd.DatetimeIndex(dates.astype("datetime64[ns]"))
    extra, categories = used_labels(place(calendar, present, day, sym, own or {}), labels or {})
    return Market(
        symbols=symbols,
        dates=calendar,
        sectors=tuple(sectors[s] for s in symbols) if sectors else None,
        warnings=tuple(warnings),
        name=name,
        extra=extra,
        categories=categories,
        **arrays,  # type: ignore[arg-type]  # open, high, low, close, volume (and dividend) by name
    )
