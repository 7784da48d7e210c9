"""CSV that spreadsheets open safely: a text cell starting with = + - @ (or a tab or carriage return) is
prefixed with ' so Excel or LibreOffice shows it as text instead of running it as a formula."""

from __future__ import annotations

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (and text index) cannot start a formula; numbers are left as they are."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.CategoricalDtype | pd.StringDtype):
            out[col] = out[col].astype(object).map(_escape)
    if out.index.dtype == object:
        out.index = out.index.map(_escape)
    return out


def _escape(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_safe_csv(frame: pd.DataFrame, path=None, **kwargs) -> str | None:
    """DataFrame.to_csv with formula-looking cells escaped."""
    return escape_cells(frame).to_csv(path, **kwargs)
