"""The server's one dataset store, one run cache and one memory budget, shared by the dashboard and the HTTP
API, and what both read through them: the built-in datasets and cached scans.

Both read the same environment (SCANNER_CACHE_DIR, SCANNER_DATASETS_MB, SCANNER_CACHE_MB), so a dataset
uploaded through the API is on the Data page, and a run made by either is in Runs and served from the cache
to the other. One object per setting and process: their files and SQLite are safe across processes too.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .budget import MemoryBudget, scan_bytes, server_budget_bytes
from .cache import RunCache
from .data import Market, load_sample
from .datasets import DatasetStore
from .rules import Signals, indicator_names, scan
from .synthetic import synthetic_market

T = TypeVar("T")


def cache_dir() -> Path | None:
    """SCANNER_CACHE_DIR (default ~/.cache/stock-scanner; empty: keep nothing on disk)."""
    directory = os.environ.get("SCANNER_CACHE_DIR", str(Path.home() / ".cache" / "stock-scanner"))
    return Path(directory).expanduser() if directory else None


def dataset_store() -> DatasetStore:
    return _dataset_store(str(cache_dir() or ""), os.environ.get("SCANNER_DATASETS_MB", "2048"))


def run_cache() -> RunCache:
    return _run_cache(str(cache_dir() or ""), os.environ.get("SCANNER_CACHE_MB", "2048"))


@functools.cache
def _dataset_store(directory: str, size_mb: str) -> DatasetStore:
    return DatasetStore(Path(directory) / "datasets" if directory else None, float(size_mb))


@functools.cache
def _run_cache(directory: str, size_mb: str) -> RunCache:
    return RunCache(directory or None, float(size_mb))


@functools.cache
def builtin(name: str) -> Market:
    """A built-in dataset ('sample' or 'synthetic'), loaded once per process."""
    return load_sample() if name == "sample" else synthetic_market(200, 2520, seed=7)


def server_budget() -> MemoryBudget:
    """The process's memory budget (SCANNER_SERVER_MB; a run waits at most SCANNER_QUEUE_WAIT_S, default 60 s)."""
    return _server_budget(server_budget_bytes(), float(os.environ.get("SCANNER_QUEUE_WAIT_S", "60")))


@functools.cache
def _server_budget(total: int, max_wait_s: float) -> MemoryBudget:
    return MemoryBudget(total, max_wait_s=max_wait_s)


def reserved(what: str, nbytes: int, compute: Callable[[], T]) -> Callable[[], T]:
    """compute, run once its estimated bytes are reserved from the server's budget (waiting its turn)."""

    def run() -> T:
        with server_budget().reserve(nbytes, what):
            return compute()

    return run


def cached_scan(market: Market, rule: str) -> Signals:
    """The rule's signals through the run cache (not listed in the run history: scans run on every keystroke);
    a scan that is computed first reserves its memory from the server's budget."""

    def compute() -> Signals:  # the estimate parses the rule: only a miss pays for it
        need = scan_bytes(market.close.nbytes, indicator_names(rule, market.column_kinds()))
        with server_budget().reserve(need, "scan"):
            return scan(market, rule)

    signals, _ = run_cache().run("scan", market, rule, {}, compute, record=False)
    return signals
