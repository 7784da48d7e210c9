"""Shared helpers: tiny hand-made markets whose backtests can be computed by hand."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("SCANNER_CACHE_DIR", "")  # tests pass their own tmp_path cache directories
os.environ.setdefault("SCANNER_API_ANONYMOUS", "1")  # most API tests need no tokens; tests of refusals unset it

from engine.data import Market, market_from_frame  # noqa: E402


def bars_market(bars: dict[str, list[tuple[float, float, float, float]]], sectors: dict | None = None) -> Market:
    """Market from {symbol: [(open, high, low, close), ...]} on consecutive business days."""
    rows = []
    for sym, seq in bars.items():
        for i, (o, h, lo, c) in enumerate(seq):
            if o is None:
                continue
            row = {
                "symbol": sym,
                "date": pd.Timestamp("2024-01-01") + pd.offsets.BDay(i),
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": 1000.0,
            }
            if sectors:
                row["sector"] = sectors[sym]
            rows.append(row)
    return market_from_frame(pd.DataFrame(rows))


def flat(n: int, price: float = 100.0) -> list[tuple[float, float, float, float]]:
    return [(price, price, price, price)] * n


def signal_at(market: Market, **bars_by_symbol: list[int]) -> np.ndarray:
    sig = np.zeros(market.shape, bool)
    for sym, bars in bars_by_symbol.items():
        sig[bars, market.column(sym)] = True
    return sig


@pytest.fixture(scope="session")
def sample():
    from engine import load_sample

    return load_sample()


def hold_history_lock(path, seconds: float) -> threading.Thread:
    """Another program holding the history database (`sqlite3 history.sqlite`, BEGIN EXCLUSIVE) for `seconds`:
    returns once the lock is taken; join the thread to wait for its release."""
    locked = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        db.execute("COMMIT")
        db.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    return holder
