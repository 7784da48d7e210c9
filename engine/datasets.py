"""Datasets stored server-side by content, so that a link naming a dataset reproduces it for anyone on the server.

Each dataset is data-only files under the store's directory: `<id>.parquet` (the bars in long format),
`<id>.json` (name, owner, size, dates, fingerprint, warnings) and, when the load left bad rows out,
`<id>.dropped.parquet` (line, symbol, date, reason of each). The id is a prefix of the content
fingerprint, so the same bars uploaded twice are stored once and a renamed file keeps its id. A read checks
the bars against the fingerprint; a damaged or swapped file is dropped, never trusted. The store is bounded
in bytes: the oldest datasets are evicted first.

    store = DatasetStore("~/.cache/stock-scanner/datasets")
    info = store.put(market, owner="alice")
    store.get(info.id).fingerprint == market.fingerprint
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .data import DataError, Market, market_from_frame

log = logging.getLogger("engine.datasets")
ID_CHARS = 16
BUILTIN = ("sample", "synthetic")
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
    shared: bool = False  # listed for everyone; a link opens a dataset either way
    created: float = field(default_factory=time.time)
    warnings: tuple[str, ...] = ()
    dropped_rows: int = 0  # rows the load left out (bad rows), listed in <id>.dropped.parquet


def to_frame(market: Market, symbols: Sequence[str] | None = None, start: str | None = None,
             end: str | None = None) -> pd.DataFrame:  # fmt: skip
    """The bars in long format (one row per symbol and date with a bar): what the loader reads back.
    Optionally only some symbols (unknown ones are a DataError) and dates from `start` to `end` inclusive."""
    cols = np.arange(len(market.symbols)) if symbols is None else np.array([market.column(s) for s in symbols], int)
    first = 0 if start is None else market.dates.searchsorted(_date(start, "start"), side="left")
    last = len(market.dates) if end is None else market.dates.searchsorted(_date(end, "end"), side="right")
    close = market.close[first:last][:, cols]
    rows, picked = np.nonzero(~np.isnan(close))
    rows, at = rows + first, cols[picked]
    frame = pd.DataFrame(
        {
            "symbol": np.asarray(market.symbols, dtype=object)[at],
            "date": market.dates[rows],
            **{k: getattr(market, k)[rows, at] for k in ("open", "high", "low", "close", "volume")},
        }
    )
    if market.sectors is not None:
        frame["sector"] = np.asarray(market.sectors, dtype=object)[at]
    return frame


def _date(text: str, what: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text)
    except (TypeError, ValueError):
        raise DataError(f"The {what} date {str(text)[:40]!r} is not a date; use YYYY-MM-DD.") from None


class DatasetStore:
    """Datasets on disk by id; directory=None stores nothing (links then work only within a session)."""

    def __init__(self, directory: str | os.PathLike | None, size_limit_mb: float = 2048) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.size_limit = int(size_limit_mb * 1e6)
        # Datasets in use, shared by the sessions that opened them; freed when the last of them ends.
        self._memo: weakref.WeakValueDictionary[str, Market] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, market: Market, owner: str = "") -> DatasetInfo:
        """Store the dataset (once per content) and return its listing; the first uploader owns it."""
        ds_id = dataset_id(market)
        existing = self.info(ds_id)
        if existing is not None or self.directory is None:
            return existing or describe(market, 0, owner)
        parquet = self.directory / f"{ds_id}.parquet"
        tmp = parquet.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        to_frame(market).to_parquet(tmp, index=False, compression="zstd")
        os.replace(tmp, parquet)
        if market.dropped_rows is not None and len(market.dropped_rows):
            market.dropped_rows.astype(str).to_parquet(tmp, index=False)
            os.replace(tmp, self.directory / f"{ds_id}.dropped.parquet")
        info = describe(market, parquet.stat().st_size, owner)
        _write_json(self.directory / f"{ds_id}.json", asdict(info))
        self._remember(ds_id, market)
        self._evict(keep=ds_id)
        return info

    def info(self, ds_id: str) -> DatasetInfo | None:
        if self.directory is None or not _ID.match(ds_id):
            return None
        try:
            raw = json.loads((self.directory / f"{ds_id}.json").read_text())
            raw["warnings"] = tuple(raw.get("warnings", ()))
            info = DatasetInfo(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable dataset listing %s: %r", ds_id, exc)
            return None
        return info if info.id == ds_id and info.fingerprint.startswith(ds_id) else None

    def get(self, ds_id: str) -> Market | None:
        """The dataset, or None when it is unknown, evicted or damaged (a damaged one is removed)."""
        with self._lock:
            market = self._memo.get(ds_id)
        if market is not None:
            return market
        info = self.info(ds_id)
        if info is None:
            return None
        try:
            frame = pd.read_parquet(self.directory / f"{ds_id}.parquet")
            market = market_from_frame(frame, name=info.name)
        except (OSError, ValueError, DataError) as exc:
            log.warning("unreadable dataset %s: %r", ds_id, exc)
            market = None
        if market is None or market.fingerprint != info.fingerprint:
            log.warning("dataset %s does not match its fingerprint; removed", ds_id)
            self._remove(ds_id)
            return None
        market = replace(market, warnings=info.warnings, fingerprint=info.fingerprint,
                         dropped_rows=self.dropped_rows(ds_id) if info.dropped_rows else None)  # fmt: skip
        self._remember(ds_id, market)
        return market

    def dropped_rows(self, ds_id: str) -> pd.DataFrame | None:
        """The rows the load of this dataset left out (line, symbol, date, reason), or None."""
        info = self.info(ds_id)
        if info is None or not info.dropped_rows:
            return None
        try:
            return pd.read_parquet(self.directory / f"{ds_id}.dropped.parquet")
        except (OSError, ValueError) as exc:
            log.warning("unreadable dropped rows of %s: %r", ds_id, exc)
            return None

    def list(self, viewer: str | None = None) -> list[DatasetInfo]:
        """Stored datasets, newest first; with a viewer, only theirs and the shared ones."""
        if self.directory is None:
            return []
        infos = [self.info(p.stem) for p in self.directory.glob("*.json")]
        infos = [i for i in infos if i is not None and (viewer is None or i.shared or i.owner == viewer)]
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def set_shared(self, ds_id: str, user: str, shared: bool) -> bool:
        """List (or stop listing) a dataset for the whole team; only its owner can."""
        info = self.info(ds_id)
        if info is None or info.owner != user:
            return False
        _write_json(self.directory / f"{ds_id}.json", asdict(replace(info, shared=shared)))
        return True

    def delete(self, ds_id: str, user: str) -> bool:
        """Delete a dataset its owner uploaded; False (nothing deleted) for anyone else."""
        info = self.info(ds_id)
        if info is None or info.owner != user:
            return False
        self._remove(ds_id)
        return True

    def _remember(self, ds_id: str, market: Market) -> None:
        with self._lock:
            self._memo[ds_id] = market

    def _remove(self, ds_id: str) -> None:
        with self._lock:
            self._memo.pop(ds_id, None)
        for suffix in (".parquet", ".json", ".dropped.parquet"):
            (self.directory / f"{ds_id}{suffix}").unlink(missing_ok=True)

    def _evict(self, keep: str) -> None:
        """Oldest first until the store fits its size limit (the dataset just stored always stays)."""
        infos = sorted(self.list(), key=lambda i: i.created)
        total = sum(i.bytes for i in infos)
        for info in infos:
            if total <= self.size_limit:
                break
            if info.id != keep:
                self._remove(info.id)
                total -= info.bytes


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
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
