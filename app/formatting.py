"""How pages show numbers: money with separators, percentages with two decimals, dates without times.

One place, so every table and card on every page reads the same way."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from engine.metrics import LABELS
from engine.params import TABLE, Param
from engine.rules import rule_numbers

MONEY = "%,.2f"
PCT = "%,.2f%%"
DATE = st.column_config.DateColumn(format="YYYY-MM-DD")

TRADE_COLUMNS = {
    "entry_date": st.column_config.DateColumn("entry date", format="YYYY-MM-DD"),
    "exit_date": st.column_config.DateColumn("exit date", format="YYYY-MM-DD"),
    "entry_price": st.column_config.NumberColumn("entry price", format=MONEY),
    "exit_price": st.column_config.NumberColumn("exit price", format=MONEY),
    "pnl": st.column_config.NumberColumn("pnl", format=MONEY),
    "return_pct": st.column_config.NumberColumn("return", format=PCT),
    "fees": st.column_config.NumberColumn("fees", format=MONEY),
    "bars_held": st.column_config.NumberColumn("bars held", format="%,d"),
    "mae_pct": st.column_config.NumberColumn("MAE", format=PCT, help="Worst excursion from the entry while held"),
    "mfe_pct": st.column_config.NumberColumn("MFE", format=PCT, help="Best excursion from the entry while held"),
}


def trade_columns(fractional_shares: bool) -> dict:
    """TRADE_COLUMNS with the share count exact: whole shares as 1,234, fractional ones to 4 decimals (a
    rounded count, 123,500 for 123,456, misstates the position)."""
    shares = st.column_config.NumberColumn("shares", format="%,.4f" if fractional_shares else "%,d")
    return {**TRADE_COLUMNS, "shares": shares}


def share(value: float) -> str:
    """A probability as a page shows it: 12.35%, or n/a."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2%}"


def metric_text(name: str, value) -> str:
    """One metric as a card or table shows it: 12.35%, 1,234.57, 1,234 trades."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int | bool) or name in (
        "n_trades",
        "signals_skipped",
        "max_drawdown_bars",
        "max_win_streak",
        "max_loss_streak",
    ):
        return f"{int(value):,}"
    if name.endswith("_pct"):
        return f"{value:,.2f}%"
    return f"{value:,.2f}"


def metrics_table(metrics: dict) -> pd.DataFrame:
    """All metrics as (metric, value) rows of formatted text."""
    return pd.DataFrame(
        {
            "metric": [LABELS.get(k, k.replace("_", " ")) for k in metrics],
            "value": [metric_text(k, v) for k, v in metrics.items()],
        }
    )


def param_title(p: Param) -> str:
    """A parameter's name with its unit, as widgets and table headers show it: "Stop-loss (%)"."""
    return p.label + (f" ({p.unit})" if p.unit and p.unit not in ("currency", "positions", "trades") else "")


_SAMPLES = {"_oos": " (out of sample)", "_in_sample": " (in sample)"}


def _metric_of(col: str) -> tuple[str, str]:
    """(the metric a column holds, the sample it covers in words): `sharpe_oos` -> ("sharpe", " (out of
    sample)"); a column without a sample suffix -> (col, "")."""
    for suffix, words in _SAMPLES.items():
        if col.endswith(suffix):
            return col.removesuffix(suffix), words
    return col, ""


def column_title(col: str) -> str:
    """A results table's header: the metric's or parameter's label (`sharpe_oos` -> "Sharpe ratio (out of
    sample)", `stop_loss` -> "Stop-loss (%)"); other columns as they are."""
    name, words = _metric_of(col)
    if name in LABELS:
        return LABELS[name] + words
    return param_title(TABLE[col]) if col in TABLE else col


def rule_number_titles(rule: str) -> dict[str, str]:
    """Headers for a grid's rule-number columns: `rule.0` -> "rule: rsi(14) < 30"."""
    return {f"rule.{n.index}": f"rule: {n.context}" for n in rule_numbers(rule)}


def grid_columns(frame: pd.DataFrame, titles: dict[str, str] | None = None) -> dict:
    """Column formats for an optimisation table: labels for headers (`titles` first, then `column_title`),
    percentages and ratios with two decimals."""
    config = {}
    for col in frame.columns:
        title = (titles or {}).get(str(col)) or column_title(str(col))
        name, _ = _metric_of(str(col))
        if name.endswith("_pct"):
            config[col] = st.column_config.NumberColumn(title, format=PCT)
        elif name in ("n_trades",):
            config[col] = st.column_config.NumberColumn(title, format="%,d")
        elif name in ("final_equity", "expectancy"):
            config[col] = st.column_config.NumberColumn(title, format=MONEY)
        elif pd.api.types.is_float_dtype(frame[col]) and name in LABELS:
            config[col] = st.column_config.NumberColumn(title, format="%,.2f")
        elif pd.api.types.is_datetime64_any_dtype(frame[col]):
            config[col] = st.column_config.DateColumn(title, format="YYYY-MM-DD")
        elif title != col:
            config[col] = st.column_config.Column(title)
    return config


def two_decimal_columns(frame: pd.DataFrame) -> dict:
    """Column formats for a plain table (scanner hits, limit events): a date column without times, every float
    column with two decimals and separators (174.00, not 174 beside 174.49)."""
    config = {
        col: st.column_config.NumberColumn(str(col), format="%,.2f")
        for col in frame.columns
        if pd.api.types.is_float_dtype(frame[col])
    }
    return {"date": DATE, **config}


def safe_csv(frame: pd.DataFrame, **kwargs) -> str:
    """CSV text for a download button, with formula-looking cells escaped (engine.safe_csv)."""
    from engine.safe_csv import to_safe_csv

    return to_safe_csv(frame, **kwargs)
