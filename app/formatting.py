"""How pages show numbers: money with separators, percentages with two decimals, dates without times.

One place, so every table and card on every page reads the same way."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
import streamlit as st

from engine import params as table
from engine.errors import InputError
from engine.metrics import LABELS

# How numbers and names read is the library's (engine/plots/format.py); pages take it from here with the
# Streamlit column formats below.
from engine.plots.format import column_title as column_title
from engine.plots.format import metric_of
from engine.plots.format import metric_text as metric_text
from engine.plots.format import metrics_table as metrics_table
from engine.plots.format import param_title as param_title
from engine.plots.format import rule_number_titles as rule_number_titles
from engine.plots.format import share as share

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
    "position_id": st.column_config.NumberColumn("position", format="%d", help="Fills of one position share it"),
    "order_price": st.column_config.NumberColumn("order level", format=MONEY, help="The limit or stop order's level"),
    "slippage": st.column_config.NumberColumn("slippage", format=MONEY, help="What slippage cost, both fills"),
    "financing": st.column_config.NumberColumn("financing", format=MONEY, help="Borrow fee and margin interest"),
    "dividends": st.column_config.NumberColumn("dividends", format=MONEY, help="Received (+) or paid (-)"),
    "exits": st.column_config.NumberColumn("exits", format="%d"),
    "bars_held": st.column_config.NumberColumn("bars held", format="%,d"),
    "mae_pct": st.column_config.NumberColumn("MAE", format=PCT, help="Worst excursion from the entry while held"),
    "mfe_pct": st.column_config.NumberColumn("MFE", format=PCT, help="Best excursion from the entry while held"),
}


def short(text: str) -> str:
    """A link value as a message quotes it: at most 40 characters, no backticks (it goes in a code span)."""
    return (text if len(text) <= 40 else text[:40] + "...").replace("`", "'")


def trade_columns(fractional_shares: bool) -> dict:
    """TRADE_COLUMNS with the share count exact: whole shares as 1,234, fractional ones to 4 decimals (a
    rounded count, 123,500 for 123,456, misstates the position)."""
    shares = st.column_config.NumberColumn("shares", format="%,.4f" if fractional_shares else "%,d")
    return {**TRADE_COLUMNS, "shares": shares}


def grid_columns(frame: pd.DataFrame, titles: dict[str, str] | None = None) -> dict:
    """Column formats for an optimisation table: labels for headers (`titles` first, then `column_title`),
    percentages and ratios with two decimals."""
    config = {}
    for col in frame.columns:
        title = (titles or {}).get(str(col)) or column_title(str(col))
        name, _ = metric_of(str(col))
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

    text = to_safe_csv(frame, **kwargs)
    assert text is not None  # no path given: the text itself
    return text


def shape_summary(values: dict) -> str:
    """The strategy's shape in a few words, for its expander's label: 'enter on signals' or 'rotation every
    month: top 10, equal weights, band 2%'."""
    every = {"W": "week", "M": "month", "Q": "quarter"}
    rebalance = values.get("rebalance", "off")
    if rebalance == "off":
        return "enter on signals"
    when = every.get(rebalance) or f"{int(values.get('rebalance_bars', 21)):,} bars"
    weighting = {"equal": "equal weights", "score": "weights by score", "inverse_vol": "inverse-volatility weights"}
    parts = [
        f"rotation every {when}: top {int(values.get('hold_top', 10)):,}",
        weighting[values.get("weighting", "equal")],
    ]
    if values.get("rebalance_band"):
        parts.append(f"band {values['rebalance_band']:g}%")
    return ", ".join(parts)


def orders_summary(values: dict) -> str:
    """The Orders group in a few words, for its expander's label: 'limit 1% from the close, valid 3 bars;
    up to 2 adds; partial exits 50@10'."""
    order = values.get("entry_order", "market")
    if order == "market":
        parts = ["market at the next open"]
    else:
        atr = values.get("entry_offset_atr") or 0
        offset = f"{atr:g} x ATR" if atr else f"{values.get('entry_offset_pct', 0):g}%"
        bars = int(values.get("entry_valid_bars", 1))
        parts = [f"{order} {offset} from the close, valid {bars} bar{'s' if bars != 1 else ''}"]
    if values.get("max_adds"):
        adds = int(values["max_adds"])
        parts.append(f"up to {adds} add{'s' if adds != 1 else ''}")
    if values.get("partial_exits"):
        parts.append(f"partial exits {values['partial_exits']}")
    if values.get("signal_type") == "both":
        parts.append(f"on an opposite signal: {values.get('on_opposite', 'ignore')}")
    return "; ".join(parts)


def costs_summary(values: dict) -> str:
    """The Costs group in a few words: '0.05% commission, 5 bps slippage, 2% borrow' or 'none'."""
    parts = []
    if values.get("commission"):
        parts.append(f"{values['commission']:g}% commission")
    if values.get("commission_fixed"):
        parts.append(f"{values['commission_fixed']:,.2f} per order")
    if values.get("slippage_bps"):
        parts.append(f"{values['slippage_bps']:g} bps slippage")
    for path, word in (("borrow_pct", "borrow"), ("margin_interest_pct", "margin"), ("cash_interest_pct", "on cash")):
        if values.get(path):
            parts.append(f"{values[path]:g}% {word}")
    return ", ".join(parts) or "none"


_NOT_SETTINGS = ("data", "rule", "grid", "base")


def settings_changed(link: str) -> str:
    """A run's settings that differ from the defaults, in words, from its link (a link names only those):
    'sl 3, tp 12, size kelly'."""
    pairs = [(k, v) for k, v in parse_qsl(link or "") if k not in _NOT_SETTINGS]
    return ", ".join(f"{k} {v}" for k, v in pairs)


def settings_rows(links: dict[str, str]) -> pd.DataFrame:
    """One row per setting any of these runs changed (label and unit), one column per run: its value, or the
    default where its link leaves it out."""
    by_url = {p.url: p for p in table.linked_params()}
    values = {name: dict(parse_qsl(link or "")) for name, link in links.items()}
    keys = [k for k in dict.fromkeys(k for v in values.values() for k in v) if k in by_url]
    rows = {}
    for k in keys:
        p = by_url[k]
        rows[param_title(p)] = {
            name: setting_text(p, _parsed(p, v[k]) if k in v else p.default) for name, v in values.items()
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(links)).fillna("-")


def highlight_differences(row: pd.Series) -> list[str]:
    """A Styler rule: a row whose values differ between runs gets a background."""
    differ = row.nunique(dropna=False) > 1
    return ["background-color: #fff3bf" if differ else "" for _ in row]


def setting_text(p: table.Param, value: Any) -> str:
    """A setting's value as a link writes it, with its 'off' word where 0 switches it off; '-' for none."""
    if value is None:
        return "-"
    return p.off_word if p.off and not value else p.format(value)


def _parsed(p: table.Param, text: str) -> Any:
    """A link's value of a setting, checked; the text itself when it is not one (a run stored before a change)."""
    try:
        return p.parse(text)
    except InputError:
        return text
