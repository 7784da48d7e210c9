"""The what-if memory on the server: each user's strip of recent backtests and their pinned baseline per dataset,
kept in the run history so a reload, a restart or another device finds them, and private to their maker."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest

from engine import params as table
from engine import synthetic_market
from engine.backtest import params_from_values
from engine.server import service
from engine.server.cache import RunCache

ALICE, BOB = "user:alice@example.org", "user:bob@example.org"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A server's stores in a fresh cache directory (the wing's stores are built once per directory)."""
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(market, user: str, rule: str = "rsi(14) < 40", data: str = "sample", **settings):
    """A backtest as the Backtest page makes it: settings by path, the page's link recorded with it."""
    values = {p.path: p.default for p in table.backtest_params()} | settings
    link = urlencode(table.link_query(data, rule, values))
    return service.cached_backtest(market, rule, params_from_values(values), user, link)


def test_the_strip_is_the_users_own_backtests_on_the_dataset_newest_first_a_repeat_once(server, sample, monkeypatch):
    first = run(sample, ALICE, stop_loss=5.0)
    second = run(sample, ALICE, stop_loss=3.0)
    again = run(sample, ALICE, stop_loss=5.0)  # a repeat: a cache hit, recorded again, kept once (its newest)
    bobs = run(sample, BOB, stop_loss=8.0)  # a teammate's: in his strip, not hers
    other = synthetic_market(3, 300, seed=4)
    run(other, ALICE, data="synthetic")  # other data
    strip = service.whatif_runs(ALICE, sample.fingerprint)
    assert [r.id for r in strip] == [again.run_id, second.run_id]
    assert again.hit and first.run_id not in [r.id for r in strip]
    assert table.linked_values(dict(parse_qsl(strip[1].link)))[0]["stop_loss"] == 3.0  # its settings, by path
    assert [r.metrics["n_trades"] for r in service.whatif_runs(BOB, sample.fingerprint)] == [
        bobs.value.metrics["n_trades"]
    ]
    monkeypatch.setattr(service, "WHATIF_HOURS", 0)  # the day is over: the strip starts again
    assert service.whatif_runs(ALICE, sample.fingerprint) == []


def test_a_pin_is_kept_per_user_and_dataset_and_outlives_the_process(server, sample):
    mine = run(sample, ALICE, stop_loss=3.0)
    assert service.pinned_run(ALICE, sample.fingerprint) is None
    assert service.pin_run(mine.run_id, ALICE).id == mine.run_id
    assert service.pinned_run(ALICE, sample.fingerprint).id == mine.run_id
    assert service.pinned_run(BOB, sample.fingerprint) is None  # her pin is hers
    assert RunCache(server).pinned(ALICE, sample.fingerprint) == mine.run_id  # on disk: a restart keeps it
    reopened = service.reopen_backtest(service.pinned_run(ALICE, sample.fingerprint), sample, ALICE)
    assert reopened.metrics == mine.value.metrics
    service.unpin(ALICE, sample.fingerprint)
    assert service.pinned_run(ALICE, sample.fingerprint) is None


def test_a_teammate_may_pin_a_run_on_shared_data_but_never_one_on_private_data(server, sample):
    on_sample = run(sample, ALICE, stop_loss=4.0)
    assert service.pin_run(on_sample.run_id, BOB) is not None  # the built-in data: her run is open to the team
    secret = synthetic_market(3, 300, seed=21)
    stored = service.store(secret, ALICE)  # private to her
    private = run(secret, ALICE, data=stored.data_id)
    assert service.pin_run(private.run_id, BOB) is None  # answered like an unknown run
    assert service.pinned_run(BOB, secret.fingerprint) is None
    assert service.find_run(private.run_id, BOB) is None
    assert service.pin_run("0" * 12, ALICE) is None  # an unknown id pins nothing
    assert service.pin_run(private.run_id, ALICE).id == private.run_id


def test_a_pinned_run_that_left_the_cache_is_run_again_from_its_link(server, sample):
    mine = run(sample, ALICE, rule="rsi(14) < 35", take_profit=12.0)
    record = service.pin_run(mine.run_id, ALICE)
    record.key = "gone"  # as if evicted: the cache has no result under its key
    again = service.reopen_backtest(record, sample, ALICE)
    assert again.metrics == mine.value.metrics and again.params.take_profit == 12.0
    other = synthetic_market(3, 300, seed=5)
    assert service.reopen_backtest(record, other, ALICE) is None  # not on this data: nothing to run
