"""Saved screens on the dashboard: save the Scanner's rule on the session's data (its family when it is one),
list the team's screens, and the owner's changes, each through the server wing."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from app import dataset, family, session
from app.identity import upload_refusal, user_id
from engine import InputError
from engine.rules import Screen
from engine.server import service
from engine.server.screens import SavedScreen

log = logging.getLogger("scanner.app")


def data_of_session() -> str | None:
    """What a screen saved now follows: the session's family (its latest version from then on), else its dataset."""
    line = family.current()
    return f"{service.FAMILY_PREFIX}{line.slug}" if line is not None else dataset.data_id()


def save(name: str, note: str, shared: bool) -> str:
    """Save the session's rule as a screen; what happened, in words."""
    refused = upload_refusal()
    data = data_of_session()
    if refused is not None:
        return refused
    if data is None:
        return "Load a dataset first."
    try:
        saved = service.save_screen(name, session.get().rule, data, user_id(), shared, note)
    except InputError as exc:
        return str(exc)
    except OSError as exc:
        return f"The screen could not be saved ({exc})."
    return f"Saved “{saved.name}”: it is on the Screens page{' for the team' if saved.shared else ''}."


def listed() -> list[SavedScreen]:
    try:
        return service.screens().list(user_id())
    except OSError as exc:  # no history database (SCANNER_CACHE_DIR empty) or a disk fault: no screens to show
        log.warning("screens unavailable: %r", exc)
        return []


def mine(screen: SavedScreen) -> bool:
    return screen.owner == user_id()


def today(screen: SavedScreen) -> Screen | None:
    """The screen on the latest bar of its data (None: its data is gone or not open to this user)."""
    try:
        found = service.screen_on(screen.id, user_id())
    except InputError:
        return None
    return None if found is None else found[1]


def track_record(screen: SavedScreen) -> service.TrackRecord | None:
    return service.track_record(screen.id, user_id())


def scanner_link(screen: SavedScreen) -> str:
    """The Scanner on this screen's rule and data (a family: its latest version)."""
    return f"scanner?{urlencode(service.screen_query(screen))}"


def copy(screen: SavedScreen) -> None:
    service.screens().copy(screen.id, user_id())


def delete(screen: SavedScreen) -> None:
    service.delete_screen(screen.id, user_id())


def change(screen: SavedScreen, **changes) -> str | None:
    """The owner's change; the reason when it cannot be made."""
    try:
        done = service.update_screen(screen.id, user_id(), **changes)
    except InputError as exc:
        return str(exc)
    return None if done is not None else "Only the screen's owner can change it; copy it to make your own."
