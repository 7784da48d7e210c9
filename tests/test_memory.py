"""Memory comes back: shared memos are bounded in bytes and die with the last holder of their dataset."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest

from engine import synthetic_market
from engine.data import DataError
from engine.indicators import _LIVE, indicators_for
from engine.rules import scan
from engine.server.admission import MemoryBudget, ServerBusy
from engine.server.datasets import SERVER, DatasetStore

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_dataset_store_holds_recent_datasets_up_to_its_memo_bytes_and_shares_the_rest_while_held(tmp_path):
    small = synthetic_market(5, 100, seed=1)
    store = DatasetStore(tmp_path, memo_mb=2.5 * small.nbytes / 2**20)  # room for two such datasets
    a, b, c = (store.put(synthetic_market(5, 100, seed=s)).id for s in (1, 2, 3))
    assert store.held_bytes() <= store.memo_bytes and store.held_bytes() == 2 * small.nbytes
    first = store.get(a, viewer=SERVER)  # left the memo: read from disk, then held again
    assert store.get(a, viewer=SERVER) is first  # two requests, one copy
    held = weakref.ref(store.get(c, viewer=SERVER))
    del first
    store.get(a, viewer=SERVER), store.get(b, viewer=SERVER)  # two others push c out of the memo
    gc.collect()
    assert held() is None and store.get(c, viewer=SERVER) is not None  # read again from disk when needed


@pytest.mark.parametrize("n", [1, 5, 10, 20, 40])
def test_a_scan_requests_peak_memory_stays_within_its_estimate(n):
    """The whole request (scan, response, cache write) in a fresh process, 300 symbols x 2,520 bars."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "scan_peak.py"), str(n), "300", "2520"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["peak"] <= 1.5 * measured["estimate"], measured
    assert measured["estimate"] <= 4 * measured["peak"] + 4 * measured["array"], measured  # not a blind guess


def test_work_waits_its_turn_for_memory_then_runs_and_work_larger_than_the_budget_is_refused():
    budget = MemoryBudget(100, max_wait_s=10)
    order, told = [], []
    first = budget.reserve(80, "scan")
    first.__enter__()

    def second() -> None:
        with budget.reserve(50, "backtest", on_wait=told.append):
            order.append("second")

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.3)
    assert order == [] and told == [1]  # queued behind the one run holding 80 of 100
    order.append("first done")
    first.__exit__(None, None, None)
    waiter.join(5)
    assert order == ["first done", "second"] and budget.used == 0 and budget.running == 0
    too_big = pytest.raises(DataError, match=r"more than the server's whole memory budget .*SCANNER_SERVER_MB")
    with too_big, budget.reserve(101, "scan"):
        pass


def test_a_full_queue_or_a_long_wait_is_refused_with_when_to_retry():
    budget = MemoryBudget(100, max_queue=1, max_wait_s=0.3)
    with budget.reserve(100, "grid"):
        with (
            pytest.raises(ServerBusy, match="would wait more than 0 s behind 1 runs") as busy,
            budget.reserve(10, "scan"),
        ):
            pass
        assert busy.value.retry_after_s >= 5 and busy.value.queued_behind >= 1
        blocker = threading.Thread(target=lambda: _quietly(budget, 10, 2.0))
        blocker.start()
        time.sleep(0.1)
        with pytest.raises(ServerBusy, match="already waiting"), budget.reserve(10, "scan", max_wait_s=5):
            pass
        blocker.join()
    assert budget.used == 0 and not budget._queue


def _quietly(budget: MemoryBudget, nbytes: int, wait_s: float) -> None:
    with contextlib.suppress(ServerBusy), budget.reserve(nbytes, "scan", max_wait_s=wait_s):
        pass


def test_the_api_answers_503_with_retry_after_when_the_memory_budget_is_taken(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from engine.server.stores import server_budget

    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SCANNER_SERVER_MB", "64")
    monkeypatch.setenv("SCANNER_QUEUE_WAIT_S", "0.5")
    with TestClient(create_app()) as client, server_budget().reserve(64 * 2**20, "grid"):
        r = client.post("/api/scan", json={"data": "sample", "rule": "rsi(17) < 31"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 5
        assert "server is busy" in r.json()["error"] and r.json()["queued_behind"] >= 1
    with TestClient(create_app()) as client:  # the memory is free again: the same request runs
        assert client.post("/api/scan", json={"data": "sample", "rule": "rsi(17) < 31"}).status_code == 200


def test_runs_of_the_same_size_each_keep_their_own_place_in_the_queue():
    budget = MemoryBudget(100, max_wait_s=10)
    done, told = [], []
    hold = budget.reserve(100, "grid")
    hold.__enter__()

    def run(name: str) -> None:
        with budget.reserve(60, "scan", on_wait=told.append):
            done.append(name)

    waiters = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for w in waiters:
        w.start()
        time.sleep(0.2)
    assert done == [] and len(budget._queue) == 2
    hold.__exit__(None, None, None)
    for w in waiters:
        w.join(5)
    assert done == ["first", "second"] and budget.used == 0 and not budget._queue and 2 in told


def test_four_clients_keep_the_api_process_within_its_256_mb_budget():
    """The load test's small version: a real uvicorn process, two identities, a stored dataset with the dense
    rule; the peak is read from the server process's /proc while the clients run."""
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "load_test_api.py"),
            *("--budgets", "256", "--clients", "4", "--seconds", "12", "--symbols", "300", "--bars", "1500"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])[0]
    assert report["errors"] == 0 and report["mismatches"] == 0 and report["answered_backtests"] > 0, report
    assert report["peak_above_idle_mb"] <= 1.5 * 256, report
