"""The one owner of st.session_state and the URL: every page reads and writes state through here.

The dataset lives in the session (one per browser session, never shared); parameters are mirrored to
st.query_params so a copied link reproduces the same scan and backtest.
"""

from __future__ import annotations

import streamlit as st

from engine import BacktestParams, DataError, Market, backtest, load_market, load_sample, synthetic_market
from engine.filters import PRESETS, Signals, scan

DEFAULT_RULE = PRESETS["Oversold bounce"]
# URL key -> (BacktestParams field, parser). Short keys keep links readable.
BT_FIELDS = {
    "capital": ("initial_capital", float),
    "sl": ("stop_loss", float),
    "tp": ("take_profit", float),
    "hold": ("holding_period", int),
    "side": ("signal_type", str),
    "comm": ("commission", float),
    "slip": ("slippage_bps", float),
    "maxpos": ("max_positions", int),
}
BT_DEFAULTS = {"capital": 100_000.0, "sl": 5.0, "tp": 10.0, "hold": 20, "side": "long", "comm": 0.05, "slip": 5.0,
               "maxpos": 10}  # fmt: skip


@st.cache_resource(show_spinner="Loading the sample data...")
def _sample() -> Market:
    return load_sample()


@st.cache_resource(show_spinner="Generating the synthetic universe...")
def _synthetic(n_symbols: int, n_bars: int, seed: int) -> Market:
    return synthetic_market(n_symbols, n_bars, seed=seed)


def init() -> None:
    """Called at the top of every run: defaults first, then whatever the URL asks for (once)."""
    ss = st.session_state
    if "market" not in ss:
        ss.market = _sample()
    if "rule" not in ss:
        ss.rule = st.query_params.get("rule", DEFAULT_RULE)
    if "bt" not in ss:
        ss.bt = dict(BT_DEFAULTS)
        for key, (_, parse) in BT_FIELDS.items():
            if key in st.query_params:
                try:
                    ss.bt[key] = parse(st.query_params[key])
                except ValueError:
                    st.toast(f"Ignored the link's {key}={st.query_params[key]!r}: not a valid value.")
    ss.setdefault("result", None)


def market() -> Market:
    return st.session_state.market


def set_market(new: Market) -> None:
    """Replace the one dataset; results computed on the old one no longer apply."""
    st.session_state.market = new
    st.session_state.result = None


def load_upload(uploaded) -> str | None:
    """Load an uploaded file; on bad data return the loader's message and keep the current dataset."""
    try:
        set_market(load_market(uploaded, name=uploaded.name))
    except DataError as exc:
        return str(exc)
    return None


def use_sample() -> None:
    set_market(_sample())


def use_synthetic(n_symbols: int = 200, n_bars: int = 2520, seed: int = 7) -> None:
    set_market(_synthetic(n_symbols, n_bars, seed))


def rule() -> str:
    return st.session_state.rule


def set_rule(text: str) -> None:
    st.session_state.rule = text
    st.query_params["rule"] = text


def signals() -> Signals:
    """Signals of the current rule on the current dataset (raises RuleError for a bad rule)."""
    key = (market().fingerprint, rule())
    cache = st.session_state.setdefault("_signals", {})
    if key not in cache:
        cache.clear()
        cache[key] = scan(market(), rule())
    return cache[key]


def bt_values() -> dict:
    return st.session_state.bt


def bt_params(values: dict | None = None) -> BacktestParams:
    v = values or bt_values()
    kwargs = {field: v[key] for key, (field, _) in BT_FIELDS.items()}
    for name in ("stop_loss", "take_profit", "holding_period"):
        kwargs[name] = kwargs[name] or None  # 0 switches an exit off
    return BacktestParams(**kwargs)


def run_backtest(values: dict):
    """Validate, run and remember a backtest; parameters go to the URL."""
    params = bt_params(values)
    st.session_state.bt = dict(values)
    sync_url()
    st.session_state.result = backtest(market(), signals(), params)
    st.session_state.result_key = _result_key(params)
    return st.session_state.result


def _result_key(params: BacktestParams) -> tuple:
    return (market().fingerprint, rule(), params)


def is_current(values: dict) -> bool:
    """Does the shown result belong to this data, rule and these parameters?"""
    try:
        return st.session_state.get("result_key") == _result_key(bt_params(values))
    except DataError:
        return False


def sync_url() -> None:
    st.query_params["rule"] = rule()
    for key in BT_FIELDS:
        st.query_params[key] = str(bt_values()[key])
