"""Saved screens in the server's history database (beside the run history): a name, the rule (with its rank),
the data it follows (a family, whose latest version is used, or one dataset), a note, the owner, private or
shared, and the moment its current text was saved. Every change keeps the previous text (a screen's history);
a change of rule starts a new out-of-sample period. A private screen is its owner's alone: to anyone else it
is unknown, like an id that does not exist. Only the owner edits or deletes; others may copy.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from .cache import open_history, retried
from .datasets import authenticated

MAX_NAME_CHARS = 80
MAX_NOTE_CHARS = 500
MAX_SCREENS = 500  # per owner: a bounded list for every face
FAMILY_PREFIX = "family:"  # a screen's data naming a family follows its latest version


@dataclass(frozen=True)
class SavedScreen:
    id: str
    owner: str
    name: str
    rule: str
    data: str  # a family (FAMILY_PREFIX and its slug: "family:pse-daily") or a dataset id
    note: str
    shared: bool
    saved: float  # when the current rule was saved: the track record's split
    created: float


@dataclass(frozen=True)
class ScreenText:
    """An earlier text of a screen, kept when it changed."""

    name: str
    rule: str
    note: str
    saved: float
    replaced: float


_COLUMNS = ("id", "owner", "name", "rule", "data", "note", "shared", "saved", "created")


class ScreenBook:
    """The screens table of one SQLite file (WAL: the dashboard and the API share it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:  # created (and later migrated) when the server starts
            db.execute(
                "CREATE TABLE IF NOT EXISTS screens (id TEXT PRIMARY KEY, owner TEXT, name TEXT, rule TEXT, "
                "data TEXT, note TEXT, shared INTEGER, saved REAL, created REAL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS screens_by_owner ON screens (owner, created)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS screen_texts (screen_id TEXT, name TEXT, rule TEXT, note TEXT, "
                "saved REAL, replaced REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return open_history(self.path, "screens")

    def save(
        self,
        owner: str,
        name: str,
        rule: str,
        data: str,
        note: str = "",
        shared: bool = False,
        when: float | None = None,
    ) -> SavedScreen:
        """A new screen (`when`: the moment it counts as saved; now unless a test says otherwise)."""
        now = time.time() if when is None else when
        screen = SavedScreen(
            uuid.uuid4().hex[:16],
            owner,
            _clip(name, MAX_NAME_CHARS) or "screen",
            rule.strip(),
            data,
            _clip(note, MAX_NOTE_CHARS),
            shared or not authenticated(owner),
            now,
            now,
        )

        def write() -> int:
            with self._lock, self._connect() as db:
                (count,) = db.execute("SELECT COUNT(*) FROM screens WHERE owner = ?", (owner,)).fetchone()
                if count < MAX_SCREENS:
                    db.execute(f"INSERT INTO screens VALUES ({', '.join('?' * len(_COLUMNS))})", _row(screen))
                return int(count)

        count = retried(write)
        if count >= MAX_SCREENS:
            raise OSError(f"You have {count:,} screens, the most one user keeps; delete one to save another.")
        return screen

    def following(self, data: str) -> list[SavedScreen]:
        """Every screen on this data (a family's `family:<slug>`), whoever owns it: the alert worker's list."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM screens WHERE data = ?", (data,)).fetchall()
        return [_screen(row) for row in rows]

    def get(self, screen_id: str, viewer: str) -> SavedScreen | None:
        """The screen when the viewer may see it (their own, or shared), else None."""
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM screens WHERE id = ?", (screen_id[:40],)).fetchone()
        screen = None if row is None else _screen(row)
        return screen if screen is not None and _visible(screen, viewer) else None

    def list(self, viewer: str) -> list[SavedScreen]:
        """The viewer's screens and the team's shared ones, newest first."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM screens WHERE owner = ? OR shared = 1 ORDER BY created DESC "
                "LIMIT ?",
                (viewer, MAX_SCREENS * 4),
            ).fetchall()
        return [s for s in map(_screen, rows) if _visible(s, viewer)]

    def update(
        self,
        screen_id: str,
        viewer: str,
        *,
        name: str | None = None,
        rule: str | None = None,
        note: str | None = None,
        shared: bool | None = None,
        when: float | None = None,
    ) -> SavedScreen | None:
        """The owner's change (None: not theirs). The previous text is kept; a new rule restarts the period
        since saving."""
        old = self.get(screen_id, viewer)
        if old is None or old.owner != viewer:
            return None
        now = time.time() if when is None else when
        new = replace(
            old,
            name=old.name if name is None else _clip(name, MAX_NAME_CHARS) or old.name,
            rule=old.rule if rule is None else rule.strip(),
            note=old.note if note is None else _clip(note, MAX_NOTE_CHARS),
            shared=old.shared if shared is None else (shared or not authenticated(viewer)),
        )
        if new.rule != old.rule:
            new = replace(new, saved=now)

        def write() -> None:
            with self._lock, self._connect() as db:
                db.execute("BEGIN IMMEDIATE")  # the old text kept and the new one written, or neither
                if (new.name, new.rule, new.note) != (old.name, old.rule, old.note):
                    db.execute(
                        "INSERT INTO screen_texts VALUES (?, ?, ?, ?, ?, ?)",
                        (old.id, old.name, old.rule, old.note, old.saved, now),
                    )
                db.execute(
                    "UPDATE screens SET name = ?, rule = ?, note = ?, shared = ?, saved = ? WHERE id = ?",
                    (new.name, new.rule, new.note, int(new.shared), new.saved, old.id),
                )
                db.execute("COMMIT")

        retried(write)
        return new

    def history(self, screen_id: str, viewer: str) -> tuple[ScreenText, ...]:
        """The screen's earlier texts, newest first (empty when the viewer may not see it)."""
        if self.get(screen_id, viewer) is None:
            return ()
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, rule, note, saved, replaced FROM screen_texts WHERE screen_id = ? ORDER BY replaced DESC",
                (screen_id,),
            ).fetchall()
        return tuple(ScreenText(*row) for row in rows)

    def delete(self, screen_id: str, viewer: str) -> bool:
        screen = self.get(screen_id, viewer)
        if screen is None or screen.owner != viewer:
            return False

        def write() -> None:
            with self._lock, self._connect() as db:
                db.execute("DELETE FROM screens WHERE id = ?", (screen.id,))
                db.execute("DELETE FROM screen_texts WHERE screen_id = ?", (screen.id,))

        retried(write)
        return True

    def copy(self, screen_id: str, viewer: str) -> SavedScreen | None:
        """The viewer's own copy (private, saved now: its out-of-sample period starts with the copy)."""
        screen = self.get(screen_id, viewer)
        if screen is None:
            return None
        return self.save(viewer, f"{screen.name} (copy)", screen.rule, screen.data, screen.note)


def _visible(screen: SavedScreen, viewer: str) -> bool:
    return screen.owner == viewer or screen.shared


def _clip(text: str, most: int) -> str:
    return " ".join(str(text).split())[:most]


def _row(screen: SavedScreen) -> tuple:
    return (*(getattr(screen, c) for c in _COLUMNS[:6]), int(screen.shared), screen.saved, screen.created)


def _screen(row: tuple) -> SavedScreen:
    values = dict(zip(_COLUMNS, row, strict=True))
    return SavedScreen(**{**values, "shared": bool(values["shared"])})
