"""The run cache on a real directory: hits skip the engine, keys follow content, nothing on disk runs code,
damage is a miss, and a directory that cannot be written turns caching off instead of failing runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import backtest, load_market
from engine.server.cache import RunCache, run_key
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
    assert files, "results are stored as files (diskcache's value files)"
    for path in files:
        path.write_bytes(path.read_bytes()[:-100])  # truncated
    result, hit = cache.run("backtest", m, "r", {}, lambda: engine(m, {}))
    assert not hit and len(calls) == 2 and result.metrics["n_trades"] >= 0
    _, hit = cache.run("backtest", m, "r", {}, lambda: engine(m, {}))
    assert hit and len(calls) == 2


def test_history_lists_filters_and_deletes_runs_and_the_log_says_hit_or_miss(cache, tmp_path):
    m = market_from(CSV)
    summarise = lambda r: {"total_return_pct": r.metrics["total_return_pct"]}
    for session in ("alice", "bob", "alice"):
        cache.run("backtest", m, "r", {"sl": 1}, lambda: backtest(m, m.close > 0), summarise, session=session)
    runs = cache.runs()
    assert [r.session for r in runs] == ["alice", "bob", "alice"] and [r.cache_hit for r in runs] == [True, True, False]
    assert len(cache.runs(session="alice")) == 2
    assert "total_return_pct" in runs[0].metrics and runs[0].params == {"sl": 1}
    assert cache.delete_run(runs[0].id, "bob") is False and len(cache.runs()) == 3  # only the owner deletes
    assert cache.delete_run(runs[0].id, "alice") is True and len(cache.runs()) == 2
    lines = [json.loads(line)["run"] for line in Path(tmp_path / "cache" / "runs.log").read_text().splitlines()]
    finishes = [line["cache"] for line in lines if line["event"] == "finish"]
    assert finishes[-3:] == ["miss", "hit", "hit"]


def test_no_directory_means_no_cache_but_runs_still_work():
    m = market_from(CSV)
    cache = RunCache(None)
    _, hit1 = cache.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    _, hit2 = cache.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    assert (hit1, hit2, cache.computed) == (False, False, 2) and cache.runs() == []


class Boom:
    """Pickling this runs `touch <marker>` when unpickled: what a planted cache file would try."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickles_in_every_cache_file_run_nothing(tmp_path):
    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    cache.run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    marker = tmp_path / "pwned"
    bomb = pickle.dumps(Boom(marker))
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert any(p.suffix == ".val" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for path in files:
        path.write_bytes(bomb)
    again = RunCache(tmp_path / "cache")  # a fresh process reading the planted directory
    result, hit = again.run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    again.runs()
    assert not marker.exists() and not hit and result.metrics["n_trades"] >= 0


def test_an_entry_copied_over_another_is_a_miss_not_the_wrong_result(tmp_path):
    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    engine = counted_backtest(calls)
    cache.run("backtest", m, "r", {"stop_loss": 2.0}, lambda: engine(m, {"stop_loss": 2.0}))
    cache.run("backtest", m, "r", {"stop_loss": 4.0}, lambda: engine(m, {"stop_loss": 4.0}))
    a, b = (run_key("backtest", m.fingerprint, "r", p) for p in ({"stop_loss": 2.0}, {"stop_loss": 4.0}))
    store = results_of(tmp_path / "cache")
    store[a] = store[b]  # b's bytes under a's key, as a copy of its file would put them
    result, hit = cache.run("backtest", m, "r", {"stop_loss": 2.0}, lambda: engine(m, {"stop_loss": 2.0}))
    assert not hit and result.params.stop_loss == 2.0


def results_of(directory: Path):
    """The result store's diskcache, opened as someone with write access to the directory would."""
    import diskcache

    from engine.server.cache import DataOnlyDisk

    return diskcache.Cache(str(directory / "results"), disk=DataOnlyDisk)


def test_a_row_planted_as_a_pickle_is_refused_never_unpickled(tmp_path):
    import sqlite3

    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    cache.run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    key = run_key("backtest", m.fingerprint, "r", {})
    marker = tmp_path / "pwned"
    db = sqlite3.connect(tmp_path / "cache" / "results" / "cache.db")
    with db:  # diskcache's own row, rewritten to say "a pickle" with a pickle bomb as the value
        db.execute("UPDATE Cache SET mode = 4, filename = NULL, value = ? WHERE key = ?",
                   (pickle.dumps(Boom(marker)), key))  # fmt: skip
        db.execute("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, "
                   "mode, filename, value) VALUES (?, 0, 0, NULL, 0, 0, NULL, 0, 4, NULL, ?)",
                   (pickle.dumps(Boom(marker)), pickle.dumps(Boom(marker))))  # fmt: skip
    db.close()
    again = RunCache(tmp_path / "cache")
    result, hit = again.run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    assert not marker.exists() and not hit and result.metrics["n_trades"] >= 0 and len(calls) == 2


def test_every_result_kind_round_trips_through_the_codec(sample):
    from engine import BacktestParams
    from engine.codec import decode, encode
    from engine.montecarlo import monte_carlo, trade_returns
    from engine.optimize import in_out_of_sample, walk_forward
    from engine.rules import scan

    signals = scan(sample, "rsi(14) < 40 rank by volume")
    result = backtest(sample, signals, stop_loss=4.0, max_positions=2)  # some signals skipped: events
    mc = monte_carlo(trade_returns(result), 200, seed=1)
    grid = {"stop_loss": [2.0, 4.0]}
    ins, merged = in_out_of_sample(sample, "rsi(14) < 40", BacktestParams(), grid, min_trades=0)
    wf = walk_forward(sample, "rsi(14) < 40", BacktestParams(), grid, train_bars=500, test_bars=250, min_trades=0)
    for value in (result, mc, (ins, merged), wf, signals):
        back = decode(encode(value, "k", b"s"), "k", b"s")
        assert type(back) is type(value)
    back = decode(encode(result, "k", b"s"), "k", b"s")
    pd.testing.assert_frame_equal(back.trades, result.trades)
    pd.testing.assert_frame_equal(back.equity, result.equity)
    pd.testing.assert_frame_equal(back.events, result.events)  # built lazily from the stored records
    assert len(result.events) and back.metrics == result.metrics and back.params == result.params
    wf_back = decode(encode(wf, "k", b"s"), "k", b"s")
    pd.testing.assert_frame_equal(wf_back.windows, wf.windows)
    pd.testing.assert_frame_equal(wf_back.oos_equity, wf.oos_equity)
    assert wf_back.efficiency == wf.efficiency or (np.isnan(wf_back.efficiency) and np.isnan(wf.efficiency))
    np.testing.assert_array_equal(decode(encode(signals, "k", b"s"), "k", b"s").matrix, signals.matrix)
    from engine import forward_returns

    study = forward_returns(sample, signals, horizons=(1, 5), cooldown=2)
    study_back = decode(encode(study, "k", b"s"), "k", b"s")
    pd.testing.assert_frame_equal(study_back.events, study.events)
    pd.testing.assert_frame_equal(study_back.summary, study.summary)
    assert (study_back.horizons, study_back.benchmark, study_back.cooldown) == ((1, 5), "universe", 2)


def test_an_unwritable_or_deleted_directory_turns_caching_off_and_runs_go_on(tmp_path):
    m = market_from(CSV)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = RunCache(blocker / "cache")  # cannot be created: like a read-only mount
    _, hit = cache.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    assert not hit and cache.disabled and "cannot be used" in cache.disabled and cache.runs() == []
    live = RunCache(tmp_path / "live")
    live.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    shutil.rmtree(tmp_path / "live")  # deleted while the server runs
    result, hit = live.run("backtest", m, "r", {}, lambda: backtest(m, m.close > 0))
    assert not hit and result.metrics["n_trades"] >= 0 and live.disabled and live.runs() == []


def test_history_is_kept_by_count_and_age(tmp_path, monkeypatch):
    m = market_from(CSV)
    monkeypatch.setenv("SCANNER_HISTORY_MAX", "3")
    cache = RunCache(tmp_path / "cache")
    for i in range(5):
        cache.run("backtest", m, "r", {"i": i}, lambda: backtest(m, m.close > 0), session="alice")
    assert cache.count() == 3 and [r.params["i"] for r in cache.runs()] == [4, 3, 2]
    assert [r.params["i"] for r in cache.runs(limit=2, offset=1)] == [3, 2]  # pages
    monkeypatch.setenv("SCANNER_HISTORY_DAYS", "0")
    cache.run("backtest", m, "r", {"i": 9}, lambda: backtest(m, m.close > 0))
    assert cache.count() <= 1


def test_a_forged_entry_in_the_codecs_own_format_is_a_miss(tmp_path):
    """An attacker who can write the directory but not read the secret re-encodes a result with a better
    total return: without the install's secret its MAC is wrong, so the run is recomputed."""
    from dataclasses import replace

    from engine.codec import decode, encode

    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    real, _ = cache.run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    secret_file = tmp_path / "cache" / "secret.key"
    assert secret_file.stat().st_mode & 0o777 == 0o600 and len(secret_file.read_bytes()) >= 32
    key = run_key("backtest", m.fingerprint, "r", {})
    store = results_of(tmp_path / "cache")
    stored = decode(store[key], key, secret_file.read_bytes().strip())
    forged = replace(stored, metrics={**stored.metrics, "total_return_pct": 9999.0})
    for secret in (b"a guess", b"", hashlib.sha256(b"").hexdigest().encode()):
        store[key] = encode(forged, key, secret)
        result, hit = RunCache(tmp_path / "cache").run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
        assert not hit and result.metrics["total_return_pct"] == real.metrics["total_return_pct"] != 9999.0
    assert len(calls) == 4


def test_the_secret_can_be_given_and_then_another_install_reads_nothing(tmp_path, monkeypatch):
    m, calls = market_from(CSV), []
    monkeypatch.setenv("SCANNER_CACHE_KEY", "key-one-" * 4)
    RunCache(tmp_path / "cache").run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))
    assert not (tmp_path / "cache" / "secret.key").exists()
    assert RunCache(tmp_path / "cache").run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))[1]
    monkeypatch.setenv("SCANNER_CACHE_KEY", "key-two-" * 4)
    assert not RunCache(tmp_path / "cache").run("backtest", m, "r", {}, lambda: counted_backtest(calls)(m, {}))[1]


def test_a_twelve_second_lock_on_the_history_is_waited_for_and_every_run_is_recorded_and_hit(tmp_path):
    from tests.conftest import hold_history_lock

    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    cache.run("backtest", m, "r", {"i": 0}, lambda: counted_backtest(calls)(m, {}))
    holder = hold_history_lock(tmp_path / "cache" / "history.sqlite", 12)  # like `sqlite3 history.sqlite`
    started = time.monotonic()
    for i in (1, 2):
        _, hit = cache.run("backtest", m, "r", {"i": i}, lambda: counted_backtest(calls)(m, {}))
        assert not hit
    holder.join()
    assert time.monotonic() - started >= 10  # waited for the lock instead of failing
    assert cache.disabled is None and cache.count() == 3
    for i in (0, 1, 2):
        assert cache.run("backtest", m, "r", {"i": i}, lambda: counted_backtest(calls)(m, {}))[1]
    assert len(calls) == 3 and cache.count() == 6


def test_caching_comes_back_by_itself_when_the_directory_works_again(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("SCANNER_CACHE_RETRY_S", "0.3")
    m, calls = market_from(CSV), []
    cache = RunCache(tmp_path / "cache")
    cache.run("backtest", m, "r", {"i": 0}, lambda: counted_backtest(calls)(m, {}))
    shutil.rmtree(tmp_path / "cache")
    (tmp_path / "cache").write_text("a full disk, a lost mount: the directory cannot be used")
    _, hit = cache.run("backtest", m, "r", {"i": 1}, lambda: counted_backtest(calls)(m, {}))
    assert not hit and cache.disabled and str(tmp_path) not in cache.disabled  # no server path for users
    (tmp_path / "cache").unlink()  # the fault passes
    time.sleep(0.4)
    cache.run("backtest", m, "r", {"i": 2}, lambda: counted_backtest(calls)(m, {}))
    assert cache.disabled is None
    assert [r.params["i"] for r in cache.runs()] == [2, 1]  # the run made while it was off is recorded too
    assert cache.run("backtest", m, "r", {"i": 2}, lambda: counted_backtest(calls)(m, {}))[1]


def test_a_write_killed_midway_leaves_no_half_entry(tmp_path):
    """A process killed while it writes a result: the entry is whole or absent, never half (diskcache writes
    the value file before the row that names it)."""
    m = market_from(CSV)
    script = (
        "import io, os, sys\n"
        "from engine import backtest, load_market\n"
        "from engine.server.cache import RunCache\n"
        "m = load_market(io.BytesIO(sys.stdin.buffer.read()), name='prices.csv')\n"
        "cache = RunCache(sys.argv[1])\n"
        "for i in range(10_000):\n"
        "    cache.run('backtest', m, 'r', {'i': i}, lambda: backtest(m, m.close > 0))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cache")], stdin=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    proc.stdin.write(CSV)
    proc.stdin.close()
    time.sleep(6)
    proc.kill()
    proc.wait()
    cache = RunCache(tmp_path / "cache")
    done = [r.params["i"] for r in cache.runs(limit=10_000)]
    assert done, "the writer made some runs before it was killed"
    for i in range(max(done) + 2):  # every entry reads back whole, or is a miss that recomputes
        result, _ = cache.run("backtest", m, "r", {"i": i}, lambda: backtest(m, m.close > 0))
        assert result.metrics["n_trades"] >= 0


def test_two_processes_share_one_directory_while_a_third_reads_and_eviction_runs(tmp_path):
    """diskcache keeps one size account for every process; nothing is lost from the history and every read
    is a whole result or a miss, while entries are evicted under the readers."""
    m = market_from(CSV)
    script = (
        "import io, sys\n"
        "from engine import backtest, load_market\n"
        "from engine.server.cache import RunCache\n"
        "m = load_market(io.BytesIO(sys.stdin.buffer.read()), name='prices.csv')\n"
        "cache = RunCache(sys.argv[1], size_limit_mb=0.5)\n"
        "for i in range(40):\n"
        "    cache.run('backtest', m, 'r', {'w': sys.argv[2], 'i': i}, lambda: backtest(m, m.close > 0))\n"
    )
    root = Path(__file__).resolve().parents[1]
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cache"), w], stdin=subprocess.PIPE,
                                cwd=root) for w in ("a", "b")]  # fmt: skip
    for proc in writers:
        proc.stdin.write(CSV)
        proc.stdin.close()
    reader = RunCache(tmp_path / "cache", size_limit_mb=0.5)
    while any(p.poll() is None for p in writers):
        for i in range(40):
            value = reader.get(run_key("backtest", m.fingerprint, "r", {"w": "a", "i": i}))
            assert value is None or value.metrics["n_trades"] >= 0
    assert all(p.returncode == 0 for p in writers)
    assert reader.count() == 80 and reader.disabled is None
    assert reader._results is not None and reader._results.volume() <= 0.5e6 * 1.2  # one shared size account


def test_a_note_is_written_by_the_runs_owner_only_and_a_history_from_before_notes_gains_them(tmp_path):
    import sqlite3

    from engine.server.cache import MAX_NOTE_CHARS

    old = tmp_path / "cache"
    old.mkdir()
    with sqlite3.connect(old / "history.sqlite") as db:  # the table as it was before notes
        db.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, key TEXT, kind TEXT, data TEXT, fingerprint TEXT, rule TEXT, "
            "params TEXT, metrics TEXT, seconds REAL, cache_hit INTEGER, session TEXT, link TEXT, created REAL)"
        )
        db.execute(
            "INSERT INTO runs VALUES ('old1', 'k', 'backtest', 'd', 'f', 'r', '{}', '{}', 0.1, 0, 'alice', '', 1)"
        )
    cache = RunCache(old)
    assert [(r.id, r.note) for r in cache.runs()] == [("old1", "")]  # kept, with an empty note
    m = market_from(CSV)
    cache.run("backtest", m, "r", {"sl": 2}, lambda: backtest(m, m.close > 0), lambda r: {}, session="alice")
    run = cache.runs()[0]
    assert cache.set_note(run.id, "bob", "mine now") is False  # a teammate cannot write it
    assert cache.runs()[0].note == ""
    assert cache.set_note(run.id, "alice", "  tighter stop: fewer, better trades  ") is True
    assert cache.runs()[0].note == "tighter stop: fewer, better trades"
    assert cache.set_note(run.id, "alice", "x" * 5000) and len(cache.runs()[0].note) == MAX_NOTE_CHARS
    assert RunCache(old).runs()[0].note == "x" * MAX_NOTE_CHARS  # on disk, read back by a new process's cache
