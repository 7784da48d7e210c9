"""The dataset's family on the dashboard: open a family's latest version from a link, say when a newer version
exists, keep the dataset as a family, append a file of recent bars or refresh from the source (each through
the server wing), remembering a refused append's restated bars until the user decides."""

from __future__ import annotations

import logging
from typing import Any

from app import dataset, session
from app.identity import upload_refusal, user_id
from engine import InputError
from engine.data import RestatedHistory
from engine.server import service
from engine.server.families import Family

log = logging.getLogger("scanner.app")


def open_linked(slug: str) -> None:
    """A link's `family=`: its latest version; when it is not this user's to open the pages say so."""
    opened = service.open_family(slug, user_id())
    s = session.get()
    if opened is None:
        s.missing_data = f"family:{slug}"
    else:
        s.market, s.data_id = opened[1], opened[0].latest.id


def current() -> Family | None:
    """The family the session's dataset is a version of, as this user may see it."""
    data_id = dataset.data_id()
    return None if data_id is None else service.family_of(data_id, user_id())


def newer_notice() -> tuple[str, str] | None:
    """('a newer version exists (2 days, 1,214 bars newer)', latest id) when the dataset is an older version."""
    family, data_id = current(), dataset.data_id()
    newer = None if family is None or data_id is None else family.newer_than(data_id)
    if newer is None or family is None:
        return None
    return f"A newer version of {family.name} exists ({newer})", family.latest.id


def may_change(family: Family) -> bool:
    return upload_refusal() is None and service.families().may_change(family, user_id())


def keep_as_family(name: str, source: dict[str, Any] | None) -> str | None:
    """Make the dataset the first version of a new family; the reason when it cannot be."""
    refused = upload_refusal()
    if refused is not None:
        return refused
    market = dataset.require_market()
    try:
        made = service.create_family(name, market, user_id(), source=source)
    except InputError as exc:
        return str(exc)
    except OSError as exc:
        return f"The server cannot store families right now ({exc}); try again later."
    dataset.set_market(market, made.latest.id)  # a built-in dataset becomes the family's stored first version
    return None


def set_source(family: Family, source: dict[str, Any] | None) -> str | None:
    try:
        done = service.set_family_source(family.slug, user_id(), source)
    except InputError as exc:
        return str(exc)
    return None if done else "Only the family's owner can set its source."


def share(family: Family, shared: bool) -> None:
    service.share_family(family.slug, user_id(), shared)


def append_file(family: Family, uploaded, on_restated: str = "refuse") -> str:
    """Append an uploaded file of recent bars; the outcome in words (and the new version in use)."""
    return _changed(family, lambda: service.append_to_family(family.slug, uploaded, user_id(), on_restated))


def refresh(family: Family, partial: bool, on_restated: str, progress) -> str:
    """Refresh from the family's source; the outcome in words (and the new version in use)."""
    work = lambda: service.refresh_family(  # noqa: E731
        family.slug, user_id(), partial=partial, on_restated=on_restated, progress=progress
    )
    return _changed(family, work)


def restated() -> RestatedHistory | None:
    """The last refused append's restated bars, until the user replaces or dismisses them."""
    return session.get().restated


def dismiss_restated() -> None:
    session.get().restated = None


def message() -> str | None:
    """What the last append or refresh did (shown once)."""
    s = session.get()
    text, s.family_message = s.family_message, None
    return text


def _changed(family: Family, work) -> str:
    s = session.get()
    s.restated = None
    s.family_message = _outcome_text(family, work)
    return s.family_message


def _outcome_text(family: Family, work) -> str:
    s = session.get()
    try:
        outcome = work()
    except RestatedHistory as exc:
        s.restated = exc
        return str(exc)
    except InputError as exc:
        return str(exc)
    except Exception:  # a source or loader bug must not take the page down; it is logged for us
        log.exception("unexpected error updating family %s", family.slug)
        return "An unexpected error stopped the update (it has been logged); the family keeps its last version."
    if outcome is None:
        return "Only the family's owner (or the team, for a shared family) can add versions."
    if outcome.changed:
        opened = service.open_family(family.slug, user_id())
        if opened is not None:
            dataset.set_market(opened[1], opened[0].latest.id)
    return outcome.message
