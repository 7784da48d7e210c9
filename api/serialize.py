"""Results as JSON: NaN and infinities as null, NumPy scalars as numbers, dates as YYYY-MM-DD, tables as lists
of objects."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


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
