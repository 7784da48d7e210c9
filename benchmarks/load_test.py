"""Load test against a real server on 127.0.0.1: N concurrent browser sessions (headless Chromium contexts),
each uploading its own ~50 MB CSV and running a backtest on it, then closing. Prints errors, the server's
own script-run times (p50/p95, from its log) and its RSS before, during (peak) and after the sessions
closed and expired. The last line is one JSON object.

Run: make load-test (MALLOC_ARENA_MAX=2, as the Makefile's run target and the README's host command set),
or .venv/bin/python benchmarks/load_test.py [--sessions 10 --symbols 320]
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
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TTL = 20  # seconds a closed session's state is kept (server.disconnectedSessionTTL for this test)


def start_server(cache_dir: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SCANNER_CACHE_DIR": cache_dir}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.disconnectedSessionTTL",
            str(TTL),
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("streamlit did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The server's RSS every 0.25 s while the sessions run."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.running = pid, [], True

    def run(self) -> None:
        while self.running:
            self.samples.append(rss_mb(self.pid))
            time.sleep(0.25)


async def one_session(browser, url: str, csv: Path | None) -> tuple[float, str | None]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    start = time.perf_counter()
    try:
        await page.goto(url + "/", timeout=120_000)
        if csv is not None:
            await page.locator('.st-key-upload input[type="file"]').set_input_files(str(csv))
            await page.get_by_role("heading", name=csv.name).wait_for(timeout=300_000)
        await page.get_by_role("link", name="Backtest").first.click()
        run = page.get_by_role("button", name="Run backtest")  # only past the size where results follow edits
        results = page.get_by_text("Total return")
        await results.or_(run).first.wait_for(timeout=300_000)
        if await run.count():
            await run.click(timeout=120_000)
        await results.first.wait_for(timeout=300_000)
        if await page.locator("[data-testid='stException']").count():
            return time.perf_counter() - start, "exception shown"
        return time.perf_counter() - start, None
    except Exception as exc:  # a load test counts failures, it does not stop at one
        return time.perf_counter() - start, repr(exc)[:160]
    finally:
        await context.close()


def _session_metrics(url: str) -> dict[str, int]:
    """Streamlit's own counters (/_stcore/metrics): sessions still active, connects and disconnects."""
    text = urllib.request.urlopen(url + "/_stcore/metrics", timeout=5).read().decode()
    wanted = {
        "active_sessions": "active",
        'session_events_total{type="connect"}': "connects",
        'session_events_total{type="disconnect"}': "disconnects",
    }
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = int(float(value))
    return out


def make_files(folder: Path, n: int, symbols: int) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from engine.server.datasets import to_frame
    from engine.synthetic import synthetic_market

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"upload_{i}.csv"
        to_frame(synthetic_market(symbols, 2520, seed=100 + i + symbols)).to_csv(path, index=False)
        files.append(path)
    return files


async def run(n: int, symbols: int, waves: int = 1) -> dict:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), n, symbols)
        warm = make_files(Path(tmp) / "warm", 1, 20)[0]
        upload_mb = float(np.mean([f.stat().st_size for f in files])) / 2**20
        log_path = Path(tmp) / "server.log"
        proc, url = start_server(str(Path(tmp) / "cache"), log_path)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
                )
                # Warm the server on the same journey (upload, Parquet store, backtest, cache write), so the
                # baseline includes every code path's one-time cost and "after" shows only what leaked.
                await one_session(browser, url, warm)
                await asyncio.sleep(TTL + 10)
                before = rss_mb(proc.pid)
                sampler = Sampler(proc.pid)
                sampler.start()
                t0 = time.perf_counter()
                results = await asyncio.gather(*(one_session(browser, url, f) for f in files))
                wall = time.perf_counter() - t0
                after_waves = []
                for _ in range(waves - 1):  # more waves: does what stays after a wave grow with the next?
                    await asyncio.sleep(TTL + 40)  # sessions expire, the reaper frees them
                    after_waves.append(round(rss_mb(proc.pid)))
                    results += await asyncio.gather(*(one_session(browser, url, f) for f in files))
                sampler.running = False
                await browser.close()
            tail = []
            for _ in range(12):  # closed sessions expire after TTL; the app's reaper frees them within 30 s
                await asyncio.sleep(10)
                tail.append(round(rss_mb(proc.pid)))
            after = tail[-1]
            sessions_left = _session_metrics(url)
        finally:
            proc.terminate()
            proc.wait(10)
        scripts = [
            json.loads(line)["seconds"]
            for line in log_path.read_text().splitlines()
            if line.startswith('{"event": "script"')
        ]
        tracebacks = log_path.read_text().count("Traceback")
    latencies = np.array([r[0] for r in results])
    errors = [r[1] for r in results if r[1]]
    return {
        "sessions": n,
        "upload_mb_each": round(upload_mb, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
        "server_tracebacks": tracebacks,
        "script_runs": len(scripts),
        "script_p50_s": round(float(np.percentile(scripts, 50)), 3),
        "script_p95_s": round(float(np.percentile(scripts, 95)), 3),
        "session_p50_s": round(float(np.percentile(latencies, 50)), 1),
        "session_max_s": round(float(latencies.max()), 1),
        "wall_s": round(wall, 1),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(max(sampler.samples)),
        "rss_after_mb": round(after),
        "rss_after_over_before": round(after / before, 2),
        "rss_after_every_10s": tail,
        "streamlit_sessions_after": sessions_left,
        "rss_after_each_earlier_wave": after_waves,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--symbols", type=int, default=320, help="symbols per upload (320 x 2,520 bars ~ 50 MB)")
    parser.add_argument("--waves", type=int, default=1, help="waves of sessions, each after the last has expired")
    args = parser.parse_args()
    figures = asyncio.run(run(args.sessions, args.symbols, args.waves))
    sys.path.insert(0, str(ROOT))
    from benchmarks._common import report

    report(figures)


if __name__ == "__main__":
    main()
