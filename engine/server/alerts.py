"""Alerts in the server's history database: the queue of family versions to run screens on, who follows which
screen, each user's inbox and webhook, and every webhook delivery with its tries.

Once per screen and bar: a new version is queued (`alert_runs`); the bar's claim (`alert_claims`, keyed by
screen and date), its inbox entries and its queued deliveries are written in one transaction, so a second
version with the same bar, a second process or a restart in the middle of a run adds nothing twice (a run
killed midway is done again at the next start, and the bars it had claimed are skipped). A delivery being sent
is leased: a sender that died leaves it to be tried again once the lease is over. Writes wait out a passing lock
and a full disk with backoff (`retried`); a version queued while the database cannot be written waits in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import open_history, retried

MAX_INBOX = 1_000  # entries kept per user (the oldest go)
MAX_DELIVERIES = 1_000  # delivery log rows kept per user
LEASE_S = 60.0  # a delivery being sent is someone's for this long


@dataclass(frozen=True)
class InboxEntry:
    """One alert as its recipient sees it: the screen, the bar, who entered and left (with the rule's values)."""

    id: str
    screen_id: str
    screen_name: str
    link: dict[str, str]  # the Scanner's query on that bar
    bar: str
    entered: list[dict[str, Any]]
    left: list[dict[str, Any]]
    created: float
    read: bool


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str
    slack: bool
    created: float

    @property
    def hint(self) -> str:
        """What may be shown again after the secret was: its last four characters."""
        return f"…{self.secret[-4:]}"


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: where, what (the JSON body), how it went, and when it is tried next."""

    id: str
    user: str
    screen_name: str
    bar: str
    url: str
    body: str
    status: str  # queued, sending, delivered, failed
    attempts: int
    next_try: float
    last_code: int
    last_error: str
    created: float
    updated: float


@dataclass(frozen=True)
class Alert:
    """What a claimed bar sends: one inbox entry per recipient, and a delivery for each recipient's webhook."""

    screen_id: str
    screen_name: str
    link: dict[str, str]
    bar: str
    entered: list[dict[str, Any]]
    left: list[dict[str, Any]]


def entered_text(rows: list[dict[str, Any]], most: int) -> str:
    """An alert's symbols in words: "AAPL (134.59), META (299.67) and 3 more" (the close when there is one)."""
    names = ", ".join(
        f"{row.get('symbol')}" + (f" ({row['close']:,.2f})" if isinstance(row.get("close"), int | float) else "")
        for row in rows[:most]
    )
    return names + (f" and {len(rows) - most:,} more" if len(rows) > most else "")


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert_runs (family TEXT, version TEXT, created REAL, done INTEGER, "
    "PRIMARY KEY (family, version))",
    "CREATE TABLE IF NOT EXISTS alert_claims (screen_id TEXT, bar TEXT, created REAL, PRIMARY KEY (screen_id, bar))",
    "CREATE TABLE IF NOT EXISTS subscriptions (screen_id TEXT, user TEXT, subscribed INTEGER, "
    "PRIMARY KEY (screen_id, user))",
    "CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY, user TEXT, screen_id TEXT, screen_name TEXT, "
    "link TEXT, bar TEXT, entered TEXT, left_ TEXT, created REAL, read INTEGER)",
    "CREATE INDEX IF NOT EXISTS inbox_by_user ON inbox (user, created)",
    "CREATE TABLE IF NOT EXISTS webhooks (user TEXT PRIMARY KEY, url TEXT, secret TEXT, slack INTEGER, created REAL)",
    "CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, user TEXT, screen_name TEXT, bar TEXT, url TEXT, "
    "body TEXT, status TEXT, attempts INTEGER, next_try REAL, last_code INTEGER, last_error TEXT, created REAL, "
    "updated REAL)",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_try)",
    "CREATE INDEX IF NOT EXISTS deliveries_by_user ON deliveries (user, created)",
)
_DELIVERY = "id, user, screen_name, bar, url, body, status, attempts, next_try, last_code, last_error, created, updated"
_QUEUED = "?, ?, ?, ?, ?, ?, 'queued', 0, ?, 0, '', ?, ?"  # a new delivery: due at once, no try yet


class AlertBook:
    """The alert tables of one SQLite file (WAL: every process of the server shares it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._waiting: deque[tuple[str, str]] = deque(maxlen=10_000)  # versions queued while the disk was down
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            retried(self._create)

    def _create(self) -> None:
        with self._connect() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        return open_history(self.path, "alerts")

    def _write(self, sql: str, args: tuple = ()) -> int:
        """One statement, tried again with the history's backoff when it fails; the rows it changed."""

        def write() -> int:
            with self._lock, self._connect() as db:
                return int(db.execute(sql, args).rowcount)

        return retried(write)

    # --- the queue of versions -------------------------------------------------------------------------------

    def queue(self, family: str, version: str) -> None:
        """A family's new version, for its screens to run on; kept in memory while the database cannot be
        written (written by the next `pending`)."""
        self._waiting.append((family, version))
        with contextlib.suppress(OSError, sqlite3.Error):  # one try in the maker's request; the worker retries
            self._write_waiting()

    def _write_waiting(self) -> None:
        with self._lock, self._connect() as db:
            while self._waiting:
                family, version = self._waiting[0]
                db.execute("INSERT OR IGNORE INTO alert_runs VALUES (?, ?, ?, 0)", (family, version, time.time()))
                self._waiting.popleft()

    def pending(self) -> list[tuple[str, str]]:
        """The queued (family, version) runs not done yet, oldest first."""
        if self._waiting:
            retried(self._write_waiting)
        with self._connect() as db:
            rows = db.execute("SELECT family, version FROM alert_runs WHERE done = 0 ORDER BY created").fetchall()
        return [(str(f), str(v)) for f, v in rows]

    def done(self, family: str, version: str) -> None:
        self._write("UPDATE alert_runs SET done = 1 WHERE family = ? AND version = ?", (family, version))

    # --- claims: once per screen and bar ---------------------------------------------------------------------

    def claimed(self, screen_id: str, bar: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM alert_claims WHERE screen_id = ? AND bar = ?", (screen_id, bar)).fetchone()
        return row is not None

    def claim(self, alert: Alert, recipients: Iterable[str], bodies: dict[str, tuple[str, str]]) -> bool:
        """Claim the screen's bar and, in the same transaction, write the recipients' inbox entries and the
        queued deliveries (`bodies`: user -> (webhook url, body)). False when the bar was claimed before."""
        users = list(dict.fromkeys(recipients))

        def write() -> bool:
            with self._lock, self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    claimed = _write_alert(db, alert, users, bodies, time.time())
                    db.execute("COMMIT" if claimed else "ROLLBACK")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return claimed

        return bool(retried(write))

    # --- who follows a screen --------------------------------------------------------------------------------

    def subscribed(self, screen_id: str, user: str, owner: str) -> bool:
        """Does the user follow the screen? Its owner does until they say otherwise; anyone else once they ask."""
        with self._connect() as db:
            row = db.execute(
                "SELECT subscribed FROM subscriptions WHERE screen_id = ? AND user = ?", (screen_id, user)
            ).fetchone()
        return user == owner if row is None else bool(row[0])

    def subscribe(self, screen_id: str, user: str, on: bool) -> None:
        self._write("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)", (screen_id, user, int(on)))

    def followers(self, screen_id: str, owner: str) -> list[str]:
        """The screen's owner (unless they stopped following) and everyone who asked to follow it."""
        with self._connect() as db:
            rows = dict(
                db.execute("SELECT user, subscribed FROM subscriptions WHERE screen_id = ?", (screen_id,)).fetchall()
            )
        return [u for u in dict.fromkeys([owner, *rows]) if bool(rows.get(u, u == owner))]

    def forget_screen(self, screen_id: str) -> None:
        """A deleted screen: nobody follows it any more (its inbox entries stay with their readers)."""
        self._write("DELETE FROM subscriptions WHERE screen_id = ?", (screen_id,))

    # --- the inbox -------------------------------------------------------------------------------------------

    def inbox(self, user: str, limit: int = 50, offset: int = 0) -> list[InboxEntry]:
        """The user's alerts, newest first, a page at a time."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, screen_id, screen_name, link, bar, entered, left_, created, read FROM inbox "
                "WHERE user = ? ORDER BY bar DESC, created DESC LIMIT ? OFFSET ?",
                (user, max(0, min(limit, MAX_INBOX)), max(0, offset)),
            ).fetchall()
        return [
            InboxEntry(i, s, n, json.loads(k), b, json.loads(e), json.loads(lf), c, bool(r))
            for i, s, n, k, b, e, lf, c, r in rows
        ]

    def unread(self, user: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM inbox WHERE user = ? AND read = 0", (user,)).fetchone()[0])

    def mark_read(self, user: str, entry_ids: Iterable[str] | None = None) -> int:
        """Mark the user's entries read (None: all of them); how many changed."""
        unread = "UPDATE inbox SET read = 1 WHERE user = ? AND read = 0"
        if entry_ids is None:
            return self._write(unread, (user,))
        ids = [str(i)[:40] for i in entry_ids][:MAX_INBOX]
        return self._write(f"{unread} AND id IN ({', '.join('?' * len(ids))})", (user, *ids))

    def trim(self) -> None:
        """Keep each user's newest MAX_INBOX entries and MAX_DELIVERIES delivery rows."""

        for table, most in (("inbox", MAX_INBOX), ("deliveries", MAX_DELIVERIES)):
            self._write(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "  # noqa: S608
                f"(PARTITION BY user ORDER BY created DESC) AS n FROM {table}) WHERE n > ?)",
                (most,),
            )

    # --- webhooks --------------------------------------------------------------------------------------------

    def webhook(self, user: str) -> Webhook | None:
        with self._connect() as db:
            row = db.execute("SELECT url, secret, slack, created FROM webhooks WHERE user = ?", (user,)).fetchone()
        return None if row is None else Webhook(row[0], row[1], bool(row[2]), row[3])

    def set_webhook(self, user: str, url: str, slack: bool) -> Webhook:
        """The user's webhook at an address (checked by the caller); a new secret (shown to them once)."""
        hook = Webhook(url, secrets.token_urlsafe(32), slack, time.time())
        row = (user, url, hook.secret, int(slack), hook.created)
        self._write("INSERT OR REPLACE INTO webhooks VALUES (?, ?, ?, ?, ?)", row)
        return hook

    def rotate(self, user: str) -> Webhook | None:
        """A new secret for the user's webhook (the old one stops signing at once); None: no webhook."""
        old = self.webhook(user)
        return None if old is None else self.set_webhook(user, old.url, old.slack)

    def remove_webhook(self, user: str) -> None:
        self._write("DELETE FROM webhooks WHERE user = ?", (user,))

    # --- deliveries ------------------------------------------------------------------------------------------

    def take_due(self, now: float | None = None, most: int = 8, untried_since: float = math.inf) -> list[Delivery]:
        """Lease the deliveries due now (queued ones, and sending ones whose sender's lease is over) and not tried
        since `untried_since`: the oldest of each user's, `most` users at a time."""
        now = time.time() if now is None else now

        def write() -> list[Delivery]:
            with self._lock, self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                rows = db.execute(
                    f"SELECT {_DELIVERY} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user ORDER BY next_try) "
                    "AS n FROM deliveries WHERE status IN ('queued', 'sending') AND next_try <= ? AND updated < ?) "
                    "WHERE n = 1 ORDER BY next_try LIMIT ?",
                    (now, untried_since, most),
                ).fetchall()
                for row in rows:
                    db.execute(
                        "UPDATE deliveries SET status = 'sending', next_try = ? WHERE id = ?", (now + LEASE_S, row[0])
                    )
                db.execute("COMMIT")
            return [Delivery(*row) for row in rows]

        return list(retried(write))

    def record(self, delivery_id: str, *, status: str, code: int, error: str, next_try: float) -> None:
        """One try's outcome: delivered, failed for good, or queued again for `next_try`."""
        self._write(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_code = ?, last_error = ?, next_try = ?, "
            "updated = ? WHERE id = ?",
            (status, code, error[:300], next_try, time.time(), delivery_id),
        )

    def deliveries(self, user: str, limit: int = 50, offset: int = 0) -> list[Delivery]:
        """The user's delivery log, newest first, a page at a time."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_DELIVERY} FROM deliveries WHERE user = ? ORDER BY created DESC LIMIT ? OFFSET ?",
                (user, max(0, min(limit, MAX_DELIVERIES)), max(0, offset)),
            ).fetchall()
        return [Delivery(*row) for row in rows]


def _write_alert(
    db: sqlite3.Connection, alert: Alert, users: list[str], bodies: dict[str, tuple[str, str]], now: float
) -> bool:
    """The claim, inbox entries and deliveries of one alert in the open transaction; False: claimed before."""
    claim = (alert.screen_id, alert.bar, now)
    if db.execute("INSERT OR IGNORE INTO alert_claims VALUES (?, ?, ?)", claim).rowcount == 0:
        return False
    link, entered, left = json.dumps(alert.link), json.dumps(alert.entered), json.dumps(alert.left)
    for user in users if alert.entered else ():
        entry = (uuid.uuid4().hex[:16], user, alert.screen_id, alert.screen_name, link, alert.bar, entered, left, now)
        db.execute("INSERT INTO inbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", entry)
        if user in bodies:
            url, body = bodies[user]
            delivery = (uuid.uuid4().hex[:16], user, alert.screen_name, alert.bar, url, body, now, now, now)
            db.execute(f"INSERT INTO deliveries ({_DELIVERY}) VALUES ({_QUEUED})", delivery)
    return True
