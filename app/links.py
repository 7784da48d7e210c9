"""The URL: a session starts from its link (defaults, then the link's values, each checked against the table)
and mirrors its state to the URL at every run (dataset id, rule, every non-default setting, the grid on
Optimize, a pinned baseline), so a link reproduces what its sender saw."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from app import dataset, family, session
from app.formatting import short
from app.widgets import DEFAULT_GRID, forget_widget, grid_spec_text, set_grid_keys, set_value, set_widget, value
from engine import InputError
from engine import params as table
from engine.optimize import default_range, format_grid_spec, parse_grid_spec
from engine.rules import MAX_RULE_CHARS

DEFAULT_RULE = session.DEFAULT_RULE


def init(page_path: str) -> None:
    """Called at every run, after navigation: on a session's first run, defaults then the link's values
    (checked); at every run, mirror the state to the URL."""
    s = session.get()
    if not s.started:
        _start(s, st.query_params.to_dict(), page_path)
    s.page = page_path
    sync_url()


def _start(s: session.Session, query: dict[str, str], page_path: str) -> None:
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
    s.rule = rule
    set_grid_keys(list(DEFAULT_GRID))
    if "grid" in query:
        try:
            spec = parse_grid_spec(query["grid"])
        except InputError as exc:
            problems.append(f"The link's grid was ignored: {exc}")
        else:
            set_grid_keys(list(spec))
            for name, (lo, hi, step) in spec.items():
                for part, v in (("lo", lo), ("hi", hi), ("st", step)):
                    set_widget(f"grid.{name}.{part}", v)
    if "family" in query and "data" not in query:  # a family link: its latest version, named by id from now on
        family.open_linked(query["family"])
    else:
        dataset.open_linked(query.get("data", "sample"))
    s.link_base = query.get("base")  # the what-if memory reads it once the dataset is open
    if "on" in query:
        try:
            s.screen_date = pd.Timestamp(query["on"]).strftime("%Y-%m-%d")
        except (TypeError, ValueError):
            problems.append(f"The link's `on={short(query['on'])}` is not a date (YYYY-MM-DD); showing the latest bar.")
    s.link_problems = problems
    s.autorun = page_path if query else None
    s.started = True


def link_query() -> dict[str, str]:
    """The query string that reproduces this session's state: dataset, rule, every non-default setting, grid."""
    s = session.get()
    settings = {p.path: value(p.path) for p in table.PARAMS}
    query = table.link_query(s.data_id or s.missing_data, s.rule, settings)
    if s.url_base is not None and s.market is not None and s.url_base[0] == s.market.fingerprint:
        query["base"] = s.url_base[1]
    if s.page == "scanner" and s.screen_date is not None:
        query["on"] = s.screen_date  # the Scanner's screen date: a teammate sees the same bar
    grid = grid_spec_text()
    if s.page == "optimize" and grid != format_grid_spec({k: default_range(s.rule, k) for k in DEFAULT_GRID}):
        query["grid"] = grid  # the grid is the Optimize page's: no other link has it
    return query


def screen_date() -> str | None:
    """The Scanner's screen date the session (or its link) chose; None: the latest bar."""
    return session.get().screen_date


def set_screen_date(day: str | None) -> None:
    session.get().screen_date = day


def sync_url() -> None:
    query = link_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def link() -> str:
    return urlencode(link_query())


def link_problems() -> list[str]:
    return session.get().link_problems


def dismiss_link_problems() -> None:
    session.get().link_problems = []


def take_link_base() -> str | None:
    """The `base=` run id of the link this session opened with, given once."""
    s = session.get()
    base, s.link_base = s.link_base, None
    return base


def set_link_base(fingerprint: str, run_id: str | None) -> None:
    """The pinned run the page's link carries on this dataset (None: no baseline in the link)."""
    session.get().url_base = (fingerprint, run_id) if run_id else None


def autorun(page: str) -> bool:
    """True once when the session opened on this page from a link: it runs at once, so the receiver sees
    what the sender saw."""
    s = session.get()
    if s.autorun == page:
        s.autorun = None
        return True
    return False


def open_next(page: str) -> None:
    """The next visit to `page` runs at once, as a link to it would (a heatmap click opens its backtest)."""
    session.get().autorun = page


def run_on(page: str) -> None:
    """The settings were put back from a run: the page shows them at once (the rule's text box reread)."""
    forget_widget("rule_text")
    open_next(page)
