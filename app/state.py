"""The session's work: the rule and its signals, and the runs made from them (backtest, optimisation, Monte
Carlo, the luck test) through the server wing, with the result each page shows. The other ideas of a session
have their own modules: `session` (the typed object), `identity`, `links` (the URL), `dataset`, `widgets`
(settings and page widgets) and `whatif` (the strip and the pinned baseline)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TypeVar

import streamlit as st

from app import session
from app.dataset import require_market
from app.identity import user_id
from app.links import link
from app.widgets import bt_params, forget_widget, set_value, set_widget, value, widget
from engine import InputError, warmup
from engine import params as table
from engine.backtest import BacktestResult
from engine.events import EventStudy
from engine.factors import FactorStudy
from engine.montecarlo import MonteCarloResult
from engine.optimize import OptimizationRun
from engine.rules import Signals, split_rank, substitute_numbers
from engine.rules import indicator_series as indicator_series_of
from engine.server import service

log = logging.getLogger("scanner.app")
if not log.handlers:  # one JSON line per script run on stderr: what load tests and operators read
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False
T = TypeVar("T")
FOLLOW_CELLS = 5_000_000  # symbol-bars up to which every edit reruns the backtest (about 0.1 s of kernel)


def wait_for_engine() -> None:
    """After an install the kernels compile once (about a minute): say so, with progress, until they are ready."""
    state = warmup.progress()
    if state.ready:
        return
    bar = st.progress(0.0)
    while not state.ready:
        step = f"step {state.done + 1} of {state.total}" if state.total else "starting"
        text = f"Preparing the engine (first run after install, about {state.seconds_left():,.0f} s): {step}."
        bar.progress(state.done / max(state.total, 1), text=text)
        time.sleep(0.5)
    bar.empty()


def log_script(page: str, seconds: float) -> None:
    log.info(json.dumps({"event": "script", "page": page, "seconds": round(seconds, 4)}))


# --- rule and signals -----------------------------------------------------------------------------------


def rule() -> str:
    return session.get().rule


def set_rule(text: str) -> None:
    session.get().rule = text
    st.query_params["rule"] = text  # at once: a change made mid-run (a button) is not followed by a rerun


def signals() -> Signals:
    """Signals of the current rule on the current dataset (raises RuleError for a bad rule)."""
    data, text = require_market(), rule()
    cache_key = (data.fingerprint, text)
    memo = session.get().signals
    if cache_key not in memo:
        memo.clear()
        memo[cache_key] = service.cached_scan(data, text)
    return memo[cache_key]


def short_signals() -> Signals | None:
    """Signals of the short rule, when Direction is both and it has one (raises RuleError for a bad rule)."""
    text = str(value("short_rule")).strip()
    if value("signal_type") != "both" or not text:
        return None
    return service.cached_scan(require_market(), text)


def indicator_series() -> dict:
    """Each indicator of the current rule as (bars x symbols) arrays, for the Scanner chart."""
    return indicator_series_of(require_market(), rule())


# --- runs -----------------------------------------------------------------------------------------------


def _ran(kind: str, run: service.Run[T]) -> T:
    """Remember whether the cache had the run; say once when caching is off (and again if it fails again)."""
    s, off = session.get(), service.cache_off()
    if off is None:
        s.cache_warned = False
    elif not s.cache_warned:
        s.cache_warned = True
        st.warning(f"Caching is off: {off}. Everything still works, without the cache and history.")
    s.cache_hits[kind] = run.hit
    return run.value


def run_backtest() -> BacktestResult:
    """Run (or fetch from the cache) and remember a backtest of the current settings."""
    params = bt_params()
    data, signals_now = require_market(), signals()
    run = service.cached_backtest(data, rule(), params, user_id(), link(), signals=signals_now)
    result = _ran("backtest", run)
    key_now, s = _result_key(params), session.get()
    if s.result is not None and s.result_key is not None and s.result_key != key_now:  # an edit: shown against this
        s.previous = (s.result, s.result_key[0])
    s.result, s.result_key, s.result_run = result, key_now, run.run_id
    return result


def _event_settings() -> dict[str, Any]:
    """The Scanner's `events` settings by field name, as the library takes them."""
    return table.library_fields({p.path: value(p.path) for p in table.group("events")})


def run_events() -> EventStudy:
    """The event study of the current rule's signals with the Scanner's `events` settings (cached as a run)."""
    run = service.cached_events(require_market(), rule(), _event_settings(), user_id(), link(), signals=signals())
    return _ran("events", run)


def sweep_rule_number(number: int, values: list[float], horizon: int) -> tuple[Any, dict[str, float]]:
    """The event study at one horizon for each value of one number of the current rule, with the Scanner's settings."""
    return service.event_sweep(require_market(), rule(), number, values, horizon, _event_settings())


def factor_of_rule(horizons: tuple[int, ...]) -> FactorStudy | None:
    """When the rule ranks its hits (`rank by x`): x's quantile returns and IC among the rule's hits; else None."""
    condition, expression, _ = split_rank(rule())
    if expression is None:
        return None
    return service.factor_study(require_market(), expression, condition, horizons)


def backtest_of(rule_text: str, params) -> BacktestResult:
    """A backtest of another rule on the current dataset (the best combination's), through the server wing."""
    return service.cached_backtest(require_market(), rule_text, params, user_id()).value


def run_optimization(base, grid: dict, settings: dict, summary: dict, **options: Any) -> OptimizationRun:
    """Run (or fetch from the cache) an optimisation of the current rule; options: progress, scheduler."""
    run = service.cached_optimization(
        require_market(), rule(), base, grid, settings, user_id(), link(), summary=summary, **options
    )
    return _ran("optimize", run)


def run_montecarlo(result: BacktestResult, settings: dict) -> MonteCarloResult:
    """Run (or fetch from the cache) a Monte Carlo of a backtest of the current rule."""
    return _ran("montecarlo", service.cached_montecarlo(require_market(), rule(), result, settings, user_id(), link()))


def _result_key(params) -> tuple:
    return (require_market().fingerprint, rule(), params)


def is_current() -> bool:
    """Does the shown result belong to this data, rule and these settings?"""
    try:
        return session.get().result_key == _result_key(bt_params())
    except InputError:
        return False


def follows_edits() -> bool:
    """Do results follow every edit on this dataset? Up to FOLLOW_CELLS symbol-bars a run takes well under a
    second; past it, edits wait for the Run button so a big universe does not rerun on each keystroke."""
    data = require_market()
    return data.shape[0] * data.shape[1] <= FOLLOW_CELLS


def apply_best(best: dict[str, float]) -> None:
    """Copy a grid point (grid keys: stop_loss, sizing.risk_pct, rule.1, ...) into the settings."""
    rule_values = {int(k.split(".")[1]): v for k, v in best.items() if k.startswith("rule.")}
    if rule_values:
        set_rule(substitute_numbers(rule(), rule_values))
        forget_widget("rule_text")  # the Scanner page's text box shows the new rule
    for path, v in best.items():
        p = table.grid_keys().get(path)
        if p is not None:
            set_value(path, p.check(v))
    session.get().result = None


# --- what pages share, by name ----------------------------------------------------------------------------


def result() -> BacktestResult | None:
    """The last backtest shown (None before the first, or after the data changed)."""
    return session.get().result


def result_id() -> int:
    """A number per backtest result: widgets that belong to one result (the trade picker) are keyed by it."""
    return hash(session.get().result_key)


def result_run_id() -> str:
    """The run-history id of the shown result ('' before the first)."""
    return session.get().result_run


def previous_result() -> BacktestResult | None:
    """The run shown before the current one (its settings differed), on the open dataset."""
    s = session.get()
    held = s.previous
    return held[0] if held is not None and s.market is not None and held[1] == s.market.fingerprint else None


def optimization() -> OptimizationRun | None:
    return session.get().opt


def set_optimization(run: OptimizationRun) -> None:
    session.get().opt = run


def cache_hit(kind: str) -> bool:
    """Was the last run of this kind ('backtest', 'optimize', 'montecarlo') served from the cache?"""
    return session.get().cache_hits.get(kind, False)


def luck_test() -> dict | None:
    """The random-entry test of the current result, once run (it follows every new result after that)."""
    s = session.get()
    held = s.random_entry
    return held[1] if held is not None and held[0] == s.result_key else None


def luck_test_wanted() -> bool:
    return bool(widget("w.luck")) and luck_test() is None


def set_luck_test(test: dict) -> None:
    s = session.get()
    s.random_entry = (s.result_key, test)
    set_widget("w.luck", True)
