"""The screen as of a date: scan(market, rule).on(date) against the full scan and a scan of the data cut at that
date (sample, synthetic and PSE), entered and left by hand, and the CLI's --date and the API's `date`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import InputError, load_market, scan, synthetic_market
from engine.codec import decode, encode
from tests.conftest import bars_market

PSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "long" / "pse257_fastquant_2010_2021.csv.gz"
RULES = ("rsi(14) < 45 rank by roc(20) desc", "close > sma(50) and volume > avg_volume(20)")


def check_on(market, rule: str, bar: int) -> None:
    """The screen on `bar` equals the full scan's rows there and a scan of the data cut at that bar."""
    signals = scan(market, rule)
    screen = signals.on(market.dates[bar])
    full = signals.table(market)
    on_day = full[full.date == market.dates[bar]]
    assert set(screen.matches.symbol) == set(on_day.symbol)
    merged = screen.matches.merge(on_day, on="symbol", suffixes=("", "_full"))
    for column in [c for c in on_day.columns if c not in ("date", "symbol")]:
        np.testing.assert_allclose(merged[column], merged[f"{column}_full"], rtol=1e-12, equal_nan=True)
    cut = scan(market.window(0, bar + 1), rule).on()
    pd.testing.assert_frame_equal(cut.matches, screen.matches)
    pd.testing.assert_frame_equal(cut.entered, screen.entered)
    pd.testing.assert_frame_equal(cut.left, screen.left)
    if "rank by" in rule and len(screen.matches):
        assert screen.matches["rank"].tolist() == list(range(1, len(screen.matches) + 1))
        assert screen.matches.rank_score.dropna().is_monotonic_decreasing  # undefined scores last


@pytest.mark.parametrize("rule", RULES)
def test_on_a_date_equals_the_full_scan_there_and_a_scan_of_the_data_cut_at_it_on_the_sample(sample, rule):
    for bar in (60, 1000, len(sample.dates) - 1):
        check_on(sample, rule, bar)


@settings(max_examples=20, deadline=None)
@given(st.integers(30, 399), st.sampled_from(RULES))
def test_on_any_date_of_a_synthetic_universe(bar, rule):
    check_on(synthetic_market(40, 400, seed=12), rule, bar)


def test_on_dates_of_the_pse_set():
    if not PSE.exists():
        pytest.skip(f"shared real data not present ({PSE})")
    market = load_market(PSE, on_bad_rows="drop")
    for bar in (300, 1500, len(market.dates) - 1):
        check_on(market, "close > sma(20) and rsi(14) > 55 rank by relative_volume(20) desc", bar)


def test_entered_and_left_by_hand():
    """A crosses 105 on bar 2 and falls back on bar 4; B is above from the start and drops on bar 2."""
    up = [(100.0,) * 4, (101.0,) * 4, (106.0,) * 4, (107.0,) * 4, (104.0,) * 4]
    down = [(110.0,) * 4, (111.0,) * 4, (104.0,) * 4, (103.0,) * 4, (102.0,) * 4]
    market = bars_market({"A": up, "B": down})
    signals = scan(market, "close > 105")
    two = signals.on(market.dates[2])
    assert two.matches.symbol.tolist() == ["A"] and two.entered.symbol.tolist() == ["A"]
    assert two.left.symbol.tolist() == ["B"] and two.left.close.tolist() == [104.0]  # its value on this bar
    three = signals.on(market.dates[3])
    assert three.matches.symbol.tolist() == ["A"] and three.entered.empty and three.left.empty
    four = signals.on(market.dates[4])
    assert four.matches.empty and four.left.symbol.tolist() == ["A"]
    first = signals.on(market.dates[0])  # no bar before the first: every match entered
    assert first.entered.symbol.tolist() == ["B"] and first.left.empty
    saturday = market.dates[4] + pd.Timedelta(days=1)  # no bar that day: the last bar on or before it
    assert saturday.day_of_week == 5 and signals.on(saturday).date == market.dates[4]


def test_a_date_outside_the_data_or_not_a_date_says_what_to_do(sample):
    signals = scan(sample, RULES[0])
    with pytest.raises(InputError, match="starts on 2013-01-02"):
        signals.on("1999-01-01")
    with pytest.raises(InputError, match="not a date"):
        signals.on("yesterday-ish")
    assert signals.on("2100-01-01").date == sample.dates[-1]
    stored = decode(encode(signals, "k", b"s" * 32), "k", b"s" * 32)  # a cached scan keeps no dataset
    with pytest.raises(InputError, match="needs the scanned dataset"):
        stored.on()
    assert stored.on(None, sample).matches.equals(signals.on().matches)


def test_the_cli_date_and_the_api_date_give_the_screen(sample, capsys, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from engine.__main__ import main

    assert main(["scan", "--rule", RULES[0], "--date", "2023-08-21", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = scan(sample, RULES[0]).on("2023-08-21")
    assert (
        printed["date"] == "2023-08-21"
        and [r["symbol"] for r in printed["matches"]] == expected.matches.symbol.tolist()
    )
    assert main(["scan", "--rule", RULES[0], "--date", "2023-08-21"]) == 0
    assert "matches on 2023-08-21 (3)" in capsys.readouterr().out
    assert main(["scan", "--rule", RULES[0], "--date", "someday"]) == 2
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        r = client.post("/api/scan", json={"rule": RULES[0], "date": "2023-08-21", "limit": 5})
        assert r.status_code == 200 and r.json()["screen"]["date"] == "2023-08-21"
        assert [m["symbol"] for m in r.json()["screen"]["matches"]] == expected.matches.symbol.tolist()
        assert r.json()["screen"]["matches"][0]["rank"] == 1
        latest = client.post("/api/scan", json={"rule": RULES[0], "date": "latest"}).json()["screen"]
        assert latest["date"] == sample.dates[-1].strftime("%Y-%m-%d")
        bad = client.post("/api/scan", json={"rule": RULES[0], "date": "1999-01-01"})
        assert bad.status_code == 422 and "starts on" in bad.json()["error"]


# --- saved screens ------------------------------------------------------------------------------------------

ALICE, BOB = "user:alice@example.org", "user:bob@example.org"


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_a_private_screen_is_its_owners_a_shared_one_the_teams_to_read_and_copy_never_to_edit(server, sample):
    from engine.server import service

    rule = "rsi(14) < 45 rank by roc(20) desc"
    mine = service.save_screen("Oversold leaders", rule, "sample", ALICE, note="watch list")
    assert not mine.shared and service.screens().get(mine.id, BOB) is None  # a 404 like an unknown id
    assert [s.id for s in service.screens().list(BOB)] == [] and service.screen_on(mine.id, BOB) is None
    assert service.screens().copy(mine.id, BOB) is None and service.track_record(mine.id, BOB) is None
    found = service.screen_on(mine.id, ALICE, "2023-08-21")
    assert (
        found is not None
        and found[1].matches.symbol.tolist() == scan(sample, rule).on("2023-08-21").matches.symbol.tolist()
    )
    shared = service.update_screen(mine.id, ALICE, shared=True)
    assert shared is not None and shared.shared and shared.saved == mine.saved  # sharing keeps the period
    assert [s.id for s in service.screens().list(BOB)] == [mine.id]
    assert service.update_screen(mine.id, BOB, rule="rsi(14) < 30") is None  # others may not edit
    assert not service.screens().delete(mine.id, BOB)
    copy = service.screens().copy(mine.id, BOB)
    assert copy is not None and copy.owner == BOB and not copy.shared and copy.rule == rule
    edited = service.update_screen(mine.id, ALICE, rule="rsi(14) < 40 rank by roc(20) desc", note="tighter")
    assert edited is not None and edited.saved > mine.saved  # a new rule: a new out-of-sample period
    history = service.screens().history(mine.id, BOB)
    assert [(h.rule, h.note) for h in history] == [(rule, "watch list")]
    with pytest.raises(InputError, match="Unknown function"):
        service.update_screen(mine.id, ALICE, rule="__import__('os')")
    with pytest.raises(InputError, match="not a dataset or family you can open"):
        service.save_screen("x", rule, "0123456789abcdef", ALICE)
    assert service.screens().delete(mine.id, ALICE) and service.screens().get(mine.id, ALICE) is None


def test_the_track_record_splits_the_signals_at_the_moment_the_rule_was_saved(server, sample):
    from engine.events import forward_returns
    from engine.server import service

    rule = "rsi(14) < 35"
    saved = pd.Timestamp("2020-06-30 15:00").timestamp()
    screen = service.screens().save(ALICE, "Oversold", rule, "sample", when=saved)
    record = service.track_record(screen.id, ALICE)
    matrix = scan(sample, rule).matrix
    split = int(sample.dates.searchsorted(pd.Timestamp("2020-06-30"), side="right"))
    assert record.signals_before == int(matrix[:split].sum()) and record.signals_since == int(matrix[split:].sum())
    assert record.signals_before + record.signals_since == int(matrix.sum())
    since = matrix.copy()
    since[:split] = False
    expected = forward_returns(sample, since, (1, 5, 20), random_draws=0).summary
    np.testing.assert_allclose(record.since.loc[:, "mean_excess"], expected.loc[:, "mean_excess"], rtol=1e-12)
    assert record.split == pd.Timestamp("2020-06-30")
    late = service.screens().save(ALICE, "Late", rule, "sample", when=pd.Timestamp("2023-09-01").timestamp())
    too_few = service.track_record(late.id, ALICE)
    assert too_few.signals_since < 30 and too_few.note.startswith(f"Only {too_few.signals_since:,} signals")


def test_a_screen_on_a_family_follows_its_latest_version(server, sample):
    from engine.data import market_from_frame
    from engine.server import service
    from engine.server.datasets import to_frame

    whole = to_frame(sample)
    family = service.create_family("Big six", market_from_frame(whole[whole.date <= "2023-08-31"]), ALICE)
    screen = service.save_screen("Family screen", "rsi(14) < 50", f"family:{family.slug}", ALICE)
    assert service.screen_on(screen.id, ALICE)[1].date == pd.Timestamp("2023-08-31")
    service.append_to_family(family.slug, market_from_frame(whole[whole.date > "2023-08-31"]), ALICE)
    assert service.screen_on(screen.id, ALICE)[1].date == sample.dates[-1]


def test_the_api_and_the_cli_save_list_read_and_refuse_screens_for_two_identities(server, sample, capsys, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from engine.__main__ import main
    from tests.test_api import ALICE_TOKEN, BOB_TOKEN

    monkeypatch.setenv("SCANNER_API_TOKEN", f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")
    alice, bob = {"Authorization": f"Bearer {ALICE_TOKEN}"}, {"Authorization": f"Bearer {BOB_TOKEN}"}
    rule = "rsi(14) < 45 rank by roc(20) desc"
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        made = client.post("/api/screens", json={"name": "Leaders", "rule": rule}, headers=alice)
        assert made.status_code == 201 and made.json()["shared"] is False and "scanner?rule=" in made.json()["link"]
        sid = made.json()["id"]
        for method, path in (("GET", ""), ("GET", "/matches"), ("GET", "/track-record"), ("POST", "/copy")):
            assert client.request(method, f"/api/screens/{sid}{path}", headers=bob).status_code == 404
        assert client.get("/api/screens", headers=bob).json() == {"screens": []}
        on = client.get(f"/api/screens/{sid}/matches", params={"date": "2023-08-21"}, headers=alice).json()
        assert [m["symbol"] for m in on["matches"]] == scan(sample, rule).on("2023-08-21").matches.symbol.tolist()
        assert client.put(f"/api/screens/{sid}", json={"shared": True}, headers=alice).json()["shared"] is True
        assert client.put(f"/api/screens/{sid}", json={"rule": "rsi(14) < 30"}, headers=bob).status_code == 403
        assert client.delete(f"/api/screens/{sid}", headers=bob).status_code == 403
        copied = client.post(f"/api/screens/{sid}/copy", headers=bob)
        assert copied.status_code == 201 and copied.json()["owner"] == "user:bob"
        record = client.get(f"/api/screens/{sid}/track-record", headers=bob).json()
        assert record["signals_since"] == 0 and record["note"].startswith("Only 0 signals")
        changed = client.put(f"/api/screens/{sid}", json={"rule": "rsi(14) < 40"}, headers=alice)
        assert changed.status_code == 200
        assert client.get(f"/api/screens/{sid}", headers=alice).json()["history"][0]["rule"] == rule
        bad = client.post("/api/screens", json={"name": "x", "rule": "__import__('os')"}, headers=alice)
        assert bad.status_code == 422
        assert client.delete(f"/api/screens/{sid}", headers=alice).status_code == 200
    assert main(["screens", "save", "Oversold", "--rule", "rsi(14) < 30", "--user", "ana@example.org", "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert main(["screens", "matches", saved["id"], "--date", "2023-08-21", "--user", "ana@example.org"]) == 0
    assert "matches on 2023-08-21" in capsys.readouterr().out
    assert main(["screens", "record", saved["id"], "--user", "ana@example.org"]) == 0
    assert "Since saving, 0 signals" in capsys.readouterr().out
    assert main(["screens", "show", saved["id"], "--user", "bob@example.org"]) == 2  # private to ana
    assert main(["screens", "list", "--user", "ana@example.org", "--json"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == [saved["id"]]
