"""The server's one dataset store and one run cache, shared by the dashboard and the HTTP API.

Both read the same environment (SCANNER_CACHE_DIR, SCANNER_DATASETS_MB, SCANNER_CACHE_MB), so a dataset
uploaded through the API is on the Data page, and a run made by either is in Runs and served from the cache
to the other. One object per setting and process: their files and SQLite are safe across processes too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .cache import RunCache
from .datasets import DatasetStore


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
