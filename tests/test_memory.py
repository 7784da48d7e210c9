"""Memory comes back: shared memos are bounded in bytes and die with the last holder of their dataset."""

from __future__ import annotations

import gc
import weakref

from engine import synthetic_market
from engine.datasets import DatasetStore
from engine.filters import scan
from engine.indicators import _LIVE, indicators_for


def test_a_datasets_memo_and_arrays_are_freed_with_its_last_holder():
    market = synthetic_market(50, 500, seed=4)
    scan(market, "rsi(14) < 30 and close > sma(50) rank by relative_volume(20)")
    memo = weakref.ref(indicators_for(market))
    array = weakref.ref(indicators_for(market).get("sma", 50, "close"))
    assert memo() is not None and array() is not None
    del market
    gc.collect()
    assert memo() is None and array() is None


def test_all_memos_together_stay_within_their_byte_limit(monkeypatch):
    monkeypatch.setenv("SCANNER_MEMO_MB", "2")  # about four 100 x 600 arrays
    markets = [synthetic_market(100, 600, seed=s) for s in range(3)]
    for m in markets:
        for n in (5, 10, 20, 50):
            indicators_for(m).get("sma", n, "close")
    assert sum(memo.nbytes for memo in _LIVE) <= 2 * 2**20
    assert indicators_for(markets[-1]).nbytes > 0  # the dataset in use keeps its newest arrays


def test_the_dataset_store_shares_a_dataset_only_while_someone_holds_it(tmp_path):
    store = DatasetStore(tmp_path)
    info = store.put(synthetic_market(5, 100, seed=1))
    first = store.get(info.id)
    assert store.get(info.id) is first  # two sessions, one copy
    held = weakref.ref(first)
    del first
    gc.collect()
    assert held() is None and store.get(info.id) is not None  # read again from disk when needed
