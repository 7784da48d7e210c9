"""/api/screens: saved screens (private or shared), their matches on a date and their track record. Another
user's private screen is a 404 like an unknown id; only the owner edits or deletes, anyone who sees one may
copy it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from engine.server import service
from engine.server.screens import MAX_NAME_CHARS, MAX_NOTE_CHARS, SavedScreen
from engine.server.settings import dashboard_link

from ..deps import User, user
from ..models import _STRICT, Rule
from ..serialize import records

router = APIRouter(prefix="/api", tags=["screens"], dependencies=[Depends(user)])
MAX_ROWS = 1_000  # rows of matches, entered or left in one answer


class ScreenRequest(BaseModel):
    model_config = _STRICT
    name: str = Field(..., min_length=1, max_length=MAX_NAME_CHARS)
    rule: Rule
    data: str = Field("sample", max_length=80, description="A dataset id, or family:<slug> (its latest version)")
    shared: bool = False
    note: str = Field("", max_length=MAX_NOTE_CHARS)


class ScreenChange(BaseModel):
    model_config = _STRICT
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)
    rule: Rule | None = None
    shared: bool | None = None
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


def _view(screen: SavedScreen) -> dict[str, Any]:
    return {**vars(screen), "link": dashboard_link("scanner", service.screen_query(screen))}


def _found(screen_id: str, who: str) -> SavedScreen:
    screen = service.screens().get(screen_id, who)
    if screen is None:
        raise HTTPException(404, f"No screen `{screen_id[:40]}` you can see (GET /api/screens lists them).")
    return screen


@router.get("/screens")
def list_screens(who: User) -> dict[str, Any]:
    """Your screens and the team's shared ones, newest first."""
    return {"screens": [_view(s) for s in service.screens().list(who)]}


@router.post("/screens", status_code=201)
def save_screen(req: ScreenRequest, who: User) -> dict[str, Any]:
    """Save a screen (its rule checked on its data): private unless `shared`."""
    return _view(service.save_screen(req.name, req.rule, req.data, who, req.shared, req.note))


@router.get("/screens/{screen_id}")
def get_screen(screen_id: str, who: User) -> dict[str, Any]:
    """A screen and its earlier texts (newest first)."""
    screen = _found(screen_id, who)
    return {**_view(screen), "history": [vars(t) for t in service.screens().history(screen.id, who)]}


@router.put("/screens/{screen_id}")
def change_screen(screen_id: str, req: ScreenChange, who: User) -> dict[str, Any]:
    """Change the name, rule, note or sharing (the owner only; the previous text is kept; a new rule starts a
    new period since saving)."""
    _found(screen_id, who)
    changed = service.update_screen(screen_id, who, **req.model_dump(exclude_none=True))
    if changed is None:
        raise HTTPException(403, "Only the screen's owner can change it; copy it to make your own.")
    return _view(changed)


@router.delete("/screens/{screen_id}")
def delete_screen(screen_id: str, who: User) -> dict[str, Any]:
    _found(screen_id, who)
    if not service.delete_screen(screen_id, who):
        raise HTTPException(403, "Only the screen's owner can delete it.")
    return {"deleted": screen_id}


@router.post("/screens/{screen_id}/copy", status_code=201)
def copy_screen(screen_id: str, who: User) -> dict[str, Any]:
    """Your own private copy (its period since saving starts now)."""
    _found(screen_id, who)
    copied = service.screens().copy(screen_id, who)
    assert copied is not None  # the screen was found for this viewer
    return _view(copied)


@router.get("/screens/{screen_id}/matches")
def screen_matches(
    screen_id: str,
    who: User,
    date: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD (default: the latest bar)")] = None,
) -> dict[str, Any]:
    """The screen on one bar of its data: matches ranked, and the symbols that entered and left."""
    _found(screen_id, who)
    found = service.screen_on(screen_id, who, date)
    if found is None:
        raise HTTPException(404, "The screen's data is no longer on this server (or not open to you).")
    screen = found[1]
    return {
        "date": screen.date.strftime("%Y-%m-%d"),
        "matches": records(screen.matches, MAX_ROWS),
        "entered": records(screen.entered, MAX_ROWS),
        "left": records(screen.left, MAX_ROWS),
    }


@router.get("/screens/{screen_id}/track-record")
def screen_track_record(screen_id: str, who: User) -> dict[str, Any]:
    """Forward returns of the screen's signals before its rule was saved (in sample) and since (out of sample)."""
    _found(screen_id, who)
    record = service.track_record(screen_id, who)
    if record is None:
        raise HTTPException(404, "The screen's data is no longer on this server (or not open to you).")
    return {
        "split": record.split.strftime("%Y-%m-%d"),
        "signals_before": record.signals_before,
        "signals_since": record.signals_since,
        "before": records(record.before.reset_index()),
        "since": records(record.since.reset_index()),
        "note": record.note,
    }
