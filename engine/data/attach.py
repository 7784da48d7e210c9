"""Joining a file of own columns (`symbol, date, pe_ratio, ...`) to a dataset as of each bar's date. The file
passes the loader's date checks (one day/month order, readable dates) and its duplicate check."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import DataError
from .build import R_OTHER_ORDER, _dates, _duplicates, read_table, row_symbols
from .columns import _rows, place, read_row_columns, used_labels
from .market import Market
from .read import EXAMPLES


def attach_columns(
    market: Market,
    source: str | os.PathLike | BinaryIO | pd.DataFrame,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
) -> Market:
    """The market with a second file's columns (`symbol, date, <columns>`) joined as of each bar's date: a new
    dataset (new fingerprint, so a new id). Rows of symbols the market lacks are counted in a warning; a column
    the market already has is replaced."""
    table, filename = read_table(source, max_bytes)  # max_bytes: an upload's limit (None: a local file)
    names = [str(n) for n in table.column_names]
    by_key = {n.strip().lower(): n for n in names}
    symbol_col = next((by_key[k] for k in ("symbol", "ticker", "code") if k in by_key), None)
    date_col = next((by_key[k] for k in ("date", "datetime", "timestamp", "report_date", "as_of") if k in by_key), None)
    if symbol_col is None or date_col is None:
        raise DataError(
            f"{filename} needs a symbol column and a date column beside its own columns (symbol, date, pe_ratio, "
            f"...); found: {', '.join(names[:12])}."
        )
    own = [n for n in names if n not in (symbol_col, date_col) and not n.startswith("__index_level")]
    if not own:
        raise DataError(f"{filename} has no columns besides {symbol_col} and {date_col}: nothing to attach.")
    codes, valid = row_symbols(table.column(symbol_col), market.symbols)
    day = _checked_dates(table.column(date_col), filename)
    rows = valid & ~np.isnat(day)
    _refuse_duplicates(day, codes, rows, market.symbols, filename)
    columns = read_row_columns(table, own)
    present = ~np.isnan(market.close)
    placed = place(market.dates, present, day[rows], codes[rows], {k: v[rows] for k, v in columns.values.items()})
    notes = list(columns.notes)
    unknown = int((~valid).sum())
    if unknown:
        notes.append(f"{_rows(unknown)} of {filename} for symbols the data does not have: not used.")
    undated = int((valid & np.isnat(day)).sum())
    if undated:
        notes.append(f"{_rows(undated)} of {filename} without a readable date: not used.")
    placed, labels = used_labels(placed, columns.labels)
    replaced = sorted(set(placed) & set(market.extra))
    if replaced:
        notes.append(f"Replaced the columns {', '.join(replaced)} with those of {filename}.")
    notes.append(f"Attached {', '.join(placed)} from {filename}, as of each bar's date.")
    kept = {k: v for k, v in market.extra.items() if k not in placed}
    categories = {k: v for k, v in market.categories.items() if k not in placed} | labels
    return replace(
        market,
        extra=kept | placed,
        categories=categories,
        warnings=(*market.warnings, *notes),
        name=name or f"{market.name} + {Path(filename).name}",
        fingerprint="",
    )


def _checked_dates(col: pa.ChunkedArray, filename: str) -> np.ndarray:
    """datetime64[ns] per row (NaT: unreadable, counted in a note); dates written in a second day/month order
    are refused, as the loader refuses them, never read mixed."""
    reason = np.zeros(len(col), np.int8)
    day, raw = _dates(col, None, reason, np.empty(len(col), object))
    other = np.flatnonzero(reason == R_OTHER_ORDER)
    if len(other):
        shown = ", ".join(f"{raw[i]!r} (data row {i + 1:,})" for i in other[:EXAMPLES]) if raw is not None else ""
        raise DataError(
            f"{_rows(len(other))} of {filename} write the date in the other day/month order from the rest: "
            f"{shown}. Write every date one way (YYYY-MM-DD is safest), then attach it again."
        )
    return np.where(reason == 0, day, np.datetime64("NaT", "ns"))


def _refuse_duplicates(day: np.ndarray, codes: np.ndarray, rows: np.ndarray, symbols, filename: str) -> None:
    """Two rows for one (symbol, date) would make its value depend on row order: refused, with examples."""
    repeat = np.flatnonzero(_duplicates(day, codes, rows))
    if len(repeat):
        shown = ", ".join(
            f"{symbols[codes[i]]} {pd.Timestamp(day[i]):%Y-%m-%d} (data row {i + 1:,})" for i in repeat[:EXAMPLES]
        )
        raise DataError(
            f"{_rows(len(repeat))} of {filename} repeat a (symbol, date) of an earlier row: {shown}. Keep one "
            "row per symbol and date, then attach it again."
        )
