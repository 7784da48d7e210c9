"""Datasets that stay current: append (equal overlap, restated history, new and vanished symbols, new flags),
families of versions with two identities, and refreshes from a real local HTTP server, DuckDB and SQLite
files and yfinance's frame shape, with the last good version kept through every outage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import synthetic_market
from engine.data import DataError, RestatedHistory, append, market_from_frame, restated_bars
from engine.data import sources as src
from engine.server import service
from engine.server.datasets import to_frame

ALICE, BOB = "user:alice@example.org", "user:bob@example.org"


def cut(frame: pd.DataFrame, last: str, first: str | None = None) -> pd.DataFrame:
    keep = frame.date <= pd.Timestamp(last)
    if first is not None:
        keep &= frame.date >= pd.Timestamp(first)
    return frame[keep]


@pytest.fixture
def whole(sample) -> pd.DataFrame:
    return to_frame(sample)


# --- append ----------------------------------------------------------------------------------------------------


def test_an_append_with_equal_overlap_drops_it_and_equals_a_load_of_the_whole(sample, whole):
    old = market_from_frame(cut(whole, "2023-08-31"), name=sample.name)
    merged, report = append(old, cut(whole, "2099-01-01", first="2023-08-25"))
    assert merged.fingerprint == sample.fingerprint  # the same content id as an upload of the whole history
    assert report.equal_overlap == 6 * 5 and report.new_dates == (sample.dates > "2023-08-31").sum()
    assert report.bars_added == int((~np.isnan(sample.close[sample.dates > "2023-08-31"])).sum())
    assert report.changed and not report.symbols_added and not report.replaced
    same, nothing = append(merged, cut(whole, "2099-01-01", first="2023-09-20"))
    assert not nothing.changed and same.fingerprint == sample.fingerprint


def test_restated_history_is_refused_with_its_bars_and_cause_then_replaced_on_request(sample, whole):
    old = market_from_frame(cut(whole, "2023-08-31"), name=sample.name)
    new = cut(whole, "2099-01-01", first="2023-08-21").copy()
    halved = (new.symbol == "AAPL") & (new.date <= "2023-08-31")
    new.loc[halved, ["open", "high", "low", "close"]] *= 0.5
    with pytest.raises(RestatedHistory) as refused:
        append(old, new)
    assert "Nothing was appended" in str(refused.value)
    table = refused.value.table
    assert set(table.symbol) == {"AAPL"} and table.date.nunique() == int(halved.sum())
    assert set(table.field) == {"open", "high", "low", "close"} and np.allclose(table.ratio, 0.5)
    pd.testing.assert_frame_equal(restated_bars(old, market_from_frame(new, name=sample.name)), table)  # no merge
    assert (
        refused.value.causes["AAPL"] == "ratio 0.5 on every price from 2023-08-31 back: a split applied by the source"
    )
    merged, report = append(old, new, on_restated="replace")
    col = merged.column("AAPL")
    first = merged.dates.get_loc(pd.Timestamp(new[new.symbol == "AAPL"].date.min()))
    np.testing.assert_allclose(merged.close[first : first + 3, col], old.close[first : first + 3, col] * 0.5)
    assert report.replaced == ("AAPL",) and "history replaced for: AAPL" in report.summary()
    other = merged.column("AMZN")
    np.testing.assert_array_equal(merged.close[: len(old.dates), other], old.close[:, other])


def test_new_and_vanished_symbols_and_a_flagged_new_bar_are_reported():
    dates = pd.bdate_range("2024-01-01", periods=30)
    rows = [
        {"symbol": s, "date": d, "open": 10.0, "high": 10.5, "low": 9.9, "close": 10.0 + i * 0.01, "volume": 1.0}
        for s in ("AAA", "BBB")
        for i, d in enumerate(dates)
    ]
    old = market_from_frame(pd.DataFrame(rows))
    later = pd.bdate_range(dates[-1], periods=4)[1:]
    new = pd.DataFrame(
        [
            {"symbol": "AAA", "date": d, "open": 5.15, "high": 5.2, "low": 5.1, "close": 5.15, "volume": 1.0}
            for d in later  # a 2:1 split on the first new bar
        ]
        + [
            {"symbol": "CCC", "date": d, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
            for d in later
        ]
    )
    merged, report = append(old, new)
    assert report.symbols_added == ("CCC",) and report.symbols_gone == ("BBB",)
    assert report.bars_added == 6 and report.new_dates == 3
    assert report.flags[["kind", "symbol"]].values.tolist() == [["split", "AAA"]]
    assert pd.Timestamp(report.flags.date.iloc[0]) == later[0]
    assert merged.issues is not None and "AAA" in set(merged.issues.symbol)
    assert any(w.startswith("Likely splits") for w in merged.warnings)


def test_a_day_appended_to_the_newest_version_is_written_below_it_and_older_versions_never_change(sample, whole):
    days = sample.dates[-3:]
    v1 = market_from_frame(cut(whole, str(days[0].date())))
    one = market_from_frame(whole[whole.date == days[1]])
    two = market_from_frame(whole[whole.date == days[2]])
    v2, _ = append(v1, one)
    assert np.shares_memory(v2.close, v1.close)  # O(new bars): the day went into the spare rows
    v3, _ = append(v2, two)
    assert np.shares_memory(v3.close, v1.close) and v3.fingerprint == sample.fingerprint
    before = v2.close.copy()
    branch, _ = append(v2, market_from_frame(whole[whole.date == days[2]].assign(volume=1.0)))
    assert not np.shares_memory(branch.close, v3.close)  # v2 is no longer the newest: a copy
    np.testing.assert_array_equal(v2.close, before)
    assert v3.fingerprint == sample.fingerprint and len(v1.dates) == len(sample.dates) - 2
    window = v3.window(0, len(v3.dates) - 1)
    again, _ = append(window, two)
    assert not np.shares_memory(again.close, v3.close) and again.fingerprint == sample.fingerprint


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(1, 3)), min_size=1, max_size=6))
def test_any_order_of_appends_from_any_version_gives_each_version_its_own_bars(steps):
    """Each step appends 1-3 days to some earlier version (not always the newest): every version must equal a
    fresh load of the bars up to its last day, whatever was written into shared buffers after it."""
    full = to_frame(synthetic_market(3, 60, seed=4))
    days = sorted(full.date.unique())
    versions = [(market_from_frame(full[full.date <= days[40]]), 40)]
    for pick, k in steps:
        base, end = versions[pick % len(versions)]
        new = full[(full.date > days[end]) & (full.date <= days[min(end + k, 59)])]
        if not len(new):
            continue
        grown_market, _ = append(base, market_from_frame(new))
        versions.append((grown_market, min(end + k, 59)))
    for market, end in versions:
        assert market.fingerprint == market_from_frame(full[full.date <= days[end]]).fingerprint


def test_new_bars_with_columns_the_dataset_lacks_say_what_to_do(sample, whole):
    new = cut(whole, "2099-01-01", first="2023-09-01").assign(pe_ratio=10.0)
    with pytest.raises(DataError, match="columns the dataset lacks"):
        append(sample, new)
    with pytest.raises(DataError, match="on_restated"):
        append(sample, whole, on_restated="merge")  # type: ignore[arg-type]


# --- families ----------------------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_versions_keep_their_ids_a_family_link_follows_the_latest_and_a_private_family_is_its_owners(
    server, sample, whole
):
    first = market_from_frame(cut(whole, "2023-08-31"), name="Sample daily")
    family = service.create_family("Sample daily", first, ALICE)
    assert family.slug == "sample-daily" and family.latest.how == "upload" and not family.shared
    outcome = service.append_to_family("sample-daily", market_from_frame(cut(whole, "2099", "2023-08-25")), ALICE)
    assert outcome is not None and outcome.changed
    family = outcome.family
    assert [v.how for v in family.versions] == ["upload", "append"] and family.latest.parent == family.versions[0].id
    assert family.latest.by == ALICE and family.latest.bars_added == outcome.report.bars_added
    opened = service.open_family("sample-daily", ALICE)
    assert opened is not None and opened[1].fingerprint == sample.fingerprint  # the family link: the latest
    old = service.open_dataset(family.versions[0].id, ALICE)
    assert old is not None and old.fingerprint == first.fingerprint  # a version link reproduces that version
    newer = service.family_of(family.versions[0].id, ALICE)
    assert (
        newer is not None
        and newer.newer_than(family.versions[0].id) == f"21 days, {outcome.report.bars_added:,} bars newer"
    )
    assert newer.newer_than(family.latest.id) is None
    # bob: a private family, its versions, links and refreshes are alice's alone
    assert service.open_family("sample-daily", BOB) is None and service.family_of(family.latest.id, BOB) is None
    assert service.open_dataset(family.latest.id, BOB) is None
    assert service.append_to_family("sample-daily", first, BOB) is None
    assert service.refresh_family("sample-daily", BOB) is None
    assert [f.slug for f in service.families().list(BOB)] == []
    assert not service.share_family("sample-daily", BOB, True)
    assert service.share_family("sample-daily", ALICE, True)
    assert service.open_family("sample-daily", BOB) is not None
    assert service.open_dataset(family.versions[0].id, BOB) is not None
    again = service.create_family("Sample daily", first, BOB)
    assert again.slug == "sample-daily-2"  # a name taken: a slug of its own


def test_a_refused_append_makes_no_version(server, sample, whole):
    service.create_family("S", market_from_frame(cut(whole, "2023-08-31")), ALICE)
    new = cut(whole, "2099", "2023-08-25").copy()
    new.loc[new.symbol == "AMZN", ["open", "high", "low", "close"]] *= 1.01
    with pytest.raises(RestatedHistory):
        service.append_to_family("s", market_from_frame(new), ALICE)
    assert len(service.families().get("s", ALICE).versions) == 1


# --- a url source on a real local HTTP server --------------------------------------------------------------


class Quotes:
    """A local Stooq-like server: /q/<symbol>.csv answers the symbol's bars as Stooq's daily CSV, unless told
    to answer slowly, with a 500 (a few times or always), a truncated body or a changed header."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.mode: dict[str, str] = {}
        self.fails: dict[str, int] = {}
        self.hits: list[str] = []
        quotes = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                symbol = self.path.rsplit("/", 1)[-1].removesuffix(".csv").upper()
                quotes.hits.append(symbol)
                mode = quotes.mode.get(symbol, "")
                if mode == "slow":
                    time.sleep(3)
                if quotes.fails.get(symbol, 0) > 0 or mode == "500":
                    quotes.fails[symbol] = quotes.fails.get(symbol, 0) - 1
                    self.send_response(500)
                    self.end_headers()
                    return
                rows = quotes.frame[quotes.frame.symbol == symbol]
                body = rows.rename(columns=str.capitalize)[["Date", "Open", "High", "Low", "Close", "Volume"]]
                text = body.assign(Date=body.Date.dt.strftime("%Y-%m-%d")).to_csv(index=False)
                if mode == "header":
                    text = text.replace("Date,Open,High,Low,Close", "Data,Otwarcie,Max,Min,Zamkniecie")
                payload = text.encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/csv")
                    self.send_header("Content-Length", str(len(payload) + (100 if mode == "truncated" else 0)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the slow case)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/q/{{symbol}}.csv"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def quotes(whole, monkeypatch):
    monkeypatch.setenv("SCANNER_SOURCE_ALLOW", "127.0.0.1")
    monkeypatch.setattr(src, "TIMEOUT_S", 1.0)
    server = Quotes(whole)
    yield server
    server.close()


@pytest.fixture
def family(server, whole, quotes, sample):
    first = market_from_frame(cut(whole, "2023-08-31"), name="Sample daily")
    source = {"kind": "url", "address": quotes.url, "symbols": list(sample.symbols)}
    return service.create_family("Sample daily", first, ALICE, source=source)


def test_a_refresh_fetches_from_just_before_the_last_bar_and_makes_a_version_only_on_change(family, quotes, sample):
    seen = []
    outcome = service.refresh_family(family.slug, ALICE, progress=lambda done, total, s: seen.append((done, total)))
    assert outcome is not None and outcome.changed and outcome.family.latest.how == "refresh"
    assert seen[-1] == (6, 6) and not outcome.failures
    assert service.open_family(family.slug, ALICE)[1].fingerprint == sample.fingerprint
    again = service.refresh_family(family.slug, ALICE)
    assert again is not None and not again.changed and len(again.family.versions) == 2
    assert again.message.startswith("Nothing new")


@pytest.mark.parametrize("mode", ["slow", "500", "truncated", "header"])
def test_an_outage_keeps_the_last_good_version_and_says_which_symbols_failed(family, quotes, mode):
    quotes.mode["AMZN"] = mode
    outcome = service.refresh_family(family.slug, ALICE)
    assert outcome is not None and not outcome.changed and set(outcome.failures) == {"AMZN"}
    assert outcome.message.startswith("1 of 6 symbols failed: AMZN: ")
    assert "keeps its last good version" in outcome.message and "partial" in outcome.message
    words = {"slow": "no answer", "500": "HTTP 500", "truncated": "truncated", "header": "the format changed"}
    assert words[mode] in outcome.failures["AMZN"]
    assert len(service.families().get(family.slug, ALICE).versions) == 1
    partial = service.refresh_family(family.slug, ALICE, partial=True)
    assert partial is not None and partial.changed and "AMZN" in partial.report.symbols_gone
    assert "1 of 6 symbols failed" in partial.message


def test_a_server_error_twice_then_an_answer_is_retried(family, quotes):
    quotes.fails["AAPL"] = 2
    outcome = service.refresh_family(family.slug, ALICE)
    assert outcome is not None and outcome.changed and quotes.hits.count("AAPL") == 3


def test_restated_history_from_the_source_is_refused_then_replaced_with_its_whole_history(family, quotes, whole):
    restated = whole.copy()
    restated.loc[restated.symbol == "AAPL", ["open", "high", "low", "close"]] *= 0.25
    quotes.frame = restated
    with pytest.raises(RestatedHistory, match="AAPL: ratio 0.25"):
        service.refresh_family(family.slug, ALICE)
    outcome = service.refresh_family(family.slug, ALICE, on_restated="replace")
    assert outcome is not None and outcome.report.replaced == ("AAPL",)
    market = service.open_family(family.slug, ALICE)[1]
    expected = restated[restated.symbol == "AAPL"].close.to_numpy()
    np.testing.assert_allclose(market.close[:, market.column("AAPL")][: len(expected)], expected)
    assert not any(w.startswith("Likely splits") for w in market.warnings)  # the whole history: no seam


def test_addresses_outside_http_or_on_this_machine_are_refused_unless_allowed(monkeypatch):
    monkeypatch.delenv("SCANNER_SOURCE_ALLOW", raising=False)
    for address in ("file:///etc/passwd", "ftp://example.org/x", "http://127.0.0.1:9/x", "http://[::1]/x"):
        with pytest.raises(DataError, match="http|own range"):
            src.check_address(address)
    with pytest.raises(DataError, match="own range"):
        src.check_address("http://localhost:9/x")
    monkeypatch.setenv("SCANNER_SOURCE_ALLOW", "localhost")
    src.check_address("http://localhost:9/x")
    with pytest.raises(DataError, match="\\{symbol\\}"):
        src.Source("url", "http://example.org/daily.csv", ("A",))
    with pytest.raises(DataError, match="NAME of an environment variable"):
        src.Source("url", "http://example.org/{symbol}", ("A",), credential="hunter2 secret")


def test_a_refresh_killed_mid_way_leaves_the_family_as_it_was(family, quotes, server):
    quotes.mode = {s: "slow" for s in ("AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA")}
    families = server / "cache" / "datasets" / "families"
    before = (families / f"{family.slug}.json").read_bytes()
    code = f"from engine.server import service; service.refresh_family({family.slug!r}, {ALICE!r}, partial=True)"
    env = {**os.environ, "SCANNER_CACHE_DIR": str(server / "cache"), "SCANNER_SOURCE_ALLOW": "127.0.0.1"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not quotes.hits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert quotes.hits, "the refresh never asked the source"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert (families / f"{family.slug}.json").read_bytes() == before
    assert json.loads(before)["versions"][0]["id"] == service.open_family(family.slug, ALICE)[0].latest.id


# --- sql and yahoo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["duckdb", "sqlite"])
def test_a_sql_source_reads_a_database_file_from_start(server, whole, sample, kind, tmp_path, monkeypatch):
    import sqlalchemy

    path = tmp_path / f"bars.{kind}"
    monkeypatch.setenv("BARS_DB", str(path))
    address = f"{kind}:///${{BARS_DB}}"
    engine = sqlalchemy.create_engine(address.replace("${BARS_DB}", str(path)))
    with engine.begin() as connection:
        whole.assign(date=whole.date.dt.date).to_sql("bars", connection, index=False)
    engine.dispose()
    first = market_from_frame(cut(whole, "2023-08-31"), name="S")
    source = {"kind": "sql", "address": address, "query": "SELECT * FROM bars WHERE date >= :start"}
    family = service.create_family("S", first, ALICE, source=source)
    assert "BARS_DB" in json.dumps(family.source) and str(path) not in json.dumps(family.source)
    outcome = service.refresh_family(family.slug, ALICE)
    assert outcome is not None and outcome.changed
    assert service.open_family(family.slug, ALICE)[1].fingerprint == sample.fingerprint


def test_a_database_that_fails_keeps_the_last_good_version(server, whole, tmp_path):
    first = market_from_frame(cut(whole, "2023-08-31"), name="S")
    source = {
        "kind": "sql",
        "address": f"sqlite:///{tmp_path}/none.sqlite",
        "query": "SELECT * FROM x WHERE d >= :start",
    }
    family = service.create_family("S", first, ALICE, source=source)
    with pytest.raises(DataError, match="The database answered"):
        service.refresh_family(family.slug, ALICE)
    assert len(service.families().get("s", ALICE).versions) == 1


def test_yahoo_reads_yfinances_documented_frame_with_the_network_call_replaced(server, whole, sample, monkeypatch):
    """yfinance.download answers a frame indexed by Date with (Price, Ticker) columns: Close, High, Low, Open,
    Volume (auto_adjust=True) under the ticker. The call is replaced at that boundary."""
    import types

    calls = []

    def download(ticker, start=None, auto_adjust=True, progress=False, timeout=None):
        calls.append((ticker, start, auto_adjust))
        rows = whole[(whole.symbol == ticker) & (whole.date >= pd.Timestamp(start))]
        frame = rows.set_index("date")[["close", "high", "low", "open", "volume"]].rename_axis("Date")
        frame.columns = pd.MultiIndex.from_product([["Close", "High", "Low", "Open", "Volume"], [ticker]])
        frame.columns.names = ["Price", "Ticker"]
        return frame

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(download=download))
    first = market_from_frame(cut(whole, "2023-08-31"), name="S")
    family = service.create_family("S", first, ALICE, source={"kind": "yahoo", "symbols": list(sample.symbols)})
    outcome = service.refresh_family(family.slug, ALICE)
    assert outcome is not None and outcome.changed and calls[0][2] is True
    assert service.open_family(family.slug, ALICE)[1].fingerprint == sample.fingerprint


# --- the API and the CLI -------------------------------------------------------------------------------------


def test_the_api_creates_appends_refreshes_as_a_job_and_keeps_a_private_family_from_others(
    server, whole, quotes, sample, monkeypatch
):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.test_api import ALICE_TOKEN, BOB_TOKEN, wait

    monkeypatch.setenv("SCANNER_API_TOKEN", f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")
    alice, bob = {"Authorization": f"Bearer {ALICE_TOKEN}"}, {"Authorization": f"Bearer {BOB_TOKEN}"}
    first = cut(whole, "2023-08-15").to_csv(index=False).encode()
    source = json.dumps({"kind": "url", "address": quotes.url, "symbols": list(sample.symbols)})
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        files = {"file": ("first.csv", first, "text/csv")}
        r = client.post("/api/families", files=files, data={"name": "Sample daily", "source": source}, headers=alice)
        assert r.status_code == 201 and r.json()["family"] == "sample-daily" and r.json()["shared"] is False
        restated = cut(whole, "2023-08-31", "2023-08-10").copy()
        restated.loc[restated.symbol == "NVDA", ["open", "high", "low", "close"]] *= 2
        files = {"file": ("more.csv", restated.to_csv(index=False).encode(), "text/csv")}
        r = client.post("/api/data/sample-daily/append", files=files, headers=alice)
        assert r.status_code == 409 and r.json()["causes"]["NVDA"].startswith("ratio 2 on every price")
        assert {row["symbol"] for row in r.json()["restated"]} == {"NVDA"}
        files = {"file": ("more.csv", cut(whole, "2023-08-31", "2023-08-10").to_csv(index=False).encode(), "text/csv")}
        r = client.post("/api/data/sample-daily/append", files=files, headers=alice)
        assert r.status_code == 200 and r.json()["changed"] and len(r.json()["versions"]) == 2
        for path in ("/api/families/sample-daily", "/api/data/sample-daily/refresh"):
            assert client.request("GET" if "fam" in path else "POST", path, headers=bob).status_code == 404
        assert client.get("/api/families", headers=bob).json() == {"families": []}
        r = client.post("/api/data/sample-daily/refresh", headers=alice)
        assert r.status_code == 202
        job = wait(client, r.json()["id"], alice)
        assert job["status"] == "done" and job["result"]["changed"] and job["progress"]["done"] == 6
        r = client.get("/api/families/sample-daily", headers=alice).json()
        assert [v["how"] for v in r["versions"]] == ["refresh", "append", "upload"]
        assert client.get(f"/api/data/{r['latest']}", headers=alice).json()["fingerprint"] == sample.fingerprint
        assert client.post("/api/families/sample-daily/share", headers=bob).status_code == 404
        assert client.post("/api/families/sample-daily/share", headers=alice).json()["shared"] is True
        assert client.get("/api/families/sample-daily", headers=bob).status_code == 200


def test_the_cli_creates_appends_and_refreshes_a_family_for_cron(server, whole, quotes, sample, tmp_path, capsys):
    from engine.__main__ import main

    first, recent = tmp_path / "first.csv", tmp_path / "recent.csv"
    cut(whole, "2023-08-15").to_csv(first, index=False)
    cut(whole, "2023-08-31", "2023-08-10").to_csv(recent, index=False)
    symbols = ",".join(sample.symbols)
    made = ["data", "create", "Sample daily", str(first), "--user", "ana@example.org", "--url", quotes.url]
    assert main([*made, "--symbols", symbols, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "sample-daily"
    assert main(["data", "append", "sample-daily", str(recent), "--user", "ana@example.org", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert main(["data", "append", "sample-daily", str(recent), "--user", "bob@example.org"]) == 2  # private
    assert "no family" in capsys.readouterr().err
    quotes.mode["NFLX"] = "500"
    assert main(["data", "refresh", "sample-daily", "--user", "ana@example.org"]) == 1
    out = capsys.readouterr()
    assert "1 of 6 symbols failed: NFLX: HTTP 500" in out.out and "6/6" in out.err  # progress per symbol
    quotes.mode.clear()
    assert main(["data", "refresh", "sample-daily", "--user", "ana@example.org"]) == 0
    assert main(["data", "versions", "sample-daily", "--user", "ana@example.org", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [r["how"] for r in rows] == ["refresh", "append", "upload"]


def test_a_long_history_where_every_symbol_trades_to_the_end_is_flagged_as_likely_survivors():
    market = synthetic_market(6, 1300, seed=2)
    frame = to_frame(market)
    assert any(w.startswith("Likely survivors only: all 6 symbols") for w in market_from_frame(frame).warnings)
    ended = frame[~((frame.symbol == frame.symbol.iloc[0]) & (frame.date > frame.date.quantile(0.8)))]
    assert not any(w.startswith("Likely survivors") for w in market_from_frame(ended).warnings)
    short = frame[frame.date < frame.date.quantile(0.5)]
    assert not any(w.startswith("Likely survivors") for w in market_from_frame(short).warnings)


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL (Debian's package, installed by `make system-deps`) in a temporary directory, on
    127.0.0.1 with trust authentication, stopped after the module; as root it runs as the postgres user."""
    import glob
    import shutil
    import socket
    import tempfile
    from pathlib import Path

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: `make test` installs it (make system-deps)")
        pytest.skip("PostgreSQL not installed; run `make system-deps`")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="scanner-pg-", dir="/tmp"))
    as_root = os.getuid() == 0
    if as_root:
        shutil.chown(root, "postgres", "postgres")

    def run(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command] if as_root else list(command),
            check=True,
            capture_output=True,
            timeout=120,
        )

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = root / "data"
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_a_sql_source_refreshes_from_a_real_postgres_with_its_user_from_the_environment(
    server, whole, sample, postgres, monkeypatch
):
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"postgresql+psycopg://postgres@{postgres}/postgres")
    with engine.begin() as connection:
        whole.assign(date=whole.date.dt.date).to_sql("bars", connection, index=False, if_exists="replace")
    engine.dispose()
    monkeypatch.setenv("BARS_USER", "postgres")
    first = market_from_frame(cut(whole, "2023-08-31"), name="S")
    source = {
        "kind": "sql",
        "address": f"postgresql+psycopg://${{BARS_USER}}@{postgres}/postgres",
        "query": "SELECT symbol, date, open, high, low, close, volume FROM bars WHERE date >= :start",
    }
    family = service.create_family("S", first, ALICE, source=source)
    outcome = service.refresh_family(family.slug, ALICE)
    assert outcome is not None and outcome.changed
    assert service.open_family(family.slug, ALICE)[1].fingerprint == sample.fingerprint
    monkeypatch.delenv("BARS_USER")
    with pytest.raises(DataError, match="BARS_USER is not set"):
        service.refresh_family(family.slug, ALICE)


# --- versions stored as their new bars ------------------------------------------------------------------


def test_a_version_that_only_adds_bars_is_stored_as_them_and_reads_back_whole_from_a_fresh_store(
    server, sample, whole, monkeypatch
):
    from engine.server import datasets as ds
    from engine.server.datasets import SERVER, DatasetStore

    monkeypatch.setattr(ds, "MAX_CHAIN", 3)
    days = sample.dates[-6:]
    family = service.create_family("S", market_from_frame(cut(whole, str(days[0].date()))), ALICE)
    for day in days[1:]:
        outcome = service.append_to_family("s", market_from_frame(whole[whole.date == day]), ALICE)
        family = outcome.family
    store = service.datasets()
    infos = [store.info(v.id, SERVER) for v in family.versions]
    assert [i.base for i in infos] == ["", infos[0].id, infos[1].id, "", infos[3].id, infos[4].id]  # 3 files a read
    assert infos[1].bytes < infos[0].bytes / 50  # a day's bars, not the history
    fresh = DatasetStore(store.directory)  # nothing in memory: every file read from disk and checked
    assert fresh.get(family.latest.id, SERVER).fingerprint == sample.fingerprint
    assert fresh.get(infos[2].id, SERVER).fingerprint == market_from_frame(cut(whole, str(days[2].date()))).fingerprint
    # the first version deleted by its owner: its bars stay while later versions are stored over them
    assert fresh.delete(infos[0].id, ALICE)
    assert fresh.info(infos[0].id, ALICE) is None and fresh.exists(infos[0].id)
    assert DatasetStore(store.directory).get(infos[2].id, SERVER) is not None
    # a damaged base is never trusted: the version over it does not read
    (store.directory / f"{infos[1].id}.parquet").write_bytes(b"PAR1 junk")
    assert DatasetStore(store.directory).get(infos[2].id, SERVER) is None
    assert DatasetStore(store.directory).get(family.latest.id, SERVER).fingerprint == sample.fingerprint


def test_eviction_keeps_the_bases_later_versions_are_stored_over(server, sample, whole):
    from engine.server.datasets import SERVER, DatasetStore

    days = sample.dates[-3:]
    family = service.create_family("S", market_from_frame(cut(whole, str(days[0].date()))), ALICE)
    for day in days[1:]:
        family = service.append_to_family("s", market_from_frame(whole[whole.date == day]), ALICE).family
    from engine.server.families import FamilyStore

    store = DatasetStore(service.datasets().directory, size_limit_mb=0.001)  # everything is over the limit
    FamilyStore(store)  # a family's latest version is kept; the bases under it are kept by the store itself
    store.put(synthetic_market(3, 50, seed=9), owner=BOB)
    for version in family.versions:
        assert store.exists(version.id)  # the latest (a family's) and every base under it stay
    assert store.get(family.latest.id, SERVER).fingerprint == sample.fingerprint


def test_fixing_a_flagged_bar_of_the_latest_version_makes_the_next_version_and_of_an_older_one_a_dataset(server, whole):

    first = market_from_frame(cut(whole, "2023-08-31"))
    family = service.create_family("S", first, ALICE)
    fixed = first.without(["NFLX"])
    stored = service.store_fixed(fixed, family.latest.id, ALICE)
    family = service.families().get("s", ALICE)
    assert [v.how for v in family.versions] == ["upload", "fix"] and stored.data_id == family.latest.id
    older = service.store_fixed(first.without(["AMZN"]), family.versions[0].id, ALICE)
    assert len(service.families().get("s", ALICE).versions) == 2 and older.data_id not in {
        v.id for v in service.families().get("s", ALICE).versions
    }
    assert service.store_fixed(fixed, family.latest.id, BOB).data_id == family.latest.id  # bob: his own copy
    assert len(service.families().get("s", ALICE).versions) == 2


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.5, 2.0, 0.1, 1.6, 0.62, 1.0]), st.integers(1, 3))
def test_the_flags_of_new_bars_equal_the_loaders_on_the_whole_history(seed, move, k):
    """New bars with a split-like or outlier move (or none) on a random symbol: the O(new bars) flags equal the
    loader's flags of the whole appended history on the new dates."""
    from engine.data.quality import flag_and_adjust
    from engine.data.read import LoadOptions

    frame = to_frame(synthetic_market(8, 120, seed=seed % 1000))
    days = sorted(frame.date.unique())
    rng = np.random.default_rng(seed)
    hit = frame.symbol.unique()[rng.integers(0, 8)]
    moved = frame.copy()
    later = (moved.symbol == hit) & (moved.date >= days[-k])
    moved.loc[later, ["open", "high", "low", "close"]] *= move
    old = market_from_frame(moved[moved.date < days[-k]])
    merged, report = append(old, market_from_frame(moved[moved.date >= days[-k]]))
    assert report.below
    whole = flag_and_adjust(market_from_frame(moved), LoadOptions(), pd.DataFrame()).issues
    expected = whole[pd.DatetimeIndex(whole.date) >= days[-k]]
    got = report.flags
    key = lambda f: sorted(zip(f.kind, f.symbol, pd.DatetimeIndex(f.date), f.value.round(9), strict=True))  # noqa: E731
    assert key(got) == key(expected)
