"""The run cache on a real diskcache directory: hits skip the engine, keys follow content, damage recovers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import backtest, load_market
from engine.cache import RunCache, run_key
from engine.synthetic import synthetic_frame

CSV = synthetic_frame(4, 60, seed=3).to_csv(index=False).encode()


def market_from(data: bytes, name: str = "prices.csv"):
    return load_market(io.BytesIO(data), name=name)


@pytest.fixture
def cache(tmp_path):
    return RunCache(tmp_path / "cache")


def counted_backtest(calls: list):
    def run(market, params):
        calls.append(1)
        return backtest(market, market.close > 0, **params)

    return run


def test_a_repeat_run_comes_from_the_cache_without_running_the_engine(cache):
    m, calls = market_from(CSV), []
    engine = counted_backtest(calls)
    params = {"stop_loss": 3.0, "max_positions": 2}
    first, hit1 = cache.run("backtest", m, "close > 0", params, lambda: engine(m, params))
    again, hit2 = cache.run("backtest", m, "close > 0", params, lambda: engine(m, params))
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert again.trades.equals(first.trades) and again.metrics == first.metrics
    other, hit3 = cache.run("backtest", m, "close > 0", {**params, "stop_loss": 4.0}, lambda: engine(m, params))
    assert not hit3 and len(calls) == 2


def test_the_key_follows_content_not_the_file_name():
    a = market_from(CSV, "a.csv")
    renamed = market_from(CSV, "renamed.csv")
    header_end = CSV.index(b"\n") + 1
    changed = CSV[:header_end] + CSV[header_end:].replace(b".", b".9", 1)  # one more digit in one price
    b = market_from(changed)
    assert run_key("backtest", a.fingerprint, "r", {}) == run_key("backtest", renamed.fingerprint, "r", {})
    assert a.fingerprint != b.fingerprint
    assert run_key("backtest", a.fingerprint, "r", {}) != run_key("backtest", b.fingerprint, "r", {})
    assert run_key("backtest", a.fingerprint, "r", {}) != run_key("backtest", a.fingerprint, "r2", {})


def test_a_corrupt_entry_is_recomputed_not_a_crash(cache, tmp_path):
    m, calls = market_from(CSV), []
    engine = counted_backtest(calls)
    cache.run("backtest", m, "r", {}, lambda: engine(m, {}))
    files = [p for p in (tmp_path / "cache" / "results").rglob("*.val")]
    assert files, "results are stored as files"
    for path in files:
        path.write_bytes(b"not a pickle")
    result, hit = cache.run("backtest", m, "r", {}, lambda: engine(m, {}))
    assert not hit and len(calls) == 2 and result.metrics["n_trades"] >= 0
    _, hit = cache.run("backtest", m, "r", {}, lambda: engine(m, {}))
    assert hit and len(calls) == 2


def test_history_lists_filters_and_deletes_runs_and_the_log_says_hit_or_miss(cache, tmp_path):
    m = market_from(CSV)
    summarise = lambda r: {"total_return_pct": r.metrics["total_return_pct"]}  # noqa: E731
    for session in ("alice", "bob", "alice"):
        cache.run("backtest", m, "r", {"sl": 1}, lambda: backtest(m, m.close > 0), summarise, session=session)
    runs = cache.runs()
    assert [r.session for r in runs] == ["alice", "bob", "alice"] and [r.cache_hit for r in runs] == [True, True, False]
    assert len(cache.runs(session="alice")) == 2
    assert "total_return_pct" in runs[0].metrics and runs[0].params == {"sl": 1}
    cache.delete_run(runs[0].id)
    assert len(cache.runs()) == 2
    lines = [json.loads(line)["run"] for line in Path(tmp_path / "cache" / "runs.log").read_text().splitlines()]
    finishes = [line["cache"] for line in lines if line["event"] == "finish"]
    assert finishes[-3:] == ["miss", "hit", "hit"]


def test_no_directory_means_no_cache_but_runs_still_work():
    m = market_from(CSV)
    cache = RunCache(None)
    _, hit1 = cache.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    _, hit2 = cache.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    assert (hit1, hit2, cache.computed) == (False, False, 2) and cache.runs() == []
