"""The typed session: everything one browser session keeps besides its widgets' values, as one object in
st.session_state. Widgets keep their own keys (settings `p.<url key>`, page widgets `w.<page>.<name>`,
the grid `grid.*`) because Streamlit binds a widget to its key; every other value lives here, with its type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import streamlit as st

from engine import Market
from engine.backtest import BacktestResult
from engine.optimize import OptimizationRun
from engine.rules import PRESETS, Signals

if TYPE_CHECKING:
    from app.whatif import Pin

DEFAULT_RULE = PRESETS["Oversold bounce"]


@dataclass
class Session:
    started: bool = False  # the first run read the link
    page: str = "data"  # the page this run shows (its url path)
    # who: decided once per session (app/identity.py)
    user_id: str = ""
    user_source: str = ""  # login, header, browser or new browser
    # the one dataset (app/dataset.py)
    market: Market | None = None
    data_id: str | None = None
    missing_data: str | None = None  # the id a link named that this server does not have
    store_warning: str | None = None
    upload_error: str | None = None
    attach_error: str | None = None
    bad_rows: int = 0  # rows the last refused upload could leave out
    loaded: dict[str, tuple | None] = field(default_factory=dict)  # uploader -> the (file, options) loaded last
    # the rule and its runs (app/state.py)
    rule: str = DEFAULT_RULE
    signals: dict[tuple[str, str], Signals] = field(default_factory=dict)  # (fingerprint, rule) -> the scan
    result: BacktestResult | None = None
    result_key: tuple | None = None  # (fingerprint, rule, params) of `result`
    result_run: str = ""  # its run-history id
    previous: tuple[BacktestResult, str] | None = None  # the run before it, with its dataset's fingerprint
    random_entry: tuple[Any, dict] | None = None  # (result key, the luck test of that result)
    opt: OptimizationRun | None = None
    cache_hits: dict[str, bool] = field(default_factory=dict)  # kind -> the last run came from the cache
    cache_warned: bool = False
    # the link (app/links.py)
    autorun: str | None = None  # the page that runs at once on its next visit
    link_problems: list[str] = field(default_factory=list)
    link_base: str | None = None  # a `base=` the link carried, until the what-if memory reads it
    url_base: tuple[str, str] | None = None  # (fingerprint, pinned run id) the page's link carries
    screen_date: str | None = None  # the Scanner's "Screen on" date (YYYY-MM-DD; None: the latest bar), `on=`
    # the what-if memory (app/whatif.py)
    pins: dict[str, Pin | None] = field(default_factory=dict)  # fingerprint -> the pin read (None: none)
    # the dataset's family (app/family.py)
    restated: Any = None  # the last refused append's RestatedHistory, until replaced or dismissed
    family_message: str | None = None  # what the last append or refresh did


def get() -> Session:
    """This browser session's Session (made on its first run)."""
    ss = st.session_state
    if not isinstance(ss.get("session"), Session):
        ss.session = Session()
    return ss.session
