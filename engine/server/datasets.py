"""Datasets stored server-side by content, so that a link naming a dataset reproduces it for anyone on the server.

Each dataset is data-only files under the store's directory: `<id>.parquet` (the bars in long format),
`<id>.json` (name, owner, size, dates, fingerprint, warnings) and, when the load left bad rows out,
`<id>.dropped.parquet` (line, symbol, date, reason of each). The id is a prefix of the content
fingerprint, so the same bars uploaded twice are stored once and a renamed file keeps its id; each uploader
has a listing of their own (name, sharing), and a private dataset opens for its owner only. A read checks
the bars against the fingerprint; a damaged or swapped file is dropped, never trusted. The store is bounded
in bytes: the oldest datasets are evicted first.

    store = DatasetStore("~/.cache/stock-scanner/datasets")
    info = store.put(market, owner="user:alice")
    store.get(info.id, viewer="user:alice").fingerprint == market.fingerprint
    store.get(info.id, viewer="user:bob") is None     # until alice shares it: store.set_shared(...)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..budget import stored_read_bytes
from ..data import DataError, Market, market_from_frame
from ..files import remove_stale_temporaries, temporary, write_atomically

log = logging.getLogger("engine.datasets")
ID_CHARS = 16
MB = 2**20
SERVER = "server:"  # the store's own view of every dataset (no user's identity has this prefix)
BUILTIN = ("sample", "synthetic")
MAX_CHAIN = 30  # a version stored over at most this many earlier ones (a read joins that many files)
RETAINED = "user:\x00retained"  # holds a deleted dataset's bars while later versions are stored over them
_ID = re.compile(r"^[0-9a-f]{16}$")


def dataset_id(market: Market) -> str:
    return market.fingerprint[:ID_CHARS]


def valid_id(text: str) -> bool:
    """A dataset id as links carry it: a built-in name or 16 lower-case hex digits (nothing path-like)."""
    return text in BUILTIN or bool(_ID.match(text))


@dataclass(frozen=True)
class DatasetInfo:
    """What the Data page lists about a stored dataset."""

    id: str
    name: str
    fingerprint: str
    symbols: int
    bars: int
    first_date: str
    last_date: str
    bytes: int
    owner: str = ""
    shared: bool = False  # listed for the team and open to it (a private dataset opens for its owner only)
    created: float = field(default_factory=time.time)
    warnings: tuple[str, ...] = ()
    dropped_rows: int = 0  # rows the load left out (bad rows), listed in <id>.dropped.parquet
    base: str = ""  # stored as its bars after this dataset's (a family's next version): read as both


def to_frame(
    market: Market, symbols: Sequence[str] | None = None, start: str | None = None, end: str | None = None
) -> pd.DataFrame:
    """The bars in long format (one row per symbol and date with a bar): what the loader reads back.
    Optionally only some symbols (unknown ones are a DataError) and dates from `start` to `end` inclusive."""
    cols = np.arange(len(market.symbols)) if symbols is None else np.array([market.column(s) for s in symbols], int)
    first = 0 if start is None else _position(market.dates, start, "start", "left")
    last = len(market.dates) if end is None else _position(market.dates, end, "end", "right")
    close = market.close[first:last][:, cols]
    rows, picked = np.nonzero(~np.isnan(close))
    rows, at = rows + first, cols[picked]
    frame = pd.DataFrame(
        {
            "symbol": np.asarray(market.symbols, dtype=object)[at],
            "date": market.dates[rows],
            **{k: getattr(market, k)[rows, at] for k in market.bar_arrays()},
        }
    )
    if market.sectors is not None:
        frame["sector"] = np.asarray(market.sectors, dtype=object)[at]
    for name, values in market.extra.items():  # own columns as carried forward; text as categorical labels
        picked = values[rows, at]
        labels = market.categories.get(name)
        frame[name] = (
            picked if labels is None else pd.Categorical.from_codes(np.nan_to_num(picked, nan=-1).astype(int), labels)
        )
    return frame


def _position(dates: pd.DatetimeIndex, text: str, what: str, side: Literal["left", "right"]) -> int:
    """Where a date falls among the bars; a date the data's clock cannot hold (1600, 2500) lies before or after
    all of them: clamped, not an overflow."""
    when = _date(text, what)
    try:
        return int(dates.searchsorted(when, side=side))
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        return 0 if when.year < 1970 else len(dates)


def _date(text: str, what: str) -> pd.Timestamp:
    try:
        when = pd.Timestamp(text)
    except (TypeError, ValueError):
        when = pd.NaT
    if when is pd.NaT:  # an empty value reads as NaT
        raise DataError(f"The {what} date {str(text)[:40]!r} is not a date; use YYYY-MM-DD.")
    return when


def authenticated(owner: str) -> bool:
    """Is this identity authenticated (sign-in, proxy header, API token)? Only such an owner's data can be
    private: a browser cookie or an anonymous API caller proves nothing, so what they upload is shared."""
    return owner.startswith("user:")


@dataclass(frozen=True)
class Listing:
    """One uploader's entry for a stored dataset: their file name, and whether they list it for the team."""

    owner: str
    name: str
    shared: bool
    created: float


class DatasetStore:
    """Datasets on disk by id; directory=None stores nothing (links then work only within a session).

    The bars are stored once per content; each uploader has a listing of their own (name, sharing) in
    `<id>.json`. A dataset is open to a viewer who has a listing, to everyone when some listing is shared or
    owned by an unauthenticated identity, and to nobody else: a private dataset is indistinguishable from an
    unknown one. Deleting a listing keeps the bars while another listing uses them."""

    def __init__(
        self,
        directory: str | os.PathLike | None,
        size_limit_mb: float = 2048,
        memo_mb: float = 1024,
        admit: Callable[[int, str], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.size_limit = int(size_limit_mb * 1e6)
        # Datasets in use, shared by the sessions that opened them; freed when the last of them ends.
        self._memo: weakref.WeakValueDictionary[str, Market] = weakref.WeakValueDictionary()
        # The most recently opened ones, held up to memo_mb so that a request does not read its Parquet again.
        self.memo_bytes = int(memo_mb * MB)
        self._recent: OrderedDict[str, Market] = OrderedDict()
        self._readers: dict[str, threading.Lock] = {}
        # Reading a dataset reserves its memory (the server's budget); the library's own store reads at once.
        self._admit = admit or (lambda nbytes, what: contextlib.nullcontext())
        self._lock = threading.RLock()
        self._tidied = time.monotonic()
        self._protected: Callable[[], set[str]] = set  # ids eviction keeps (every family's latest version)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(self.directory)
            except OSError as exc:  # a broken store degrades (put raises, reads find nothing); it never stops a page
                log.error("dataset store %s unusable: %r", self.directory.name, exc)

    def put(self, market: Market, owner: str = "", base: str | None = None) -> DatasetInfo:
        """Store the bars (once per content) and the owner's listing; returns the owner's view of it. With
        `base` (a stored dataset whose bars are exactly this one's up to its last date: a family's previous
        version) only the bars after it are written, up to MAX_CHAIN deep. OSError when the directory cannot
        be written (the caller keeps the dataset in memory)."""
        ds_id = dataset_id(market)
        if self.directory is None:
            return describe(market, 0, owner)
        listing = Listing(owner, market.name, not authenticated(owner), time.time())
        self.directory.mkdir(parents=True, exist_ok=True)  # a deleted store comes back with the next upload
        self._tidy()
        with self._exclusive():
            facts = self._facts(ds_id)
            if facts is None:
                facts = self._write_bars(market, self._usable_base(base, market))
            listings = {entry.owner: entry for entry in facts[1]}
            if owner in listings:  # the same user again: keep their sharing, take the new name
                listing = replace(listing, shared=listings[owner].shared, created=listings[owner].created)
            listings[owner] = listing
            self._write_facts(facts[0], listings.values())
        self._remember(ds_id, market)
        self._evict(keep=ds_id)
        return _view(facts[0], listing)

    def info(self, ds_id: str, viewer: str) -> DatasetInfo | None:
        """The dataset's listing as `viewer` sees it (their own, else a shared or public one), or None when
        it is unknown or private to others. The viewer is required, so no caller can forget it and see every
        dataset; SERVER (the store's own bookkeeping, tests) sees them all."""
        facts = self._facts(ds_id)
        if facts is None:
            return None
        info, listings = facts
        seen = _visible(listings, viewer)
        return None if seen is None else _view(info, seen)

    def can_open(self, ds_id: str, viewer: str) -> bool:
        return self.info(ds_id, viewer) is not None

    def open_to_team(self, ds_id: str, owner: str) -> bool:
        """Does `owner` list this dataset for the team (shared, or owned by an unauthenticated identity)?"""
        facts = self._facts(ds_id) if valid_id(ds_id) else None
        own = [e for e in facts[1] if e.owner == owner] if facts else []
        return any(e.shared or not authenticated(e.owner) for e in own)

    def exists(self, ds_id: str) -> bool:
        """Whether the server has the dataset at all (never shown to a user who cannot open it)."""
        return self._facts(ds_id) is not None

    def get(self, ds_id: str, viewer: str) -> Market | None:
        """The dataset under the viewer's listing name, or None when it is unknown, evicted, damaged (a
        damaged one is removed) or private to another user."""
        info = self.info(ds_id, viewer)
        if info is None:
            return None
        market = self._held(ds_id)
        if market is None:
            with self._reading(ds_id):  # one read of a dataset at a time: the others then find it held
                market = self._held(ds_id)
                if market is None:
                    with self._admit(self._read_bytes(ds_id), "dataset read"):
                        market = self._read(ds_id, info)
                    if market is None:
                        return None
                    self._remember(ds_id, market)
        return market if market.name == info.name else replace(market, name=info.name)

    def _held(self, ds_id: str) -> Market | None:
        with self._lock:
            market = self._memo.get(ds_id)
            if market is not None and ds_id in self._recent:
                self._recent.move_to_end(ds_id)
            return market

    def _reading(self, ds_id: str) -> threading.Lock:
        with self._lock:
            return self._readers.setdefault(ds_id, threading.Lock())

    def _read_bytes(self, ds_id: str) -> int:
        """What reading the stored bars needs, from the Parquet footer (rows x columns)."""
        facts = self._facts(ds_id)
        rows = columns = 0
        for link in self._chain(facts[0]) if facts else []:
            try:
                meta = pq.ParquetFile(self.directory / f"{link.id}.parquet").metadata  # type: ignore[operator]
            except (OSError, ValueError):
                return 0  # unreadable: _read finds out and removes it
            rows, columns = rows + meta.num_rows, max(columns, meta.num_columns)
        return stored_read_bytes(rows, columns)

    def _read(self, ds_id: str, info: DatasetInfo) -> Market | None:
        assert self.directory is not None
        try:
            chain = self._chain(info)
            if chain[-1].base:
                raise OSError(f"a base of {ds_id} is missing")
            frames = [pd.read_parquet(self.directory / f"{link.id}.parquet") for link in reversed(chain)]
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            del frames
            market = market_from_frame(frame, name=info.name)
        except (OSError, ValueError, DataError) as exc:
            log.warning("unreadable dataset %s: %r", ds_id, exc)
            market = None
        if market is None or market.fingerprint != info.fingerprint:
            log.warning("dataset %s does not match its fingerprint; removed", ds_id)
            self._remove(ds_id)
            return None
        return replace(
            market,
            warnings=info.warnings,
            fingerprint=info.fingerprint,
            dropped_rows=self.dropped_rows(ds_id) if info.dropped_rows else None,
        )

    def dropped_rows(self, ds_id: str) -> pd.DataFrame | None:
        """The rows the load of this dataset left out (line, symbol, date, reason), or None."""
        info = self.info(ds_id, SERVER)
        if info is None or not info.dropped_rows:
            return None
        try:
            return pd.read_parquet(self.directory / f"{ds_id}.dropped.parquet")  # type: ignore[operator]
        except (OSError, ValueError) as exc:
            log.warning("unreadable dropped rows of %s: %r", ds_id, exc)
            return None

    def list(self, viewer: str) -> list[DatasetInfo]:
        """Stored datasets the viewer can open (each once, under their own listing if they have one), newest
        first; SERVER: every dataset."""
        if self.directory is None:
            return []
        infos = [self.info(p.stem, viewer) for p in self.directory.glob("*.json")]
        return sorted((i for i in infos if i is not None), key=lambda i: i.created, reverse=True)

    def set_shared(self, ds_id: str, user: str, shared: bool) -> bool:
        """List (or stop listing) your listing of a dataset for the whole team; False if you have none."""
        return self._change_listing(ds_id, user, lambda entry: replace(entry, shared=shared))

    def delete(self, ds_id: str, user: str) -> bool:
        """Delete your listing; the bars go with the last listing. False (nothing deleted) if you have none."""
        return self._change_listing(ds_id, user, lambda entry: None)

    def _change_listing(self, ds_id: str, user: str, change) -> bool:
        if self.directory is None:
            return False
        with self._exclusive():
            facts = self._facts(ds_id)
            if facts is None or user not in {entry.owner for entry in facts[1]}:
                return False
            listings = [e for e in (change(e) if e.owner == user else e for e in facts[1]) if e is not None]
            if not listings and self._bases_in_use() & {ds_id}:  # later versions are stored over its bars
                listings = [Listing(RETAINED, facts[0].name, False, time.time())]
            if listings:
                self._write_facts(facts[0], listings)
            else:
                self._remove(ds_id)
        return True

    def _bases_in_use(self) -> set[str]:
        """The datasets others are stored over (their bars are part of those): never evicted or removed."""
        return {i.base for i in self.list(SERVER) if i.base}

    def protect(self, ids: Callable[[], set[str]]) -> None:
        """Eviction keeps these datasets (asked when it runs): a family's latest version stays openable."""
        self._protected = ids

    def writing(self) -> AbstractContextManager[None]:
        """The store's one-writer lock, for records kept beside the datasets (families)."""
        return self._exclusive()

    # --- files ------------------------------------------------------------------------------------------

    def _tidy(self) -> None:
        """Remove what crashed writes left, at most once an hour (and when the store opens)."""
        now = time.monotonic()
        if now - self._tidied > 3600 and self.directory is not None:
            self._tidied = now
            remove_stale_temporaries(self.directory)

    @contextlib.contextmanager
    def _exclusive(self):
        """One writer of listings at a time, across threads and processes (the API and the dashboard)."""
        assert self.directory is not None
        with self._lock, open(self.directory / ".listings.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _facts(self, ds_id: str) -> tuple[DatasetInfo, tuple[Listing, ...]] | None:
        """(what the bars are, every listing) from `<id>.json`, or None when unknown or unreadable."""
        if self.directory is None or not _ID.match(ds_id):
            return None
        try:
            raw = json.loads((self.directory / f"{ds_id}.json").read_text())
            listings = tuple(Listing(**entry) for entry in raw.pop("listings", None) or [])
            raw["warnings"] = tuple(raw.get("warnings", ()))
            info = DatasetInfo(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable dataset listing %s: %r", ds_id, exc)
            return None
        if info.id != ds_id or not info.fingerprint.startswith(ds_id):
            return None
        if not listings:  # written before listings: the first uploader's
            listings = (Listing(info.owner, info.name, info.shared, info.created),)
        return info, listings

    def _write_bars(self, market: Market, base: DatasetInfo | None = None) -> tuple[DatasetInfo, tuple[Listing, ...]]:
        assert self.directory is not None
        ds_id = dataset_id(market)
        parquet = self.directory / f"{ds_id}.parquet"
        tmp = temporary(parquet)
        after = None if base is None else str(market.dates[market.dates > pd.Timestamp(base.last_date)][0].date())
        to_frame(market, start=after).to_parquet(tmp, index=False, compression="zstd")
        os.replace(tmp, parquet)
        if market.dropped_rows is not None and len(market.dropped_rows):
            market.dropped_rows.astype(str).to_parquet(tmp, index=False)
            os.replace(tmp, self.directory / f"{ds_id}.dropped.parquet")
        return replace(describe(market, parquet.stat().st_size), base=base.id if base else ""), ()

    def _usable_base(self, base: str | None, market: Market) -> DatasetInfo | None:
        """The base's facts when the new bars can be stored over it: it is stored, not too deep, and ends
        before the market does."""
        facts = self._facts(base) if base else None
        if facts is None or len(self._chain(facts[0])) >= MAX_CHAIN:
            return None
        last = pd.Timestamp(facts[0].last_date)
        return facts[0] if market.dates[-1] > last and last in market.dates else None

    def _chain(self, info: DatasetInfo) -> tuple[DatasetInfo, ...]:
        """The dataset and the bases it is stored over, newest first (a missing one ends the chain short)."""
        chain: tuple[DatasetInfo, ...] = (info,)
        while chain[-1].base and len(chain) <= MAX_CHAIN:
            facts = self._facts(chain[-1].base)
            if facts is None:
                break
            chain = (*chain, facts[0])
        return chain

    def _write_facts(self, info: DatasetInfo, listings) -> None:
        assert self.directory is not None
        _write_json(self.directory / f"{info.id}.json", {**asdict(info), "listings": [asdict(e) for e in listings]})

    def _remember(self, ds_id: str, market: Market) -> None:
        with self._lock:
            self._memo[ds_id] = market
            self._recent[ds_id] = market
            self._recent.move_to_end(ds_id)
            held = sum(m.nbytes for m in self._recent.values())
            while held > self.memo_bytes and len(self._recent) > 1:
                held -= self._recent.popitem(last=False)[1].nbytes

    def held_bytes(self) -> int:
        """Bytes of the datasets this store holds in memory for the next request."""
        with self._lock:
            return sum(m.nbytes for m in self._recent.values())

    def _remove(self, ds_id: str) -> None:
        assert self.directory is not None
        with self._lock:
            self._memo.pop(ds_id, None)
            self._recent.pop(ds_id, None)
        for suffix in (".parquet", ".json", ".dropped.parquet"):
            (self.directory / f"{ds_id}{suffix}").unlink(missing_ok=True)

    def _evict(self, keep: str) -> None:
        """Oldest first until the store fits its size limit (the dataset just stored always stays)."""
        infos = sorted(self.list(SERVER), key=lambda i: i.created)
        total = sum(i.bytes for i in infos)
        protected = (self._protected() | self._bases_in_use()) if total > self.size_limit else set()
        for info in infos:
            if total <= self.size_limit:
                break
            if info.id != keep and info.id not in protected:
                self._remove(info.id)
                total -= info.bytes


def _visible(listings: tuple[Listing, ...], viewer: str) -> Listing | None:
    """The listing a viewer sees: their own, else the first shared or public one; None: not theirs to open."""
    if viewer == SERVER:
        return listings[0]
    own = [e for e in listings if e.owner == viewer]
    open_to_all = [e for e in listings if e.shared or not authenticated(e.owner)]
    return next(iter(own or open_to_all), None)


def _view(info: DatasetInfo, listing: Listing) -> DatasetInfo:
    return replace(info, name=listing.name, owner=listing.owner, shared=listing.shared, created=listing.created)


def describe(market: Market, size: int = 0, owner: str = "") -> DatasetInfo:
    """The listing of a dataset (stored or built in)."""
    summary = market.summary()
    return DatasetInfo(
        id=dataset_id(market),
        name=market.name,
        fingerprint=market.fingerprint,
        symbols=summary["symbols"],
        bars=summary["bars"],
        first_date=summary["first_date"] or "",
        last_date=summary["last_date"] or "",
        bytes=size,
        owner=owner,
        warnings=tuple(market.warnings),
        dropped_rows=0 if market.dropped_rows is None else len(market.dropped_rows),
    )


def _write_json(path: Path, payload: dict) -> None:
    write_atomically(path, json.dumps(payload).encode())
