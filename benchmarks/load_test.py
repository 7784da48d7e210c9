"""Load test: N concurrent browser sessions (real HTTP + websocket clients: headless Chromium contexts) on a
fresh `streamlit run app.py`, each opening a deep link that runs its own backtest (different stop-loss, so
no session is served another's cached result). Prints latency percentiles and errors; last line is JSON.

Run: .venv/bin/python benchmarks/load_test.py [--sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def start_server(cache_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SCANNER_CACHE_DIR": cache_dir}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("streamlit did not start")


async def one_session(browser, url: str, i: int) -> tuple[float, str | None]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    start = time.perf_counter()
    try:
        await page.goto(f"{url}/backtest?rule=rsi(14)+%3C+35&sl={2 + i * 0.25}&tp=12.0&hold=15", timeout=120_000)
        await page.get_by_text("Total return [%]").first.wait_for(timeout=120_000)
        if await page.locator("[data-testid='stException']").count():
            return time.perf_counter() - start, "exception shown"
        return time.perf_counter() - start, None
    except Exception as exc:  # noqa: BLE001 - a load test counts failures, it does not stop at one
        return time.perf_counter() - start, repr(exc)[:120]
    finally:
        await context.close()


async def run(n: int) -> dict:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as cache_dir:
        proc, url = start_server(cache_dir)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                await one_session(browser, url, -4)  # warm the server: imports, Numba cache, sample data
                t0 = time.perf_counter()
                results = await asyncio.gather(*(one_session(browser, url, i) for i in range(n)))
                wall = time.perf_counter() - t0
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    latencies = np.array([r[0] for r in results])
    errors = [r[1] for r in results if r[1]]
    return {"sessions": n, "errors": len(errors), "error_samples": errors[:3], "wall_s": round(wall, 2),
            **{f"p{q}_s": round(float(np.percentile(latencies, q)), 2) for q in (50, 90, 100)}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    figures = asyncio.run(run(parser.parse_args().sessions))
    for key, value in figures.items():
        print(f"{key:<14} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
