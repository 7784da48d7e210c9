"""Bar arrays with room below them, so that appending a few days writes O(new bars) instead of copying the
history. A dataset's (bars x symbols) array is the first rows of a buffer with spare rows; the buffer records
how many rows its newest version shows. An append from that newest version writes into the spare rows and
returns a view of more rows; older versions (views of fewer rows) never change. An append from any other
version, from a window, or past the room copies into a new buffer with room."""

from __future__ import annotations

import threading
import weakref

import numpy as np

_LOCK = threading.Lock()
_SHOWN: dict[int, int] = {}  # id of a registered buffer -> rows its newest version shows


def spare_rows(n_bars: int) -> int:
    """Rows kept below a dataset's bar arrays (1 to 2% of them, at least 16)."""
    return max(16, min(64, n_bars // 50))


def with_room(n_bars: int, n_symbols: int, fill: float = np.nan) -> np.ndarray:
    """A (n_bars x n_symbols) array filled with `fill`, the first rows of a registered buffer with spare rows."""
    buffer = np.full((n_bars + spare_rows(n_bars), n_symbols), fill)
    _register(buffer, n_bars)
    return buffer[:n_bars]


def grown(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`array` with `rows` below it: written into its buffer's room when the array is that buffer's newest
    version (its first rows, as many as the buffer shows), else copied into a new buffer with room."""
    n, k = array.shape[0], rows.shape[0]
    base = array.base
    if (
        isinstance(base, np.ndarray)
        and base.ndim == 2
        and base.shape[1:] == array.shape[1:]
        and base.dtype == array.dtype
        and array.flags.c_contiguous
        and base.__array_interface__["data"][0] == array.__array_interface__["data"][0]
        and base.shape[0] >= n + k
    ):
        with _LOCK:
            claimed = _SHOWN.get(id(base)) == n
            if claimed:
                _SHOWN[id(base)] = n + k
        if claimed:
            base[n : n + k] = rows
            return base[: n + k]
    buffer = np.empty((n + k + spare_rows(n + k), *array.shape[1:]), array.dtype)
    buffer[:n] = array
    buffer[n : n + k] = rows
    _register(buffer, n + k)
    return buffer[: n + k]


def _register(buffer: np.ndarray, shown: int) -> None:
    with _LOCK:
        _SHOWN[id(buffer)] = shown
    weakref.finalize(buffer, _forget, id(buffer))


def _forget(key: int) -> None:
    with _LOCK:
        _SHOWN.pop(key, None)
