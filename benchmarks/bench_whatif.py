"""The what-if loop as an analyst feels it, in a real browser against a real server on 127.0.0.1: 20 edits of
the stop-loss on the Backtest page, each timed from the edit's commit (Enter: results follow every edit, no
button) to new metrics on screen and to the page being idle (the script run over), on the bundled sample
and on 500 x 2,520 bars (a generated Parquet, uploaded). Prints p50 and p95 of each; the last line is one
JSON object.

Run: .venv/bin/python benchmarks/bench_whatif.py [--edits 20 --symbols 500 --bars 2520]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.load_test import start_server  # noqa: E402  (the same real server)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def edits(page, n: int) -> tuple[list[float], list[float]]:
    """(seconds to new metrics, seconds to idle) of n stop-loss edits, each a value not used before."""
    box = page.get_by_role("spinbutton", name="Stop-loss (%)")
    card = page.locator('[data-testid="stMetric"]', has_text="Total return").first.locator(
        '[data-testid="stMetricValue"]'
    )
    to_metrics, to_idle = [], []
    values = [f"{v:g}" for v in (2 + 0.25 * k for k in range(n + 1)) if v != 5.0][:n]  # 5 is the default: no sl=
    for value in values:
        before = card.inner_text()
        box.fill(value)
        start = time.perf_counter()
        box.press("Enter")
        page.wait_for_url(re.compile(rf"[?&]sl={re.escape(value)}(&|$)"), timeout=120_000)
        page.wait_for_function(
            "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
            arg=['[data-testid="stMetricValue"]', before],
            timeout=120_000,
        )
        to_metrics.append(time.perf_counter() - start)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
        to_idle.append(time.perf_counter() - start)
    return to_metrics, to_idle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from engine.server.datasets import to_frame
    from engine.synthetic import synthetic_market

    out: dict = {"bench": "whatif", "edits": args.edits}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / f"universe_{args.symbols}x{args.bars}.parquet"
        to_frame(synthetic_market(args.symbols, args.bars, seed=5)).to_parquet(big, index=False)
        server, url = start_server(str(Path(tmp) / "cache"), Path(tmp) / "server.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                for name in ("sample", f"{args.symbols}x{args.bars}"):
                    if name != "sample":
                        page.goto(f"{url}/", timeout=120_000)
                        page.locator('.st-key-upload input[type="file"]').set_input_files(str(big))
                        page.get_by_role("heading", name=big.name).wait_for(timeout=300_000)
                        page.get_by_role("link", name="Backtest").first.click()
                    else:
                        page.goto(f"{url}/backtest?rule=rsi%2814%29+%3C+30", timeout=120_000)
                    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=300_000)
                    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
                    metrics, idle = edits(page, args.edits)
                    out[name] = {
                        "to_metrics_p50_s": statistics.median(metrics),
                        "to_metrics_p95_s": p95(metrics),
                        "to_idle_p50_s": statistics.median(idle),
                        "to_idle_p95_s": p95(idle),
                    }
                    figures = out[name]
                    print(
                        f"{name:>10}: edit -> new metrics p50 {figures['to_metrics_p50_s']:.2f} s, p95 "
                        f"{figures['to_metrics_p95_s']:.2f} s; edit -> idle p50 {figures['to_idle_p50_s']:.2f} s, "
                        f"p95 {figures['to_idle_p95_s']:.2f} s",
                        flush=True,
                    )
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
