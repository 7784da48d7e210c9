"""Every user action of the hosted server, once: the dashboard's pages, the HTTP API and the CLI call these
and only translate their input and output.

Each action owns what a face would otherwise have to remember: its memory estimate and the reservation from
the server's budget, its run-cache kind and key, the owner and the link recorded in the run history, and a
bounded output (pages of rows). Who may see what is decided here too: a run is shown to others only when its
dataset is open to the team under its maker's own listing (`visible`), so a private strategy never leaks
through the team's history, and a private dataset answers like an unknown one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from .. import params as table
from ..backtest import (
    BacktestParams,
    BacktestResult,
    backtest,
    params_from_values,
    random_entry_test,
    signal_matrix,
)
from ..budget import backtest_bytes, montecarlo_bytes, scan_bytes, stored_read_bytes, upload_bytes
from ..data import Market, attach_columns, load_market, max_upload_bytes
from ..data.sources import Source
from ..errors import InputError
from ..events import EventStudy, event_figures, forward_returns, study_settings, sweep
from ..factors import FactorStudy, factor_returns
from ..montecarlo import MonteCarloResult, montecarlo_settings, run_montecarlo
from ..optimize import OptimizationRun, optimization_key, run_optimization
from ..rules import Screen, Signals, indicator_names, parse_rule, scan, split_rank
from .alerts import Delivery, InboxEntry, Webhook
from .cache import MAX_NOTE_CHARS, RunRecord, run_key
from .datasets import BUILTIN, DatasetInfo, DatasetStore, authenticated, dataset_id, to_frame, valid_id
from .families import Family, FamilyStore
from .refresh import Outcome, append_bars, refresh
from .screens import FAMILY_PREFIX, SavedScreen, ScreenBook, ScreenText
from .stores import alert_book, builtin, dataset_store, family_store, run_cache, screen_book, server_budget
from .webhooks import check_url

log = logging.getLogger("engine.server")
T = TypeVar("T")
__all__ = [
    "MAX_NOTE_CHARS",
    "Outcome",
    "RunRecord",
    "ScreenText",
    "builtin",
]  # what faces read through the wing, not from its rooms
TEAM_WINDOW = 2_000  # the team view looks at this many of the newest runs (a bounded query, then pages)


@dataclass(frozen=True)
class Run(Generic[T]):
    """A result of a cached action: the value, whether the cache had it, its row in the run history."""

    value: T
    hit: bool
    run_id: str = ""


class Stopped(Exception):
    """Work stopped by its caller (a cancelled job): nothing is cached or returned."""


@dataclass(frozen=True)
class Stored:
    """A dataset made by an action (an upload, a join, a fix): its id and, when the store could not keep it,
    why (it is still usable in this session, not by link)."""

    market: Market
    data_id: str
    not_stored: str | None = None


def _reserved(what: str, nbytes: int, compute: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        with server_budget().reserve(nbytes, what):
            return compute()

    return run


# --- datasets ------------------------------------------------------------------------------------------------


def open_dataset(data_id: str, viewer: str) -> Market | None:
    """A built-in dataset or a stored one the viewer may open; None for an unknown id and for one private to
    another user alike (ids are content fingerprints: a different answer would say the file is here)."""
    if data_id in BUILTIN:
        return builtin(data_id)
    return dataset_store().get(data_id, viewer=viewer) if valid_id(data_id) else None


def store(market: Market, owner: str, shared: bool = False) -> Stored:
    """Keep a new dataset for links under the owner's listing; a broken store costs the links, never the data."""
    try:
        info = dataset_store().put(market, owner=owner)
        if shared and not info.shared:
            dataset_store().set_shared(info.id, owner, True)
    except OSError as exc:
        log.error("dataset store unusable: %r", exc)
        return Stored(market, dataset_id(market), "its storage is full or unavailable")
    return Stored(market, dataset_id(market))


def _file_need(source: IO[bytes]) -> int:
    source.seek(0)
    head = source.read(2)
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    return upload_bytes(size, head)


def ingest(source: IO[bytes], name: str, owner: str, shared: bool = False, **options: Any) -> Stored:
    """Load an uploaded file (the loader's checks and limits; its memory reserved first) and store it."""
    limit = max_upload_bytes()
    load = _reserved("upload", _file_need(source), lambda: load_market(source, name=name, max_bytes=limit, **options))
    return store(load(), owner, shared)


def attach(market: Market, source: IO[bytes], owner: str, shared: bool = False) -> Stored:
    """Join a file of own columns to a dataset as of each date: a new dataset, stored like an upload."""
    limit = max_upload_bytes()
    join = _reserved("upload", _file_need(source), lambda: attach_columns(market, source, max_bytes=limit))
    return store(join(), owner, shared)


def share_dataset(data_id: str, owner: str, shared: bool) -> bool:
    """List (or stop listing) the owner's dataset for the team; False when it is not theirs."""
    return dataset_store().set_shared(data_id, owner, shared)


def delete_dataset(data_id: str, owner: str) -> bool:
    """Delete the owner's listing of a dataset (the bars go with the last listing); False when it is not theirs."""
    return dataset_store().delete(data_id, owner)


def datasets() -> DatasetStore:
    """The server's dataset store: listings, sharing and deletion, each checked against the viewer."""
    return dataset_store()


def bars(market: Market, symbols: list[str] | None, start: str | None, end: str | None) -> pd.DataFrame:
    """The bars in long format (symbol, date, open, ...), the dates clamped to the data's range; the table's
    memory reserved first (a whole dataset is millions of rows)."""
    with server_budget().reserve(stored_read_bytes(market.close.size, 8), "bars download"):
        return to_frame(market, symbols, start, end)


def dataset_listing(data_id: str, viewer: str) -> DatasetInfo | None:
    return None if data_id in BUILTIN else dataset_store().info(data_id, viewer=viewer)


# --- families of versions -------------------------------------------------------------------------------------


def families() -> FamilyStore:
    """The server's families (named lines of dataset versions), each checked against the viewer."""
    return family_store()


def create_family(name: str, market: Market, owner: str, shared: bool = False, source: dict | None = None) -> Family:
    """A new family whose first version is the dataset (stored for links like an upload). OSError when the
    store cannot be written; DataError for a bad source (checked before anything is stored)."""
    checked = None if source is None else Source.from_settings(source).settings()
    family = family_store().create(name, market, owner, shared)
    if checked is not None:
        family_store().set_source(family.slug, owner, checked)
        family = family_store().get(family.slug, owner) or family
    return family


def open_family(slug: str, viewer: str) -> tuple[Family, Market] | None:
    """A family's latest version, or None when the family (or that version) is unknown or not the viewer's."""
    family = family_store().get(slug, viewer)
    market = None if family is None else dataset_store().get(family.latest.id, viewer=family.owner)
    return None if family is None or market is None else (family, market)


def family_of(data_id: str, viewer: str) -> Family | None:
    """The family a dataset is a version of (to say when a newer version exists), as the viewer may see it."""
    return None if data_id in BUILTIN or not valid_id(data_id) else family_store().of_dataset(data_id, viewer)


def append_to_family(
    slug: str, new: IO[bytes] | Market, viewer: str, on_restated: str = "refuse", **options: Any
) -> Outcome | None:
    """Recent bars (a file through the loader's checks and limits, or a Market) appended to the family's latest
    version: a new version when something changed. None when the family is not the viewer's to change;
    RestatedHistory (a DataError with the differing bars) when stored bars differ and on_restated='refuse'."""
    opened = open_family(slug, viewer)
    if opened is None or not family_store().may_change(opened[0], viewer):
        return None
    family, market = opened
    if not isinstance(new, Market):
        source, limit = new, max_upload_bytes()
        need = _file_need(source)
        new = _reserved("upload", need, lambda: load_market(source, name=family.name, max_bytes=limit, **options))()
    incoming = new
    need = 3 * market.nbytes + 3 * incoming.nbytes  # the stored and the merged arrays, and the comparison
    work = lambda: append_bars(family_store(), family, market, incoming, viewer, on_restated)  # noqa: E731
    return _reserved("append", need, work)()


def refresh_family(
    slug: str,
    viewer: str,
    *,
    partial: bool = False,
    on_restated: str = "refuse",
    progress: Callable[[int, int, str], None] | None = None,
) -> Outcome | None:
    """Fetch the family's new bars from its source and append them (see engine/server/refresh.py); None when
    the family is not the viewer's to change."""
    opened = open_family(slug, viewer)
    if opened is None or not family_store().may_change(opened[0], viewer):
        return None
    family, market = opened
    work = lambda: refresh(  # noqa: E731
        family_store(), family, market, viewer, partial=partial, on_restated=on_restated, progress=progress
    )
    return _reserved("refresh", 4 * market.nbytes, work)()


def store_fixed(fixed: Market, data_id: str | None, viewer: str) -> Stored:
    """A dataset with a flagged bar fixed (or symbols left out): the next version of its family, made "fix",
    when `data_id` is the latest version of a family the viewer may change; else stored like an upload."""
    family = family_of(data_id, viewer) if data_id else None
    if family is not None and family.latest.id == data_id and family_store().may_change(family, viewer):
        try:
            family = family_store().add_version(family.slug, fixed, viewer, "fix")
        except OSError as exc:
            log.error("dataset store unusable: %r", exc)
            return Stored(fixed, dataset_id(fixed), "its storage is full or unavailable")
        return Stored(fixed, family.latest.id)
    return store(fixed, viewer)


def set_family_source(slug: str, viewer: str, settings: dict[str, Any] | None) -> bool:
    """Where the family's refreshes fetch from (checked: DataError for bad settings); its owner only."""
    if settings is not None:
        settings = Source.from_settings(settings).settings()
    return family_store().set_source(slug, viewer, settings)


def share_family(slug: str, viewer: str, shared: bool) -> bool:
    """Share a family (every version) with the team, or make it private again; its owner only."""
    return family_store().set_shared(slug, viewer, shared)


# --- saved screens ---------------------------------------------------------------------------------------------

MIN_OUT_OF_SAMPLE = 30  # signals since saving below which the track record says it is too early to tell
RECORD_HORIZONS = (1, 5, 20)


def screens() -> ScreenBook:
    """The server's saved screens, each checked against the viewer."""
    return screen_book()


def screen_market(data: str, viewer: str) -> Market | None:
    """What a screen's data names: a family's latest version, or one dataset (None: not the viewer's)."""
    if data.startswith(FAMILY_PREFIX):
        opened = open_family(data.removeprefix(FAMILY_PREFIX), viewer)
        return None if opened is None else opened[1]
    return open_dataset(data, viewer)


def screen_query(screen: SavedScreen) -> dict[str, str]:
    """The Scanner link's query for a screen: its rule on its data (a family: `family=`, its latest version)."""
    data = screen.data
    where = {"family": data.removeprefix(FAMILY_PREFIX)} if data.startswith(FAMILY_PREFIX) else {"data": data}
    return {"rule": screen.rule, **where}


def _checked_rule(rule: str, data: str, viewer: str) -> None:
    market = screen_market(data, viewer)
    if market is None:
        raise InputError(f"The data {data[:60]!r} is not a dataset or family you can open.")
    parse_rule(split_rank(rule)[0], market.column_kinds())  # a bad rule is refused before it is saved


def save_screen(name: str, rule: str, data: str, owner: str, shared: bool = False, note: str = "") -> SavedScreen:
    """Save a screen (its rule checked on its data first). OSError when the history cannot be written."""
    _checked_rule(rule, data, owner)
    return screen_book().save(owner, name, rule, data, note, shared)


def update_screen(screen_id: str, viewer: str, **changes: Any) -> SavedScreen | None:
    """The owner's change of name, rule, note or sharing (the previous text kept); None when not theirs."""
    current = screen_book().get(screen_id, viewer)
    if current is None or current.owner != viewer:
        return None
    if changes.get("rule") is not None:
        _checked_rule(changes["rule"], current.data, viewer)
    return screen_book().update(screen_id, viewer, **changes)


def screen_on(screen_id: str, viewer: str, date: Any = None) -> tuple[SavedScreen, Screen] | None:
    """A saved screen on one bar of its data (the latest by default): matches, entered, left."""
    screen = screen_book().get(screen_id, viewer)
    market = None if screen is None else screen_market(screen.data, viewer)
    if screen is None or market is None:
        return None
    return screen, cached_scan(market, screen.rule).on(date, market)


def delete_screen(screen_id: str, viewer: str) -> bool:
    """The owner deletes a screen (its followers stop getting its alerts); False when not theirs."""
    if not screen_book().delete(screen_id, viewer):
        return False
    alert_book().forget_screen(screen_id)
    return True


# --- alerts: followers, the inbox, webhooks --------------------------------------------------------------------


def follow_screen(screen_id: str, viewer: str, on: bool = True) -> bool:
    """Get (or stop getting) a screen's alerts; False when the screen is not the viewer's to see, or the viewer
    has no identity of their own (a read-only visit or the anonymous API)."""
    if not authenticated(viewer) or screen_book().get(screen_id, viewer) is None:
        return False
    alert_book().subscribe(screen_id, viewer, on)
    return True


def follows(screen_id: str, viewer: str) -> bool:
    screen = screen_book().get(screen_id, viewer)
    return screen is not None and alert_book().subscribed(screen.id, viewer, screen.owner)


def inbox(viewer: str, limit: int = 50, offset: int = 0) -> list[InboxEntry]:
    """The viewer's alerts, newest first, a page at a time."""
    return alert_book().inbox(viewer, limit, offset)


def unread_alerts(viewer: str) -> int:
    """The bell's count (0 when the history database cannot be read: the bell is no reason to fail a page)."""
    try:
        return alert_book().unread(viewer)
    except (OSError, sqlite3.Error) as exc:
        log.warning("alerts unavailable: %r", exc)
        return 0


def mark_alerts_read(viewer: str, entry_ids: list[str] | None = None) -> int:
    return alert_book().mark_read(viewer, entry_ids)


def set_webhook(viewer: str, url: str, slack: bool = False) -> Webhook:
    """The viewer's webhook (InputError for an address outside the allow-list): its secret is in the answer,
    and only there (later answers show a hint)."""
    if not authenticated(viewer):
        raise InputError("A webhook needs an identity of your own (sign in through the server's proxy or a token).")
    return alert_book().set_webhook(viewer, check_url(url), slack)


def rotate_webhook(viewer: str) -> Webhook | None:
    """A new secret (the old one stops signing at once); None when the viewer has no webhook."""
    return alert_book().rotate(viewer)


def webhook(viewer: str) -> Webhook | None:
    return alert_book().webhook(viewer)


def remove_webhook(viewer: str) -> None:
    alert_book().remove_webhook(viewer)


def deliveries(viewer: str, limit: int = 50, offset: int = 0) -> list[Delivery]:
    """The viewer's webhook deliveries and how each went, newest first."""
    return alert_book().deliveries(viewer, limit, offset)


@dataclass(frozen=True)
class TrackRecord:
    """A saved screen's signals' forward returns before its current rule was saved (in sample: what its
    author could see) and since (out of sample), each an event study's summary per horizon."""

    split: pd.Timestamp
    before: pd.DataFrame
    since: pd.DataFrame
    signals_before: int
    signals_since: int
    note: str


def track_record(screen_id: str, viewer: str, horizons: tuple[int, ...] = RECORD_HORIZONS) -> TrackRecord | None:
    """The screen's track record split at the moment its current rule was saved (signals dated on or before
    that day are before; later ones since); None when the screen or its data is not the viewer's."""
    screen = screen_book().get(screen_id, viewer)
    market = None if screen is None else screen_market(screen.data, viewer)
    if screen is None or market is None:
        return None
    matrix = signal_matrix(market, cached_scan(market, screen.rule))[0]
    split_day = pd.Timestamp(screen.saved, unit="s").normalize()
    split = int(market.dates.searchsorted(split_day, side="right"))
    rows = np.arange(matrix.shape[0])[:, None]
    need = 2 * market.close.nbytes + int(np.count_nonzero(matrix)) * len(horizons) * 64
    study = lambda part: forward_returns(market, matrix & part, horizons, random_draws=200)  # noqa: E731
    before = _reserved("track record", need, lambda: study(rows < split))()
    since = _reserved("track record", need, lambda: study(rows >= split))()
    n_since, dates_since = len(since.events), since.events["date"].nunique() if len(since.events) else 0
    note = (
        f"Only {n_since:,} signals on {dates_since:,} dates since saving: too few to say anything yet."
        if n_since < MIN_OUT_OF_SAMPLE
        else f"{n_since:,} signals on {dates_since:,} dates since saving."
    )
    return TrackRecord(split_day, before.summary, since.summary, len(before.events), n_since, note)


# --- runs ------------------------------------------------------------------------------------------------------


def cached_scan(market: Market, rule: str) -> Signals:
    """The rule's signals through the run cache (not listed in the run history: scans run on every keystroke);
    a scan that is computed first reserves its memory from the server's budget."""

    def compute() -> Signals:  # the estimate parses the rule: only a miss pays for it
        need = scan_bytes(market.close.nbytes, indicator_names(rule, market.column_kinds()))
        with server_budget().reserve(need, "scan"):
            signals = scan(market, rule)
        signals.__dict__.pop("_market", None)  # a cached scan must not hold its dataset (faces pass it to .on)
        return signals

    with _one_flight("scan", market, rule, {}):
        signals, _ = run_cache().run("scan", market, rule, {}, compute, record=False)
    return signals


_FLIGHTS: dict[str, threading.Lock] = {}
_FLIGHTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_flight(kind: str, market: Market, rule: str, key: Any) -> Iterator[None]:
    """One computation of a run at a time: a second request for the same run waits, then reads the first's
    result from the cache, rather than computing (and holding the memory of) it twice."""
    name = run_key(kind, market.fingerprint, rule, key)
    with _FLIGHTS_LOCK:
        lock = _FLIGHTS.setdefault(name, threading.Lock())
    try:
        with lock:
            yield
    finally:
        with _FLIGHTS_LOCK:
            if not lock.locked():
                _FLIGHTS.pop(name, None)


def _cached(
    kind: str,
    market: Market,
    rule: str,
    key: Any,
    need: int,
    compute: Callable[[], T],
    summarise: Callable[[T], dict],
    owner: str,
    link: str,
) -> Run[T]:
    run_id = uuid.uuid4().hex[:12]
    with _one_flight(kind, market, rule, key), server_budget().reserve(need, kind):  # a hit's read, a miss's work
        value, hit = run_cache().run(
            kind, market, rule, key, compute, summarise, session=owner, link=link, run_id=run_id
        )
    return Run(value, hit, run_id)


def cached_backtest(
    market: Market, rule: str, params: BacktestParams, owner: str, link: str = "", signals: Any = None
) -> Run[BacktestResult]:
    """A backtest of the rule (or of `signals`, then `rule` names them) with the parameters."""
    entries = cached_scan(market, rule) if signals is None else signals
    count = entries.count if isinstance(entries, Signals) else len(entries)
    return _cached(
        "backtest",
        market,
        rule,
        params,
        backtest_bytes(market.close.nbytes, count),
        lambda: backtest(market, entries, params),
        BacktestResult.key_metrics,
        owner,
        link,
    )


def cached_optimization(
    market: Market,
    rule: str,
    base: BacktestParams,
    grid: dict[str, Any],
    settings: dict[str, Any],
    owner: str,
    link: str = "",
    summary: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> Run[OptimizationRun]:
    """An optimisation (grid, random or TPE; split or walk-forward); `options` are run_optimization's
    (progress, scheduler). One stopped by `should_stop` raises Stopped: a partial result is never cached."""

    def compute() -> OptimizationRun:
        out = run_optimization(market, rule, base, grid, settings, should_stop=should_stop, **options)
        if should_stop is not None and should_stop():
            raise Stopped
        return out

    return _cached(
        "optimize",
        market,
        rule,
        optimization_key(base, grid, settings),
        2 * backtest_bytes(market.close.nbytes),
        compute,
        lambda r: summary or {},
        owner,
        link,
    )


def cached_montecarlo(
    market: Market, rule: str, result: BacktestResult, settings: dict[str, Any], owner: str, link: str = ""
) -> Run[MonteCarloResult]:
    """A Monte Carlo of a backtest's trades (or daily returns)."""
    return _cached(
        "montecarlo",
        market,
        rule,
        montecarlo_settings(result, settings),
        montecarlo_bytes(settings["n_simulations"], len(result.positions)),
        lambda: run_montecarlo(result, settings),
        MonteCarloResult.key_figures,
        owner,
        link,
    )


def cached_events(
    market: Market, rule: str, settings: dict[str, Any], owner: str, link: str = "", signals: Any = None
) -> Run[EventStudy]:
    """The event study of the rule's signals (what each hit did next) with the `events` settings by field name."""
    kwargs = study_settings(settings)
    entries = cached_scan(market, rule) if signals is None else signals
    count = entries.count if isinstance(entries, Signals) else int(np.count_nonzero(entries))
    need = 2 * market.close.nbytes + count * len(kwargs["horizons"]) * 64  # the forward table and the events
    return _cached(
        "events",
        market,
        rule,
        {**kwargs, "horizons": list(kwargs["horizons"])},
        need,
        lambda: forward_returns(market, entries, **kwargs),
        event_figures,
        owner,
        link,
    )


def event_sweep(
    market: Market, rule: str, number: int, values: list[float], horizon: int, settings: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The event study at one horizon over a range of one rule number, its memory reserved (one study at a time)."""
    kwargs = {k: v for k, v in study_settings(settings).items() if k != "horizons"}
    need = 2 * market.close.nbytes + scan_bytes(market.close.nbytes, indicator_names(rule, market.column_kinds()))
    return _reserved("event sweep", need, lambda: sweep(market, rule, number, values, horizon, **kwargs))()


FACTOR_BYTES_PER_CELL = 8 * 6  # the factor, its quantiles, a forward-return table and two rank tables


def factor_study(
    market: Market, factor: str, universe_rule: str | None, horizons: tuple[int, ...], quantiles: int = 5
) -> FactorStudy:
    """A factor's quantile returns and IC on the rule's hits (or the whole universe), its memory reserved."""
    need = FACTOR_BYTES_PER_CELL * market.close.size
    compute = lambda: factor_returns(market, factor, quantiles, horizons, universe_rule)  # noqa: E731
    return _reserved("factor study", need, compute)()


def luck_test(market: Market, result: BacktestResult) -> dict:
    """The rule's trades against random entries with as many trades and the same holding times."""
    return _reserved("luck test", backtest_bytes(market.close.nbytes), lambda: random_entry_test(market, result))()


# --- the run history -----------------------------------------------------------------------------------------


def team_view() -> bool:
    """SCANNER_TEAM_VIEW (default 1): may users see each other's runs on shared data at all?"""
    return os.environ.get("SCANNER_TEAM_VIEW", "1") != "0"


def maker(record: RunRecord) -> str:
    """Who made a run, as teammates know them: the identity's name, else 'anonymous'."""
    return record.session.removeprefix("user:") if authenticated(record.session) else "anonymous"


def _builtin_fingerprints() -> set[str]:
    return {builtin(name).fingerprint for name in BUILTIN}


def visible(record: RunRecord, viewer: str) -> bool:
    """Its maker sees a run; teammates only when its dataset is built in or open to the team under the maker's
    own listing (holding the same bytes gives nobody another user's runs)."""
    if record.session == viewer:
        return True
    if not team_view():
        return False
    return record.fingerprint in _builtin_fingerprints() or dataset_store().open_to_team(
        record.fingerprint[:16], record.session
    )


@dataclass(frozen=True)
class RunsPage:
    runs: list[RunRecord]
    total: int  # runs the viewer may see in this view
    private: int  # teammates' runs on data private to them: counted, never shown


def runs_page(viewer: str, team: bool, limit: int = 50, offset: int = 0) -> RunsPage:
    """A page of the viewer's runs, or (team) of theirs and the teammates' runs they may see, newest first."""
    cache = run_cache()
    if not team or not team_view():
        return RunsPage(cache.runs(viewer, limit=limit, offset=offset), cache.count(viewer), 0)
    window = cache.runs(None, limit=TEAM_WINDOW)
    seen: dict[tuple[str, str], bool] = {}  # (dataset, maker) -> visible: one listing read per pair, not per run

    def shown_to_viewer(record: RunRecord) -> bool:
        pair = (record.fingerprint, record.session)
        if pair not in seen:
            seen[pair] = visible(record, viewer)
        return seen[pair]

    shown = [r for r in window if shown_to_viewer(r)]
    return RunsPage(shown[offset : offset + limit], len(shown), len(window) - len(shown))


def find_run(run_id: str, viewer: str) -> RunRecord | None:
    """A run the viewer may see, by its id; None for an unknown one and for a private one alike."""
    record = run_cache().record(run_id)
    return record if record is not None and visible(record, viewer) else None


READ_FACTOR = 3  # reading a result holds its stored bytes and what they decode to


def run_result(record: RunRecord) -> Any | None:
    """The run's result from the cache (its read reserved from the budget: a result may be hundreds of MB), or
    None when it has left it (size limit)."""
    stored = run_cache().stored_bytes(record.key)
    if stored is None:
        return None
    with server_budget().reserve(READ_FACTOR * stored, "result"):
        return run_cache().get(record.key)


WHATIF_HOURS = 24  # the what-if strip: the user's backtests on the dataset over the last day
WHATIF_MAX = 200  # ... at most this many (the newest)


def whatif_runs(viewer: str, fingerprint: str) -> list[RunRecord]:
    """The viewer's backtests on a dataset over the last day, newest first, a repeat kept once (its newest):
    the what-if strip, kept on the server so a reload, a sleep or another device finds it."""
    since = time.time() - WHATIF_HOURS * 3600
    records = run_cache().runs(viewer, WHATIF_MAX, kind="backtest", fingerprint=fingerprint, since=since)
    newest: dict[str, RunRecord] = {}
    for r in records:
        newest.setdefault(r.key, r)
    return list(newest.values())


def pin_run(run_id: str, viewer: str) -> RunRecord | None:
    """Pin a backtest the viewer may see as their baseline on its dataset; None (nothing pinned) otherwise."""
    record = find_run(run_id, viewer)
    if record is None or record.kind != "backtest":
        return None
    run_cache().pin(viewer, record.fingerprint, record.id)
    return record


def unpin(viewer: str, fingerprint: str) -> None:
    run_cache().pin(viewer, fingerprint, None)


def pinned_run(viewer: str, fingerprint: str) -> RunRecord | None:
    """The viewer's pinned baseline on a dataset, while it exists and they may still see it."""
    run_id = run_cache().pinned(viewer, fingerprint)
    return None if run_id is None else find_run(run_id, viewer)


def reopen_backtest(record: RunRecord, market: Market, viewer: str) -> BacktestResult | None:
    """A backtest's result: from the cache, else run again from its link on the same data; None when the run
    was on other data and has left the cache."""
    value = run_result(record)
    if value is None and record.fingerprint == market.fingerprint:
        values, _ = table.linked_values(dict(parse_qsl(record.link)))
        value = cached_backtest(market, record.rule, params_from_values(values), viewer, record.link).value
    return value


def delete_run(run_id: str, viewer: str) -> bool:
    return run_cache().delete_run(run_id, viewer)


def set_note(run_id: str, viewer: str, note: str) -> bool:
    return run_cache().set_note(run_id, viewer, note)


def history_off() -> str | None:
    """Why there is no run history now ('off' by setting, or the disk's fault), else None."""
    cache = run_cache()
    if cache.directory is None:
        return "The run cache is off (SCANNER_CACHE_DIR is empty), so no history is kept."
    if cache.disabled:
        return f"Caching and run history are off: {cache.disabled}. Runs still work, uncached."
    return None


def cache_off() -> str | None:
    """Why results are not cached now, else None."""
    return run_cache().disabled
