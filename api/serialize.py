"""Results as JSON: NaN and infinities as null, NumPy scalars as numbers, dates as YYYY-MM-DD, tables as lists
of objects; long tables as CSV streamed a chunk at a time."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from engine.safe_csv import to_safe_csv


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities -> null, numpy scalars -> numbers, timestamps -> YYYY-MM-DD."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.strftime("%Y-%m-%d")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """A table as a list of JSON objects (a named index, such as the equity curve's dates, as a column)."""
    f = frame if limit is None else frame.head(limit)
    if f.index.name is not None:  # a named index (dates of the equity curve) is a column too
        f = f.reset_index()
    columns = {c: f[c].astype(object) if isinstance(f[c].dtype, pd.CategoricalDtype) else f[c] for c in f.columns}
    return [clean(dict(zip(columns, row, strict=True))) for row in zip(*columns.values(), strict=True)]


CSV_CHUNK = 50_000  # rows written to a CSV stream at a time


def csv_chunks(total: int, rows: Callable[[int, int], pd.DataFrame]) -> Iterator[str]:
    """A table of `total` rows as CSV, `rows(start, stop)` at a time (never the whole text in memory), with
    formula-looking cells escaped."""
    for start in range(0, max(total, 1), CSV_CHUNK):
        text = io.StringIO()
        to_safe_csv(rows(start, start + CSV_CHUNK), text, index=False, header=start == 0)
        yield text.getvalue()
