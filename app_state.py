"""The one owner of st.session_state and the URL: every page reads and writes state through here.

The dataset lives in the session (one per browser session, never shared); parameters are mirrored to
st.query_params so a copied link reproduces the same scan and backtest.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlencode

import streamlit as st

from engine import (
    BacktestParams,
    DataError,
    Market,
    RiskLimits,
    Sizing,
    backtest,
    load_market,
    load_sample,
    synthetic_market,
)
from engine.cache import RunCache
from engine.filters import PRESETS, Signals, scan, substitute_numbers
from engine.sizing import METHODS

DEFAULT_RULE = PRESETS["Oversold bounce"]


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _method(text: str) -> str:
    if text not in METHODS:
        raise ValueError(text)
    return text


# URL key -> (where it goes: BacktestParams field, "sizing.<field>" or "limits.<field>", parser, default).
# Short keys keep links readable; 0 switches an exit or a limit off.
BT_FIELDS = {
    "capital": ("initial_capital", float, 100_000.0),
    "sl": ("stop_loss", float, 5.0),
    "tp": ("take_profit", float, 10.0),
    "hold": ("holding_period", int, 20),
    "side": ("signal_type", str, "long"),
    "comm": ("commission", float, 0.05),
    "slip": ("slippage_bps", float, 5.0),
    "maxpos": ("max_positions", int, 10),
    "lev": ("allow_leverage", _flag, False),
    "maxlev": ("max_leverage", float, 2.0),
    "shrink": ("shrink_unfunded", _flag, False),
    "size": ("sizing.method", _method, "equal_weight"),
    "risk": ("sizing.risk_pct", float, 1.0),
    "kmult": ("sizing.kelly_multiplier", float, 0.5),
    "kcap": ("sizing.kelly_cap_pct", float, 25.0),
    "kmin": ("sizing.kelly_min_trades", int, 20),
    "vt": ("sizing.vol_target_pct", float, 10.0),
    "vlb": ("sizing.vol_lookback", int, 20),
    "atrn": ("sizing.atr_period", int, 14),
    "atrk": ("sizing.atr_multiplier", float, 2.0),
    "atrstop": ("sizing.atr_stop", _flag, False),
    "amt": ("sizing.fixed_amount", float, 10_000.0),
    "lpos": ("limits.max_position_pct", float, 10.0),
    "lsec": ("limits.max_sector_pct", float, 30.0),
    "lcorr": ("limits.max_correlation", float, 0.7),
    "clb": ("limits.correlation_lookback", int, 60),
}
BT_DEFAULTS = {key: default for key, (_, _, default) in BT_FIELDS.items()}
OFF_WHEN_ZERO = {"stop_loss", "take_profit", "holding_period", "limits.max_position_pct", "limits.max_sector_pct",
                 "limits.max_correlation"}  # fmt: skip


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
        for key, (_, parse, _) in BT_FIELDS.items():
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
        data, text = market(), rule()
        cache[key], _ = run_cache().run("scan", data, text, {}, lambda: scan(data, text), record=False)
    return cache[key]


def bt_values() -> dict:
    return st.session_state.bt


def bt_params(values: dict | None = None) -> BacktestParams:
    """BacktestParams from the page's flat values (URL keys), nesting the sizing and limit fields."""
    v = {**BT_DEFAULTS, **(values or bt_values())}
    groups: dict[str, dict] = {"": {}, "sizing": {}, "limits": {}}
    for key, (path, _, _) in BT_FIELDS.items():
        group, _, name = path.rpartition(".")
        value = v[key]
        groups[group][name] = None if path in OFF_WHEN_ZERO and not value else value
    return BacktestParams(**groups[""], sizing=Sizing(**groups["sizing"]), limits=RiskLimits(**groups["limits"]))


KEY_METRICS = ("total_return_pct", "cagr_pct", "sharpe", "max_drawdown_pct", "win_rate_pct", "n_trades")


def run_cache() -> RunCache:
    """One cache per server process and setting (diskcache is safe across processes too); see RunCache.from_env."""
    return _run_cache(os.environ.get("SCANNER_CACHE_DIR"), os.environ.get("SCANNER_CACHE_MB"))


@st.cache_resource
def _run_cache(directory: str | None, size_mb: str | None) -> RunCache:
    # The arguments only key st.cache_resource, so a changed setting gets its own cache; from_env reads them.
    return RunCache.from_env()


def session_id() -> str:
    """A random id per browser session: the Runs page shows this session's runs unless asked for all."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex[:10])


def cached_run(kind: str, params, compute, summarise=lambda r: {}):
    """Run through the disk cache (key: data fingerprint + rule + params + engine version); remembers hit/miss."""
    link = urlencode(st.query_params.to_dict())
    value, hit = run_cache().run(kind, market(), rule(), params, compute, summarise, session=session_id(), link=link)
    st.session_state[f"{kind}_cache_hit"] = hit
    return value


def run_backtest(values: dict):
    """Validate, run (or fetch from the cache) and remember a backtest; parameters go to the URL."""
    params = bt_params(values)
    st.session_state.bt = dict(values)
    sync_url()
    data, signals_now = market(), signals()
    st.session_state.result = cached_run("backtest", params, lambda: backtest(data, signals_now, params),
                                         lambda r: {k: r.metrics[k] for k in KEY_METRICS})  # fmt: skip
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


def apply_best(values: dict[str, float]) -> None:
    """Copy a grid point (optimize keys: stop_loss, sizing.risk_pct, rule.1, ...) into the backtest settings."""
    by_path = {path: key for key, (path, _, _) in BT_FIELDS.items()}
    rule_values = {int(k.split(".")[1]): v for k, v in values.items() if k.startswith("rule.")}
    if rule_values:
        set_rule(substitute_numbers(rule(), rule_values))
        st.session_state.rule_text = rule()  # the Scanner page's text box
    bt = dict(bt_values())
    for key, value in values.items():
        if key in by_path:
            parse = BT_FIELDS[by_path[key]][1]
            bt[by_path[key]] = parse(int(value) if parse is int else value)
    st.session_state.bt = bt
    st.session_state.result = None
    sync_url()


def link_has_params() -> bool:
    """Did the page open from a link carrying backtest parameters (so it should run at once)?"""
    return any(key in st.query_params for key in BT_FIELDS)


def sync_url() -> None:
    """Mirror the parameters to the URL: the core ones always, the rest only where they differ from the
    defaults, so links stay short but reproduce the run."""
    st.query_params["rule"] = rule()
    core = list(BT_FIELDS)[:8]
    for key, value in bt_values().items():
        if key in core or value != BT_DEFAULTS.get(key, value):
            st.query_params[key] = str(value)
        elif key in st.query_params:
            del st.query_params[key]
