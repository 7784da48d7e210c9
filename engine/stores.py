"""The server's one dataset store and one run cache, shared by the dashboard and the HTTP API, and what both
read through them: the built-in datasets and cached scans.

Both read the same environment (SCANNER_CACHE_DIR, SCANNER_DATASETS_MB, SCANNER_CACHE_MB), so a dataset
uploaded through the API is on the Data page, and a run made by either is in Runs and served from the cache
to the other. One object per setting and process: their files and SQLite are safe across processes too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .cache import RunCache
from .data import Market
from .datasets import DatasetStore
from .filters import Signals, scan


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
    from .data import load_sample
    from .synthetic import synthetic_market

    return load_sample() if name == "sample" else synthetic_market(200, 2520, seed=7)


def cached_scan(market: Market, rule: str) -> Signals:
    """The rule's signals through the run cache (not listed in the run history: scans run on every keystroke)."""
    signals, _ = run_cache().run("scan", market, rule, {}, lambda: scan(market, rule), record=False)
    return signals
