"""The alert worker: one thread per server process that runs the saved screens of a family on each new version's
new bars and sends the webhook deliveries that are due.

A version is queued when it is made (`FamilyStore.on_version`, wired in engine/server/stores.py); the worker
wakes at once, and every few seconds anyway (for versions another process queued, deliveries whose backoff is
over, and runs a restart interrupted). Each screen's bar is claimed with its inbox entries in one transaction
(engine/server/alerts.py), so it is sent once whatever runs it. Recipients are the screen's followers who may
see it and its family now: a private screen's alerts reach its owner only. Webhook tries run on a few threads
of their own with a timeout: a receiver that never answers holds one of them, never the server.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ..data import Market
from ..errors import InputError
from .admission import ServerBusy
from .alerts import Alert, Delivery
from .datasets import SERVER
from .families import Family
from .screens import FAMILY_PREFIX, SavedScreen
from .settings import dashboard_link
from .stores import alert_book, alerts_due, dataset_store, family_store, screen_book
from .webhooks import after_failure, body, post

log = logging.getLogger("engine.alerts")
POLL_S = 2.0  # the worker looks for work at least this often
MAX_ALERT_BARS = 5  # a version adding more new bars alerts on its newest five (older ones are history, not news)
MAX_ALERT_ROWS = 100  # entered (and left) rows an alert carries
SENDERS = 8  # webhook tries at once (each a different user's)

_wake = alerts_due
_sent = threading.Event()  # deliveries became due
_senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")
_lock = threading.Lock()
_holders = 0  # start() calls not yet stopped: the threads run while there is one
_threads: list[threading.Thread] = []


def start() -> None:
    """Run the worker in this process (its two threads start on the first call; later calls count)."""
    global _holders
    try:
        alert_book()  # its tables are created (and later migrated) as the server starts
    except (OSError, sqlite3.Error) as exc:
        log.error("alert tables unavailable for now: %r", exc)  # the worker's turns try again
    with _lock:
        _holders += 1
        if not any(t.is_alive() for t in _threads):
            _threads[:] = [
                threading.Thread(target=_turns, args=(_wake, run_versions), name="alerts", daemon=True),
                threading.Thread(target=_turns, args=(_sent, deliver_due), name="webhooks", daemon=True),
            ]
            for thread in _threads:
                thread.start()


def stop() -> None:
    """One start() ends (an API app shutting down); the threads end with the last, after their current turn."""
    global _holders
    with _lock:
        _holders = max(0, _holders - 1)
    _wake.set()
    _sent.set()


def poke() -> None:
    """Deliveries are due now."""
    _sent.set()


def _turns(event: threading.Event, work: Callable[[], int]) -> None:
    while True:
        event.wait(POLL_S)
        event.clear()
        with _lock:
            if not _holders:
                return
        if alert_book().path is None:
            continue  # no history database (SCANNER_CACHE_DIR empty): no screens, no alerts
        try:
            work()
        except Exception as exc:  # a fault in one turn (a disk gone) is logged; the next turn tries again
            log.error("alert worker turn failed: %r", exc)  # no traceback: 3.11 parses source lines to draw it


def run_versions() -> int:
    """Run every queued version's screens; how many alerts (screen and bar) were sent. A version whose work
    cannot be done now (the server's memory taken) stays queued for the next turn."""
    book, sent = alert_book(), 0
    for slug, version_id in book.pending():
        try:
            sent += run_version(slug, version_id)
        except ServerBusy:
            continue
        book.done(slug, version_id)
    if sent:
        book.trim()
    return sent


def run_version(slug: str, version_id: str) -> int:
    """Each screen following the family, on the version's new bars (its newest MAX_ALERT_BARS): the symbols
    that entered go to its followers. How many (screen, bar) alerts this call sent."""
    family = family_store().get(slug, SERVER)
    at = None if family is None else family.position(version_id)
    if family is None or at is None or at == 0:
        return 0
    market = dataset_store().get(version_id, viewer=SERVER)
    if market is None:
        return 0
    last = family.versions[at - 1].last_date  # the parent's last bar: what came after it is new
    first = int(market.dates.searchsorted(pd.Timestamp(last), side="right")) if last else 0
    bars = list(range(max(first, len(market.dates) - MAX_ALERT_BARS), len(market.dates)))
    sent = 0
    for screen in screen_book().following(f"{FAMILY_PREFIX}{slug}"):
        sent += _run_screen(screen, family, market, bars)
    return sent


def _run_screen(screen: SavedScreen, family: Family, market: Market, bars: list[int]) -> int:
    from .service import cached_scan, screen_query  # the service wing uses this worker's stores

    book = alert_book()
    todo = [b for b in bars if not book.claimed(screen.id, f"{market.dates[b]:%Y-%m-%d}")]
    if not todo:
        return 0
    try:
        signals = cached_scan(market, screen.rule)
    except ServerBusy:
        raise  # the run waits for the next turn
    except InputError as exc:  # the rule no longer fits the data (a column gone): said in the log, not sent
        log.warning("screen %s skipped on %s: %s", screen.id, family.slug, exc)
        return 0
    readers = [u for u in book.followers(screen.id, screen.owner) if _may_see(u, screen, family)]
    hooks = {u: h for u in readers if (h := book.webhook(u)) is not None}
    sent = 0
    for bar in todo:
        day = f"{market.dates[bar]:%Y-%m-%d}"
        now = signals.on(market.dates[bar], market)
        query = {**screen_query(screen), "on": day}
        alert = Alert(screen.id, screen.name, query, day, _rows(now.entered), _rows(now.left))
        link = dashboard_link("scanner", query)
        bodies = {u: (h.url, body(alert, link, h.slack)) for u, h in hooks.items()}
        if book.claim(alert, readers, bodies) and alert.entered:
            sent += 1
    if sent:
        poke()  # deliveries are due
    return sent


def _may_see(user: str, screen: SavedScreen, family: Family) -> bool:
    """The screen is theirs or shared, and so is its family: a private screen reaches its owner only."""
    return (user == screen.owner or screen.shared) and family_store().get(family.slug, user) is not None


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's first rows as JSON-able objects (numbers rounded to 6 significant digits, NaN as null)."""
    rows = []
    for record in frame.head(MAX_ALERT_ROWS).to_dict("records"):
        rows.append({str(k): _plain(v) for k, v in record.items()})
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value


def deliver_due(now: float | None = None) -> int:
    """Send the deliveries that are due (`now`: the moment to judge that by), at most one per user at a time and
    SENDERS at once, so a receiver that never answers delays the others by one timeout at most; how many were
    tried."""
    tried, started = 0, time.time()
    while due := alert_book().take_due(now, SENDERS, untried_since=started):  # each delivery once a call
        for _ in _senders.map(_try, due):
            pass
        tried += len(due)
    return tried


def _try(delivery: Delivery) -> None:
    book = alert_book()
    hook = book.webhook(delivery.user)
    if hook is None or hook.url != delivery.url:
        book.record(delivery.id, status="failed", code=0, error="the webhook was removed or moved", next_try=0.0)
        return
    code, error = post(hook.url, delivery.body, hook.secret, delivery.id)
    now = time.time()
    if not error:
        book.record(delivery.id, status="delivered", code=code, error="", next_try=now)
    elif 400 <= code < 500 and code not in (408, 429):  # the receiver refuses it: trying again will not help
        book.record(delivery.id, status="failed", code=code, error=error, next_try=now)
    else:
        status, later = after_failure(delivery.attempts + 1, now)
        book.record(delivery.id, status=status, code=code, error=error, next_try=later)
    log.info("webhook %s to %s: %s", delivery.id, delivery.url[:80], error or code)
