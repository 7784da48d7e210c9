"""End to end in a real browser, where widget-state bugs live: the app's own launcher (`python -m app`, what
`make run` starts) on a free port with its own cache directory and a trusted identity header, driven by
Playwright in Debian's Chromium. AppTest does not recreate widgets the way a browser session does, so every
interactive journey (edit and rerun, links in a fresh browser context, uploads, reloads, hostile links, two
signed-in users) is checked here."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from engine import attach_columns, backtest, load_sample, synthetic_market
from engine.plots.format import metric_delta, metric_text
from engine.rules import scan
from engine.server.datasets import to_frame

try:  # the browser tests skip without Playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
PSE = Path(__file__).resolve().parents[2] / "shared/data/real/long/pse257_fastquant_2010_2021.csv.gz"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (make system-deps)")
        pytest.skip("chromium not installed; run `make system-deps`")
    port = free_port()
    cache = tmp_path_factory.mktemp("cache")
    log = (tmp_path_factory.mktemp("log") / "server.log").open("w")
    SERVER_LOG.append(Path(log.name))
    env = {**os.environ, "SCANNER_CACHE_DIR": str(cache), "SCANNER_USER_HEADER": IDENTITY_HEADER}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()
    text = Path(log.name).read_text()
    assert "Traceback" not in text, text[-3000:]  # no page ever raised, whatever the tests sent it


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


SERVER_LOG: list[Path] = []
IDENTITY_HEADER = "X-Forwarded-User"  # as an authenticating proxy in front of the server would set it


def new_page(browser, user: str | None = None):
    """A page in a fresh browser context: a teammate with no cookies and no session; with `user`, signed in
    through the trusted proxy header (a real identity)."""
    headers = {IDENTITY_HEADER: user} if user else None
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, extra_http_headers=headers)
    return context.new_page()


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def settle(page) -> None:
    """Wait until the app has finished its script run (the status widget is gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=60_000)
    page.wait_for_timeout(300)


def edit(page, box, value: str, url, submit=None) -> None:
    """Type a value, submit it (Enter, or the given click), wait until the link carries it and the run ends."""
    box.fill(value)
    submit() if submit else box.press("Enter")
    page.wait_for_url(url, timeout=30_000)
    settle(page)


def choose(page, box_name: str, option: str) -> None:
    """Pick an option of a select box. A click can land while the list is being drawn again (a rerun) and
    leave it closed: then the keyboard opens it, a few times at most."""
    box = page.get_by_role("combobox", name=box_name)
    for attempt in range(4):
        if attempt == 0:
            box.click()
        else:
            box.focus()
            box.press("ArrowDown")
        try:
            page.get_by_role("option", name=option).click(timeout=5_000)
            return
        except PlaywrightTimeout:
            settle(page)
    raise AssertionError(f"the {box_name!r} list never showed {option!r}")


def first_metric(page, label: str) -> str:
    card = page.locator('[data-testid="stMetric"]', has_text=label).first
    card.wait_for(timeout=90_000)
    return card.locator('[data-testid="stMetricValue"]').inner_text()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser_{name}.png"), full_page=True)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_server_prepares_the_engine_before_its_first_visitor(server):
    """The launcher starts compiling (or loading) the kernels when the server starts: the log says the engine
    is ready before any page has run (the health check is no visitor)."""
    deadline = time.time() + 120
    while "engine ready" not in SERVER_LOG[0].read_text() and time.time() < deadline:
        time.sleep(0.5)
    text = SERVER_LOG[0].read_text()
    assert "engine ready" in text and '"event": "script"' not in text


def test_deep_link_to_backtest_is_the_first_request_and_reproduces_the_run(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi(14)+%3C+30&sl=4&tp=12&hold=15&side=long", timeout=60_000)
    first_metric(page, "# Trades")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(state="visible", timeout=30_000)
    assert page.get_by_role("spinbutton", name="Stop-loss (%)").input_value() == "4.00"
    shot(page, "deeplink_backtest")
    page.context.close()


def test_five_backtest_edits_in_a_row_are_each_applied(server, browser):
    """The bug: every second edit of a form field was lost (the widget was recreated with its old value)."""
    page = new_page(browser)
    page.goto(f"{server}/backtest", timeout=60_000)
    first_metric(page, "Total return")  # the page runs at once: edits start after it
    settle(page)
    seen = set()
    for field, values, key in (
        ("Stop-loss (%)", ["4", "3", "2", "6", "7"], "sl"),
        ("Max positions", ["3", "4", "2", "5", "6"], "maxpos"),
    ):
        box = page.get_by_role("spinbutton", name=field)
        for v in values:
            edit(page, box, v, re.compile(rf"[?&]{key}={v}(&|$)"))
            assert float(box.input_value()) == float(v)
            assert query(page)[key] == v
            total = first_metric(page, "Total return")
            seen.add(total)
    assert len(seen) >= 8  # each edit changed the result
    page.context.close()


def test_five_edits_of_different_fields_rerun_without_a_button_each_equal_to_the_library(server, browser, sample):
    """Results follow every edit: Enter commits a field and the new numbers (the library's, with a delta
    against the previous run) are on screen, no button pressed."""
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi%2814%29+%3C+30", timeout=60_000)
    first_metric(page, "Total return")
    settle(page)
    signals = scan(sample, "rsi(14) < 30")
    settings: dict[str, float] = {}
    previous = backtest(sample, signals).metrics["total_return_pct"]
    for label, key, name, value in (
        ("Stop-loss (%)", "sl", "stop_loss", "3"),
        ("Take-profit (%)", "tp", "take_profit", "12"),
        ("Max positions", "maxpos", "max_positions", "4"),
        ("Holding period (bars)", "hold", "holding_period", "10"),
        ("Trailing stop (%)", "trail", "trailing_stop", "6"),
    ):
        edit(page, page.get_by_role("spinbutton", name=label), value, re.compile(rf"[?&]{key}={value}(&|$)"))
        settings[name] = float(value)
        want = backtest(sample, signals, **settings).metrics["total_return_pct"]
        card = page.locator('[data-testid="stMetric"]', has_text="Total return").first
        shown = metric_text("total_return_pct", want)
        card.locator('[data-testid="stMetricValue"]').filter(has_text=shown).wait_for(timeout=30_000)
        delta = card.locator('[data-testid="stMetricDelta"]').inner_text().strip()
        assert delta == metric_delta("total_return_pct", want, previous), (label, delta)
        previous = want
    no_exception(page)
    page.context.close()


def test_on_a_laptop_screen_the_settings_and_the_key_result_are_seen_together(server, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/backtest", timeout=60_000)
    first_metric(page, "Total return")
    settle(page)
    on_screen = [
        page.get_by_role("spinbutton", name="Stop-loss (%)"),
        page.get_by_role("spinbutton", name="Max positions"),
        page.locator('[data-testid="stMetric"]', has_text="Total return").first,
        page.locator('[data-testid="stMetric"]', has_text="# Trades").first,
        page.locator('[data-testid="stPlotlyChart"]').first,  # the compact equity curve
    ]
    for element in on_screen:
        box = element.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 300) <= 900, box
    tp = page.get_by_role("spinbutton", name="Take-profit (%)")  # off: an empty box that says so
    assert tp.input_value() == "" and tp.get_attribute("placeholder") == "Off"
    edit(page, tp, "12", re.compile(r"[?&]tp=12(&|$)"))
    edit(page, tp, "0", lambda url: "tp=" not in url)  # 0 switches it off again: the box empties
    assert tp.input_value() == ""
    assert page.get_by_role("button", name="Run backtest").count() == 0  # results follow every edit here
    shot(page, "backtest_laptop")
    context.close()


def test_each_edit_shows_its_deltas_a_pinned_baseline_is_drawn_and_a_no_op_edit_says_so(server, browser, sample):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi%2814%29+%3C+30&sl=5", timeout=60_000)
    first_metric(page, "Total return")
    settle(page)
    box = page.get_by_role("spinbutton", name="Stop-loss (%)")
    edit(page, box, "3", re.compile(r"[?&]sl=3(&|$)"))
    card = page.locator('[data-testid="stMetric"]', has_text="Total return").first
    before = backtest(sample, scan(sample, "rsi(14) < 30"), stop_loss=5.0).metrics["total_return_pct"]
    after = backtest(sample, scan(sample, "rsi(14) < 30"), stop_loss=3.0).metrics["total_return_pct"]
    assert card.locator('[data-testid="stMetricValue"]').inner_text() == metric_text("total_return_pct", after)
    delta = card.locator('[data-testid="stMetricDelta"]').inner_text().strip()
    assert delta == metric_delta("total_return_pct", after, before)
    page.get_by_role("button", name="Pin as baseline").click()
    settle(page)
    edit(page, box, "8", re.compile(r"[?&]sl=8(&|$)"))
    page.get_by_text("against the pinned baseline").first.wait_for(timeout=30_000)
    page.get_by_text("Baseline", exact=True).first.wait_for(state="attached", timeout=30_000)  # the grey line
    assert "No trade changed" not in page.inner_text("body")  # sl 8 changed trades against sl 3
    page.get_by_role("button", name="Unpin baseline").click()
    settle(page)
    exit_box = page.get_by_role("textbox", name="Exit rule")
    exit_box.fill("close < 0")
    exit_box.press("Enter")
    page.get_by_text("No trade changed against the previous run: the exit rule fired 0 times").wait_for(timeout=30_000)
    no_exception(page)
    shot(page, "backtest_deltas")
    page.context.close()


def test_the_what_if_strip_labels_runs_by_their_difference_and_restores_one_on_click(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi%2814%29+%3C+30&sl=5", timeout=60_000)
    first = first_metric(page, "Total return")
    settle(page)
    box = page.get_by_role("spinbutton", name="Stop-loss (%)")
    edit(page, box, "3", re.compile(r"[?&]sl=3(&|$)"))
    edit(page, box, "8", re.compile(r"[?&]sl=8(&|$)"))
    page.get_by_text(re.compile("What-if: your 3 runs on this data")).wait_for(timeout=30_000)
    pills = page.locator('[data-testid="stButtonGroup"]')
    pills.get_by_text(re.compile(r"^sl 3 → 8 · ")).wait_for(timeout=30_000)  # the newest, against the run before
    pills.get_by_text(re.compile(r"^sl 5 → 3 · ")).wait_for(timeout=30_000)
    pills.get_by_text(re.compile(r"^first run · ")).click()
    page.wait_for_url(lambda url: "sl=" not in url, timeout=30_000)  # 5 is the default: the link omits it
    settle(page)
    assert float(box.input_value()) == 5.0
    assert first_metric(page, "Total return") == first
    no_exception(page)
    page.context.close()


def test_a_pin_and_the_strip_survive_a_reload_and_a_base_link_shows_a_teammate_the_same_comparison(server, browser):
    carol = new_page(browser, user="carol@example.org")
    carol.goto(f"{server}/backtest?rule=rsi%2814%29+%3C+32&sl=5", timeout=60_000)
    first_metric(carol, "Total return")
    settle(carol)
    carol.get_by_role("button", name="Pin as baseline").click()
    carol.wait_for_url(re.compile(r"[?&]base=[0-9a-f]{12}(&|$)"), timeout=30_000)  # the link carries the pin
    settle(carol)
    box = carol.get_by_role("spinbutton", name="Stop-loss (%)")
    edit(carol, box, "3", re.compile(r"[?&]sl=3(&|$)"))
    carol.get_by_text("against the pinned baseline").first.wait_for(timeout=30_000)
    delta = carol.locator('[data-testid="stMetric"]', has_text="Total return").locator('[data-testid="stMetricDelta"]')
    her_delta = delta.first.inner_text()
    link = carol.url
    carol.reload(timeout=60_000)  # a new session: the pin and the strip come back from the server
    first_metric(carol, "Total return")
    settle(carol)
    carol.get_by_role("button", name="Unpin baseline").wait_for(timeout=30_000)
    carol.locator('[data-testid="stButtonGroup"]').get_by_text(re.compile(r"^sl 5 → 3 · ")).wait_for(timeout=30_000)
    dan = new_page(browser, user="dan@example.org")
    dan.goto(link, timeout=60_000)  # her change against her baseline
    first_metric(dan, "Total return")
    settle(dan)
    dan.get_by_text("against carol@example.org's pinned baseline").first.wait_for(timeout=30_000)
    dan_delta = dan.locator('[data-testid="stMetric"]', has_text="Total return").locator(
        '[data-testid="stMetricDelta"]'
    )
    assert dan_delta.first.inner_text() == her_delta
    shot(dan, "backtest_base_link")
    no_exception(dan)
    for p in (carol, dan):
        p.context.close()


def test_a_symbols_story_draws_its_trades_levels_and_the_drawdowns(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi%2814%29+%3C+30&sl=5&tp=10", timeout=60_000)
    first_metric(page, "Total return")
    page.get_by_role("tab", name="Symbol story").click()
    for text in ("entry (win)", "exit (loss)", "stop level", "target level", "rsi(14)"):  # legend entries
        page.get_by_text(text, exact=True).first.wait_for(state="attached", timeout=30_000)
    story = page.locator('[data-testid="stPlotlyChart"]').last
    story.locator(".rangeslider-container").wait_for(state="attached", timeout=30_000)  # opens on the last year
    story.hover()
    story.locator('[data-title="Autoscale"]').click()  # the whole history: the drawdowns' marks come into view
    for text in ("max drawdown", "longest drawdown"):
        page.get_by_text(text, exact=True).first.wait_for(state="attached", timeout=30_000)
    no_exception(page)
    page.context.close()


def test_an_exit_rule_preset_and_a_trailing_stop_take_effect_and_travel_in_the_link(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest", timeout=60_000)
    first_metric(page, "Total return")  # the page runs at once: edits start after it
    settle(page)
    page.get_by_role("combobox", name="Exit rule presets").click()  # fills the exit rule box, and runs
    page.get_by_role("option", name="RSI overbought").click()
    page.wait_for_url(re.compile(r"[?&]exit=rsi"), timeout=30_000)
    settle(page)
    assert page.get_by_role("textbox", name="Exit rule").input_value() == "rsi(14) > 70"
    edit(
        page,
        page.get_by_role("spinbutton", name="Trailing stop (%)"),
        "7",
        re.compile(r"[?&]trail=7(&|$)"),
    )
    assert query(page)["exit"] == "rsi(14) > 70"
    page.get_by_role("tab", name="Trades").click()
    reasons = page.locator('[data-testid="stDataFrame"]').first
    reasons.wait_for(timeout=30_000)
    total = first_metric(page, "Total return")
    teammate = new_page(browser)  # the link reproduces the run for someone else
    teammate.goto(page.url, timeout=60_000)
    assert first_metric(teammate, "Total return") == total
    settle(teammate)  # the cards come first; the settings column finishes with the run
    assert teammate.get_by_role("textbox", name="Exit rule").input_value() == "rsi(14) > 70"
    no_exception(teammate)
    teammate.context.close()
    page.context.close()


def test_optimize_and_monte_carlo_edits_are_applied_and_kept_across_pages(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/optimize", timeout=60_000)
    box = page.get_by_role("spinbutton", name="Min trades")
    box.wait_for(timeout=60_000)
    for v in ["5", "6", "7", "8", "9"]:
        edit(page, box, v, re.compile(rf"[?&]mint={v}(&|$)"))
        assert box.input_value() == v
    to_box = page.get_by_role("spinbutton", name="to").first
    for v in ["4", "6", "8", "12", "14"]:
        edit(page, to_box, v, re.compile(rf"grid=stop_loss%3A2%3A{v}%3A2"))
        n = len(range(2, int(v) + 1, 2)) * 5
        page.get_by_text(f"{n} combinations").wait_for(timeout=30_000)
    # To Monte Carlo (through a backtest) and back: the Optimize settings are still there.
    page.get_by_role("link", name="Backtest").first.click()
    first_metric(page, "Total return")
    page.get_by_role("link", name="Monte Carlo").first.click()
    seed = page.get_by_role("spinbutton", name="Seed")
    seed.wait_for(timeout=60_000)
    medians = set()
    for v in ["1", "2", "3", "4", "5"]:
        edit(page, seed, v, re.compile(rf"[?&]mcs={v}(&|$)"))
        assert seed.input_value() == v
        medians.add(first_metric(page, "Median max drawdown"))
    assert len(medians) >= 2
    page.get_by_role("link", name="Optimize").first.click()
    page.get_by_role("spinbutton", name="Min trades").wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_role("spinbutton", name="Min trades").input_value() == "9"
    assert page.get_by_role("spinbutton", name="to").first.input_value() == "14"
    assert query(page)["mint"] == "9" and query(page)["mcs"] == "5"
    page.context.close()


def test_a_link_on_an_uploaded_dataset_reproduces_it_for_a_teammate_and_survives_a_reload(server, browser, tmp_path):
    csv = tmp_path / "three.csv"
    to_frame(synthetic_market(3, 300, seed=11)).to_csv(csv, index=False)
    sender = new_page(browser, user="sam@example.org")
    sender.goto(f"{server}/", timeout=60_000)  # the Data page is the default page, at the root
    sender.locator('.st-key-upload input[type="file"]').set_input_files(str(csv))
    sender.get_by_role("heading", name="three.csv").wait_for(timeout=60_000)
    settle(sender)
    sender.get_by_role("button", name="List it for the team").click()  # private until listed
    sender.get_by_text("links carry it, so a teammate on this server opens the same data").wait_for(timeout=30_000)
    data_id = query(sender)["data"]
    assert re.fullmatch(r"[0-9a-f]{16}", data_id)
    sender.get_by_role("link", name="Scanner").first.click()
    box = sender.get_by_role("textbox", name="Rule")
    box.fill("rsi(14) < 45")
    box.press("Control+Enter")
    sender.wait_for_url("**rsi%2814%29+%3C+45**", timeout=30_000)
    sender.get_by_role("link", name="Backtest").first.click()
    total = first_metric(sender, "Total return")
    settle(sender)
    link = sender.url
    assert f"data={data_id}" in link
    sender.reload()
    sender.locator('[data-testid="stSidebar"]').get_by_text("three.csv").wait_for(timeout=60_000)
    assert first_metric(sender, "Total return") == total  # the reload kept the dataset and reran
    teammate = new_page(browser, user="tess@example.org")
    teammate.goto(link, timeout=60_000)
    assert first_metric(teammate, "Total return") == total
    teammate.locator('[data-testid="stSidebar"]').get_by_text("Dataset:").wait_for(timeout=60_000)
    sidebar = teammate.locator('[data-testid="stSidebar"]').inner_text()
    assert "three.csv" in sidebar and "Sample" not in sidebar
    shot(teammate, "teammate_link")
    gone = new_page(browser)
    gone.goto(link.replace(data_id, "0123456789abcdef"), timeout=60_000)
    gone.get_by_text("is not on this server").first.wait_for(timeout=60_000)
    assert gone.locator('[data-testid="stMetric"]').count() == 0  # never the sample instead
    for p in (sender, teammate, gone):
        p.context.close()


def test_a_typed_date_format_reads_an_upload_the_detector_cannot_and_stays_out_of_the_link(server, browser, tmp_path):
    """The read options are the table's `load` rows: a date format typed into the Data page's box (free text
    with suggestions) rereads the same upload, and links never carry it (they name the dataset instead)."""
    frame = to_frame(synthetic_market(2, 60, seed=3))
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y.%j")  # year and day of the year
    csv = tmp_path / "day_of_year.csv"
    frame.to_csv(csv, index=False)
    page = new_page(browser, user="pat@example.org")
    page.goto(f"{server}/", timeout=60_000)
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(csv))
    page.get_by_text("a date that could not be parsed").first.wait_for(timeout=60_000)  # detection cannot
    settle(page)
    page.get_by_text("How to read the file").click()
    box = page.get_by_role("combobox", name="Date format")
    box.click()
    page.keyboard.type("%Y.%j")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="day_of_year.csv").wait_for(timeout=60_000)
    settle(page)
    assert re.fullmatch(r"[0-9a-f]{16}", query(page)["data"]) and "datefmt" not in query(page)
    no_exception(page)
    shot(page, "typed_date_format")
    page.context.close()


def test_a_reload_keeps_my_runs_and_a_teammate_cannot_delete_them(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?sl=3.5", timeout=60_000)
    first_metric(page, "Total return")
    page.reload()
    page.get_by_role("link", name="Runs").first.click()
    page.get_by_role("button", name="Delete this run").wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_role("button", name="Delete this run").is_enabled()  # still mine after the reload
    teammate = new_page(browser)
    teammate.goto(f"{server}/runs", timeout=60_000)
    teammate.get_by_text("Show the team's runs").first.click()
    teammate.get_by_role("button", name="Delete this run").wait_for(timeout=60_000)
    settle(teammate)
    assert teammate.get_by_role("button", name="Delete this run").is_disabled()
    for p in (page, teammate):
        p.context.close()


def test_a_private_dataset_and_its_runs_stay_private_between_two_signed_in_users(server, browser, tmp_path):
    csv = tmp_path / "alice_secret_positions.csv"
    to_frame(synthetic_market(3, 300, seed=12)).to_csv(csv, index=False)
    alice = new_page(browser, user="alice@example.org")
    alice.goto(f"{server}/", timeout=60_000)
    alice.locator('.st-key-upload input[type="file"]').set_input_files(str(csv))
    alice.get_by_role("heading", name="alice_secret_positions.csv").wait_for(timeout=60_000)
    settle(alice)
    data_id = query(alice)["data"]
    assert "nothing is private" not in alice.content()
    alice.goto(f"{server}/backtest?data={data_id}&rule=rsi%2814%29+%3C+45", timeout=60_000)  # a link runs at once
    first_metric(alice, "Total return")
    settle(alice)
    link = alice.url
    bob = new_page(browser, user="bob@example.org")
    bob.goto(link, timeout=60_000)
    bob.get_by_text("private to its owner; ask them to share it").first.wait_for(timeout=60_000)
    settle(bob)
    assert bob.locator('[data-testid="stMetric"]').count() == 0 and "alice_secret" not in bob.content()
    bob.goto(f"{server}/runs", timeout=60_000)
    bob.get_by_text("Show the team's runs").first.click()
    # counted (with any other private runs on the shared test server), nothing shown
    bob.get_by_text(re.compile(r"\d+ private runs? of teammates")).first.wait_for(timeout=60_000)
    settle(bob)
    content = bob.content()
    assert "alice_secret" not in content and data_id not in content and "rsi(14) &lt; 45" not in content
    # no link to her run (teammates' runs on the built-in data, from other tests on this server, may show theirs)
    links = bob.get_by_role("link", name="Open as a link").all()
    assert all(data_id not in (link.get_attribute("href") or "") for link in links)
    shot(bob, "team_view_private_run")
    alice.goto(f"{server}/runs", timeout=60_000)
    alice.get_by_role("button", name="Restore").wait_for(timeout=60_000)  # her backtest, restored in one click
    for p in (alice, bob):
        p.context.close()


def test_a_visit_without_the_proxy_header_is_read_only_on_a_server_that_signs_users_in_by_it(server, browser):
    page = new_page(browser)  # no header: not through the team's sign-in proxy
    page.goto(f"{server}/", timeout=60_000)
    page.get_by_text("this visit came without it, so it is read-only").first.wait_for(timeout=60_000)
    assert page.locator('.st-key-upload input[type="file"]').is_disabled()
    page.get_by_text("Read-only visit").first.wait_for(timeout=30_000)  # the sidebar says so too
    assert "No sign-in is configured" not in page.inner_text("body")
    page.goto(f"{server}/backtest", timeout=60_000)  # looking and running stay open
    first_metric(page, "Total return")
    shot(page, "read_only_visit")
    page.context.close()


def test_attached_columns_are_listed_and_a_rule_on_them_reproduces_for_a_teammate(server, browser, tmp_path):
    market = synthetic_market(3, 300, seed=13)
    csv = tmp_path / "three_funds.csv"
    to_frame(market).to_csv(csv, index=False)
    quarters = market.dates[::63]
    fundamentals = tmp_path / "pe.csv"
    pd.DataFrame(
        {
            "symbol": [s for _ in quarters for s in market.symbols],
            "date": [d.date().isoformat() for d in quarters for _ in market.symbols],
            "pe_ratio": [8.0 + 4 * ((i * 7) % 5) for i in range(len(quarters) * len(market.symbols))],
        }
    ).to_csv(fundamentals, index=False)
    page = new_page(browser, user="sam@example.org")
    page.goto(f"{server}/", timeout=60_000)
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(csv))
    page.get_by_role("heading", name="three_funds.csv").wait_for(timeout=60_000)
    settle(page)
    before = query(page)["data"]
    page.locator('.st-key-attach_upload input[type="file"]').set_input_files(str(fundamentals))
    page.get_by_role("heading", name="three_funds.csv + pe.csv").wait_for(timeout=60_000)
    settle(page)
    after = query(page)["data"]
    assert after != before  # a new dataset, stored for links
    page.get_by_role("button", name="List it for the team").click()
    settle(page)
    page.get_by_text("8 to 24").first.wait_for(state="attached", timeout=30_000)  # pe_ratio in the columns table
    shot(page, "data_own_columns")
    joined = attach_columns(market, fundamentals)
    expected = scan(joined, "pe_ratio < 15 and rsi(14) < 50").count
    page.goto(f"{server}/scanner?data={after}&rule=pe_ratio+%3C+15+and+rsi%2814%29+%3C+50", timeout=60_000)
    assert int(first_metric(page, "Signals").replace(",", "")) == expected > 0
    no_exception(page)
    teammate = new_page(browser, user="tess@example.org")
    teammate.goto(page.url, timeout=60_000)
    assert int(first_metric(teammate, "Signals").replace(",", "")) == expected
    for p in (page, teammate):
        p.context.close()


def test_a_rotation_link_shows_its_holdings_and_reproduces_for_a_teammate(server, browser):
    link = f"{server}/backtest?rule=close+%3E+sma%2850%29+rank+by+roc%28126%29&reb=M&top=3&hold=0&sl=0&tp=0"
    page = new_page(browser)
    page.goto(link, timeout=60_000)
    total = first_metric(page, "Total return")
    settle(page)
    page.get_by_text("Shape: rotation every month: top 3, equal weights").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Holdings").click()
    page.get_by_text("held after it").first.wait_for(state="attached", timeout=30_000)
    settle(page)
    no_exception(page)
    shot(page, "rotation_holdings")
    sample = load_sample()
    rule = "close > sma(50) rank by roc(126)"
    expected = backtest(sample, scan(sample, rule), rebalance="M", hold_top=3, holding_period=None, stop_loss=None,
                        take_profit=None).metrics["total_return_pct"]  # fmt: skip
    assert total == metric_text("total_return_pct", expected)
    teammate = new_page(browser)
    teammate.goto(page.url, timeout=60_000)
    assert first_metric(teammate, "Total return") == total
    for p in (page, teammate):
        p.context.close()


def test_a_random_search_link_shows_its_trials_best_so_far_and_tried_cells(server, browser):
    page = new_page(browser)
    grid = "stop_loss:1:10:1,take_profit:2:20:2"
    page.goto(f"{server}/optimize?rule=rsi%2814%29+%3C+35&grid={grid}&search=random&trials=30&mode=all&mint=0")
    assert first_metric(page, "Combinations tried") == "30"
    page.get_by_text("30 combinations").first.wait_for(timeout=30_000)  # of the space's 100
    assert "of the space's 100, drawn by random search" in page.inner_text("body")
    page.get_by_role("tab", name="Heatmap").click()
    settle(page)
    page.get_by_text("best so far", exact=True).first.wait_for(state="attached", timeout=30_000)
    page.get_by_text("tried", exact=True).first.wait_for(state="attached", timeout=30_000)  # the heatmap's outlines
    no_exception(page)
    shot(page, "optimize_random_search")
    assert query(page)["search"] == "random" and query(page)["trials"] == "30"
    page.context.close()


HOSTILE = {
    "capital": "-100000",
    "sl": "1e308",
    "hold": "-5",
    "maxpos": "1000000000",
    "lcorr": "2",
    "slip": "nan",
    "tp": "inf",
    "size": "martingale",
    "mcn": "-1",
    "obj": "__import__",
    "split": "NaN",
    "grid": "stop_loss:0:1e7:1e-6",
    "mint": "1e400",
    "lev": "maybe",
}


def test_a_new_tab_of_the_same_browser_keeps_my_runs_after_one_link_run(server, browser):
    """The identity cookie is written on a session's first run, so a run made by opening one link is still
    mine in a new tab (a new session, not a reconnection)."""
    page = new_page(browser)
    page.goto(f"{server}/backtest?sl=4.5", timeout=60_000)
    first_metric(page, "Total return")
    settle(page)
    assert "scanner_uid" in [c["name"] for c in page.context.cookies()]
    tab = page.context.new_page()
    page.close()
    tab.goto(f"{server}/runs", timeout=60_000)
    tab.get_by_role("button", name="Delete this run").wait_for(timeout=60_000)
    settle(tab)
    assert tab.get_by_role("button", name="Delete this run").is_enabled()
    tab.context.close()


@pytest.mark.parametrize("path", ["", "scanner", "backtest", "optimize", "montecarlo", "runs"])
def test_every_page_survives_hostile_link_values(server, browser, path):
    from urllib.parse import urlencode

    page = new_page(browser)
    page.goto(f"{server}/{path}?{urlencode(HOSTILE)}", timeout=60_000)
    page.get_by_text("was ignored").first.wait_for(timeout=60_000)
    settle(page)
    no_exception(page)
    text = page.inner_text("body")
    assert "sl=1e308 was ignored: Stop-loss must be 0 (off) or 0.1 to 99%" in text
    assert "capital=-100000 was ignored" in text and "grid was ignored" in text and "obj=__import__" in text
    assert "sl" not in query(page) and "capital" not in query(page)  # the link is clean again
    if path == "backtest":
        first_metric(page, "Total return")  # it ran on the defaults
    page.context.close()


def test_scan_then_backtest_in_the_browser(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/scanner", timeout=60_000)
    box = page.get_by_role("textbox", name="Rule")
    box.wait_for(timeout=60_000)
    counts = []
    for level in (30, 35, 40, 45, 50):  # five edits in a row, each applied: box, link and signals
        edit(page, box, f"rsi(14) < {level}", f"**rsi%2814%29+%3C+{level}**", submit=lambda: box.press("Control+Enter"))
        assert box.input_value() == f"rsi(14) < {level}"
        counts.append(int(first_metric(page, "Signals").replace(",", "")))
    assert counts == sorted(counts) and len(set(counts)) == 5  # a looser threshold: more signals each time
    box.fill("crosses_above(close, sma(50)) and rsi(14) > 50")
    box.press("Control+Enter")
    page.get_by_text("Symbols hit").first.wait_for(timeout=30_000)
    page.wait_for_url("**crosses_above**", timeout=30_000)  # the rule went to the URL: the scan ran
    page.get_by_role("link", name="Backtest these signals").click()
    first_metric(page, "Sharpe ratio")
    assert "crosses_above(close, sma(50))" in page.inner_text("body")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(state="visible", timeout=30_000)
    shot(page, "backtest")
    page.context.close()


def test_the_random_entry_test_runs_and_follows_the_next_edit(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi(14)+%3C+30&sl=4", timeout=60_000)
    first_metric(page, "# Trades")
    page.get_by_role("tab", name="Luck or skill?").click()
    page.get_by_role("button", name="Run the random-entry test").click()
    verdict = page.get_by_text("random strategies did at least as well")
    verdict.wait_for(timeout=60_000)
    first = verdict.inner_text()
    edit(
        page,
        page.get_by_role("spinbutton", name="Stop-loss (%)"),
        "7",
        re.compile(r"[?&]sl=7(&|$)"),
    )
    verdict.wait_for(timeout=60_000)  # still on this tab, recomputed for the new result without another click
    assert verdict.inner_text() != first or "p-value" in first
    no_exception(page)
    page.context.close()


def test_after_the_slice_slider_moves_a_heatmap_cell_click_opens_that_combinations_backtest(server, browser):
    page = new_page(browser)
    grid = "stop_loss:2:6:2,take_profit:0:10:5,holding_period:10:20:10"
    page.goto(f"{server}/optimize?rule=rsi(14)+%3C+35&mint=1&mode=all&grid={grid}", timeout=60_000)
    page.get_by_text("Deflated Sharpe").first.wait_for(timeout=120_000)  # the link ran the grid
    page.get_by_role("tab", name="Heatmap").click()
    page.get_by_text("Slice at").wait_for(timeout=30_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
    settle(page)
    slider = page.locator('[data-testid="stSlider"] input').first
    slider.focus()
    slider.press("ArrowRight")  # the slice: holding period 10 -> 20, a rerun
    thumb = """document.querySelector('[data-testid="stSlider"] input')"""
    page.wait_for_function(f"() => {thumb}.getAttribute('aria-valuetext') == '20'")
    settle(page)
    assert page.get_by_role("tab", name="Heatmap").get_attribute("aria-selected") == "true"  # still on the map
    plot = page.locator(".nsewdrag").first  # the plot area: 3 x 3 cells (stop x target)
    plot.scroll_into_view_if_needed()  # a mouse click does not scroll, and the heatmap can be below the fold
    box = plot.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 5 / 6, box["y"] + box["height"] / 6)  # top right: sl 6, tp 10
    page.wait_for_url(re.compile(r"/backtest\?"), timeout=60_000)
    first_metric(page, "Total return")
    q = query(page)
    assert q["sl"] == "6" and q["tp"] == "10" and q.get("hold", "20") == "20"  # the slice's holding period
    no_exception(page)
    page.context.close()


def test_the_tear_sheet_opens_offline_with_its_charts_and_no_console_error(browser, tmp_path, sample):
    from engine import backtest
    from engine.backtest import BacktestParams
    from engine.optimize import optimize
    from engine.plots.report import tear_sheet
    from engine.rules import scan

    result = backtest(sample, scan(sample, "rsi(14) < 30"), BacktestParams(stop_loss=5, trailing_stop=8))
    fit = optimize(sample, "rsi(14) < 30", BacktestParams(), {"stop_loss": [2, 4, 6]}, min_trades=5).overfitting()
    path = tmp_path / "tear_sheet.html"
    path.write_text(tear_sheet(sample, "rsi(14) < 30", result, fit), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    for words in (
        sample.fingerprint,
        "rsi(14) &lt; 30",
        "Trailing stop",
        "Deflated Sharpe",
        "Probabilistic Sharpe",
        "Trade excursions: MAE against MFE",
        "The best and the worst 20",
        "Random strategies at least as good",
    ):
        assert words in text, words
    context = browser.new_context(offline=True)  # no internet: plotly.js must be inline
    page = context.new_page()
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    assert path.stat().st_size < 1_000_000  # plotly.js's cartesian bundle and the figures, gzipped inline
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.chart .main-svg').length >= 6", timeout=30_000)
    assert page.locator(".chart").count() == 6  # equity, end-of-year, months, risk, MAE/MFE, luck
    for section in ("Strategy and benchmark", "Returns over periods", "End-of-year returns", "Worst 5 drawdowns"):
        assert page.get_by_role("heading", name=section, exact=True).count() == 1
    outside = page.evaluate(TICKS_OUTSIDE)
    assert outside == [], outside  # every tick label lies inside its figure's box
    wide = page.evaluate(TABLES_WIDER)
    assert wide == 0  # no table wider than the page (a wide one scrolls inside its box)
    assert errors == []
    page.screenshot(path=str(ARTIFACTS / "tear_sheet.png"), full_page=True)
    context.close()


@pytest.mark.skipif(not PSE.exists(), reason="the real PSE set lives in ../shared beside the checkout")
def test_the_pse_tear_sheet_is_under_a_megabyte_draws_in_under_two_seconds_and_states_one_benchmark(browser, tmp_path):
    from engine import load_market
    from engine.plots.report import tear_sheet

    market = load_market(PSE, on_bad_rows="drop")
    result = backtest(market, scan(market, "rsi(14) < 30"))
    path = tmp_path / "pse.html"
    path.write_text(tear_sheet(market, "rsi(14) < 30", result), encoding="utf-8")
    assert path.stat().st_size < 1_000_000 and len(result.trades) > 1_500  # every trade in the CSV, not the file
    text = path.read_text(encoding="utf-8")
    bench = metric_text("total_return_pct", result.metrics["buy_hold_return_pct"])
    assert text.count(bench) >= 2  # the same buy-and-hold figure in the side-by-side table and the metrics
    context = browser.new_context(offline=True)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.chart .main-svg').length >= 6", timeout=30_000)
    assert time.perf_counter() - started < 2.0
    context.close()


TABLES_WIDER = """() => [...document.querySelectorAll('table')].filter(
    t => t.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1).length"""
TICKS_OUTSIDE = """() => {
    const out = [];
    for (const fig of document.querySelectorAll('.chart')) {
        const box = fig.getBoundingClientRect();
        for (const t of fig.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')) {
            const r = t.getBoundingClientRect();
            if (!t.textContent || r.width === 0) continue;
            if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
                out.push(t.textContent);
        }
    }
    return out;
}"""


PLOTLY_LAYOUTS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
    traces: p.data.map(t => ({type: t.type, name: t.name, yaxis: t.yaxis || 'y'})),
    xrange: p.layout.xaxis && p.layout.xaxis.range}))"""


def test_show_trade_opens_on_the_trade_and_the_scanner_puts_rsi_below_the_price(server, browser):
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi(14)+%3C+30&sl=4&tp=12&hold=15&side=long", timeout=60_000)
    first_metric(page, "# Trades")
    page.get_by_role("tab", name="Trades").click()
    page.get_by_text("While held: worst excursion").wait_for(timeout=30_000)
    settle(page)
    candles = [p for p in page.evaluate(PLOTLY_LAYOUTS) if any(t["type"] == "candlestick" for t in p["traces"])]
    first, last = (datetime.fromisoformat(str(x)[:10]) for x in candles[0]["xrange"])
    assert (last - first).days < 200  # the trade and its context, not ten years of the symbol
    page.goto(f"{server}/scanner?rule=rsi(14)+%3C+30+and+close+%3E+sma(200)", timeout=60_000)
    page.get_by_text("Symbols hit").wait_for(timeout=60_000)
    settle(page)
    chart = next(p for p in page.evaluate(PLOTLY_LAYOUTS) if any(t["type"] == "candlestick" for t in p["traces"]))
    axis = {t["name"]: t["yaxis"] for t in chart["traces"]}
    assert axis["sma(200)"] == "y" and axis["rsi(14)"] not in ("y", "y2")  # the price panel, volume below it
    no_exception(page)
    page.context.close()


def test_orders_and_costs_take_effect_travel_in_the_link_and_show_on_the_chart(server, browser):
    """The Orders and Costs groups: a limit entry with partial exits and longs and shorts in one book, run from
    the form; the link carries every setting and reproduces the run for a teammate, whose Scanner shows the
    short rule beside the entry rule."""
    page = new_page(browser)
    page.goto(f"{server}/backtest?rule=rsi(14)+%3C+35", timeout=60_000)
    first_metric(page, "Total return")  # the page runs at once: edits start after it
    settle(page)
    page.get_by_text("Orders: market at the next open").click()
    settle(page)  # opening the group may rerun the page: a dropdown opened during a rerun closes again
    choose(page, "Entry order", "limit")
    page.get_by_role("spinbutton", name="Entry offset (%)").fill("1")
    page.get_by_role("spinbutton", name="Order valid for (bars)").fill("3")
    page.get_by_role("textbox", name="Partial exits").fill("50@5")
    choose(page, "Direction", "both")
    page.get_by_role("textbox", name="Short rule").fill("rsi(14) > 75")
    page.get_by_text("Costs: none").click()
    page.get_by_role("spinbutton", name="Borrow fee (% a year)").fill("3")
    page.get_by_role("spinbutton", name="Borrow fee (% a year)").press("Enter")
    page.wait_for_url(re.compile(r"[?&]pexit=50%405(&|$)"), timeout=30_000)
    settle(page)
    q = query(page)
    assert (q["order"], q["eoff"], q["evalid"], q["side"], q["short"], q["borrow"]) == (
        "limit",
        "1",
        "3",
        "both",
        "rsi(14) > 75",
        "3",
    )
    total = first_metric(page, "Total return")
    no_exception(page)
    page.get_by_text(re.compile(r"order expired unfilled \([0-9,]+\)")).first.wait_for(timeout=30_000)  # in words
    page.get_by_role("tab", name="Skips and cuts").click()
    page.get_by_role("tab", name="Trades").click()
    page.get_by_text("exit fills of").first.wait_for(timeout=30_000)  # partial exits: rows per fill
    page.locator('[data-testid="stPlotlyChart"]:visible').first.wait_for(timeout=30_000)  # the trade's chart
    page.wait_for_timeout(1000)
    shot(page, "orders_and_costs")
    teammate = new_page(browser)
    teammate.goto(page.url, timeout=60_000)
    assert first_metric(teammate, "Total return") == total
    teammate.goto(page.url.replace("/backtest", "/scanner"), timeout=60_000)
    short = teammate.get_by_role("textbox", name="Short rule")
    short.wait_for(timeout=60_000)
    assert short.input_value() == "rsi(14) > 75"
    teammate.get_by_text("Short rule:").first.wait_for(timeout=30_000)
    no_exception(teammate)
    teammate.context.close()
    page.context.close()


@pytest.mark.skipif(not PSE.exists(), reason="the real PSE set lives in ../shared beside the checkout")
def test_on_the_pse_set_the_backtest_banner_names_the_trades_that_crossed_flagged_bars(server, browser):
    page = new_page(browser, user="pat@example.org")
    page.goto(f"{server}/", timeout=60_000)
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(PSE))
    page.get_by_role("button", name=re.compile(r"Load without these")).click(timeout=180_000)
    page.get_by_role("heading", name=PSE.name).wait_for(timeout=180_000)
    settle(page)
    page.goto(f"{server}/backtest?data={query(page)['data']}&rule=rsi%2814%29+%3C+30", timeout=60_000)
    banner = page.get_by_text(re.compile(r"of the top 5 trades cross flagged split or outlier bars")).first
    banner.wait_for(timeout=180_000)
    assert "DITO 2010-07-21 to 2010-10-13" in banner.inner_text()  # the +9,686% "trade" is an outlier bar's
    assert banner.bounding_box()["y"] < 900  # on the first screen, beside the cards it qualifies ...
    page.locator('[data-testid="stMetric"]', has_text="Total return [%] ⚑").wait_for(timeout=30_000)  # ... marked
    shot(page, "pse_flag_banner")
    no_exception(page)
    page.context.close()


@pytest.mark.parametrize(
    ("expander", "field", "value", "url_key"),
    [
        ("Shape", "Rebalance band (%)", "2", "band"),
        ("Orders", "Entry offset (%)", "1", "eoff"),
        ("Costs", "Slippage (bps)", "25", "slip"),
        ("Sizing and leverage", "Max leverage", "1.5", "maxlev"),
        ("Risk limits", "Max single position (%)", "20", "lpos"),
    ],
)
def test_results_stay_on_screen_while_a_setting_deep_in_an_expander_is_edited(
    server, browser, expander, field, value, url_key
):
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.goto(f"{server}/backtest", timeout=60_000)
    first_metric(page, "# Trades")
    settle(page)
    page.locator('[data-testid="stExpander"] summary', has_text=expander).first.click()
    settle(page)
    box = page.get_by_role("spinbutton", name=field)
    box.scroll_into_view_if_needed()
    edit(page, box, value, re.compile(rf"[?&]{url_key}="))
    card = page.locator('[data-testid="stMetric"]').first.bounding_box()
    chart = page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()
    assert card is not None and chart is not None
    assert card["y"] >= 0 and card["y"] + card["height"] <= 900, (expander, card)  # the numbers, in view
    assert chart["y"] < 900 and chart["y"] + chart["height"] > 0, (expander, chart)
    assert box.bounding_box()["y"] < 900  # and the field just edited
    shot(page, f"results_in_view_{url_key}")
    page.context.close()


def test_the_scanner_says_what_happened_after_the_hits_and_follows_a_rule_edit(server, browser, sample):
    from engine import forward_returns

    page = new_page(browser)
    page.goto(f"{server}/scanner?rule=rsi%2814%29+%3C+30", timeout=60_000)
    page.get_by_role("heading", name="What happened next").wait_for(timeout=60_000)
    settle(page)
    card = page.locator('[data-testid="stMetric"]', has_text="After 5 bars").first
    want = forward_returns(sample, scan(sample, "rsi(14) < 30")).summary.loc[5, "mean"]
    assert card.locator('[data-testid="stMetricValue"]').inner_text() == f"{want * 100:+.2f}%"
    box = page.get_by_role("textbox", name="Rule")
    box.fill("rsi(14) < 40")
    box.press("Control+Enter")
    page.wait_for_url("**rsi%2814%29+%3C+40**", timeout=30_000)
    settle(page)
    again = forward_returns(sample, scan(sample, "rsi(14) < 40")).summary.loc[5, "mean"]
    card.locator('[data-testid="stMetricValue"]').filter(has_text=f"{again * 100:+.2f}%").wait_for(timeout=30_000)
    page.get_by_text("better than").first.wait_for(timeout=30_000)
    bins = page.locator("[class*='st-key-w-scanner-events_bins'] .bars .point path")
    heights = [bins.nth(i).bounding_box()["height"] for i in range(bins.count())]
    bins.nth(heights.index(max(heights))).click(force=True)  # the tallest bar of the histogram: its signals
    page.get_by_text(re.compile(r"signals? returned .* pick one to see its chart")).wait_for(timeout=30_000)
    settle(page)
    charts_before = page.locator('[data-testid="stPlotlyChart"]').count()
    rows = page.locator("[class*='st-key-w-scanner-events_rows']").first
    rows.scroll_into_view_if_needed()
    box = rows.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's picker: its symbol's chart opens
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length > {charts_before}", timeout=30_000
    )
    shot(page, "scanner_what_happened_next")
    no_exception(page)
    page.context.close()


def test_a_family_takes_an_append_says_when_a_newer_version_exists_and_its_link_follows_the_latest(
    server, browser, tmp_path, sample
):
    frame = to_frame(sample)
    first, recent = tmp_path / "first.csv", tmp_path / "recent.csv"
    frame[frame.date <= "2023-08-31"].to_csv(first, index=False)
    restated = frame[frame.date >= "2023-08-25"].copy()
    restated.loc[(restated.symbol == "NVDA") & (restated.date <= "2023-08-31"), ["open", "high", "low", "close"]] *= 0.5
    restated.to_csv(recent, index=False)
    owner = new_page(browser, user="fay@example.org")
    owner.goto(f"{server}/", timeout=60_000)
    owner.locator('.st-key-upload input[type="file"]').set_input_files(str(first))
    owner.get_by_role("heading", name="first.csv").wait_for(timeout=60_000)
    settle(owner)
    first_id = query(owner)["data"]
    owner.get_by_text("Keep this dataset current").click()
    owner.get_by_role("textbox", name="Family name").fill("Big six daily")
    owner.get_by_role("button", name="Make it a family").click()
    owner.get_by_text("Family: Big six daily · 1 versions").wait_for(timeout=60_000)
    settle(owner)
    owner.locator('.st-key-append_upload input[type="file"]').set_input_files(str(recent))
    owner.get_by_text("NVDA: ratio 0.5 on every price from 2023-08-31 back").first.wait_for(timeout=60_000)
    settle(owner)
    owner.get_by_role("button", name="Take the new history").click()
    owner.get_by_text("Version 2: 84 bars added (14 new dates); history replaced for: NVDA").wait_for(timeout=60_000)
    settle(owner)
    latest_id = query(owner)["data"]
    assert latest_id != first_id
    shot(owner, "family_versions")
    teammate = new_page(browser, user="gus@example.org")
    teammate.goto(f"{server}/?family=big-six-daily", timeout=60_000)
    teammate.get_by_text("is not on this server or is private to its owner").first.wait_for(timeout=60_000)
    owner.get_by_role("button", name="Share the family with the team").click()
    owner.get_by_role("button", name="Make the family private").wait_for(timeout=60_000)
    teammate = new_page(browser, user="gus@example.org")
    teammate.goto(f"{server}/?family=big-six-daily", timeout=60_000)
    teammate.locator('[data-testid="stSidebar"]').get_by_text(latest_id).wait_for(timeout=60_000)
    old = new_page(browser, user="gus@example.org")
    old.goto(f"{server}/scanner?data={first_id}", timeout=60_000)  # an older version: every page says so
    old.get_by_text("A newer version of Big six daily exists (21 days, 84 bars newer)").wait_for(timeout=60_000)
    settle(old)
    shot(old, "family_newer_version")
    old.get_by_role("button", name="Open the latest").click()
    old.locator('[data-testid="stSidebar"]').get_by_text(latest_id).wait_for(timeout=60_000)
    for p in (owner, teammate, old):
        p.context.close()


def test_a_screen_saved_on_the_scanner_is_on_the_screens_page_for_a_teammate_only_when_shared(server, browser, sample):
    rule = "rsi(14) < 45 rank by roc(20) desc"
    owner = new_page(browser, user="hal@example.org")
    owner.goto(f"{server}/scanner?rule=rsi%2814%29+%3C+45+rank+by+roc%2820%29+desc", timeout=60_000)
    first_metric(owner, "Signals")
    settle(owner)
    owner.get_by_text("Save screen: keep this rule").click()
    for name, shared in (("Hal private", False), ("Hal leaders", True)):
        owner.get_by_role("textbox", name="Name").fill(name)
        owner.get_by_role("textbox", name="Name").press("Enter")
        settle(owner)
        if shared:
            owner.get_by_text("Shared", exact=True).click()
            settle(owner)
        owner.get_by_role("button", name="Save screen").click()
        owner.get_by_text(f"Saved “{name}”").wait_for(timeout=60_000)
        settle(owner)
    teammate = new_page(browser, user="ida@example.org")
    teammate.goto(f"{server}/screens", timeout=60_000)
    latest = scan(sample, rule).on()
    teammate.get_by_role("tab", name=f"Matches on {latest.date:%Y-%m-%d} ({len(latest.matches)})").wait_for(
        timeout=60_000
    )
    settle(teammate)
    shot(teammate, "screens_teammate")
    assert "Hal leaders" in teammate.content() and "Hal private" not in teammate.content()
    teammate.get_by_role("button", name="Copy").click()
    teammate.get_by_text("Hal leaders (copy)").first.wait_for(state="attached", timeout=60_000)
    for p in (owner, teammate):
        p.context.close()


def test_a_teammate_follows_a_shared_screen_and_a_new_version_rings_the_bell_with_an_entry_that_opens_the_scanner(
    server, browser, tmp_path, sample
):
    """Save a screen on a family's Scanner, follow it on Screens as a teammate, upload the family's next bars:
    the teammate's bell counts one alert per bar where names entered, and an entry opens the Scanner there."""
    rule = "rsi(14) < 50"
    frame = to_frame(sample)
    first, recent = tmp_path / "kit_first.csv", tmp_path / "kit_recent.csv"
    cut = "2023-08-29"  # not another test's upload: the same bytes would be that family's version
    frame[frame.date <= cut].to_csv(first, index=False)
    frame[frame.date > cut].to_csv(recent, index=False)
    new_dates = int((sample.dates > cut).sum())
    signals = scan(sample, rule)
    alerted = [d for d in sample.dates[-5:] if len(signals.on(d).entered)]  # the newest five new bars, by hand
    owner = new_page(browser, user="kit@example.org")
    owner.goto(f"{server}/", timeout=60_000)
    owner.locator('.st-key-upload input[type="file"]').set_input_files(str(first))
    owner.get_by_role("heading", name="kit_first.csv").wait_for(timeout=60_000)
    settle(owner)
    owner.get_by_text("Keep this dataset current").click()
    owner.get_by_role("textbox", name="Family name").fill("Kit six")
    owner.get_by_role("button", name="Make it a family").click()
    owner.get_by_text("Family: Kit six · 1 versions").wait_for(timeout=60_000)
    settle(owner)
    owner.get_by_role("button", name="Share the family with the team").click()
    owner.get_by_role("button", name="Make the family private").wait_for(timeout=60_000)
    scanner = new_page(browser, user="kit@example.org")
    scanner.goto(f"{server}/scanner?family=kit-six&rule=rsi%2814%29+%3C+50", timeout=60_000)
    first_metric(scanner, "Signals")
    settle(scanner)
    scanner.get_by_text("Save screen: keep this rule").click()
    scanner.get_by_role("textbox", name="Name").fill("Kit oversold")
    scanner.get_by_role("textbox", name="Name").press("Enter")
    settle(scanner)
    scanner.get_by_text("Shared", exact=True).click()
    settle(scanner)
    scanner.get_by_role("button", name="Save screen").click()
    scanner.get_by_text("Saved “Kit oversold”").wait_for(timeout=60_000)
    teammate = new_page(browser, user="lee@example.org")
    teammate.goto(f"{server}/screens", timeout=60_000)
    teammate.get_by_text("Kit oversold").first.wait_for(timeout=60_000)
    settle(teammate)
    choose(teammate, "Screen", f"Kit oversold · {rule}")
    settle(teammate)
    teammate.get_by_text("Alert me when names enter this screen").click()
    settle(teammate)
    owner.locator('.st-key-append_upload input[type="file"]').set_input_files(str(recent))
    owner.get_by_text(f"Version 2: {6 * new_dates} bars added ({new_dates} new dates)").wait_for(timeout=60_000)
    bell = teammate.locator('[data-testid="stSidebarNav"]').get_by_text(f"Alerts ({len(alerted)})")
    for _ in range(30):  # the server's alert worker runs the screen on the new bars within seconds
        teammate.goto(f"{server}/screens", timeout=60_000)
        try:
            bell.wait_for(timeout=2_000)
            break
        except PlaywrightTimeout:
            continue
    bell.click()
    teammate.get_by_role("heading", name="Alerts").wait_for(timeout=60_000)
    newest = f"{alerted[-1]:%Y-%m-%d}"
    teammate.get_by_text(f"Kit oversold · {newest}").wait_for(timeout=60_000)
    settle(teammate)
    shot(teammate, "alerts_inbox")
    with teammate.context.expect_page() as opened:
        teammate.get_by_role("link", name="Open in the Scanner").first.click()
    entry = opened.value
    entry.wait_for_load_state()
    assert query(entry)["on"] == newest and query(entry)["rule"] == rule
    entered = len(signals.on(alerted[-1]).entered)
    entry.get_by_role("tab", name=f"Entered ({entered})").wait_for(timeout=90_000)
    teammate.goto(f"{server}/screens", timeout=60_000)  # seen: the bell is quiet again
    teammate.locator('[data-testid="stSidebarNav"]').get_by_text("Alerts", exact=True).wait_for(timeout=60_000)
    for p in (owner, scanner, teammate, entry):
        p.context.close()
