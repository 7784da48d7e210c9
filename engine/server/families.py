"""Named families of dataset versions ("PSE daily"): each version is a stored dataset with its own content id
(a link to it reproduces it exactly), and the family records which came from which, when, by whom and how
(upload, append, refresh, fix) with what changed. A link may name the family (`?family=pse-daily`): the
latest version.

One data-only file per family, `<store>/families/<slug>.json`, written atomically under the dataset store's
lock after the version's bars are stored: a crash between the two leaves the family as it was (the orphaned
bars are evicted like any old dataset). Privacy is per family: a private family (and each of its versions)
opens for its owner only, and is indistinguishable from an unknown one to anyone else.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from ..data import AppendReport, Market
from ..files import write_atomically
from .datasets import SERVER, DatasetStore, authenticated, dataset_id

log = logging.getLogger("engine.families")
HOWS = ("upload", "append", "refresh", "fix")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def slug_of(name: str) -> str:
    """'PSE daily' -> 'pse-daily': what a link carries (lower-case letters, digits and dashes)."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    return text or "data"


def valid_slug(text: str) -> bool:
    return bool(_SLUG.match(text))


@dataclass(frozen=True)
class Version:
    """One version: its dataset id, its parent's, when and by whom and how it was made, and what changed."""

    id: str
    parent: str | None
    made: float
    by: str
    how: str
    bars: int
    symbols: int
    last_date: str
    bars_added: int = 0
    symbols_added: tuple[str, ...] = ()
    symbols_gone: tuple[str, ...] = ()
    restated: int = 0  # restated bars replaced by the source's
    note: str = ""


@dataclass(frozen=True)
class Family:
    """A named line of versions (oldest first), its owner and sharing, and where refreshes fetch from."""

    slug: str
    name: str
    owner: str
    shared: bool
    created: float
    versions: tuple[Version, ...]
    source: dict[str, Any] | None = None  # engine.data.sources: kind and settings, never a secret

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def position(self, ds_id: str) -> int | None:
        """Where a version is in the line (0 = the first), or None."""
        return next((i for i, v in enumerate(self.versions) if v.id == ds_id), None)

    def newer_than(self, ds_id: str) -> str | None:
        """What the latest version adds to an older one ('2 days, 1,214 bars newer'), None when it is the latest
        or not of this family."""
        at = self.position(ds_id)
        if at is None or at == len(self.versions) - 1:
            return None
        old, new = self.versions[at], self.latest
        days = _days_between(old.last_date, new.last_date)
        added = sum(v.bars_added for v in self.versions[at + 1 :])
        span = f"{days:,} day{'s' if days != 1 else ''}, " if days else ""
        return f"{span}{added:,} bars newer"


@dataclass
class FamilyStore:
    """Families over a dataset store (which keeps every version's bars)."""

    datasets: DatasetStore
    on_version: Callable[[Family], None] | None = None  # told of each new version (the alerts' queue)
    _index: dict[str, str] = field(default_factory=dict)  # dataset id -> family slug, rebuilt on a miss

    def __post_init__(self) -> None:
        self.datasets.protect(self.latest_ids)

    @property
    def directory(self) -> Path | None:
        return None if self.datasets.directory is None else self.datasets.directory / "families"

    def create(self, name: str, market: Market, owner: str, shared: bool = False, how: str = "upload") -> Family:
        """A new family whose first version is `market`; its slug is the name's, made unique. OSError when the
        store cannot be written."""
        if self.directory is None:
            raise OSError("No dataset store on disk (SCANNER_CACHE_DIR is empty): families need one.")
        info = self.datasets.put(market, owner=owner)
        shared = shared or not authenticated(owner)
        self.datasets.set_shared(info.id, owner, shared)
        version = _version(market, None, owner, how)
        with self.datasets.writing():
            slug = self._free_slug(slug_of(name))
            family = Family(slug, name.strip() or slug, owner, shared, time.time(), (version,))
            self._write(family)
        return family

    def add_version(self, slug: str, market: Market, by: str, how: str, report: AppendReport | None = None) -> Family:
        """The family with `market` as its latest version (by a viewer who may change it). KeyError when the
        family is unknown or not the viewer's to change."""
        family = self.get(slug, by)
        if family is None or not self.may_change(family, by):
            raise KeyError(slug)
        base = family.latest.id if report is not None and report.below else None  # stored as its new bars
        info = self.datasets.put(market, owner=family.owner, base=base)
        self.datasets.set_shared(info.id, family.owner, family.shared)
        version = _version(market, family.latest.id, by, how, report)
        with self.datasets.writing():
            current = self._read(slug)
            if current is None:
                raise KeyError(slug)
            family = replace(current, versions=(*current.versions, version))
            self._write(family)
        if self.on_version is not None:
            self.on_version(family)
        return family

    def may_change(self, family: Family, viewer: str) -> bool:
        """The owner changes a private family; anyone who sees a shared one may add versions to it."""
        return viewer == family.owner or (family.shared and viewer != "") or viewer == SERVER

    def get(self, slug: str, viewer: str) -> Family | None:
        """The family as the viewer may see it, or None (unknown, or private to another user)."""
        family = self._read(slug) if valid_slug(slug) else None
        return family if family is not None and _visible(family, viewer) else None

    def list(self, viewer: str) -> list[Family]:
        """The families the viewer may see, the latest changed first."""
        if self.directory is None or not self.directory.exists():
            return []
        families = [self.get(p.stem, viewer) for p in self.directory.glob("*.json")]
        return sorted((f for f in families if f is not None), key=lambda f: -f.latest.made)

    def of_dataset(self, ds_id: str, viewer: str) -> Family | None:
        """The family a dataset is a version of, as the viewer may see it."""
        slug = self._index.get(ds_id)
        family = self._read(slug) if slug else None
        if family is None or family.position(ds_id) is None:
            self._index = {v.id: f.slug for f in self.list(SERVER) for v in f.versions}
            slug = self._index.get(ds_id)
            family = self._read(slug) if slug else None
        return family if family is not None and _visible(family, viewer) else None

    def set_shared(self, slug: str, user: str, shared: bool) -> bool:
        """Share (or stop sharing) a family and every version of it; only its owner may. False otherwise."""
        family = self.get(slug, user)
        if family is None or family.owner != user or not authenticated(user) and not shared:
            return False
        with self.datasets.writing():
            family = replace(family, shared=shared)
            self._write(family)
        for version in family.versions:
            self.datasets.set_shared(version.id, family.owner, shared)
        return True

    def set_source(self, slug: str, user: str, source: dict[str, Any] | None) -> bool:
        """Where refreshes fetch from (settings only: a credential is named, never stored); owner only."""
        family = self.get(slug, user)
        if family is None or family.owner != user:
            return False
        with self.datasets.writing():
            self._write(replace(family, source=source))
        return True

    def latest_ids(self) -> set[str]:
        """Every family's latest version: kept when the store evicts old datasets."""
        return {f.latest.id for f in self.list(SERVER)}

    # --- files ------------------------------------------------------------------------------------------

    def _free_slug(self, slug: str) -> str:
        assert self.directory is not None
        candidate, n = slug, 1
        while (self.directory / f"{candidate}.json").exists():
            n += 1
            candidate = f"{slug[:58]}-{n}"
        return candidate

    def _read(self, slug: str) -> Family | None:
        if self.directory is None or not valid_slug(slug):
            return None
        try:
            raw = json.loads((self.directory / f"{slug}.json").read_text())
            versions = tuple(
                Version(
                    **{
                        **v,
                        "symbols_added": tuple(v.get("symbols_added", ())),
                        "symbols_gone": tuple(v.get("symbols_gone", ())),
                    }
                )
                for v in raw.pop("versions")
            )
            family = Family(**raw, versions=versions)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable family %s: %r", slug, exc)
            return None
        return family if family.slug == slug and family.versions else None

    def _write(self, family: Family) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.directory / f"{family.slug}.json", json.dumps(asdict(family)).encode())
        self._index.update({v.id: family.slug for v in family.versions})


def _visible(family: Family, viewer: str) -> bool:
    return viewer in (family.owner, SERVER) or family.shared or not authenticated(family.owner)


def _version(market: Market, parent: str | None, by: str, how: str, report: AppendReport | None = None) -> Version:
    if how not in HOWS:
        raise ValueError(f"how is one of {', '.join(HOWS)}; got {how!r}")
    summary = market.summary()
    return Version(
        id=dataset_id(market),
        parent=parent,
        made=time.time(),
        by=by,
        how=how,
        bars=int(summary["bars"]),
        symbols=int(summary["symbols"]),
        last_date=str(summary["last_date"] or ""),
        bars_added=report.bars_added if report else int(summary["bars"]),
        symbols_added=report.symbols_added if report else (),
        symbols_gone=report.symbols_gone if report else (),
        restated=0 if report is None else int(report.restated[["symbol", "date"]].drop_duplicates().shape[0]),
        note=report.summary() if report else "",
    )


def _days_between(a: str, b: str) -> int:
    try:
        return max(0, (date.fromisoformat(b[:10]) - date.fromisoformat(a[:10])).days)
    except ValueError:
        return 0
