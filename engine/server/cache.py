"""Disk cache of every run, the run history, and structured run logs. Nothing on disk is executable.

A run's key hashes what decides its outcome: the dataset's content fingerprint (never its file name), the
rule, the parameters and the engine version (a hash of the engine's source, so any code change misses).
Results are the bytes of `codec.encode` (JSON, NPY without pickle, Parquet; authenticated by a keyed MAC
under a per-install secret and bound to their key) in a diskcache.Cache, size-limited, least recently used
evicted first, with pickle refused both ways; a damaged, planted, forged or swapped entry is a miss. The
history is a SQLite table of JSON fields, kept by count and age; a lock held by another program (a backup,
an `sqlite3` shell) is waited for.

Passing faults pass: a failed write is retried with backoff; a directory that cannot be used (read-only,
full, deleted) turns the disk off with a reason (`RunCache.disabled`) instead of failing runs, and it is
tried again every SCANNER_CACHE_RETRY_S seconds (default 60), so caching comes back by itself. History rows
of the runs made meanwhile wait in memory (at most PENDING_MAX) and are written when it does.

    cache = RunCache("~/.cache/scanner")
    result, hit = cache.run("backtest", market, rule, params, lambda: backtest(market, signals, params))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from ..codec import CodecError, decode, encode
from ..data import Market
from ..version import ENGINE_VERSION
from .settings import MIN_KEY_CHARS, SettingsError, check_secret_file

log = logging.getLogger("engine.runs")
DISK_ERRORS = (OSError, sqlite3.Error)
PENDING_MAX = 1_000  # history rows kept in memory while the disk is down
WRITE_BACKOFF_S = (0.05, 0.25, 1.0)  # waits between the tries of a failed write
T = TypeVar("T")


MAX_NOTE_CHARS = 500  # a run's note


def retry_s() -> float:
    """How long the disk stays off after a fault before it is tried again: SCANNER_CACHE_RETRY_S (60)."""
    return float(os.environ.get("SCANNER_CACHE_RETRY_S", "60"))


def busy_timeout_s() -> float:
    """How long a write waits for a lock on the history: SCANNER_HISTORY_BUSY_S (default 30)."""
    return float(os.environ.get("SCANNER_HISTORY_BUSY_S", "30"))


def open_history(path: Path | None, what: str) -> sqlite3.Connection:
    """A connection to the history database (WAL: every process of the server shares it; a lock is waited for
    SCANNER_HISTORY_BUSY_S). OSError when there is none: `what` (screens, alerts) needs one."""
    if path is None:
        raise OSError(f"No history database (SCANNER_CACHE_DIR is empty): {what} need one.")
    db = sqlite3.connect(path, timeout=busy_timeout_s(), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def retried(action: Callable[[], T]) -> T:
    """A write to the history database, tried again with backoff when a lock outlasts the busy timeout or the
    disk is full; the last error is raised (the caller says what it means for the user)."""
    for wait in WRITE_BACKOFF_S:
        try:
            return action()
        except DISK_ERRORS as exc:
            log.warning(json.dumps({"event": "write_retry", "error": repr(exc)[:200], "wait": wait}))
            time.sleep(wait)
    return action()


def install_secret(directory: Path) -> bytes:
    """The key of the cache's MACs: SCANNER_CACHE_KEY (32 characters at least), else `secret.key` in the cache
    directory, created on first start with mode 0600, whole or not at all (written beside, then linked in: the
    first of several processes or threads to start creates it; the others read it). A key too short, or a file
    another user owns or may read, is refused (OSError: the cache stays off rather than trust it)."""
    given = os.environ.get("SCANNER_CACHE_KEY", "")
    if given:
        if len(given) < MIN_KEY_CHARS:
            raise OSError(f"SCANNER_CACHE_KEY is shorter than {MIN_KEY_CHARS} characters")
        return given.encode()
    path = directory / "secret.key"
    if not path.exists():
        draft = directory / f".secret.key.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        try:
            os.link(draft, path)  # fails if another process linked its own first: then theirs is the secret
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    try:
        check_secret_file(path)
    except SettingsError as exc:
        raise OSError(str(exc)) from None
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise OSError("the cache secret file is too short (damaged?)")
    return secret


def canonical(value: Any) -> Any:
    """Parameters as plain JSON-able data with a stable order (dataclasses, tuples, numpy scalars)."""
    if is_dataclass(value) and not isinstance(value, type):
        return canonical(asdict(value))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def run_key(kind: str, fingerprint: str, rule: str, params: Any) -> str:
    payload = json.dumps([ENGINE_VERSION, kind, fingerprint, rule, canonical(params)], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class RunRecord:
    """One row of the run history: enough to list, filter and reopen a run."""

    key: str
    kind: str
    data: str  # the dataset's name
    fingerprint: str
    rule: str
    params: dict
    metrics: dict
    seconds: float
    cache_hit: bool
    session: str = ""  # the user who made the run (owner)
    link: str = ""  # the dashboard's query string that reproduces the run, when it came from the UI
    when: float = field(default_factory=time.time)
    note: str = ""  # its owner's words (`RunCache.set_note`)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def history_limits() -> tuple[int, float]:
    """(records kept, days kept): SCANNER_HISTORY_MAX (default 10,000) and SCANNER_HISTORY_DAYS (90)."""
    return int(os.environ.get("SCANNER_HISTORY_MAX", "10000")), float(os.environ.get("SCANNER_HISTORY_DAYS", "90"))


class DataOnlyDisk(diskcache.Disk):
    """diskcache's storage with pickle refused both ways: values are the codec's bytes and keys are text, so a
    row that says it holds a pickle (planted by someone who could write the database) is a miss, never
    unpickled."""

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if not isinstance(value, bytes):
            raise CodecError("the result cache stores only the codec's bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise CodecError("a pickled row in the result cache (refused)")
        return super().fetch(mode, filename, value, read)

    def put(self, key: Any) -> Any:
        if not isinstance(key, str):
            raise CodecError("result keys are text")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CodecError("a pickled key in the result cache (refused)")
        return super().get(key, raw)


class ResultStore:
    """Results in a diskcache.Cache under one directory: the codec's bytes, authenticated with the install's
    secret, at most `size_limit` bytes, least recently used evicted first. diskcache keeps the size across
    processes and writes atomically; a damaged, forged or pickled entry is removed and is a miss."""

    def __init__(self, directory: Path, size_limit: int, secret: bytes) -> None:
        self.directory = directory
        self.size_limit = size_limit
        self.secret = secret
        self.cache = diskcache.Cache(
            str(directory),
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            disk=DataOnlyDisk,
            timeout=busy_timeout_s(),
            statistics=False,
            disk_min_file_size=0,  # every result in a file of its own; the database holds the index
        )

    def _present(self) -> None:
        """A deleted directory is a fault, not a cache that still answers from its open database handle."""
        if not self.directory.is_dir():
            raise FileNotFoundError("the results directory is gone")

    def get(self, key: str) -> Any | None:
        self._present()
        try:
            blob = self.cache.get(key)
            if blob is None:
                return None
            return decode(blob, key, self.secret)
        except CodecError as exc:
            log.warning(json.dumps({"event": "bad_entry", "key": key[:16], "error": str(exc)[:200]}))
            self.cache.delete(key)
            return None

    def put(self, key: str, value: Any) -> None:
        try:
            blob = encode(value, key, self.secret)
        except CodecError as exc:  # a type the codec does not store: the run just is not cached
            log.warning(json.dumps({"event": "not_stored", "key": key[:16], "error": str(exc)[:200]}))
            return
        if len(blob) > self.size_limit:
            return  # larger than the whole cache: not worth keeping
        self._present()
        self.cache.set(key, blob)

    def stored_bytes(self, key: str) -> int | None:
        """The size of a stored result without reading it (None: not stored)."""
        self._present()
        handle = self.cache.get(key, read=True)
        if handle is None:
            return None
        with handle:
            return os.fstat(handle.fileno()).st_size

    def volume(self) -> int:
        """Bytes the results take on disk."""
        return int(self.cache.volume())


class History:
    """The run history in SQLite (JSON fields; WAL, so several processes can share it), kept by count and age."""

    COLUMNS = (
        "id",
        "key",
        "kind",
        "data",
        "fingerprint",
        "rule",
        "params",
        "metrics",
        "seconds",
        "cache_hit",
        "session",
        "link",
        "created",
        "note",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, key TEXT, kind TEXT, data TEXT, "
                "fingerprint TEXT, rule TEXT, params TEXT, metrics TEXT, seconds REAL, cache_hit INTEGER, "
                "session TEXT, link TEXT, created REAL)"
            )
            if "note" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:  # a history made before notes
                db.execute("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT ''")
            db.execute("CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session, created)")
            db.execute("CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created)")
            db.execute(  # each user's pinned baseline per dataset: the what-if memory a reload keeps
                "CREATE TABLE IF NOT EXISTS pins (session TEXT, fingerprint TEXT, run_id TEXT, "
                "PRIMARY KEY (session, fingerprint))"
            )

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"the cache directory {self.path.parent} is gone")
        db = sqlite3.connect(self.path, timeout=busy_timeout_s(), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def add(self, r: RunRecord) -> None:
        row = (
            r.id,
            r.key,
            r.kind,
            r.data,
            r.fingerprint,
            r.rule,
            json.dumps(r.params, default=str),
            json.dumps(r.metrics, default=str),
            r.seconds,
            int(r.cache_hit),
            r.session,
            r.link,
            r.when,
            r.note,
        )
        keep, days = history_limits()
        with self._lock, self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(self.COLUMNS))})", row)
            db.execute("DELETE FROM runs WHERE created < ?", (time.time() - days * 86400,))
            db.execute("DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY created DESC LIMIT ?)", (keep,))

    def list(
        self,
        session: str | None = None,
        limit: int = 100,
        offset: int = 0,
        kind: str = "",
        fingerprint: str = "",
        since: float = 0.0,
    ) -> list[RunRecord]:
        """Newest first; only one user's (session), one kind's, one dataset's, or those made since a time."""
        tests: dict[str, Any] = {
            "session = ?": session,
            "kind = ?": kind or None,
            "fingerprint = ?": fingerprint or None,
        }
        tests["created >= ?"] = since or None
        where = [t for t, v in tests.items() if v is not None]
        args = [v for v in tests.values() if v is not None]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(self.COLUMNS)} FROM runs {clause} ORDER BY created DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_record(row) for row in rows]

    def count(self, session: str | None = None) -> int:
        where, args = ("WHERE session = ?", [session]) if session is not None else ("", [])
        with self._connect() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0])

    def get(self, run_id: str) -> RunRecord | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(self.COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

    def owner(self, run_id: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT session FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def delete(self, run_id: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def set_note(self, run_id: str, note: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("UPDATE runs SET note = ? WHERE id = ?", (note, run_id))

    def pin(self, session: str, fingerprint: str, run_id: str | None) -> None:
        """Pin a run as the user's baseline on a dataset (None: unpin)."""
        with self._lock, self._connect() as db:
            if run_id is None:
                db.execute("DELETE FROM pins WHERE session = ? AND fingerprint = ?", (session, fingerprint))
            else:
                db.execute("INSERT OR REPLACE INTO pins VALUES (?, ?, ?)", (session, fingerprint, run_id))

    def pinned(self, session: str, fingerprint: str) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT run_id FROM pins WHERE session = ? AND fingerprint = ?", (session, fingerprint)
            ).fetchone()
        return None if row is None else str(row[0])


def _record(row: tuple) -> RunRecord:
    v = dict(zip(History.COLUMNS, row, strict=True))
    return RunRecord(
        key=v["key"],
        kind=v["kind"],
        data=v["data"],
        fingerprint=v["fingerprint"],
        rule=v["rule"],
        params=json.loads(v["params"]),
        metrics=json.loads(v["metrics"]),
        seconds=v["seconds"],
        cache_hit=bool(v["cache_hit"]),
        session=v["session"],
        link=v["link"],
        when=v["created"],
        id=v["id"],
        note=v["note"] or "",
    )


class RunCache:
    """Results on disk keyed by run_key, plus the run history. directory=None keeps nothing (compute only).
    `disabled` says why the disk is off for now (no path: users read it), else None."""

    def __init__(self, directory: str | os.PathLike | None, size_limit_mb: float = 2048) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.size_limit = int(size_limit_mb * 1e6)
        self.computed = 0  # how many runs were computed rather than read (observable in tests)
        self._off: str | None = None  # why the disk is off for now
        self._results: ResultStore | None = None
        self._history: History | None = None
        self._retry_at = 0.0
        self._pending: deque[RunRecord] = deque(maxlen=PENDING_MAX)
        self._reopen = threading.Lock()
        if self.directory is not None:
            self._open()

    @property
    def active(self) -> bool:
        return self.directory is not None and self.disabled is None

    @property
    def disabled(self) -> str | None:
        """Why the disk is off for now (checked again once the retry wait is over), else None."""
        self._usable()
        return self._off

    def _open(self) -> None:
        """(Re)open the directory: results, history, log; then write the history rows that waited."""
        assert self.directory is not None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._results = ResultStore(self.directory / "results", self.size_limit, install_secret(self.directory))
            self._history = History(self.directory / "history.sqlite")
            _attach_log_file(self.directory / "runs.log")
            while self._pending:
                self._history.add(self._pending[0])
                self._pending.popleft()
        except DISK_ERRORS as exc:
            self._turn_off(exc)
            return
        if self._off is not None:
            log.warning(json.dumps({"event": "cache_on", "after": self._off}))
        self._off = None

    def _turn_off(self, exc: BaseException) -> None:
        """Stop using the disk for a while (and say why, once): runs go on, uncached, and their history waits."""
        if self._off is None:
            self._off = (
                f"the cache directory cannot be used for now ({exc.__class__.__name__}: full, "
                "read-only, locked or missing); it is tried again every minute"
            )
            log.error(json.dumps({"event": "cache_off", "directory": str(self.directory), "error": repr(exc)}))
        self._results = self._history = None
        self._retry_at = time.monotonic() + retry_s()

    def _usable(self) -> bool:
        """Is the disk on? After a fault, retried once the wait is over."""
        if self.directory is None:
            return False
        if self._off is not None and time.monotonic() >= self._retry_at and self._reopen.acquire(blocking=False):
            try:
                self._open()
            finally:
                self._reopen.release()
        return self._off is None

    def run(
        self,
        kind: str,
        market: Market,
        rule: str,
        params: Any,
        compute: Callable[[], Any],
        summarise: Callable[[Any], dict] = lambda r: {},
        session: str = "",
        record: bool = True,
        link: str = "",
        run_id: str | None = None,
    ) -> tuple[Any, bool]:
        """(result, cache hit?). Computes on a miss or an unreadable entry; logs it, and unless record=False
        (scans, which run on every keystroke) adds it to the run history."""
        key = run_key(kind, market.fingerprint, rule, params)
        start = time.perf_counter()
        result = self.get(key)
        hit = result is not None
        if not hit:
            log.info(json.dumps({"event": "start", "kind": kind, "key": key[:16], "data": market.name}))
            result = compute()
            self.computed += 1
            self._write(lambda: self._results.put(key, result) if self._results else None)
        seconds = time.perf_counter() - start
        metrics = canonical(summarise(result))
        if record:
            entry = RunRecord(
                key,
                kind,
                market.name,
                market.fingerprint,
                rule,
                canonical(params),
                metrics,
                seconds,
                hit,
                session,
                link,
            )
            if run_id is not None:
                entry.id = run_id
            if not self._write(lambda: self._history.add(entry) if self._history else None):
                self._pending.append(entry)  # written when the disk is back
        log.info(
            json.dumps(
                {
                    "event": "finish",
                    "kind": kind,
                    "key": key[:16],
                    "cache": "hit" if hit else "miss",
                    "seconds": round(seconds, 4),
                    **metrics,
                },
                default=str,
            )
        )
        return result, hit

    def get(self, key: str) -> Any | None:
        """The cached result, or None when absent, unreadable (then removed) or the cache is off."""
        return self._read(lambda: self._results.get(key) if self._results else None)

    def stored_bytes(self, key: str) -> int | None:
        """The size of a stored result (None: not stored, or the cache is off)."""
        return self._read(lambda: self._results.stored_bytes(key) if self._results else None)

    def runs(self, session: str | None = None, limit: int = 100, offset: int = 0, **where: Any) -> list[RunRecord]:
        """The run history, newest first; only one user's runs when `session` is given; `where`: History.list's
        kind, fingerprint and since."""
        return self._read(lambda: self._history.list(session, limit, offset, **where) if self._history else []) or []

    def record(self, run_id: str) -> RunRecord | None:
        """One row of the history by its id, or None."""
        return self._read(lambda: self._history.get(run_id) if self._history else None)

    def count(self, session: str | None = None) -> int:
        return self._read(lambda: self._history.count(session) if self._history else 0) or 0

    def delete_run(self, run_id: str, user: str) -> bool:
        """Forget a run its owner made; False (nothing deleted) for anyone else."""

        def delete() -> bool:
            if self._history is None or self._history.owner(run_id) != user:
                return False
            self._history.delete(run_id)
            return True

        return bool(self._read(delete))

    def set_note(self, run_id: str, user: str, note: str) -> bool:
        """Write a run's note (at most MAX_NOTE_CHARS, trimmed), only for the user who made it; False (nothing
        written) for anyone else."""
        text = str(note).strip()[:MAX_NOTE_CHARS]

        def write() -> bool:
            if self._history is None or self._history.owner(run_id) != user:
                return False
            self._history.set_note(run_id, text)
            return True

        return bool(self._read(write))

    def pin(self, user: str, fingerprint: str, run_id: str | None) -> bool:
        """Keep (or, with None, drop) the user's pinned baseline on a dataset; False when the disk is off."""
        return self._write(lambda: self._history.pin(user, fingerprint, run_id) if self._history else None)

    def pinned(self, user: str, fingerprint: str) -> str | None:
        """The id of the user's pinned run on a dataset, or None."""
        return self._read(lambda: self._history.pinned(user, fingerprint) if self._history else None)

    def _read(self, action: Callable[[], Any]) -> Any:
        if not self._usable():
            return None
        try:
            return action()
        except DISK_ERRORS as exc:
            self._turn_off(exc)
            return None

    def _write(self, action: Callable[[], None]) -> bool:
        """Try a write, again with backoff when it fails; True when it was done."""
        for wait in (*WRITE_BACKOFF_S, None):
            if not self._usable():
                return False
            try:
                action()
                return True
            except DISK_ERRORS as exc:
                if wait is None:
                    self._turn_off(exc)
                    return False
                log.warning(json.dumps({"event": "write_retry", "error": repr(exc)[:200], "wait": wait}))
                time.sleep(wait)
        return False


def _attach_log_file(path: Path) -> None:
    """One rotating JSON-lines file per cache directory (5 MB x 3), attached once per process."""
    if any(getattr(h, "baseFilename", None) == str(path) for h in log.handlers):
        return
    handler = _QuietFileHandler(path, maxBytes=5_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter('{"time": "%(asctime)s", "level": "%(levelname)s", "run": %(message)s}'))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class _QuietFileHandler(RotatingFileHandler):
    """A log file that cannot be written (directory gone, disk full) costs the log line, never the run."""

    def handleError(self, record: logging.LogRecord) -> None:  # logging's name
        pass
