"""Alerts on the dashboard: the bell's count, the inbox, following a screen and the webhook with its delivery
log, each through the server wing."""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import urlencode

from app.identity import upload_refusal, user_id
from engine import InputError
from engine.server import service
from engine.server.alerts import Delivery, InboxEntry, Webhook, entered_text
from engine.server.screens import SavedScreen
from engine.server.webhooks import BACKOFF_S

log = logging.getLogger("scanner.app")
PAGE_ROWS = 50
BACKOFF_TEXT = ", ".join(f"{s / 60:g} min" if s >= 60 else f"{s:g} s" for s in BACKOFF_S)  # "10 s, 1 min, ..."


def unread() -> int:
    """The bell's count (0 on a read-only visit: it follows nothing)."""
    return 0 if upload_refusal() else service.unread_alerts(user_id())


def entries(page: int = 0) -> list[InboxEntry]:
    try:
        return service.inbox(user_id(), PAGE_ROWS, page * PAGE_ROWS)
    except (OSError, sqlite3.Error) as exc:  # the history cannot be read now: an empty inbox, said in the log
        log.warning("alerts unavailable: %r", exc)
        return []


def seen(shown: list[InboxEntry]) -> None:
    """The entries on screen are read now (the bell counts the others)."""
    ids = [e.id for e in shown if not e.read]
    if ids:
        try:
            service.mark_alerts_read(user_id(), ids)
        except (OSError, sqlite3.Error) as exc:
            log.warning("alerts not marked read: %r", exc)


def entered(entry: InboxEntry, most: int = 12) -> str:
    """'3 entered: AAPL (134.59), META (299.67) and 1 more' for an inbox entry."""
    return f"{len(entry.entered):,} entered: {entered_text(entry.entered, most)}"


def scanner_link(entry: InboxEntry) -> str:
    """The Scanner on the alert's screen, data and bar."""
    return f"scanner?{urlencode(entry.link)}"


def following(screen: SavedScreen) -> bool:
    return not upload_refusal() and service.follows(screen.id, user_id())


def follow(screen: SavedScreen, on: bool) -> str | None:
    """Follow (or stop); the reason when it cannot be done."""
    refused = upload_refusal()
    if refused:
        return refused
    try:
        done = service.follow_screen(screen.id, user_id(), on)
    except (OSError, sqlite3.Error) as exc:
        return f"Could not be saved now ({exc.__class__.__name__}); try again in a minute."
    return None if done else "This screen is no longer open to you."


def webhook() -> Webhook | None:
    return None if upload_refusal() else service.webhook(user_id())


def set_webhook(url: str, slack: bool) -> tuple[Webhook | None, str | None]:
    """(the webhook with its new secret, None) or (None, why not)."""
    refused = upload_refusal()
    if refused:
        return None, refused
    try:
        return service.set_webhook(user_id(), url, slack), None
    except InputError as exc:
        return None, str(exc)


def rotate() -> Webhook | None:
    return service.rotate_webhook(user_id())


def remove() -> None:
    service.remove_webhook(user_id())


def deliveries() -> list[Delivery]:
    return [] if upload_refusal() else service.deliveries(user_id(), PAGE_ROWS)
