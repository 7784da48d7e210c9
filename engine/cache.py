"""Disk cache of every run, a log of runs, and structured run logs.

A run's key hashes what decides its outcome: the dataset's content fingerprint (never its file name), the
rule, the parameters and the engine version (a hash of the engine's source, so any code change misses).
diskcache makes the store size-limited and safe for several processes; an entry that cannot be read is
dropped and recomputed, never a crash.

    cache = RunCache("~/.cache/scanner")
    result, hit = cache.run("backtest", market, rule, params, lambda: backtest(market, signals, params))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import diskcache

from . import __version__
from .data import Market

log = logging.getLogger("engine.runs")


def _engine_version() -> str:
    h = hashlib.blake2b(digest_size=6)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()}"


ENGINE_VERSION = _engine_version()


def canonical(value: Any) -> Any:
    """Parameters as plain JSON-able data with a stable order (dataclasses, tuples, numpy scalars)."""
    if is_dataclass(value):
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
    """One line of the run history: enough to list, filter and reopen a run."""

    key: str
    kind: str
    data: str
    fingerprint: str
    rule: str
    params: dict
    metrics: dict
    seconds: float
    cache_hit: bool
    session: str = ""
    link: str = ""  # the dashboard's query string that reproduces the run, when it came from the UI
    when: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


class RunCache:
    """Results on disk keyed by run_key, plus the run history. directory=None keeps nothing (compute only)."""

    def __init__(self, directory: str | os.PathLike | None, size_limit_mb: float = 2048) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.computed = 0  # how many runs were computed rather than read (observable in tests)
        self._results = self._runs = None
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Files for every value: a damaged entry then stays one unreadable file, never a damaged database.
        self._results = diskcache.Cache(
            self.directory / "results", size_limit=int(size_limit_mb * 1e6), disk_min_file_size=0
        )
        self._runs = diskcache.Index(str(self.directory / "runs"))
        _attach_log_file(self.directory / "runs.log")

    @classmethod
    def from_env(cls) -> RunCache:
        """SCANNER_CACHE_DIR (default ~/.cache/stock-scanner; empty = no cache), SCANNER_CACHE_MB (2048)."""
        directory = os.environ.get("SCANNER_CACHE_DIR", str(Path.home() / ".cache" / "stock-scanner"))
        return cls(directory or None, float(os.environ.get("SCANNER_CACHE_MB", "2048")))

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
            if self._results is not None:
                self._results.set(key, result)
        seconds = time.perf_counter() - start
        metrics = canonical(summarise(result))
        entry = RunRecord(key, kind, market.name, market.fingerprint, rule, canonical(params), metrics, seconds, hit,
                          session, link)  # fmt: skip
        if self._runs is not None and record:
            self._runs[entry.id] = entry
        log.info(json.dumps({"event": "finish", "kind": kind, "key": key[:16], "cache": "hit" if hit else "miss",
                             "seconds": round(seconds, 4), **metrics}, default=str))  # fmt: skip
        return result, hit

    def get(self, key: str) -> Any | None:
        """The cached result, or None when absent or unreadable (the bad entry is removed)."""
        if self._results is None:
            return None
        try:
            return self._results.get(key)
        except Exception as exc:  # noqa: BLE001 - any damage to an entry means: recompute it
            log.warning(json.dumps({"event": "corrupt_entry", "key": key[:16], "error": repr(exc)[:200]}))
            self._results.delete(key)
            return None

    def runs(self, session: str | None = None) -> list[RunRecord]:
        """The run history, newest first; only one session's runs when `session` is given."""
        if self._runs is None:
            return []
        records = [r for r in self._runs.values() if session is None or r.session == session]
        return sorted(records, key=lambda r: r.when, reverse=True)

    def delete_run(self, run_id: str) -> None:
        """Forget a run (its cached result stays while other runs may share it; eviction handles the rest)."""
        if self._runs is not None:
            self._runs.pop(run_id, None)


def _attach_log_file(path: Path) -> None:
    """One rotating JSON-lines file per cache directory (5 MB x 3), attached once per process."""
    if any(getattr(h, "baseFilename", None) == str(path) for h in log.handlers):
        return
    handler = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter('{"time": "%(asctime)s", "level": "%(levelname)s", "run": %(message)s}'))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
