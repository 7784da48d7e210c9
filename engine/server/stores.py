"""The server's one dataset store, one run cache and one memory budget, shared by the dashboard and the HTTP
API in one process, and the built-in datasets.

Both read the same environment (SCANNER_CACHE_DIR, SCANNER_DATASETS_MB, SCANNER_CACHE_MB), so a dataset
uploaded through the API is on the Data page, and a run made by either is in Runs and served from the cache
to the other. One object per setting and process: their files and SQLite are safe across processes too.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from ..data import Market, load_sample
from ..synthetic import synthetic_market
from .admission import MB, MemoryBudget, process_bytes, server_budget_bytes
from .alerts import AlertBook
from .cache import RunCache
from .datasets import DatasetStore
from .families import Family, FamilyStore
from .screens import ScreenBook

alerts_due = threading.Event()  # set when a version is queued: the alert worker wakes on it


def cache_dir() -> Path | None:
    """SCANNER_CACHE_DIR (default ~/.cache/stock-scanner; empty: keep nothing on disk)."""
    directory = os.environ.get("SCANNER_CACHE_DIR", str(Path.home() / ".cache" / "stock-scanner"))
    return Path(directory).expanduser() if directory else None


def dataset_store() -> DatasetStore:
    env = os.environ.get
    return _dataset_store(
        str(cache_dir() or ""), env("SCANNER_DATASETS_MB", "2048"), env("SCANNER_DATASET_MEMO_MB", "1024")
    )


def family_store() -> FamilyStore:
    """The families over the one dataset store (versions are its datasets)."""
    return _family_store(dataset_store())


@functools.cache
def _family_store(datasets: DatasetStore) -> FamilyStore:
    return FamilyStore(datasets, on_version=_queue_alerts)


def _queue_alerts(family: Family) -> None:
    """A new version: its family's screens run on its new bars (engine/server/alert_worker.py)."""
    alert_book().queue(family.slug, family.latest.id)
    alerts_due.set()


def alert_book() -> AlertBook:
    """Alerts (queue, inbox, followers, webhooks, deliveries) in the history database beside the run history."""
    return _alert_book(str(cache_dir() or ""))


@functools.cache
def _alert_book(directory: str) -> AlertBook:
    return AlertBook(Path(directory) / "history.sqlite" if directory else None)


def screen_book() -> ScreenBook:
    """Saved screens, in the history database beside the run history (none without a cache directory)."""
    return _screen_book(str(cache_dir() or ""))


@functools.cache
def _screen_book(directory: str) -> ScreenBook:
    return ScreenBook(Path(directory) / "history.sqlite" if directory else None)


def run_cache() -> RunCache:
    return _run_cache(str(cache_dir() or ""), os.environ.get("SCANNER_CACHE_MB", "2048"))


@functools.cache
def _dataset_store(directory: str, size_mb: str, memo_mb: str) -> DatasetStore:
    return DatasetStore(
        Path(directory) / "datasets" if directory else None,
        float(size_mb),
        float(memo_mb),
        admit=lambda nbytes, what: server_budget().reserve(nbytes, what),
    )


@functools.cache
def _run_cache(directory: str, size_mb: str) -> RunCache:
    return RunCache(directory or None, float(size_mb))


@functools.cache
def builtin(name: str) -> Market:
    """A built-in dataset ('sample' or 'synthetic'), loaded once per process."""
    return load_sample() if name == "sample" else synthetic_market(200, 2520, seed=7)


def server_budget() -> MemoryBudget:
    """The process's memory budget (SCANNER_SERVER_MB; a run waits at most SCANNER_QUEUE_WAIT_S, default 60 s),
    admitting work by the process's measured memory as well as the estimates."""
    return _server_budget(server_budget_bytes(), float(os.environ.get("SCANNER_QUEUE_WAIT_S", "60")))


@functools.cache
def _server_budget(total: int, max_wait_s: float) -> MemoryBudget:
    return MemoryBudget(total, max_wait_s=max_wait_s, measure=process_bytes)


__all__ = ["MB", "builtin", "cache_dir", "dataset_store", "run_cache", "server_budget"]
