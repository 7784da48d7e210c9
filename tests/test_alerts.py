"""Alerts: a family's new version runs its saved screens on the new bars; the names that entered reach each
follower's inbox and webhook once per screen and bar (also across a restart mid-run and a second run of the same
version); a private screen's alerts reach its owner only. Webhooks against real HTTP receivers on 127.0.0.1:
the signature checked, a receiver that fails twice then answers, one that never answers (the server answers
meanwhile); the history database's passing lock and a disk that cannot be written."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from engine import InputError, scan
from engine.data import market_from_frame
from engine.server.datasets import to_frame
from tests.conftest import hold_history_lock

ROOT = Path(__file__).resolve().parents[1]
ALICE, BOB = "user:alice@example.org", "user:bob@example.org"
CUT = "2023-08-31"  # the first version ends here; the sample's last 14 dates come as the second


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCANNER_SOURCE_ALLOW", "127.0.0.1")
    return tmp_path


def family_with_screens(sample, shared_family: bool = True):
    """Alice's family of the sample up to CUT, a shared screen Bob follows and a private one; and the new bars."""
    from engine.server import service

    whole = to_frame(sample)
    family = service.create_family("Big six", market_from_frame(whole[whole.date <= CUT]), ALICE, shared_family)
    shared = service.save_screen("Low RSI", "rsi(14) < 50", f"family:{family.slug}", ALICE, shared=True)
    private = service.save_screen("Mine", "rsi(14) < 55", f"family:{family.slug}", ALICE)
    assert service.follow_screen(shared.id, BOB) and not service.follow_screen(private.id, BOB)
    return family, shared, private, market_from_frame(whole[whole.date > CUT])


def expected(sample, rule: str) -> dict[str, list[str]]:
    """By the library: the bars of the new version an alert covers (its newest five) and who entered on each."""
    signals = scan(sample, rule)
    return {f"{d:%Y-%m-%d}": signals.on(d).entered.symbol.tolist() for d in sample.dates[-5:]}


def received(user: str) -> dict[tuple[str, str], list[str]]:
    from engine.server import service

    entries = service.inbox(user, limit=200)
    keyed = {(e.screen_name, e.bar): [r["symbol"] for r in e.entered] for e in entries}
    assert len(keyed) == len(entries), "an alert was sent twice"
    return keyed


def test_a_new_version_alerts_each_follower_once_per_screen_and_bar_and_a_private_screen_only_its_owner(server, sample):
    from engine.server import alert_worker, service

    family, shared, private, new = family_with_screens(sample)
    outcome = service.append_to_family(family.slug, new, ALICE)
    assert alert_worker.run_versions() > 0
    want = {("Low RSI", d): s for d, s in expected(sample, shared.rule).items() if s}
    mine = {("Mine", d): s for d, s in expected(sample, private.rule).items() if s}
    assert received(ALICE) == {**want, **mine} and received(BOB) == want  # never Alice's private screen
    assert service.unread_alerts(BOB) == len(want)
    entry = service.inbox(BOB)[0]
    assert entry.link == {"rule": shared.rule, "family": family.slug, "on": entry.bar}  # the Scanner on that bar
    assert {"symbol", "close", "rsi(14)"} <= set(entry.entered[0])  # with the rule's values
    assert alert_worker.run_version(family.slug, outcome.family.latest.id) == 0  # the same version again: nothing
    service.append_to_family(family.slug, new, ALICE)  # nothing new: no version, no alert
    assert alert_worker.run_versions() == 0 and received(BOB) == want
    assert service.mark_alerts_read(BOB, [entry.id]) == 1 and service.unread_alerts(BOB) == len(want) - 1
    assert service.mark_alerts_read(BOB) == len(want) - 1 and service.unread_alerts(BOB) == 0
    assert service.mark_alerts_read(ALICE, [entry.id]) == 0  # Bob's entry is not Alice's to mark


@pytest.mark.parametrize("hidden", ["family", "screen"])
def test_a_follower_who_cannot_see_the_family_or_a_screen_made_private_gets_nothing(server, sample, hidden):
    from engine.server import alert_worker, service

    family, shared, _, new = family_with_screens(sample, shared_family=hidden != "family")
    assert service.follows(shared.id, BOB)
    if hidden == "screen":  # Bob followed it while it was shared
        service.update_screen(shared.id, ALICE, shared=False)
    service.append_to_family(family.slug, new, ALICE)
    alert_worker.run_versions()
    assert received(BOB) == {} and received(ALICE)
    assert not service.follow_screen(shared.id, "browser:1234")  # a read-only visit follows nothing
    assert service.delete_screen(shared.id, ALICE) and not service.follows(shared.id, BOB)


def test_two_versions_queued_before_the_worker_runs_alert_each_new_bar_once(server, sample):
    from engine.server import alert_worker, service

    family, shared, _, new = family_with_screens(sample)
    whole = to_frame(sample)
    middle = sorted(whole[whole.date > CUT].date.unique())[6]
    service.append_to_family(family.slug, market_from_frame(whole[(whole.date > CUT) & (whole.date <= middle)]), ALICE)
    service.append_to_family(family.slug, new, ALICE)  # the rest: a second version before the worker's turn
    assert alert_worker.run_versions() > 0 and alert_worker.run_versions() == 0
    signals = scan(sample, shared.rule)
    first = [d for d in sample.dates if pd.Timestamp(CUT) < d <= middle][-5:]
    second = [d for d in sample.dates if d > middle][-5:]
    want = {("Low RSI", f"{d:%Y-%m-%d}"): signals.on(d).entered.symbol.tolist() for d in first + second}
    assert received(BOB) == {k: v for k, v in want.items() if v}


def test_a_run_killed_midway_is_done_again_at_the_next_start_and_no_bar_is_sent_twice(server, sample):
    """Forty screens on one version; the worker's process is killed while it claims bars; a new process (a
    restart) runs the queue again: every (screen, bar) has exactly one entry per follower."""
    from engine.server import alert_worker, service

    family, _, _, new = family_with_screens(sample)
    rules = [f"rsi(14) < {40 + i * 0.5}" for i in range(40)]
    for i, rule in enumerate(rules):
        service.save_screen(f"S{i:02d}", rule, f"family:{family.slug}", ALICE, shared=True)
    service.append_to_family(family.slug, new, ALICE)
    history = server / "cache" / "history.sqlite"
    worker = subprocess.Popen(
        [sys.executable, "-c", "from engine.server import alert_worker; alert_worker.run_versions()"],
        cwd=ROOT,
        env={**os.environ},
    )
    claims_at_kill = 0
    deadline = time.monotonic() + 120
    while worker.poll() is None and time.monotonic() < deadline:
        with sqlite3.connect(history) as db:
            claims_at_kill = db.execute("SELECT COUNT(*) FROM alert_claims").fetchone()[0]
        if claims_at_kill >= 20:
            worker.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    worker.wait(30)
    with sqlite3.connect(history) as db:
        (left,) = db.execute("SELECT COUNT(*) FROM alert_runs WHERE done = 0").fetchone()
    total_claims = 42 * 5
    assert worker.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert left == 1 and claims_at_kill < total_claims  # killed mid-run: the version is still queued
    alert_worker.run_versions()  # the restart
    alert_worker.run_versions()
    with sqlite3.connect(history) as db:
        (claims,) = db.execute("SELECT COUNT(*) FROM alert_claims").fetchone()
        (done,) = db.execute("SELECT COUNT(*) FROM alert_runs WHERE done = 0").fetchone()
    assert claims == total_claims and done == 0
    want = {(f"S{i:02d}", d): s for i, r in enumerate(rules) for d, s in expected(sample, r).items() if s}
    want |= {("Low RSI", d): s for d, s in expected(sample, "rsi(14) < 50").items() if s}
    want |= {("Mine", d): s for d, s in expected(sample, "rsi(14) < 55").items() if s}
    assert received(ALICE) == want  # the owner follows each of her screens


# --- webhooks --------------------------------------------------------------------------------------------------


@contextmanager
def receiver(fail_first: int = 0, hang: bool = False) -> Iterator[tuple[str, list[dict]]]:
    """An HTTP server on 127.0.0.1 that keeps every POST (headers and body), answers 500 to the first
    `fail_first` tries of each delivery and 200 after; `hang`: it never answers."""
    got: list[dict] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            payload = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"headers": dict(self.headers), "body": payload.decode()})
            if hang:
                release.wait(60)
                return
            tries = sum(r["headers"]["X-Scanner-Delivery"] == self.headers["X-Scanner-Delivery"] for r in got)
            self.send_response(500 if tries <= fail_first else 200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/hook", got
    finally:
        release.set()
        http.shutdown()
        http.server_close()


def verified(request: dict, secret: str) -> dict:
    """What a receiver does: the HMAC over timestamp and body, compared in constant time; the body."""
    stamp, body = request["headers"]["X-Scanner-Timestamp"], request["body"]
    mac = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-Scanner-Signature"], f"sha256={mac}")
    assert abs(time.time() - int(stamp)) < 300
    return json.loads(body)


def test_a_webhook_gets_the_alert_signed_and_a_rotated_secret_signs_from_then_on(server, sample):
    from engine.server import alert_worker, service

    family, shared, _, new = family_with_screens(sample)
    with receiver() as (url, got):
        hook = service.set_webhook(BOB, url)
        assert service.webhook(BOB).hint == f"…{hook.secret[-4:]}"
        service.append_to_family(family.slug, new, ALICE)
        alert_worker.run_versions()
        assert alert_worker.deliver_due() == len(got) == len(received(BOB))
        bodies = [verified(r, hook.secret) for r in got]
        want = {d: s for d, s in expected(sample, shared.rule).items() if s}
        assert {b["date"]: [r["symbol"] for r in b["entered"]] for b in bodies} == want
        assert bodies[0]["screen"]["name"] == "Low RSI" and "scanner?" in bodies[0]["link"]
        with pytest.raises(AssertionError):
            verified(got[0], "not-the-secret")
        rotated = service.rotate_webhook(BOB)
        assert rotated.secret != hook.secret
        log = service.deliveries(BOB)
        assert {d.status for d in log} == {"delivered"} and all(d.attempts == 1 and d.last_code == 200 for d in log)
        assert service.deliveries(ALICE) == []  # Alice has no webhook: only her inbox


def test_a_receiver_that_fails_twice_gets_the_same_delivery_a_third_time_after_backoff(server, sample):
    from engine.server import alert_worker, service
    from engine.server.webhooks import BACKOFF_S

    family, _, _, new = family_with_screens(sample)
    with receiver(fail_first=2) as (url, got):
        hook = service.set_webhook(BOB, url, slack=True)
        service.append_to_family(family.slug, new, ALICE)
        alert_worker.run_versions()
        started = time.time()
        count = alert_worker.deliver_due()
        assert count == len(service.deliveries(BOB)) > 0
        assert alert_worker.deliver_due() == 0  # the failed ones wait their backoff
        log = service.deliveries(BOB)
        assert all(d.status == "queued" and d.attempts == 1 and d.last_code == 500 for d in log)
        assert all(d.next_try >= started + BACKOFF_S[0] - 1 for d in log)
        assert alert_worker.deliver_due(now=time.time() + BACKOFF_S[0] + 1) == count  # once each, failing again
        assert alert_worker.deliver_due(now=time.time() + BACKOFF_S[1] + 1) == count
        log = service.deliveries(BOB)
        assert all(d.status == "delivered" and d.attempts == 3 and d.last_error == "" for d in log)
        for delivery in log:  # the same delivery id every try: a receiver drops a repeat by it
            assert sum(r["headers"]["X-Scanner-Delivery"] == delivery.id for r in got) == 3
        text = verified(got[-1], hook.secret)["text"]
        assert text.startswith("*Low RSI* on ") and "entered" in text and "|Open in the Scanner>" in text


def test_a_receiver_that_never_answers_holds_a_sender_not_the_server(server, sample, monkeypatch):
    """A real uvicorn server with its worker: the webhook hangs; the API answers meanwhile; the try ends at the
    timeout and is queued again with the reason in the delivery log."""
    import httpx

    from engine.server import service
    from tests.test_api import uvicorn_here

    monkeypatch.setenv("SCANNER_WEBHOOK_TIMEOUT_S", "3")  # the default 10 s, shortened to keep the suite quick
    family, shared, _, new = family_with_screens(sample)

    with receiver(hang=True) as (url, got), uvicorn_here() as port:
        service.set_webhook(BOB, url)
        service.append_to_family(family.slug, new, ALICE)  # the server's worker wakes on it
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got, "the worker never tried the webhook"
        started = time.perf_counter()
        answer = httpx.get(f"http://127.0.0.1:{port}/api/screens", timeout=5)
        assert answer.status_code == 200 and time.perf_counter() - started < 1.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = {d.status for d in service.deliveries(BOB)}
            if "queued" in log and any(d.attempts for d in service.deliveries(BOB)):
                break
            time.sleep(0.1)
        tried = [d for d in service.deliveries(BOB) if d.attempts]
        assert tried and tried[0].status == "queued" and tried[0].last_error == "no answer within 3 s"


def test_webhook_addresses_follow_the_sources_allow_list(server, monkeypatch):
    from engine.server import service

    monkeypatch.delenv("SCANNER_SOURCE_ALLOW")
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://example.org/x", "hook"):
        with pytest.raises(InputError, match="webhook address|resolves to|does not resolve"):
            service.set_webhook(BOB, url)
    with pytest.raises(InputError, match="identity of your own"):
        service.set_webhook("api:anonymous", "https://example.org/hook")
    assert service.webhook(BOB) is None


# --- storage ---------------------------------------------------------------------------------------------------


def test_a_passing_lock_on_the_history_is_waited_out_and_the_alert_still_goes_once(server, sample, monkeypatch):
    from engine.server import alert_worker, service

    monkeypatch.setenv("SCANNER_HISTORY_BUSY_S", "0.2")
    family, shared, _, new = family_with_screens(sample)
    service.append_to_family(family.slug, new, ALICE)
    holder = hold_history_lock(server / "cache" / "history.sqlite", 1.0)
    alert_worker.run_versions()
    holder.join()
    assert received(BOB) == {("Low RSI", d): s for d, s in expected(sample, shared.rule).items() if s}


def test_a_version_made_while_the_history_cannot_be_written_is_alerted_once_it_can(server, sample):
    """The history database is out of reach (a full disk, a lost mount) when the version is made: the version is
    kept, its alert run waits in memory and is written and run once the database works again."""
    from engine.server import alert_worker, service

    family, shared, _, new = family_with_screens(sample)
    history = server / "cache" / "history.sqlite"
    aside = server / "history.aside"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{history}{suffix}").exists():
            Path(f"{history}{suffix}").rename(f"{aside}{suffix}")
    history.mkdir()  # nothing can be written where the database was
    outcome = service.append_to_family(family.slug, new, ALICE)
    assert outcome.changed and service.unread_alerts(BOB) == 0  # the bell says nothing rather than fail
    with pytest.raises((OSError, sqlite3.Error)):
        alert_worker.run_versions()
    history.rmdir()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{aside}{suffix}").exists():
            Path(f"{aside}{suffix}").rename(f"{history}{suffix}")
    assert alert_worker.run_versions() > 0
    assert received(BOB) == {("Low RSI", d): s for d, s in expected(sample, shared.rule).items() if s}


def test_the_api_follows_screens_lists_alerts_and_keeps_a_webhook_secret_to_one_answer(server, sample, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from engine.server import alert_worker, service
    from tests.test_api import ALICE_TOKEN, BOB_TOKEN

    monkeypatch.setenv("SCANNER_API_TOKEN", f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")
    alice = {"Authorization": f"Bearer {ALICE_TOKEN}"}
    bob = {"Authorization": f"Bearer {BOB_TOKEN}"}
    whole = to_frame(sample)
    family = service.create_family("Big six", market_from_frame(whole[whole.date <= CUT]), "user:alice", True)
    client = TestClient(create_app())
    data = f"family:{family.slug}"
    mine = client.post("/api/screens", json={"name": "Hers", "rule": "rsi(14) < 55", "data": data}, headers=alice)
    ours = client.post(
        "/api/screens", json={"name": "Ours", "rule": "rsi(14) < 50", "data": data, "shared": True}, headers=alice
    )
    assert client.put(f"/api/screens/{mine.json()['id']}/follow", json={}, headers=bob).status_code == 404
    assert client.put(f"/api/screens/{ours.json()['id']}/follow", json={"follow": True}, headers=bob).json() == {
        "screen": ours.json()["id"],
        "following": True,
    }
    with receiver() as (url, got):
        set_hook = client.put("/api/webhook", json={"url": url}, headers=bob).json()
        assert len(set_hook["secret"]) >= 40 and "secret" not in client.get("/api/webhook", headers=bob).json()
        assert client.get("/api/webhook", headers=alice).status_code == 404
        service.append_to_family(family.slug, market_from_frame(whole[whole.date > CUT]), "user:alice")
        alert_worker.run_versions()
        alert_worker.deliver_due()
        inbox = client.get("/api/alerts", headers=bob).json()
        assert inbox["unread"] == len(inbox["alerts"]) > 0
        assert {a["screen_name"] for a in inbox["alerts"]} == {"Ours"}
        assert inbox["alerts"][0]["link"].startswith("http://127.0.0.1:8501/scanner?rule=")
        assert "on=" in inbox["alerts"][0]["link"]
        assert {a["screen_name"] for a in client.get("/api/alerts", headers=alice).json()["alerts"]} == {"Ours", "Hers"}
        log = client.get("/api/webhook/deliveries", headers=bob).json()["deliveries"]
        assert len(log) == len(got) and log[0]["status"] == "delivered" and "body" not in log[0]
        for request in got:
            verified(request, set_hook["secret"])
        assert client.post("/api/alerts/read", json={}, headers=bob).json()["unread"] == 0
        rotated = client.post("/api/webhook/rotate", headers=bob).json()
        assert rotated["secret"] != set_hook["secret"]
        refused = client.put("/api/webhook", json={"url": "http://localhost:1/x"}, headers=alice)
        assert refused.status_code == 422 and "resolves to 127.0.0.1" in refused.json()["error"]  # not allowed
        bad = client.get("/api/alerts?limit=100000", headers=bob)
        assert bad.status_code == 422 and "limit" in bad.json()["error"]


def test_a_silent_port_is_not_mistaken_for_a_delivery(server, sample):
    """A closed port answers nothing: the try is logged with its reason and queued again."""
    from engine.server import alert_worker, service

    family, _, _, new = family_with_screens(sample)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service.set_webhook(BOB, f"http://127.0.0.1:{port}/hook")
    service.append_to_family(family.slug, new, ALICE)
    alert_worker.run_versions()
    alert_worker.deliver_due()
    log = service.deliveries(BOB)
    assert log and all(d.status == "queued" and d.last_error.startswith("no answer") for d in log)


def test_the_alerts_page_lists_a_followers_entries_marks_them_read_and_names_a_refused_webhook(
    server, sample, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    from engine.server import alert_worker, service

    family, shared, _, new = family_with_screens(sample)
    service.append_to_family(family.slug, new, ALICE)
    alert_worker.run_versions()
    unread = service.unread_alerts(BOB)
    at = AppTest.from_file("../app/main.py", default_timeout=120)
    at.user = {"is_logged_in": True, "email": "bob@example.org"}
    at.switch_page("../pages/alerts.py")
    at.run()
    assert not at.exception
    shown = [m.value for m in at.markdown if m.value.startswith("**Low RSI** · ")]
    assert len(shown) == unread > 0 and all(":blue-badge[new]" in text for text in shown)
    assert service.unread_alerts(BOB) == 0  # on screen: read
    monkeypatch.delenv("SCANNER_SOURCE_ALLOW")
    at.text_input(key="w.alerts.url").set_value("http://127.0.0.1:9/hook")
    next(b for b in at.button if b.label.startswith("Save webhook")).click().run()
    assert not at.exception and "resolves to 127.0.0.1" in at.error[0].value and service.webhook(BOB) is None
    monkeypatch.setenv("SCANNER_SOURCE_ALLOW", "127.0.0.1")
    at.text_input(key="w.alerts.url").set_value("http://127.0.0.1:9/hook")
    next(b for b in at.button if b.label.startswith("Save webhook")).click().run()
    hook = service.webhook(BOB)
    assert hook is not None and [c.value for c in at.code] == [hook.secret]  # shown this once
    at.run()
    assert hook.secret not in [c.value for c in at.code] and any(hook.hint in m.value for m in at.markdown)


def test_the_cli_follows_appends_sends_and_lists_alerts_as_cron_would(server, sample, capsys, tmp_path):
    """`data append` from cron makes a version; `screens send` runs its alerts once (no server running)."""
    from engine.__main__ import main
    from engine.server import service

    family, shared, _, new = family_with_screens(sample)
    recent = tmp_path / "recent.csv"
    to_frame(sample).query("date > @CUT").to_csv(recent, index=False)
    assert main(["screens", "unfollow", shared.id, "--user", "bob@example.org"]) == 0
    assert main(["screens", "follow", shared.id, "--user", "bob@example.org"]) == 0
    assert main(["screens", "follow", shared.id]) == 2  # no identity of one's own: nobody to send to
    assert main(["data", "append", family.slug, str(recent), "--user", "alice@example.org"]) == 0
    capsys.readouterr()
    assert main(["screens", "send", "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["alerts"] > 0 and main(["screens", "send", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alerts"] == 0  # once per screen and bar
    assert main(["screens", "alerts", "--user", "bob@example.org"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == service.unread_alerts(BOB) and all("Low RSI" in line for line in listed)
