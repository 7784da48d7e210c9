"""The HTTP API: every endpoint and error path with FastAPI's TestClient on a real cache directory, and one
journey against a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.identity import from_environment
from api.jobs import Busy, Jobs
from engine import backtest, load_market, synthetic_market
from engine import params as table
from engine.backtest import params_from_values
from engine.optimize import in_out_of_sample, optimize
from engine.rules import scan
from engine.server.cache import RunCache
from engine.server.datasets import SERVER, to_frame
from engine.server.stores import dataset_store, run_cache

ROOT = Path(__file__).resolve().parents[1]
RULE = "rsi(14) < 35"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCANNER_API_TOKEN", raising=False)
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def restart(client) -> None:
    """The identity settings are read at start-up: after changing them, start the app's identities anew."""
    client.app.state.identities = from_environment()


def csv_bytes(n_symbols: int = 4, n_bars: int = 300, seed: int = 5) -> bytes:
    return to_frame(synthetic_market(n_symbols, n_bars, seed=seed)).to_csv(index=False).encode()


def upload(client, content: bytes, name: str = "bars.csv", **form) -> httpx.Response:
    return client.post("/api/data", files={"file": (name, content, "text/csv")}, data=form)


def wait(client, job_id: str, headers=None) -> dict:
    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish in 60 s")


# --- datasets -------------------------------------------------------------------------------------------


def test_an_uploaded_dataset_is_listed_described_and_served_in_long_format(client):
    content = csv_bytes()
    r = upload(client, content)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["symbols"] == 4 and len(info["id"]) == 16 and info["owner"] == "api:anonymous"
    assert info["link"].endswith(f"/?data={info['id']}")  # the Data page is the root
    assert info["id"] in [d["id"] for d in client.get("/api/data").json()["datasets"]]
    detail = client.get(f"/api/data/{info['id']}").json()
    assert detail["first_date"] == info["first_date"] and detail["dropped"] == []
    expected = pd.read_csv(io.BytesIO(content))
    page = client.get(f"/api/data/{info['id']}/ohlcv", params={"limit": 100, "offset": 50}).json()
    assert page["total"] == len(expected) and page["next_offset"] == 150 and len(page["rows"]) == 100
    one = client.get(f"/api/data/{info['id']}/ohlcv", params={"symbols": "s1", "start": "2014-03-03"}).json()
    assert {r["symbol"] for r in one["rows"]} == {"S1"} and min(r["date"] for r in one["rows"]) >= "2014-03-03"
    for bound, total in (
        ({"start": "1600-01-01"}, len(expected)),
        ({"start": "2500-01-01"}, 0),
        ({"end": "1600-01-01"}, 0),
    ):
        clamped = client.get(f"/api/data/{info['id']}/ohlcv", params=bound)  # was a 500 (OutOfBoundsDatetime)
        assert clamped.status_code == 200 and clamped.json()["total"] == total
    as_csv = pd.read_csv(io.StringIO(client.get(f"/api/data/{info['id']}/ohlcv", params={"format": "csv"}).text))
    as_parquet = pd.read_parquet(io.BytesIO(client.get(f"/api/data/{info['id']}/ohlcv?format=parquet").content))
    for frame in (as_csv, as_parquet):
        assert len(frame) == len(expected)
        np.testing.assert_allclose(frame["close"], expected["close"])


def test_own_columns_attached_through_the_api_are_rule_names_of_a_new_dataset(client):
    data_id = upload(client, csv_bytes()).json()["id"]
    quarterly = b"symbol,date,pe_ratio\nS1,2014-01-01,12\nS1,2014-06-01,30\nS2,2014-01-01,9\nNOPE,2014-01-01,1\n"
    r = client.post(f"/api/data/{data_id}/columns", files={"file": ("pe.csv", quarterly, "text/csv")})
    assert r.status_code == 201, r.text
    joined = r.json()
    assert joined["id"] != data_id and any("1 row of pe.csv" in w for w in joined["warnings"])
    assert [c["column"] for c in joined["columns"]] == ["pe_ratio", "sector"]
    hits = client.post("/api/scan", json={"data": joined["id"], "rule": "pe_ratio < 15", "limit": 10000}).json()
    assert hits["count"] > 0 and {h["symbol"] for h in hits["signals"]} == {"S1", "S2"}
    assert all(h["date"] < "2014-06-02" for h in hits["signals"] if h["symbol"] == "S1")  # 30 from June on
    refused = client.post("/api/scan", json={"data": data_id, "rule": "pe_ratio < 15"})
    assert refused.status_code == 422 and "Unknown name 'pe_ratio'" in refused.json()["error"]
    bad = client.post(f"/api/data/{data_id}/columns", files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")})
    assert bad.status_code == 422 and "needs a symbol column and a date column" in bad.json()["error"]


def test_a_dataset_uploaded_through_the_api_is_on_the_dashboards_data_page_and_vice_versa(client, monkeypatch):
    browser = "browser:" + "0" * 32
    info = upload(client, csv_bytes(seed=8)).json()  # anonymous: listed for everyone
    market = dataset_store().get(info["id"], viewer=SERVER)  # the store the dashboard's Data page reads
    assert market is not None and market.fingerprint.startswith(info["id"])
    assert info["id"] in [i.id for i in dataset_store().list(viewer=browser)]
    from engine import synthetic_market

    mine = dataset_store().put(synthetic_market(3, 200, seed=4), owner=browser)  # uploaded on the Data page
    assert mine.id in [d["id"] for d in client.get("/api/data").json()["datasets"]]
    monkeypatch.setenv("SCANNER_USER_HEADER", "X-User")  # with identities, uploads are private unless shared
    restart(client)
    headers = {"X-User": "alice"}
    private = client.post("/api/data", files={"file": ("p.csv", csv_bytes(seed=9), "text/csv")}, headers=headers)
    shared = client.post(
        "/api/data", files={"file": ("s.csv", csv_bytes(seed=10), "text/csv")}, headers=headers, data={"shared": "true"}
    )
    listed = [i.id for i in dataset_store().list(viewer=browser)]
    assert private.json()["id"] not in listed and shared.json()["id"] in listed
    # a browser cookie proves nothing, so what it uploads is open to all; alice's private upload is not
    assert mine.id in [d["id"] for d in client.get("/api/data", headers=headers).json()["datasets"]]
    assert client.get(f"/api/data/{private.json()['id']}").status_code == 404  # anonymous


def test_bad_rows_are_named_and_can_be_left_out_with_a_report(client):
    frame = pd.read_csv(io.BytesIO(csv_bytes()))
    frame.loc[7, "close"] = -5.0
    content = frame.to_csv(index=False).encode()
    r = upload(client, content)
    assert r.status_code == 422 and r.json()["bad_rows"] == 1 and "line 9" in r.json()["error"]
    r = upload(client, content, on_bad_rows="drop")
    assert r.status_code == 201 and r.json()["dropped_rows"] == 1
    dataset_store()._memo.clear()  # read back from disk, as another process would
    detail = client.get(f"/api/data/{r.json()['id']}").json()
    assert len(detail["dropped"]) == 1 and detail["dropped"][0]["line"] == "9"


def test_an_oversized_upload_is_413_before_and_after_the_body_is_read(client, monkeypatch):
    monkeypatch.setenv("SCANNER_MAX_UPLOAD_MB", "0.02")
    r = upload(client, csv_bytes(4, 300))  # ~50 KB: past the loader's limit, within the 1 MB form allowance
    assert r.status_code == 413 and "over the" in r.json()["error"] and "SCANNER_MAX_UPLOAD_MB" in r.json()["error"]
    r = upload(client, b"x" * 1_300_000)  # past the body limit: refused by its Content-Length
    assert r.status_code == 413


def test_unknown_and_malformed_dataset_ids_are_404_with_advice(client):
    for data_id in ("0123456789abcdef", "../../etc/passwd", "x" * 500):
        r = client.post("/api/backtest/run", json={"data": data_id, "rule": RULE})
        assert r.status_code == 404 and "Upload the file again" in r.json()["error"]
    assert client.get("/api/data/0123456789abcdef/ohlcv").status_code == 404


def test_only_the_owner_deletes_a_dataset(client, monkeypatch):
    monkeypatch.setenv("SCANNER_USER_HEADER", "X-Forwarded-Email")
    restart(client)
    data_id = client.post(
        "/api/data",
        files={"file": ("a.csv", csv_bytes(), "text/csv")},
        data={"shared": "true"},
        headers={"X-Forwarded-Email": "alice@x.org"},
    ).json()["id"]
    r = client.delete(f"/api/data/{data_id}", headers={"X-Forwarded-Email": "bob@x.org"})
    assert r.status_code == 403  # shared, so bob may see it; not his to delete
    assert client.delete("/api/data/sample").status_code == 403
    assert client.delete(f"/api/data/{data_id}", headers={"X-Forwarded-Email": "alice@x.org"}).status_code == 200
    assert client.get(f"/api/data/{data_id}").status_code == 404


@pytest.mark.parametrize(
    "value, words",
    [
        ("alice:", "entry 1 of 1 (name 'alice') has an empty token"),
        (":", "has no name"),
        (",", "entry 1 of 2 has an empty token"),
        (" ", "empty token"),
        ("", "empty token"),
        ("alice:short", "5 characters; at least 16"),
        ("alice:same-token-0123456789,bob:same-token-0123456789", "entry 2 of 2 (name 'bob') repeats the token"),
        ("alice:token-a-0123456789,alice:token-b-0123456789", "a name is given twice"),
    ],
)
def test_a_malformed_token_setting_stops_the_api_naming_the_entry_never_the_token(monkeypatch, value, words):
    monkeypatch.setenv("SCANNER_API_TOKEN", value)
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert words in str(stopped.value) and "0123456789" not in str(stopped.value)


def test_uvicorn_refuses_to_start_with_an_empty_token_and_logs_the_identity_sources(tmp_path):
    env = {
        **os.environ,
        "SCANNER_API_ANONYMOUS": "1",
        "SCANNER_CACHE_DIR": str(tmp_path),
        "SCANNER_API_TOKEN": "alice:",
    }
    run = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "empty token" in run.stderr and "Application startup complete" not in run.stderr
    env["SCANNER_API_TOKEN"] = "alice:token-a-0123456789,bob:token-b-0123456789"
    run = subprocess.run(
        [sys.executable, "-c", "import api.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and "2 API token(s) for alice, bob" in run.stderr and "token-a" not in run.stderr


def _start(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """`import api.app` (what uvicorn does first) in a fresh process with only these SCANNER_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SCANNER_")}
    clean |= {"SCANNER_CACHE_DIR": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, "-c", "import api.app"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_the_api_does_not_start_open_to_anyone_unless_told_to(tmp_path):
    refused = _start(tmp_path)
    assert refused.returncode != 0 and "set SCANNER_API_ANONYMOUS=1" in refused.stderr
    assert _start(tmp_path, SCANNER_API_ANONYMOUS="1").returncode == 0


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"SCANNER_API_TOKENS": "alice:token-a-0123456789"},
            "SCANNER_API_TOKENS is not a setting of this server; did you mean SCANNER_API_TOKEN?",
        ),
        ({"SCANNER_TOKEN": "alice:token-a-0123456789"}, "did you mean SCANNER_API_TOKEN?"),
        ({"scanner_api_token": "alice:token-a-0123456789"}, "scanner_api_token is not a setting"),
        ({"SCANNER_CACHE_KEY": "x"}, "SCANNER_CACHE_KEY has 1 characters; it needs at least 32"),
    ],
)
def test_a_misspelt_setting_or_a_short_key_stops_the_api_naming_the_fix(tmp_path, env, words):
    run = _start(tmp_path, SCANNER_API_ANONYMOUS="1", **env)
    assert run.returncode != 0 and words in run.stderr, run.stderr[-800:]
    assert "token-a-0123456789" not in run.stderr


def test_a_secret_file_another_user_could_have_written_stops_the_api_and_is_never_trusted(tmp_path):
    cache = RunCache(tmp_path / "cache")  # makes the secret file, as the first run of a server does
    key = tmp_path / "cache" / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600 and _start(tmp_path, SCANNER_API_ANONYMOUS="1").returncode == 0
    cache.run("backtest", synthetic_market(3, 60, seed=1), "close > 0", {}, lambda: {"x": 1})
    key.write_text("f" * 64)  # replaced by a file of someone's choosing...
    key.chmod(0o644)  # ...that others may read
    run = _start(tmp_path, SCANNER_API_ANONYMOUS="1")
    assert run.returncode != 0 and "must belong to this server's user with mode 0600" in run.stderr
    assert "chmod 600" in run.stderr
    again = RunCache(tmp_path / "cache")  # a cache opened anyway turns itself off rather than trust the file
    market = synthetic_market(3, 60, seed=1)
    assert not again.active and again.run("backtest", market, "close > 0", {}, lambda: {"x": 2}) == ({"x": 2}, False)
    key.chmod(0o600)
    assert _start(tmp_path, SCANNER_API_ANONYMOUS="1").returncode == 0


ALICE_TOKEN, BOB_TOKEN = "alice-token-0123456789", "bob-token-0123456789ab"


@pytest.fixture
def two_users(client, monkeypatch):
    monkeypatch.setenv("SCANNER_API_TOKEN", f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")
    restart(client)
    return {"Authorization": f"Bearer {ALICE_TOKEN}"}, {"Authorization": f"Bearer {BOB_TOKEN}"}


def test_a_private_dataset_is_a_404_for_everyone_but_its_owner_until_shared(client, two_users):
    alice, bob = two_users
    r = client.post(
        "/api/data", files={"file": ("alice_secret_positions.csv", csv_bytes(seed=21), "text/csv")}, headers=alice
    )
    data_id = r.json()["id"]
    assert r.status_code == 201 and r.json()["shared"] is False and r.json()["owner"] == "user:alice"
    attempts = [
        ("get", f"/api/data/{data_id}", None),
        ("get", f"/api/data/{data_id}/ohlcv", None),
        ("get", f"/api/data/{data_id}/ohlcv?format=csv", None),
        ("post", "/api/scan", {"data": data_id, "rule": RULE}),
        ("post", "/api/backtest/run", {"data": data_id, "rule": RULE}),
        ("post", "/api/backtest/optimize", {"data": data_id, "rule": RULE, "grid": {"stop_loss": [2, 4, 2]}}),
        ("post", "/api/montecarlo", {"data": data_id, "rule": RULE}),
        ("delete", f"/api/data/{data_id}", None),
        ("post", f"/api/data/{data_id}/share", None),
    ]
    for method, path, body in attempts:
        got = client.request(method, path, json=body, headers=bob)
        assert got.status_code == 404, (path, got.status_code)
        assert "alice" not in got.text and "secret" not in got.text  # nothing confirms it exists
    assert data_id not in [d["id"] for d in client.get("/api/data", headers=bob).json()["datasets"]]
    assert client.post("/api/backtest/run", json={"data": data_id, "rule": RULE}, headers=alice).status_code == 200
    assert client.post(f"/api/data/{data_id}/share", headers=alice).json()["shared"] is True
    assert client.post("/api/backtest/run", json={"data": data_id, "rule": RULE}, headers=bob).status_code == 200


def test_identical_bytes_from_a_second_user_get_their_own_listing(client, two_users):
    alice, bob = two_users
    content = csv_bytes(seed=22)
    a = client.post("/api/data", files={"file": ("alice_secret_positions.csv", content, "text/csv")}, headers=alice)
    b = client.post("/api/data", files={"file": ("bob.csv", content, "text/csv")}, headers=bob)
    assert a.json()["id"] == b.json()["id"]
    assert (b.json()["name"], b.json()["owner"]) == ("bob.csv", "user:bob") and "alice" not in b.text
    assert [d["name"] for d in client.get("/api/data", headers=bob).json()["datasets"][2:]] == ["bob.csv"]
    assert client.delete(f"/api/data/{a.json()['id']}", headers=alice).status_code == 200
    assert client.get(f"/api/data/{b.json()['id']}", headers=bob).json()["name"] == "bob.csv"  # still his
    assert client.delete(f"/api/data/{b.json()['id']}", headers=bob).status_code == 200


# --- scan and backtest ----------------------------------------------------------------------------------


def test_scan_returns_the_signals_table(client, sample):
    r = client.post("/api/scan", json={"rule": RULE, "limit": 5}).json()
    signals = scan(sample, RULE)
    assert r["count"] == signals.count and r["symbols_hit"] == signals.symbols_hit() and len(r["signals"]) == 5
    assert r["signals"][0]["date"] >= r["signals"][-1]["date"]


def test_a_backtest_equals_the_library_is_listed_in_runs_and_cached_with_a_link_that_reproduces_it(client, sample):
    body = {"rule": RULE, "params": {"stop_loss": 4, "take_profit": 12, "sizing": {"method": "fixed_fractional"}}}
    r = client.post("/api/backtest/run", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    values = {"stop_loss": 4.0, "take_profit": 12.0, "sizing.method": "fixed_fractional"}
    expected = backtest(sample, scan(sample, RULE), params_from_values(values))
    assert out["metrics"]["n_trades"] == expected.metrics["n_trades"] and not out["cache_hit"]
    assert out["metrics"]["total_return_pct"] == pytest.approx(expected.metrics["total_return_pct"], rel=1e-12)
    assert out["trades"]["total"] == len(expected.trades) and len(out["equity"]) == len(expected.equity)
    assert len(out["trades"]["rows"]) == 100 and out["trades"]["rows"][-1]["pnl"] == expected.trades["pnl"].iloc[99]
    assert out["equity"][-1]["equity"] == pytest.approx(expected.equity["equity"].iloc[-1])
    link = dict(parse_qsl(urlparse(out["link"]).query))
    assert urlparse(out["link"]).path == "/backtest" and link["data"] == "sample" and link["rule"] == RULE
    assert {table.BY_URL[k].path: table.BY_URL[k].parse(v) for k, v in link.items() if k in table.BY_URL} == values
    again = client.post("/api/backtest/run", json=body).json()
    assert again["cache_hit"] and again["metrics"] == out["metrics"]
    runs = run_cache().runs(session="api:anonymous")
    assert len(runs) == 2 and runs[0].kind == "backtest" and runs[0].link == urlparse(out["link"]).query
    rest = client.get(out["trades"]["next"]).json()  # the next page, then every row as a CSV stream
    assert rest["offset"] == 100 and [r["pnl"] for r in rest["rows"]] == list(expected.trades["pnl"].iloc[100:200])
    csv = pd.read_csv(io.StringIO(client.get(out["trades"]["csv"]).text))
    assert len(csv) == len(expected.trades) and csv["pnl"].tolist() == pytest.approx(expected.trades["pnl"].tolist())
    listed = client.get("/api/runs").json()
    assert listed["total"] == 2 and listed["runs"][0]["id"] == again["run_id"] and listed["runs"][0]["yours"]


def test_a_backtest_of_a_signal_list_equals_the_library(client, sample):
    signals = scan(sample, RULE).table(sample)[["symbol", "date"]].head(40)
    listed = [{"symbol": s, "date": d.strftime("%Y-%m-%d")} for s, d in zip(signals.symbol, signals.date, strict=True)]
    out = client.post("/api/backtest/run", json={"signals": listed}).json()
    expected = backtest(sample, signals)
    assert out["metrics"]["final_equity"] == pytest.approx(expected.metrics["final_equity"]) and out["link"] is None
    bad = client.post("/api/backtest/run", json={"signals": [{"symbol": "NOPE", "date": "2020-01-02"}]})
    assert bad.status_code == 422 and "NOPE" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"rule": RULE, "params": {"stop_loss": 150}}, "params.stop_loss", "Stop-loss must be 0 (off) or 0.1 to 99%"),
        ({"rule": RULE, "params": {"max_positions": 2.5}}, "params.max_positions", "Max positions must be 1 to 1,000"),
        ({"rule": RULE, "params": {"sizing": {"method": "martingale"}}}, "params.sizing.method", "must be one of"),
        ({"rule": RULE, "params": {"stop_los": 5}}, "params.stop_los", "Extra inputs are not permitted"),
        ({"rule": RULE, "params": {"limits": {"max_correlation": 2}}}, "params.limits.max_correlation", "0.01 to 1"),
        ({"rule": "x" * 5000}, "rule", "at most"),
        ({"rule": RULE, "params": {"stop_loss": True}}, "params.stop_loss", "Stop-loss must be a number"),
        ({"rule": RULE, "params": {"stop_loss": "5"}}, "params.stop_loss", 'not "5"'),
        ({"rule": RULE, "params": {"max_positions": False}}, "params.max_positions", "must be a whole number"),
        ({"rule": RULE, "params": {"sizing": {"method": 1}}}, "params.sizing.method", "must be text"),
    ],
)
def test_bad_parameters_are_422_naming_the_field_and_the_allowed_range(client, body, field, words):
    r = client.post("/api/backtest/run", json=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert errors[0]["field"] == field and words in errors[0]["message"] and field in r.json()["error"]


def test_bad_rules_and_requests_get_the_pages_messages(client):
    r = client.post("/api/backtest/run", json={"rule": "rsi(14) <<< 30"})
    assert r.status_code == 422 and "Syntax error" in r.json()["error"]
    r = client.post("/api/backtest/run", json={"rule": "__import__('os')"})
    assert r.status_code == 422 and "Traceback" not in r.text
    r = client.post("/api/backtest/run", json={})
    assert r.status_code == 422 and "exactly one of" in r.json()["error"]
    r = client.post("/api/backtest/run", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]


_JUNK = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            -1,
            0,
            1e308,
            float("nan"),
            float("inf"),
            "",
            "x" * 5000,
            [],
            {},
            [1, 2],
            2**63,
            "rsi(14) < 30",
            "__import__('os')",
            "sample",
            "../../etc/passwd",
            "stop_loss:0:1e9:1e-9",
            [1, 1e9, 1e-9],
            [5, 1, 1],
            {"method": "kelly"},
            {"mode": "walk_forward"},
        ]
    ),
    st.text(max_size=20),
    st.floats(),
    st.integers(),
)
_VALID = {  # a body each route accepts; the test spoils some of its fields
    "/api/scan": {"data": "sample", "rule": RULE},
    "/api/backtest/run": {
        "data": "sample",
        "rule": RULE,
        "params": {"stop_loss": 3, "sizing": {"method": "equal_weight"}},
    },
    "/api/backtest/optimize": {
        "data": "sample",
        "rule": RULE,
        "grid": {"stop_loss": [2, 4, 2]},
        "settings": {"mode": "all", "min_trades": 1},
    },
    "/api/montecarlo": {"data": "sample", "rule": RULE, "settings": {"n_simulations": 200, "seed": 1}},
}
_FIELDS = [
    ("data",),
    ("rule",),
    ("params",),
    ("grid",),
    ("settings",),
    ("signals",),
    ("exit_rule",),
    ("params", "stop_loss"),
    ("params", "holding_period"),
    ("params", "sizing"),
    ("params", "sizing", "method"),
    ("params", "limits"),
    ("params", "nonsense"),
    ("grid", "stop_loss"),
    ("grid", "rule.1"),
    ("settings", "mode"),
    ("settings", "n_simulations"),
    ("settings", "seed"),
    ("settings", "min_trades"),
    ("settings", "objective"),
    ("settings", "method"),
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(_VALID)), spoil=st.lists(st.tuples(st.sampled_from(_FIELDS), _JUNK), max_size=3))
def test_no_request_body_is_a_server_error(client, path, spoil):
    """A valid body with up to three fields spoiled (NaN and Infinity sent as Python writes them): the answer is a
    2xx or a 4xx that says why, never a 500."""
    body = json.loads(json.dumps(_VALID[path]))
    for field, junk in spoil:
        node = body
        for key in field[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[field[-1]] = junk
    r = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.json()["error"] and "Traceback" not in r.text
    elif r.status_code == 202:
        assert wait(client, r.json()["id"])["status"] in ("done", "failed")


def test_an_unexpected_error_is_a_plain_500_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path))
    app = create_app()

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/boom")
    assert r.status_code == 500 and "secret" not in r.text
    assert r.json() == {"error": "An unexpected error stopped the request (it has been logged)."}


# --- jobs -----------------------------------------------------------------------------------------------


def test_an_optimisation_job_reports_progress_and_equals_the_library(client, sample):
    body = {
        "rule": RULE,
        "grid": {"stop_loss": [2, 8, 2], "rule.1": [30, 40, 5]},
        "settings": {"mode": "split", "split": 0.7, "min_trades": 5},
    }
    r = client.post("/api/backtest/optimize", json=body)
    assert r.status_code == 202 and r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    job = wait(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    grid = {"stop_loss": [2.0, 4.0, 6.0, 8.0], "rule.1": [30.0, 35.0, 40.0]}
    ins, _ = in_out_of_sample(sample, RULE, params_from_values({}), grid, split=0.7, min_trades=5)
    assert job["result"]["best_params"] == ins.best_params() and job["result"]["combinations"] == 12
    fit = job["result"]["overfitting"]
    assert fit["n_trials"] == 12 and set(fit) >= {"deflated_sharpe", "pbo", "n_trials", "verdict"}
    link = dict(parse_qsl(urlparse(job["result"]["link"]).query))
    assert link["grid"] == "stop_loss:2:8:2,rule.1:30:40:5" and link["mint"] == "5"
    again = wait(client, client.post("/api/backtest/optimize", json=body).json()["id"])
    assert again["result"]["cache_hit"] and again["result"]["best_params"] == ins.best_params()


def test_a_random_search_job_carries_its_trials_seed_and_constraint(client, sample):
    settings = {"mode": "all", "min_trades": 0, "search": "random", "n_trials": 7, "seed": 3}
    body = {"rule": RULE, "grid": {"stop_loss": [1, 10, 1], "take_profit": [2, 20, 2]}, "settings": settings}
    body["settings"]["constraint"] = "take_profit > stop_loss"
    job = wait(client, client.post("/api/backtest/optimize", json=body).json()["id"])
    assert job["status"] == "done", job["error"]
    grid = {"stop_loss": [float(v) for v in range(1, 11)], "take_profit": [float(v) for v in range(2, 21, 2)]}
    library = optimize(
        sample, RULE, params_from_values({}), grid, min_trades=0, search="random", n_trials=7, seed=3,
        constraint="take_profit > stop_loss",
    )  # fmt: skip
    assert job["result"]["combinations"] == 7 == job["result"]["overfitting"]["n_trials"]
    assert job["result"]["best_params"] == library.best_params()
    link = dict(parse_qsl(urlparse(job["result"]["link"]).query))
    assert (link["search"], link["trials"], link["seed"], link["cons"]) == (
        "random",
        "7",
        "3",
        "take_profit > stop_loss",
    )
    bad = client.post("/api/backtest/optimize", json={**body, "settings": {**settings, "constraint": "x > 1"}})
    assert bad.status_code == 422 and "names 'x'" in bad.json()["error"]


def test_walk_forward_and_monte_carlo_jobs(client):
    body = {
        "rule": RULE,
        "grid": {"stop_loss": [2, 6, 4]},
        "settings": {"mode": "walk_forward", "train_bars": 504, "test_bars": 252, "min_trades": 1},
    }
    job = wait(client, client.post("/api/backtest/optimize", json=body).json()["id"])
    assert job["status"] == "done" and len(job["result"]["windows"]) == 8
    assert len(job["result"]["oos_equity"]) == 8 * 252 and "efficiency" in job["result"]
    r = client.post("/api/montecarlo", json={"rule": RULE, "settings": {"n_simulations": 500, "seed": 3}})
    job = wait(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    summary = job["result"]["summary"]
    assert summary["p5"]["final return %"] <= summary["p95"]["final return %"]
    assert 0 <= job["result"]["probability_of_loss"] <= 1 and len(job["result"]["bands"]) == job["result"]["trades"] + 1


def test_oversized_grids_are_refused_before_any_job_starts(client):
    grid = {"stop_loss": [0.1, 99, 0.1], "take_profit": [0.1, 99, 0.1]}
    r = client.post("/api/backtest/optimize", json={"rule": RULE, "grid": grid})
    assert r.status_code == 422 and "100,000 limit" in r.json()["error"]
    r = client.post("/api/backtest/optimize", json={"rule": RULE, "grid": {"nonsense": [1, 2, 1]}})
    assert r.status_code == 422
    continuous = {"rule": RULE, "grid": {"stop_loss": [1, 100, 0]}, "settings": {"search": "random"}}
    r = client.post("/api/backtest/optimize", json=continuous)  # was accepted, then failed inside the job
    assert r.status_code == 422 and "Stop-loss must be 0 (off) or 0.1 to 99%, not 100" in r.json()["error"]
    assert ".." not in r.json()["error"] and "np." not in r.json()["error"]


def test_a_running_job_can_be_cancelled_and_other_users_cannot_see_it(client, monkeypatch):
    monkeypatch.setenv("SCANNER_USER_HEADER", "X-User")
    restart(client)
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
    grid = {"stop_loss": [0.5, 20, 0.5], "take_profit": [1, 30, 1]}  # 1,200 combinations: seconds of work
    body = {"data": "synthetic", "rule": RULE, "grid": grid, "settings": {"mode": "all"}}
    job_id = client.post("/api/backtest/optimize", json=body, headers=alice).json()["id"]
    assert client.get(f"/api/jobs/{job_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/jobs/{job_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/jobs/{job_id}", headers=alice).status_code == 200
    job = wait(client, job_id, alice)
    assert job["status"] == "cancelled" and job["result"] is None
    assert client.get("/api/jobs/" + "0" * 32, headers=alice).status_code == 404


def test_the_job_queue_is_bounded_per_user():
    jobs, gate = Jobs(workers=1), threading.Event()
    try:
        for _ in range(4):
            jobs.submit("alice", "test", lambda job: gate.wait(10))
        with pytest.raises(Busy, match="4 jobs queued or running"):
            jobs.submit("alice", "test", lambda job: None)
        jobs.submit("bob", "test", lambda job: None)  # another user still gets in
    finally:
        gate.set()
        jobs.shutdown()


def test_finished_jobs_are_capped_per_user_and_in_bytes_and_expire_on_a_timer(client, monkeypatch):
    def finished(jobs, owner, work):  # a user looping quick (cache-hit) jobs, one after another
        job = jobs.submit(owner, "test", work)
        while job.active or job.finished is None:
            time.sleep(0.002)
        return job

    jobs = Jobs(workers=2, kept=50, kept_bytes=10**9)
    try:
        bob = finished(jobs, "bob", lambda job: {"n": 2})
        done = [finished(jobs, "alice", lambda job: {"n": 1}) for _ in range(150)]
        with jobs._lock:
            jobs._forget_expired()
        kept = [j for j in done if jobs.get(j.id, "alice") is not None]
        assert len(kept) == 50 and jobs.get(bob.id, "bob") is not None  # alice's loop does not evict bob
        assert jobs.expired(done[0].id, "alice") and not jobs.expired(done[0].id, "bob")
    finally:
        jobs.shutdown()
    by_bytes = Jobs(workers=1, kept_bytes=3_000)
    try:
        big = [finished(by_bytes, "alice", lambda job: {"x": "y" * 1_000}) for _ in range(4)]
        with by_bytes._lock:
            by_bytes._forget_expired()
        assert [by_bytes.get(j.id, "alice") is not None for j in big] == [False, False, True, True]
    finally:
        by_bytes.shutdown()
    timed = Jobs(workers=1, ttl=0.2, sweep_s=0.1)
    try:
        job = timed.submit("alice", "test", lambda job: 1)
        time.sleep(0.8)  # nothing else is submitted: the timer expires it
        assert timed.get(job.id, "alice") is None and timed.expired(job.id, "alice")
    finally:
        timed.shutdown()
    # through the API: an expired job is a 404 that says so
    client.app.state.jobs.ttl = 0
    job_id = client.post("/api/montecarlo", json={"rule": RULE}).json()["id"]
    for _ in range(300):
        r = client.get(f"/api/jobs/{job_id}")
        if r.status_code == 404:
            break
        time.sleep(0.1)
    assert r.status_code == 404 and "has expired" in r.json()["error"]


def test_json_bodies_have_their_own_limit_and_signals_are_bounded_by_the_data(client, monkeypatch):
    monkeypatch.setenv("SCANNER_MAX_JSON_MB", "0.5")
    signals = [{"symbol": "AAPL", "date": "2020-01-02"}] * 20_000  # ~0.9 MB
    r = client.post("/api/backtest/run", json={"signals": signals})
    assert r.status_code == 413 and "limit of a JSON request (SCANNER_MAX_JSON_MB)" in r.json()["error"]
    monkeypatch.setenv("SCANNER_MAX_JSON_MB", "4")
    tiny = csv_bytes(2, 50)
    data_id = upload(client, tiny).json()["id"]
    r = client.post("/api/backtest/run", json={"data": data_id, "signals": signals[:5_000]})
    assert r.status_code == 422 and "more than the dataset's 100 bars" in r.json()["error"]
    assert upload(client, csv_bytes(3, 60)).status_code == 201  # uploads keep the upload limit


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("get", "/api/nothing-here", 404, "There is no endpoint /api/nothing-here"),
        ("put", "/api/scan", 405, "PUT is not allowed on /api/scan; use POST"),
        ("get", "/nope", 404, "/docs"),
    ],
)
def test_the_frameworks_own_errors_are_json_error_messages_too(client, method, path, status, words):
    r = client.request(method, path)
    assert r.status_code == status and words in r.json()["error"] and "detail" not in r.json()


def test_an_api_upload_on_a_broken_store_is_a_503_with_a_message(client, tmp_path):
    store_dir = tmp_path / "cache" / "datasets"
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    store_dir.write_text("a file where the store should be: a full or lost disk")
    r = upload(client, csv_bytes(seed=30))
    assert r.status_code == 503 and "cannot store datasets right now" in r.json()["error"]
    assert r.headers["retry-after"] and str(tmp_path) not in r.text
    store_dir.unlink()
    store_dir.mkdir()
    assert upload(client, csv_bytes(seed=30)).status_code == 201  # the store works again at once


# --- access ---------------------------------------------------------------------------------------------


def test_a_token_is_required_when_set_and_its_name_owns_the_runs(client, monkeypatch):
    monkeypatch.setenv("SCANNER_API_TOKEN", "alice:s3cret-a-0123456789,bob:s3cret-b-0123456789")
    restart(client)
    assert client.get("/api/data").status_code == 401
    assert client.get("/api/data", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/data", headers={"Authorization": "Basic s3cret-a-0123456789"}).status_code == 401
    alice = {"Authorization": "Bearer s3cret-a-0123456789"}
    assert client.post("/api/backtest/run", json={"rule": RULE}, headers=alice).status_code == 200
    assert run_cache().count(session="user:alice") == 1 and run_cache().count(session="user:bob") == 0
    monkeypatch.setenv("SCANNER_API_TOKEN", "one-shared-token-0123456789")
    restart(client)
    r = client.post(
        "/api/data",
        files={"file": ("a.csv", csv_bytes(), "text/csv")},
        headers={"Authorization": "Bearer one-shared-token-0123456789"},
    )
    assert r.status_code == 201 and r.json()["owner"] == "user:api"


def test_openapi_docs_describe_the_parameters_from_the_table(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    stop = schema["BacktestSettings"]["properties"]["stop_loss"]
    assert stop["default"] == 5.0 and stop["maximum"] == 99.0 and "Stop-loss" in stop["description"]
    assert set(schema["SizingSettings"]["properties"]) == {p.name for p in table.group("sizing")}
    assert [p["path"] for p in client.get("/api/params").json()] == [p.path for p in table.PARAMS]


# --- a real server ------------------------------------------------------------------------------------


def test_a_real_uvicorn_server_uploads_runs_and_matches_the_library(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SCANNER_CACHE_DIR": str(tmp_path / "cache"),
        "SCANNER_API_TOKEN": "tester:tok-0123456789abcdef",
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer tok-0123456789abcdef"}, timeout=120) as http:
            for _ in range(100):
                try:
                    http.get("/api/params")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            path = tmp_path / "bars.csv"
            path.write_bytes(csv_bytes(6, 600, seed=21))
            with path.open("rb") as f:
                info = http.post("/api/data", files={"file": ("bars.csv", f, "text/csv")}).json()
            body = {"data": info["id"], "rule": RULE, "params": {"stop_loss": 3, "holding_period": 10}}
            out = http.post("/api/backtest/run", json=body).json()
            market = load_market(path)
            expected = backtest(market, scan(market, RULE), params_from_values({"stop_loss": 3, "holding_period": 10}))
            assert out["metrics"]["n_trades"] == expected.metrics["n_trades"] > 0
            for key, value in expected.metrics.items():
                assert out["metrics"][key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
            # A long grid (200 symbols x 2,520 bars x 400 combinations) runs as a job; the server keeps answering.
            grid = {"stop_loss": [0.5, 20, 0.5], "take_profit": [1, 10, 1]}
            job = http.post(
                "/api/backtest/optimize",
                json={"data": "synthetic", "rule": RULE, "grid": grid, "settings": {"mode": "all"}},
            ).json()
            polls = 0
            slowest = 0.0
            for _ in range(600):
                start = time.perf_counter()
                state = http.get(f"/api/jobs/{job['id']}").json()
                slowest, polls = max(slowest, time.perf_counter() - start), polls + 1
                if state["status"] not in ("queued", "running"):
                    break
                time.sleep(0.05)
            assert state["status"] == "done" and state["result"]["combinations"] == 400
            assert polls > 5 and slowest < 1.0, f"a status request took {slowest:.2f} s while the grid ran"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_too_many_jobs_are_a_429_that_says_what_to_do(client, monkeypatch):
    import api.jobs

    monkeypatch.setattr(api.jobs, "MAX_ACTIVE_PER_USER", 1)
    grid = {"stop_loss": [0.5, 20, 0.5], "take_profit": [1, 30, 1]}
    body = {"data": "synthetic", "rule": RULE, "grid": grid, "settings": {"mode": "all"}}
    first = client.post("/api/backtest/optimize", json=body).json()["id"]
    r = client.post("/api/backtest/optimize", json=body)
    assert r.status_code == 429 and "DELETE /api/jobs/" in r.json()["error"]
    client.delete(f"/api/jobs/{first}")
    assert wait(client, first)["status"] == "cancelled"


def test_old_mac_and_zip_uploads_are_read_or_refused_with_a_message_never_a_500(client):
    import zipfile

    content = csv_bytes(2, 60)
    assert upload(client, content.replace(b"\n", b"\r"), "oldmac.csv").status_code == 201
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bars.csv", content)
    assert upload(client, buf.getvalue(), "bars.zip").status_code == 201
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("more.csv", content)
    r = upload(client, buf.getvalue(), "bars.zip")
    assert r.status_code == 422 and "unzip it" in r.json()["error"]


def test_jobs_take_turns_across_users_and_one_user_never_holds_every_worker():
    jobs, gate = Jobs(workers=2), threading.Event()
    try:
        alice = [jobs.submit("alice", "test", lambda job: gate.wait(30)) for _ in range(3)]
        time.sleep(0.3)
        assert [j.status for j in alice] == ["running", "queued", "queued"]  # one worker stays free for others
        assert [jobs.place(j) for j in alice[1:]] == [0, 1]
        started = time.monotonic()
        bob = jobs.submit("bob", "test", lambda job: "done")
        while bob.status != "done" and time.monotonic() - started < 5:
            time.sleep(0.01)
        assert bob.status == "done" and time.monotonic() - started < 1
        carol = jobs.submit("carol", "test", lambda job: gate.wait(30))
        assert jobs.place(carol) == 1 and jobs.place(alice[2]) == 2  # alice's next, then carol's: turns
    finally:
        gate.set()
        jobs.shutdown()


def test_bobs_monte_carlo_starts_within_5_s_while_alice_runs_two_100k_trial_searches(client, two_users):
    alice, bob = two_users
    search = {"mode": "all", "min_trades": 0, "search": "random", "n_trials": 100_000, "seed": 1}
    grid = {"stop_loss": [1, 20, 0], "take_profit": [1, 40, 0]}
    ids = []
    for seed in (1, 2):
        body = {"rule": RULE, "grid": grid, "settings": {**search, "seed": seed}}
        r = client.post("/api/backtest/optimize", json=body, headers=alice)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    time.sleep(0.5)
    assert [client.get(f"/api/jobs/{i}", headers=alice).json()["status"] for i in ids] == ["running"] * 2
    started = time.monotonic()
    r = client.post("/api/montecarlo", json={"rule": RULE, "settings": {"n_simulations": 100}}, headers=bob)
    status = "queued"
    while status == "queued" and time.monotonic() - started < 5:
        status = client.get(r.json()["url"], headers=bob).json()["status"]
        time.sleep(0.05)
    assert status in ("running", "done"), f"Bob's job is still {status} after 5 s"  # the worker kept for others
    third = client.post("/api/backtest/optimize", json={"rule": RULE, "grid": grid, "settings": search}, headers=alice)
    ids.append(third.json()["id"])
    view = client.get(third.json()["url"], headers=alice).json()
    assert view["status"] == "queued" and view["place_in_line"] == 0  # next in line, once one of hers ends
    for job_id in ids:
        client.delete(f"/api/jobs/{job_id}", headers=alice)


@contextlib.contextmanager
def uvicorn_here() -> Iterator[int]:
    """The API in a real uvicorn server on 127.0.0.1, in this process (so a test can hold its budget); its port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_client_that_goes_away_takes_its_waiting_work_out_of_the_queue(tmp_path, monkeypatch):
    from engine.server.stores import server_budget

    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCANNER_SERVER_MB", "64")
    with uvicorn_here() as port:
        budget = server_budget()
        with budget.reserve(60 * 2**20, "grid"):  # the memory is taken: the request waits its turn
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"http://127.0.0.1:{port}/api/backtest/run", json={"rule": RULE}, timeout=1.5)
            left = time.monotonic()
            while budget._queue and time.monotonic() - left < 5:
                time.sleep(0.05)
            assert not budget._queue, "the gone client's work still waits"  # not after SCANNER_QUEUE_WAIT_S (60 s)


def test_a_500_answers_in_words_and_keeps_the_connection_usable(tmp_path, monkeypatch):
    from engine.server import service

    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))

    def broken() -> None:
        raise RuntimeError("a bug")

    with uvicorn_here() as port:
        monkeypatch.setattr(service, "datasets", broken)  # a bug in listing the datasets
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            answers = []
            for path in ("/api/data", "/api/params"):  # the second request on the same connection
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head, _, rest = conn.recv(65536).partition(b"\r\n\r\n")
                length = int(
                    next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                answers.append((head.split(b"\r\n")[0], json.loads(rest)))
    assert answers[0][0].endswith(b"500 Internal Server Error") and "has been logged" in answers[0][1]["error"]
    assert "a bug" not in json.dumps(answers[0][1]) and answers[1][0].endswith(b"200 OK")


def test_the_team_listing_shows_nothing_of_a_private_run_even_to_a_holder_of_the_same_bytes(client, two_users):
    alice, bob = two_users
    content = csv_bytes(seed=33)
    mine = client.post("/api/data", files={"file": ("alice_book.csv", content, "text/csv")}, headers=alice).json()
    secret_rule = "rsi(7) < 23.5"
    run = client.post("/api/backtest/run", json={"data": mine["id"], "rule": secret_rule}, headers=alice).json()
    theirs = client.post("/api/data", files={"file": ("bob_copy.csv", content, "text/csv")}, headers=bob).json()
    assert theirs["id"] == mine["id"] and theirs["name"] == "bob_copy.csv"  # the same bytes, his own listing
    team = client.get("/api/runs", params={"team": "true"}, headers=bob)
    assert team.json() == {"total": 0, "private_runs_not_shown": 1, "runs": []}
    for secret in ("alice_book", secret_rule, "alice"):
        assert secret not in team.text
    page = client.get(f"/api/runs/{run['run_id']}/trades", headers=bob)
    unknown = client.get("/api/runs/0123456789ab/trades", headers=bob)
    assert page.status_code == unknown.status_code == 404  # a private run answers like an unknown one
    assert page.json()["error"].replace(run["run_id"], "ID") == unknown.json()["error"].replace("0123456789ab", "ID")
    client.post(f"/api/data/{mine['id']}/share", headers=alice)  # alice lists it: her runs on it are the team's
    shown = client.get("/api/runs", params={"team": "true"}, headers=bob).json()
    assert shown["private_runs_not_shown"] == 0 and [(r["by"], r["rule"], r["yours"]) for r in shown["runs"]] == [
        ("alice", secret_rule, False)
    ]
    assert client.get(f"/api/runs/{run['run_id']}/trades", headers=bob).status_code == 200
    assert client.get("/api/runs", headers=bob).json()["total"] == 0  # his own: none


@pytest.mark.parametrize("search", ["grid", "random", "tpe"])
def test_a_constraint_no_combination_satisfies_is_a_422_at_submission(client, search):
    grid = {"stop_loss": [1, 10, 1], "take_profit": [2, 20, 0] if search != "grid" else [2, 20, 2]}
    settings = {"search": search, "n_trials": 20, "constraint": "take_profit < 0"}
    r = client.post("/api/backtest/optimize", json={"rule": RULE, "grid": grid, "settings": settings})
    assert r.status_code == 422 and "No combination satisfies take_profit < 0" in r.json()["error"], r.text
    settings["constraint"] = "take_profit > 3 * stop_loss"  # satisfiable: accepted
    assert (
        client.post("/api/backtest/optimize", json={"rule": RULE, "grid": grid, "settings": settings}).status_code
        == 202
    )


def test_an_event_study_through_the_api_equals_the_library_and_is_listed_as_a_run(client, sample):
    from engine import forward_returns
    from engine.rules import scan

    body = {"rule": RULE, "settings": {"horizons": "1,5,20", "cooldown": 3}}
    r = client.post("/api/events", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    want = forward_returns(sample, scan(sample, RULE), horizons=(1, 5, 20), cooldown=3).summary
    assert [row["horizon"] for row in answer["summary"]] == [1, 5, 20]
    assert answer["summary"][1]["mean_excess"] == pytest.approx(want.loc[5, "mean_excess"], rel=1e-12)
    assert answer["events"] == len(answer["first_events"]) or len(answer["first_events"]) == 100
    assert "evh=1%2C5%2C20" in answer["link"] and "evc=3" in answer["link"] and "/scanner?" in answer["link"]
    assert client.post("/api/events", json=body).json()["cache_hit"] is True
    assert any(run["kind"] == "events" for run in client.get("/api/runs").json()["runs"])
    bad = client.post("/api/events", json={"rule": RULE, "settings": {"horizons": "1,x"}})
    assert bad.status_code == 422 and "comma-separated" in bad.json()["error"]


def test_an_event_study_on_a_large_dataset_is_a_job_with_the_same_answer(client, monkeypatch):
    import api.routes.jobs as job_routes

    body = {"rule": RULE, "settings": {"horizons": "5"}}
    at_once = client.post("/api/events", json=body).json()
    monkeypatch.setattr(job_routes, "EVENTS_AT_ONCE_CELLS", 0)  # every dataset is "large" now
    r = client.post("/api/events", json=body)
    assert r.status_code == 202
    done = wait(client, r.json()["id"])
    assert done["result"]["summary"] == at_once["summary"] and done["result"]["cache_hit"] is True
