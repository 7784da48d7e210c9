"""Your own columns: a file's extra numeric and text columns (pe_ratio, market_cap, sector ...) as names in rules.

Each column is placed on the market's bars as of each bar's date: a value dated d is used from the first bar
on or after d and carried forward per symbol until that symbol's next value (so quarterly rows work), never
before its date. Text columns with up to MAX_LABELS distinct values are kept as codes into their sorted labels
(`Market.categories`), so they compare by equality in rules (`sector == "Technology"`). A second file of
`symbol, date, <columns>` is joined the same way by `attach_columns` (a new dataset, so a new id).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .market import Market

MAX_COLUMNS = 50  # own columns per dataset: each is a (bars x symbols) array
MAX_LABELS = 1000  # distinct values of a text column that rules can compare
_MOSTLY_NUMBERS = 0.95  # a text column whose filled cells are at least this share numbers is numeric
_BLANKS = ("", "NA", "N/A", "NAN", "NULL", "NONE", "-")  # cells that mean "no value"
_NOT_IDENTIFIER = re.compile(r"[^0-9a-z_]+")


@dataclass(frozen=True)
class RowColumns:
    """A file's own columns, one value per row: floats, or for text columns codes into sorted `labels`."""

    values: dict[str, np.ndarray]  # rule name -> float64 per row (NaN: none); a text column's codes
    labels: dict[str, tuple[str, ...]]  # rule name -> its sorted labels (text columns only)
    notes: list[str]  # what was renamed, left empty or not loaded, in words


def rule_name(column: str) -> str:
    """The name a column has in rules: lower case, letters, digits and _ ('P/E Ratio' -> 'p_e_ratio')."""
    name = _NOT_IDENTIFIER.sub("_", str(column).strip().lower()).strip("_") or "column"
    return f"col_{name}" if name[0].isdigit() else name


# Names the rule language already has: its keywords here, its indicators, prices and functions added by
# engine.indicators and engine.rules as they are imported (they sit above the data, so they tell it).
_RESERVED: set[str] = {"rank", "by", "asc", "desc", *keyword.kwlist}


def reserve_names(names: Iterable[str]) -> None:
    """Own columns may not take these names (a column named like one is loaded as col_<name>)."""
    _RESERVED.update(names)


def read_row_columns(table: pa.Table, names: list[str]) -> RowColumns:
    """The listed columns of a table as own columns: numbers, or text with up to MAX_LABELS values. Columns
    that are neither (dates, long free text), and those past MAX_COLUMNS, are named in `notes`."""
    values: dict[str, np.ndarray] = {}
    labels: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    skipped: list[str] = []
    reserved = frozenset(_RESERVED)
    for column in names:
        name = rule_name(column)
        if name in reserved:
            notes.append(f"Column {column!r} is {name!r}'s own column: write col_{name} in rules ({name} is built in).")
            name = f"col_{name}"
        if name in values:
            skipped.append(f"{column} (a second column named {name})")
            continue
        if len(values) >= MAX_COLUMNS:
            skipped.append(f"{column} (over {MAX_COLUMNS} own columns)")
            continue
        col = table.column(column)
        numbers, empty_text = _as_numbers(col)
        if numbers is not None:
            values[name] = numbers
            if empty_text:
                notes.append(f"{name}: {empty_text:,} cells are not numbers and were left empty.")
            continue
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type)):
            skipped.append(f"{column} ({col.type}, neither numbers nor text)")
            continue
        codes, text = _as_labels(col)
        if text is None:
            skipped.append(f"{column} (over {MAX_LABELS:,} distinct text values)")
            continue
        values[name], labels[name] = codes, text
    if skipped:
        notes.append("Columns not loaded: " + ", ".join(skipped) + ".")
    return RowColumns(values, labels, notes)


def _as_numbers(col: pa.ChunkedArray) -> tuple[np.ndarray | None, int]:
    """(float64 per row, cells that were text but not numbers) or (None, 0) when it is not a number column."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), float), 0
    if pa.types.is_boolean(col.type):
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), float), 0
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan), 0
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return None, 0  # a dictionary (categorical) column is text, whatever its labels look like
    text = pc.utf8_trim_whitespace(col).to_pandas()
    filled = text.notna().to_numpy() & ~text.str.upper().isin(_BLANKS).to_numpy()
    numbers = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce").to_numpy(float)
    ok = ~np.isnan(numbers)
    if not filled.any():
        return np.full(len(col), np.nan), 0
    if ok.sum() < _MOSTLY_NUMBERS * filled.sum():
        return None, 0
    return numbers, int((filled & ~ok).sum())


def _as_labels(col: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(float64 code per row into the sorted labels, NaN: blank; the labels) or None when there are too many."""
    encoded = pc.dictionary_encode(pc.cast(col, pa.string())).combine_chunks()
    raw = [str(s).strip() for s in encoded.dictionary.to_pylist()]
    text = tuple(sorted({s for s in raw if s}))
    if len(text) > MAX_LABELS:
        return np.empty(0), None
    position = {s: float(i) for i, s in enumerate(text)}
    code_of = np.array([position.get(s, np.nan) for s in raw] + [np.nan], float)
    nulls = np.asarray(pc.is_null(encoded.indices).to_numpy(zero_copy_only=False), bool)
    indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return code_of[np.where(nulls, len(raw), indices)], text


def place(
    dates: pd.DatetimeIndex, present: np.ndarray, day: np.ndarray, sym: np.ndarray, values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Row values (dated `day`, of symbol code `sym`) on the (bars x symbols) calendar: each from the first bar
    on or after its date, carried forward per symbol until its next value; a later-dated row wins a bar.
    Only bars a symbol has (`present`) hold values, so a stored dataset reads back the same."""
    if not values:
        return {}
    n_symbols = present.shape[1]
    bar = dates.searchsorted(pd.DatetimeIndex(day.astype("datetime64[ns]")), side="left")
    inside = bar < len(dates)
    order = np.lexsort((day[inside].astype("datetime64[D]").astype(np.int64), sym[inside]))
    rows, cols = bar[inside][order], sym[inside][order]
    out = {}
    for name, v in values.items():
        a = np.full((len(dates), n_symbols), np.nan)
        picked = v[inside][order]
        has = ~np.isnan(picked)  # an empty cell is no value: the one before carries on
        a[rows[has], cols[has]] = picked[has]  # in date order, so the latest row of a bar is written last
        out[name] = np.where(present, pd.DataFrame(a).ffill().to_numpy(), np.nan)
    return out


def used_labels(
    placed: dict[str, np.ndarray], labels: dict[str, tuple[str, ...]]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """Text columns with only the labels some bar uses (a label of a left-out row is not the data's), so a
    dataset stored and read back has the same labels, codes and fingerprint."""
    out, kept = dict(placed), {}
    for name, text in labels.items():
        codes = placed[name]
        used = np.unique(codes[~np.isnan(codes)]).astype(np.int64)
        remap = np.full(len(text) + 1, np.nan)
        remap[used] = np.arange(len(used))
        out[name] = remap[np.where(np.isnan(codes), len(text), codes).astype(np.int64)]
        kept[name] = tuple(text[i] for i in used)
    return out, kept


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def describe_columns(market: Market) -> pd.DataFrame:
    """What the Data page lists: each column rules can use, its kind, its values, and how many of the bars
    have no value for it (before a symbol's first value, or a blank)."""
    present = ~np.isnan(market.close)
    rows = []
    for name, kind in market.column_kinds().items():
        values, labels = market.own_column(name)
        full = np.broadcast_to(values, market.shape)
        missing = int((present & np.isnan(full)).sum())
        if labels is not None:
            shown = ", ".join(labels[:5]) + (f" ... ({len(labels):,} values)" if len(labels) > 5 else "")
        else:
            seen = full[present & ~np.isnan(full)]
            shown = f"{seen.min():,.4g} to {seen.max():,.4g}" if len(seen) else "-"
        rows.append({"column": name, "kind": kind, "values": shown, "bars without a value": missing})
    return pd.DataFrame(rows, columns=["column", "kind", "values", "bars without a value"])
