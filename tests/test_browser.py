"""End to end in a real browser: streamlit run on a free port, driven by Playwright in Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (make system-deps)")
        pytest.skip("chromium not installed; run `make system-deps`")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
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


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*flags, "--no-first-run"])
        yield b
        b.close()


def test_deep_link_to_backtest_is_the_first_request_and_reproduces_the_run(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/backtest?rule=rsi(14)+%3C+30&sl=4.0&tp=12.0&hold=15&side=long", timeout=60_000)
    page.get_by_text("# Trades").first.wait_for(timeout=90_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(state="visible", timeout=30_000)
    assert page.get_by_label("Stop-loss % (0 = off)").input_value() == "4.00"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_deeplink_backtest.png"), full_page=True)
    page.close()


def test_scan_then_backtest_in_the_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/scanner", timeout=60_000)
    box = page.get_by_role("textbox", name="Rule")
    box.wait_for(timeout=60_000)
    box.fill("crosses_above(close, sma(50)) and rsi(14) > 50")
    box.press("Control+Enter")
    page.get_by_text("Symbols hit").first.wait_for(timeout=30_000)
    page.wait_for_url("**crosses_above**", timeout=30_000)  # the rule went to the URL: the scan ran
    page.get_by_role("link", name="Backtest these signals").click()
    page.get_by_role("button", name="Run backtest").click(timeout=60_000)
    page.get_by_text("Sharpe ratio").first.wait_for(timeout=90_000)
    assert "crosses_above(close, sma(50))" in page.inner_text("body")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "browser_backtest.png"), full_page=True)
    page.close()
