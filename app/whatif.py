"""The what-if memory: the strip of the user's recent backtests and the pinned baseline they are compared with.

Both live on the server (the run history and its pins, per user and dataset), so a reload, a laptop asleep past
the session's life or another device finds them; the session only holds what it has read. A link may carry a
baseline (`base=<run id>`): the receiver sees the sender's change against the sender's baseline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import streamlit as st

from app import dataset, identity, links, session, widgets
from app import formatting as app_format
from app import state as app_state
from engine import params as table
from engine.backtest import BacktestResult
from engine.server import service

LABEL_SETTINGS = 3  # a strip label names at most this many differences, then "+N more"
_RUN_ID = re.compile(r"^[0-9a-f]{12}$")


@dataclass
class Pin:
    """A pinned baseline: its run, its settings and result, and who made it ('' for the viewer)."""

    run_id: str
    fingerprint: str
    values: dict[str, Any]
    rule: str
    result: BacktestResult
    maker: str = ""


def _pins() -> dict[str, Pin | None]:
    """The pins this session has read, by dataset fingerprint (None: the user has none there)."""
    return session.get().pins


def _settings(record: service.RunRecord) -> dict[str, Any]:
    """The settings a run was made with, by path, read from its link."""
    return table.linked_values(dict(parse_qsl(record.link)))[0]


def _pin_of(record: service.RunRecord, result: BacktestResult, viewer: str) -> Pin:
    maker = "" if record.session == viewer else service.maker(record)
    return Pin(record.id, record.fingerprint, _settings(record), record.rule, result, maker)


def _load(record: service.RunRecord | None) -> Pin | None:
    market = dataset.market()
    if record is None or market is None or record.fingerprint != market.fingerprint:
        return None
    viewer = identity.user_id()
    result = service.reopen_backtest(record, market, viewer)
    return None if result is None else _pin_of(record, result, viewer)


def pin() -> Pin | None:
    """The baseline pinned on the open dataset: the link's (`base=`), else the user's own on the server; read
    once per session and dataset."""
    market, pins = dataset.market(), _pins()
    if market is None:
        return None
    fingerprint = market.fingerprint
    base = links.take_link_base()
    if base is not None:
        found = _load(service.find_run(base, identity.user_id())) if _RUN_ID.match(base) else None
        if found is None:
            st.warning(
                f"The link's baseline run `{app_format.short(base)}` is not one you can open (deleted, on other "
                "data, private or not a run id): results are compared with the previous run instead.",
                icon=":material/link_off:",
            )
        else:
            pins[fingerprint] = found
    if fingerprint not in pins:
        pins[fingerprint] = _load(service.pinned_run(identity.user_id(), fingerprint))
    held = pins[fingerprint]
    links.set_link_base(fingerprint, held.run_id if held is not None else None)
    return held


def is_pinned() -> bool:
    return pin() is not None


def set_pin(on: bool) -> None:
    """Pin the shown result as the baseline every later run is compared with (False: compare with the previous
    run again). Kept on the server for this user and dataset; only in this session when the history is off."""
    shown, market, viewer = app_state.result(), dataset.market(), identity.user_id()
    if market is None:
        return
    pins, fingerprint = _pins(), market.fingerprint
    if not on:
        service.unpin(viewer, fingerprint)
        pins[fingerprint] = None
    elif shown is not None:
        record = service.pin_run(app_state.result_run_id(), viewer)
        if record is not None:
            pins[fingerprint] = _pin_of(record, shown, viewer)
        else:  # no history: the pin lasts as long as the session
            pins[fingerprint] = Pin("", fingerprint, widgets.values(), app_state.rule(), shown)
    held = pins.get(fingerprint)
    links.set_link_base(fingerprint, held.run_id if held is not None else None)


def baseline() -> tuple[BacktestResult | None, str]:
    """(the run the shown result is compared with, what it is): the pinned one, else the previous run, on the
    same dataset; (None, '') before there is one."""
    held = pin()
    if held is not None:
        return held.result, f"{held.maker}'s pinned baseline" if held.maker else "the pinned baseline"
    previous = app_state.previous_result()
    return (previous, "the previous run") if previous is not None else (None, "")


@dataclass
class StripRun:
    """One run of the what-if strip: its id, settings, rule, key metrics and what sets it apart."""

    id: str
    values: dict[str, Any]
    rule: str
    metrics: dict[str, Any]
    label: str = ""


def strip() -> list[StripRun]:
    """The user's backtests on this dataset over the last day, newest first, each labelled by what differs from
    the pinned baseline (else from the run before it): 'sl 5 → 3, tp off → 12'."""
    market = dataset.market()
    if market is None:
        return []
    runs = [
        StripRun(r.id, _settings(r), r.rule, r.metrics)
        for r in service.whatif_runs(identity.user_id(), market.fingerprint)
        if r.link
    ]
    held = pin()
    for i, run in enumerate(runs):
        before = runs[i + 1] if i + 1 < len(runs) else None
        if held is not None:
            run.label = "the baseline" if run.id == held.run_id else difference(held.values, held.rule, run)
        else:
            run.label = difference(before.values, before.rule, run) if before is not None else "first run"
    return runs


def difference(values: dict[str, Any], rule: str, after: StripRun) -> str:
    """What `after` changed against settings and a rule, at most LABEL_SETTINGS of them, then '+N more'."""
    parts = [f"rule → {app_format.short(after.rule)}"] if rule != after.rule else []
    for p in table.backtest_params():
        a, b = values.get(p.path, p.default), after.values.get(p.path, p.default)
        if a != b:
            parts.append(f"{p.url} {app_format.setting_text(p, a)} → {app_format.setting_text(p, b)}")
    if not parts:
        return "same settings as the baseline"
    more = len(parts) - LABEL_SETTINGS
    return ", ".join(parts[:LABEL_SETTINGS]) + (f" +{more} more" if more > 0 else "")


def restore(values: dict[str, Any], rule: str) -> None:
    """Put back every setting and the rule of a run; the Backtest page runs it at once."""
    for path, v in values.items():
        if path in table.TABLE and table.TABLE[path].group in table.BACKTEST_GROUPS:
            widgets.set_value(path, v)
    app_state.set_rule(rule)
    links.run_on("backtest")


def restore_record(record: service.RunRecord) -> str | None:
    """Put back a backtest from the run history (the Runs page's "Restore"): its dataset, settings and rule;
    a problem when its dataset cannot be opened."""
    data = dict(parse_qsl(record.link)).get("data")
    if data and data != dataset.data_id() and not dataset.open_stored(data):
        return f"This run's dataset `{data}` cannot be opened any more."
    restore(_settings(record), record.rule)
    return None
