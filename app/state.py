"""The one owner of st.session_state and the URL: every page reads and writes state through here.

Every setting is a row of the parameter table (engine/params.py) and lives in session state under the key
`p.<url key>` (e.g. `p.sl`), which is also its widget's key: widgets are created with that key, never
with `value=` (so Streamlit never recreates them and no edit is lost), and with `persist_state="session"`
(so a page's settings survive a visit to another page). The URL mirrors the state at every run (dataset
id, rule, every non-default setting, the grid), so a link reproduces what its sender saw; values read
from a link are checked against the table.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import streamlit as st

from app import formatting as app_format
from engine import InputError, Market, warmup
from engine import params as table
from engine.backtest import BacktestResult, params_from_values
from engine.data import BadRowsError, quality
from engine.montecarlo import MonteCarloResult
from engine.optimize import OBJECTIVES, OptimizationRun, default_range, format_grid_spec, parse_grid_spec
from engine.rules import MAX_RULE_CHARS, PRESETS, Signals, substitute_numbers
from engine.rules import indicator_series as indicator_series_of
from engine.server import service
from engine.server.datasets import valid_id
from engine.sizing import DESCRIPTIONS

log = logging.getLogger("scanner.app")
if not log.handlers:  # one JSON line per script run on stderr: what load tests and operators read
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False
T = TypeVar("T")
DEFAULT_RULE = PRESETS["Oversold bounce"]
DEFAULT_GRID = ("stop_loss", "take_profit")
KEEP: Literal["session"] = "session"  # persist_state of every settings widget: kept while the user is on another page


def key(path: str) -> str:
    """The session-state and widget key of a table parameter."""
    return "p." + table.TABLE[path].url


def _boxed(p: table.Param) -> bool:
    """A number that can be off: its box is empty (placeholder "Off") rather than showing 0."""
    return p.off and p.kind in (int, float)


def _to_widget(p: table.Param, v: Any) -> Any:
    return None if _boxed(p) and not v else v


def _from_widget(p: table.Param, v: Any) -> Any:
    """The table's value of what a widget holds: an empty box is the 'off' 0."""
    return p.kind(0) if _boxed(p) and v is None else v


def value(path: str) -> Any:
    return _from_widget(table.TABLE[path], st.session_state[key(path)])


def set_value(path: str, value_: Any) -> None:
    """Set a table parameter's value (its widget shows it on the next run)."""
    st.session_state[key(path)] = _to_widget(table.TABLE[path], value_)


def load_options(paths: tuple[str, ...]) -> dict[str, Any]:
    """How to read a file, as `load_market` takes it (by field name; empty -> None where that means detect)."""
    return table.library_fields({p: value(p) for p in paths})


def values() -> dict[str, Any]:
    """Current backtest settings (user values) by table path."""
    return {p.path: value(p.path) for p in table.backtest_params()}


# --- session start: defaults, then the link -------------------------------------------------------------


def init(page_path: str) -> None:
    """Called at every run, after navigation: on a session's first run, defaults then the link's values
    (checked); at every run, mirror the state to the URL."""
    ss = st.session_state
    if "_started" not in ss:
        _start(ss, st.query_params.to_dict(), page_path)
    ss["_page"] = page_path
    sync_url()


def _start(ss, query: dict[str, str], page_path: str) -> None:
    for p in table.PARAMS:
        set_value(p.path, p.default)
    linked, refused = table.linked_values(query)
    for path, v in linked.items():
        set_value(path, v)
    problems = [
        f"The link's `{p.url}={short(text)}` was ignored: {exc} Using the default, {p.shown(p.default)}."
        for p, text, exc in refused
    ]
    rule = query.get("rule", DEFAULT_RULE)
    if len(rule) > MAX_RULE_CHARS:
        problems.append(
            f"The link's rule is {len(rule):,} characters long, over the {MAX_RULE_CHARS:,} limit; "
            "using the default rule."
        )
        rule = DEFAULT_RULE
    ss.rule = rule
    ss["grid.keys"] = list(DEFAULT_GRID)
    if "grid" in query:
        try:
            spec = parse_grid_spec(query["grid"])
        except InputError as exc:
            problems.append(f"The link's grid was ignored: {exc}")
        else:
            ss["grid.keys"] = list(spec)
            for name, (lo, hi, step) in spec.items():
                ss[f"grid.{name}.lo"], ss[f"grid.{name}.hi"], ss[f"grid.{name}.st"] = lo, hi, step
    ss.result = ss.opt = None
    ss.market, ss.data_id, ss.missing_data = None, None, None
    _open_dataset(ss, query.get("data", "sample"))
    ss.link_base = query.get("base")  # the what-if memory reads it once the dataset is open
    ss.link_problems = problems
    ss.autorun = page_path if query else None
    ss._started = True


def short(text: str) -> str:
    """A link value as a message quotes it: at most 40 characters, no backticks (it goes in a code span)."""
    return (text if len(text) <= 40 else text[:40] + "...").replace("`", "'")


def _dataset(data_id: str) -> Market | None:
    """A built-in dataset by name, else a stored one this user may open."""
    if data_id == "sample":
        return _sample()
    if data_id == "synthetic":
        return _synthetic()
    return service.open_dataset(data_id, user_id())


def _open_dataset(ss, data_id: str) -> None:
    """The dataset a link names; when it is not on this server the pages say so (never the sample instead)."""
    market = _dataset(data_id)
    if market is None:
        ss.missing_data = data_id
        return
    ss.market, ss.data_id = market, data_id


def missing_data_message() -> str | None:
    """Why there is no dataset (a link named one this server does not have), or None."""
    missing = st.session_state.get("missing_data")
    if missing is None:
        return None
    if not valid_id(missing):
        return (
            f"The link names the dataset `{short(missing)}`, which is not a dataset id. "
            "Load a dataset on the **Data** page."
        )
    # A private id and an unknown one get the same answer: ids are content fingerprints, so a different answer
    # would tell anyone whether a file is on this server.
    why = (
        " This server keeps no datasets (SCANNER_CACHE_DIR is empty), so links work only within the session that "
        "loaded the data; cross-session links need SCANNER_CACHE_DIR."
        if service.datasets().directory is None
        else " It may be unknown, deleted or evicted (storage limit)."
    )
    return (
        f"The dataset this link names (`{missing}`) is not on this server, or it is private to its owner; ask them "
        f"to share it (Data page, **List it for the team**), then open the link again.{why} Or upload the file again "
        "on the **Data** page: the same file gets the same id, so the link works again. Nothing was run."
    )


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


# --- the URL --------------------------------------------------------------------------------------------


def link_query() -> dict[str, str]:
    """The query string that reproduces this session's state: dataset, rule, every non-default setting, grid."""
    ss = st.session_state
    settings = {p.path: value(p.path) for p in table.PARAMS}
    query = table.link_query(ss.get("data_id") or ss.get("missing_data"), ss.rule, settings)
    grid = grid_spec_text()
    base = ss.get("url_base")  # (dataset fingerprint, pinned run id): the what-if memory keeps it current
    if base is not None and ss.get("market") is not None and base[0] == ss.market.fingerprint:
        query["base"] = base[1]
    on_optimize = ss.get("_page", "optimize") == "optimize"  # the grid is the Optimize page's: no other link has it
    if on_optimize and grid != format_grid_spec({k: default_range(ss.rule, k) for k in DEFAULT_GRID}):
        query["grid"] = grid
    return query


def sync_url() -> None:
    query = link_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def link() -> str:
    return urlencode(link_query())


# --- datasets -------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the sample data...")
def _sample() -> Market:
    return service.builtin("sample")


@st.cache_resource(show_spinner="Generating the synthetic universe...")
def _synthetic() -> Market:
    return service.builtin("synthetic")


def market() -> Market | None:
    return st.session_state.market


def require_market() -> Market:
    """The dataset, or a clear message and a stop when a link named one this server does not have."""
    m = market()
    if m is None:
        st.error(missing_data_message() or "No dataset is loaded: load one on the **Data** page.")
        st.page_link("../pages/data.py", label="Go to the Data page →", icon=":material/database:")
        st.stop()
    return m


def set_market(new: Market, data_id: str) -> None:
    """Replace the one dataset; results computed on the old one no longer apply."""
    ss = st.session_state
    ss.market, ss.data_id, ss.missing_data = new, data_id, None
    ss.result = ss.opt = None
    ss.pop("_signals", None)


def load_upload(uploaded, on_bad_rows: str = "raise", **options) -> str | None:
    """Load an uploaded file and store it for links; on bad data return the loader's message and keep the
    current dataset (st.session_state.bad_rows then holds how many rows could be left out)."""
    st.session_state.bad_rows = 0
    return _use_upload(
        uploaded, "load", lambda: service.ingest(uploaded, uploaded.name, user_id(), on_bad_rows=on_bad_rows, **options)
    )


def attach_error() -> str | None:
    """Why the last file of columns could not be attached, or None."""
    return st.session_state.get("attach_error")


def attach_upload(uploaded) -> str | None:
    """Join an uploaded file of own columns (symbol, date, pe_ratio, ...) to the dataset as of each date: a new
    dataset, stored for links. Returns (and remembers for `attach_error`) why the file cannot be used."""
    error = _use_upload(uploaded, "join", lambda: service.attach(require_market(), uploaded, user_id()))
    st.session_state.attach_error = error
    return error


def _use_upload(uploaded, what: str, load: Callable[[], service.Stored]) -> str | None:
    """Make a new dataset from an upload (the server wing reserves its memory first) and use it; the loader's
    message when the file cannot be used (the current dataset stays)."""
    refused = upload_refusal()
    if refused is not None:
        return refused
    try:
        new = load()
    except BadRowsError as exc:
        st.session_state.bad_rows = len(exc.rows)
        return str(exc)
    except InputError as exc:
        return str(exc)
    except Exception:  # a loader bug must not take the page down; it is logged for us
        log.exception("unexpected error in the %s of %s", what, uploaded.name)
        return f"An unexpected error stopped the {what} (it has been logged). Try exporting the file again as CSV."
    _use_stored(new)
    return None


def exclude_symbols(symbols: list[str]) -> None:
    """Drop symbols (e.g. those with flagged outliers) from the dataset: a new dataset, stored for links."""
    _use_stored(service.store(require_market().without(symbols), user_id()))


def fix_flag(kind: str, symbol: str, date: Any) -> None:
    """Fix one flagged bar ('adjust' a split, 'drop' the bar): a new dataset, stored for links."""
    _use_stored(service.store(quality.fix_flag(require_market(), kind, symbol, date), user_id()))


def _use_stored(new: service.Stored) -> None:
    """Use a new dataset (stored for links; a broken store costs the links, never the data)."""
    if new.not_stored is None:
        st.session_state.pop("store_warning", None)
    else:
        st.session_state.store_warning = (
            f"This dataset is loaded but not stored on the server ({new.not_stored}): links to it work only in "
            "this session."
        )
    set_market(new.market, new.data_id)


def store_warning() -> str | None:
    """Why the current upload could not be stored on the server, or None."""
    return st.session_state.get("store_warning")


def datasets():
    """The server's dataset store (listings, sharing, deletion; each checked against the viewer)."""
    return service.datasets()


def private_by_identity() -> bool:
    """Can this user's uploads be private? Only with a real identity (sign-in or a trusted proxy header)."""
    user_id()
    return st.session_state.get("user_source") in ("login", "header")


def _proxy_header() -> str:
    return os.environ.get("SCANNER_USER_HEADER", "").strip()


def upload_refusal() -> str | None:
    """Why this visitor may not upload, or None: on a server that signs users in through a proxy, a visit
    without its header is read-only (what it uploaded would be listed for everyone)."""
    if not _proxy_header() or private_by_identity():
        return None
    return (
        f"This server signs users in through a proxy (the {_proxy_header()!r} header), and this visit came without "
        "it, so it is read-only: you can open shared data and run backtests, not upload. Open the dashboard "
        "through your team's sign-in address to upload."
    )


def identity_note() -> str:
    """Who may see what this visitor makes, true to how the server identifies users."""
    return upload_refusal() or (
        "No sign-in is configured on this server, so nothing is private here: uploads are listed for everyone on it."
    )


def is_private(data_id: str | None) -> bool:
    """Is this the user's own stored dataset, not shared with the team (so a teammate's link opens nothing)?"""
    if data_id is None or data_id in ("sample", "synthetic"):
        return False
    info = service.dataset_listing(data_id, user_id())
    return info is not None and info.owner == user_id() and not info.shared and private_by_identity()


def can_open(data_id: str) -> bool:
    """Whether this user may open a dataset id (built-in, their own, shared or uploaded without identity)."""
    return service.open_dataset(data_id, user_id()) is not None


def open_stored(data_id: str) -> bool:
    """Open a dataset by id (built in, or stored and open to this user); False when it cannot be."""
    new = _dataset(data_id)
    if new is None:
        return False
    set_market(new, data_id)
    return True


def use_sample() -> None:
    set_market(_sample(), "sample")


def use_synthetic() -> None:
    set_market(_synthetic(), "synthetic")


# --- rule and signals -----------------------------------------------------------------------------------


def rule() -> str:
    return st.session_state.rule


def set_rule(text: str) -> None:
    st.session_state.rule = text
    st.query_params["rule"] = text  # at once: a change made mid-run (a button) is not followed by a rerun


def signals() -> Signals:
    """Signals of the current rule on the current dataset (raises RuleError for a bad rule)."""
    data, text = require_market(), rule()
    cache_key = (data.fingerprint, text)
    memo = st.session_state.setdefault("_signals", {})
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


# --- backtest -------------------------------------------------------------------------------------------


def bt_params():
    """BacktestParams from the current settings (ParamError naming the field when one is out of range)."""
    return params_from_values(values())


COOKIE = "scanner_uid"
_COOKIE_VALUE = re.compile(r"^[0-9a-f]{32}$")


def user_id() -> str:
    """Who owns the runs and datasets this session makes, decided once per session: the signed-in user
    (st.login), else the header a trusted auth proxy sets (SCANNER_USER_HEADER), else this browser (a
    cookie, so a reload keeps "my runs")."""
    ss = st.session_state
    if "user_id" not in ss:
        ss.user_id, ss.user_source = _identify()
    return ss.user_id


def log_identity_sources() -> None:
    """One line at start: which identities the dashboard trusts (operators see at once if nothing is private)."""
    header = _proxy_header()
    sources = ["sign-in (st.login) where [auth] is configured in .streamlit/secrets.toml"]
    sources.append(f"the proxy header {header!r}" if header else "no proxy header (SCANNER_USER_HEADER unset)")
    sources.append(
        "without it a visit is read-only (no uploads)" if header else "else a browser cookie: uploads are not private"
    )
    log.warning("dashboard identity from " + "; ".join(sources))


def _identify() -> tuple[str, str]:
    try:
        if st.user.is_logged_in:
            return f"user:{st.user.get('email') or st.user.get('sub')}", "login"
    except Exception:  # no authentication configured
        pass
    header = _proxy_header()
    value = st.context.headers.get(header) if header else None
    if isinstance(value, str) and value.strip():
        return f"user:{value.strip().lower()[:200]}", "header"
    cookie = st.context.cookies.get(COOKIE)
    if isinstance(cookie, str) and _COOKIE_VALUE.match(cookie):
        return f"browser:{cookie}", "browser"
    return f"browser:{uuid.uuid4().hex}", "new browser"


def remember_browser() -> None:
    """Give a new browser its id cookie (a year; read back on reload by st.context.cookies)."""
    value = user_id().removeprefix("browser:")  # decides the identity now: on a session's first run too
    if st.session_state.get("user_source") == "new browser":
        st.html(
            f"<script>document.cookie = '{COOKIE}={value}; path=/; max-age=31536000; SameSite=Strict';</script>",
            unsafe_allow_javascript=True,
        )


def user_label() -> str:
    uid, source = user_id(), st.session_state.get("user_source")
    return uid.removeprefix("user:") if source in ("login", "header") else "this browser"


def _ran(kind: str, run: service.Run[T]) -> T:
    """Remember whether the cache had the run; say once when caching is off (and again if it fails again)."""
    off = service.cache_off()
    if off is None:
        st.session_state._cache_warned = False
    elif not st.session_state.get("_cache_warned"):
        st.session_state._cache_warned = True
        st.warning(f"Caching is off: {off}. Everything still works, without the cache and history.")
    st.session_state[f"{kind}_cache_hit"] = run.hit
    return run.value


def run_backtest() -> BacktestResult:
    """Run (or fetch from the cache) and remember a backtest of the current settings."""
    params = bt_params()
    data, signals_now = require_market(), signals()
    run = service.cached_backtest(data, rule(), params, user_id(), link(), signals=signals_now)
    result = _ran("backtest", run)
    key_now = _result_key(params)
    before, key_before = st.session_state.get("result"), st.session_state.get("result_key")
    if before is not None and key_before is not None and key_before != key_now:  # an edit: shown against this
        st.session_state.previous_result = (before, key_before[0])
    st.session_state.result = result
    st.session_state.result_key = key_now
    st.session_state.result_run = run.run_id
    return result


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


def previous_result() -> BacktestResult | None:
    """The run shown before the current one (its settings differed), on the open dataset."""
    held, data = st.session_state.get("previous_result"), market()
    return held[0] if held is not None and data is not None and held[1] == data.fingerprint else None


def result_run_id() -> str:
    """The run-history id of the shown result ('' before the first)."""
    return st.session_state.get("result_run", "")


def take_link_base() -> str | None:
    """The `base=` run id of the link this session opened with, given once."""
    return st.session_state.pop("link_base", None)


def set_link_base(fingerprint: str, run_id: str | None) -> None:
    """The pinned run the page's link carries on this dataset (None: no baseline in the link)."""
    st.session_state.url_base = (fingerprint, run_id) if run_id else None


def add_link_problem(text: str) -> None:
    st.session_state.link_problems = [*link_problems(), text]


def run_on(page: str) -> None:
    """The settings were put back from a run: the page shows them at once (its rule text box reread)."""
    st.session_state.pop("rule_text", None)
    st.session_state.autorun = page


def _result_key(params) -> tuple:
    return (require_market().fingerprint, rule(), params)


def is_current() -> bool:
    """Does the shown result belong to this data, rule and these settings?"""
    try:
        return st.session_state.get("result_key") == _result_key(bt_params())
    except InputError:
        return False


FOLLOW_CELLS = 5_000_000  # symbol-bars up to which every edit reruns the backtest (about 0.1 s of kernel)


def follows_edits() -> bool:
    """Do results follow every edit on this dataset? Up to FOLLOW_CELLS symbol-bars a run takes well under a
    second; past it, edits wait for the Run button so a big universe does not rerun on each keystroke."""
    data = require_market()
    return data.shape[0] * data.shape[1] <= FOLLOW_CELLS


def autorun(page: str) -> bool:
    """True once when the session opened on this page from a link: it runs at once, so the receiver sees
    what the sender saw."""
    if st.session_state.get("autorun") == page:
        st.session_state.autorun = None
        return True
    return False


def apply_best(best: dict[str, float]) -> None:
    """Copy a grid point (grid keys: stop_loss, sizing.risk_pct, rule.1, ...) into the settings."""
    rule_values = {int(k.split(".")[1]): v for k, v in best.items() if k.startswith("rule.")}
    if rule_values:
        set_rule(substitute_numbers(rule(), rule_values))
        st.session_state.pop("rule_text", None)  # the Scanner page's text box shows the new rule
    for path, v in best.items():
        p = table.grid_keys().get(path)
        if p is not None:
            set_value(path, p.check(v))
    st.session_state.result = None


# --- what pages share, by name ----------------------------------------------------------------------------


def result() -> BacktestResult | None:
    """The last backtest shown (None before the first, or after the data changed)."""
    return st.session_state.get("result")


def result_id() -> int:
    """A number per backtest result: widgets that belong to one result (the trade picker) are keyed by it."""
    return hash(st.session_state.get("result_key"))


def optimization() -> OptimizationRun | None:
    return st.session_state.get("opt")


def set_optimization(run: OptimizationRun) -> None:
    st.session_state.opt = run


def cache_hit(kind: str) -> bool:
    """Was the last run of this kind ('backtest', 'optimize', 'montecarlo') served from the cache?"""
    return bool(st.session_state.get(f"{kind}_cache_hit"))


def luck_test() -> dict | None:
    """The random-entry test of the current result, once run (it follows every new result after that)."""
    held = st.session_state.get("random_entry")
    return held[1] if held is not None and held[0] == st.session_state.get("result_key") else None


def luck_test_wanted() -> bool:
    return bool(st.session_state.get("w.luck")) and luck_test() is None


def set_luck_test(test: dict) -> None:
    st.session_state.random_entry = (st.session_state.get("result_key"), test)
    st.session_state["w.luck"] = True


def upload_error() -> str | None:
    return st.session_state.get("_upload_error")


def set_upload_error(text: str | None) -> None:
    st.session_state["_upload_error"] = text


def forget_upload() -> None:
    """No file in the uploader: its error, and which file loaded last, belong to no later visit."""
    st.session_state["_upload_error"] = st.session_state["_loaded_upload"] = None


def upload_is_new(attempt: tuple, uploader: str = "upload") -> bool:
    """Is this (file, options) not the one `uploader` loaded last? Remembers it: each file and option set loads
    once (the data uploader and the attach-columns uploader each remember their own)."""
    key = f"_loaded_{uploader}"
    if st.session_state.get(key) == attempt:
        return False
    st.session_state[key] = attempt
    return True


def bad_rows() -> int:
    """How many rows the last refused upload could leave out (0: none to offer)."""
    return int(st.session_state.get("bad_rows") or 0)


def data_id() -> str | None:
    return st.session_state.get("data_id")


def link_problems() -> list[str]:
    return st.session_state.get("link_problems") or []


def dismiss_link_problems() -> None:
    st.session_state.link_problems = []


def open_next(page: str) -> None:
    """The next visit to `page` runs at once, as a link to it would (a heatmap click opens its backtest)."""
    st.session_state.autorun = page


# --- widgets a page owns ----------------------------------------------------------------------------------
# A page's own widgets keep their keys (w.<page>.<name>); pages read, seed and reset them only through here.


def widget(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def seed_widget(key: str, default: Any) -> Any:
    """Give a widget its first value (never overwrites a user's); returns the current one."""
    return st.session_state.setdefault(key, default)


def set_widget(key: str, value_: Any) -> None:
    st.session_state[key] = value_


def forget_widget(key: str) -> None:
    st.session_state.pop(key, None)


# --- the optimiser's grid -------------------------------------------------------------------------------


def grid_keys() -> list[str]:
    """The parameters the Optimize page varies (grid keys and rule.<i>)."""
    return list(st.session_state.get("grid.keys", []))


def set_grid_keys(keys: list[str]) -> None:
    st.session_state["grid.keys"] = list(keys)


def grid_range(name: str) -> tuple[float, float, float]:
    """A grid key's (from, to, step) as the Optimize page holds it, initialised from the defaults."""
    ss = st.session_state
    if f"grid.{name}.lo" not in ss:
        lo, hi, step = default_range(rule(), name)
        ss[f"grid.{name}.lo"], ss[f"grid.{name}.hi"], ss[f"grid.{name}.st"] = float(lo), float(hi), float(step)
    return ss[f"grid.{name}.lo"], ss[f"grid.{name}.hi"], ss[f"grid.{name}.st"]


def grid_spec_text() -> str:
    """The grid as a link writes it: key:from:to:step, comma-separated."""
    spec = {}
    for name in st.session_state.get("grid.keys", []):
        try:
            spec[name] = grid_range(name)
        except InputError:  # a rule.<i> the current rule no longer has
            continue
    return format_grid_spec(spec)


# --- widgets from the table ---------------------------------------------------------------------------------


def param_widget(path: str, where=st, disabled: bool = False, help: str | None = None):
    """The widget of a table parameter, keyed by its state key and never given `value=`."""
    p = table.TABLE[path]
    k = key(path)
    tip = help or p.help or None
    if p.kind is bool:
        return where.checkbox(p.label, key=k, disabled=disabled, help=tip, persist_state=KEEP)
    if p.choices or path in CHOICE_LABELS:  # a choice, or free text with suggestions (a typed value is kept)
        labels = CHOICE_LABELS.get(path, {})
        current = value(path)
        options = p.choices or (*labels, *([current] if current not in labels else []))
        return where.selectbox(
            p.label,
            options,
            key=k,
            disabled=disabled,
            help=tip,
            persist_state=KEEP,
            format_func=lambda c: labels.get(c, c),
            accept_new_options=not p.choices,
        )
    if p.kind is str:  # free text: a rule
        empty = p.off_word if p.off else "none"
        return where.text_input(
            p.label,
            key=k,
            disabled=disabled,
            help=tip,
            persist_state=KEEP,
            max_chars=None if p.hi is None else int(p.hi),
            placeholder=empty,
        )
    number = int if p.kind is int else float
    assert p.lo is not None and p.hi is not None  # every number has its range in the table
    # Whole numbers show as such; money without cents where the steps are large, else two decimals.
    fmt = None if p.kind is int else "%.0f" if p.unit == "currency" and (p.step or 1) >= 100 else "%.2f"
    if _boxed(p):  # off: an empty box reading "Off" (clear it, or type 0)
        off_tip = f"Empty ({p.off_word.capitalize()}): clear the box or type 0."
        tip = f"{tip} {off_tip}" if tip else off_tip
    return where.number_input(
        app_format.param_title(p),
        min_value=number(0 if p.off else p.lo),
        max_value=number(p.hi),
        step=number(p.step or 1),
        key=k,
        disabled=disabled,
        help=tip,
        format=fmt,
        persist_state=KEEP,
        placeholder=p.off_word.capitalize() if _boxed(p) else None,
        on_change=_zero_is_off if _boxed(p) else None,
        args=(k,),
    )


def _zero_is_off(widget_key: str) -> None:
    """A 0 typed into a box that can be off empties it: the box then reads "Off"."""
    if st.session_state.get(widget_key) == 0:
        st.session_state[widget_key] = None


CHOICE_LABELS: dict[str, dict[str, str]] = {
    "sizing.method": {name: f"{name.replace('_', ' ')}: {text}" for name, text in DESCRIPTIONS.items()},
    "optimize.objective": OBJECTIVES,
    "optimize.mode": {"split": "In/out-of-sample split", "walk_forward": "Walk-forward", "all": "None (all bars)"},
    "load.prices": {
        "raw": "As in the file",
        "adjusted": "Adjusted by adj_close (splits and dividends)",
        "split_adjusted": "Back-adjust the detected splits",
    },
    "load.date_format": {"": "Detect", "dayfirst": "Day first (31/12/2024)", "monthfirst": "Month first (12/31/2024)"},
    "load.intraday": {"refuse": "Refuse (daily bars only)", "daily": "Resample to daily bars"},
}
