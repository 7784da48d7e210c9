"""Load test of the HTTP API's memory promise: uvicorn on 127.0.0.1 with two named tokens and a memory budget
(SCANNER_SERVER_MB), a stored dataset of S symbols x B bars that alice shares, and C concurrent clients for T
seconds, each looping what a team's scripts send (list datasets, scan, backtest of the dense rule with varying
stops, a page of its trades, a Monte Carlo job). It prints, per budget, the server's resident memory when idle
and at its peak, the peak's rise above idle against the budget, requests/s and latency per kind, errors (any
5xx but a 503 with Retry-After, any transport failure) and every answered backtest checked against the
library's own. The last line is one JSON object. Bounded in count and time; it stops by itself.

Run: make load-test-api, or .venv/bin/python benchmarks/load_test_api.py [--budgets 1024,2048,512 --clients 20
--seconds 60 --symbols 1000 --bars 2520]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKENS = {"alice": "alice-load-test-token-0001", "bob": "bob-load-test-token-00002"}
RULE = "close > sma(50)"  # dense: a signal on most bars, a million skipped signals per backtest
STOPS = (2, 4, 6, 8)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def stored_dataset(cache: str, symbols: int, bars: int) -> tuple[str, dict[int, dict]]:
    """Alice's shared dataset in the server's store, and the library's metrics of the backtest per stop."""
    from engine import backtest, scan
    from engine.backtest import params_from_values
    from engine.server.datasets import DatasetStore
    from engine.synthetic import synthetic_market

    market = synthetic_market(symbols, bars, seed=11)
    store = DatasetStore(Path(cache) / "datasets")
    info = store.put(market, owner="user:alice")
    store.set_shared(info.id, "user:alice", True)
    signals = scan(market, RULE)
    expected = {s: backtest(market, signals, params_from_values({"stop_loss": s})).metrics for s in STOPS}
    return info.id, expected


def start(cache: str, budget_mb: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANNER_")}
    env |= {
        "SCANNER_CACHE_DIR": cache,
        "SCANNER_SERVER_MB": str(budget_mb),
        "MALLOC_ARENA_MAX": "2",
        "SCANNER_API_TOKEN": ",".join(f"{n}:{t}" for n, t in TOKENS.items()),
    }
    command = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)]
    log = open(Path(cache) / "server.log", "w")  # noqa: SIM115  # the server's own log, quoted on errors
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/api/params", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("uvicorn did not start within 60 s")


def same(got: dict, want: dict) -> bool:
    for key, value in want.items():
        other = got.get(key)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        if other is None or abs(other - value) > 1e-9 * max(1.0, abs(value)):
            return False
    return True


def client_loop(
    url: str, who: str, data: str, expected: dict, until: float, seed: int, out: dict, kinds: list[str]
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    with httpx.Client(base_url=url, headers=headers, timeout=180) as http:
        while time.monotonic() < until:
            kind = rng.choice(kinds)
            start = time.perf_counter()
            stop = rng.choice(STOPS)
            try:
                if kind == "list":
                    r = http.get("/api/data")
                elif kind == "scan":
                    r = http.post("/api/scan", json={"data": data, "rule": RULE, "limit": 100})
                elif kind in ("backtest", "page"):
                    body = {"data": data, "rule": RULE, "params": {"stop_loss": stop}}
                    r = http.post("/api/backtest/run", json=body)
                    if r.status_code == 200:
                        out["answered"].append(1)
                        if not same(r.json()["metrics"], expected[stop]):
                            out["mismatches"].append(f"stop {stop}: {r.json()['metrics']}"[:200])
                        if kind == "page" and r.json()["events"]["next"]:
                            r = http.get(r.json()["events"]["next"])
                else:
                    body = {"data": "sample", "rule": "rsi(14) < 35", "settings": {"n_simulations": 2000}}
                    r = http.post("/api/montecarlo", json=body)
                    if r.status_code == 202:
                        while (job := http.get(r.json()["url"])).json()["status"] in ("queued", "running"):
                            time.sleep(0.2)
                        r = job
            except httpx.HTTPError as exc:
                out["errors"].append(f"{kind}: {exc!r}"[:200])
                continue
            out["timings"][kind].append(time.perf_counter() - start)
            busy = r.status_code in (429, 503) and "retry-after" in {k.lower() for k in r.headers}
            if busy:
                out["busy"].append(1)
                time.sleep(min(float(r.headers.get("retry-after", 1)), 5.0))
            elif r.status_code >= 500:
                out["errors"].append(f"{kind}: {r.status_code} {r.text[:150]}")


def run(budget_mb: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        data, expected = stored_dataset(cache, args.symbols, args.bars)
        out: dict = {"timings": defaultdict(list), "errors": [], "mismatches": [], "busy": [], "answered": []}
        proc, url = start(cache, budget_mb)
        try:
            time.sleep(3)  # the kernels load from the cache in the background
            idle = rss_mb(proc.pid)
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(
                    target=client_loop,
                    args=(url, "alice" if i % 2 else "bob", data, expected, until, i, out, args.kinds.split(",")),
                )
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            peak = idle
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.1)
            time.sleep(2)
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
            if out["errors"]:
                lines = (Path(cache) / "server.log").read_text().splitlines()
                print(
                    "\n".join(line for line in lines if "Error" in line or "Traceback" in line or "File" in line)[
                        -3000:
                    ]
                )
    timings = out["timings"]
    total = sum(len(v) for v in timings.values())
    rise = peak - idle
    return {
        "budget_mb": budget_mb,
        "clients": args.clients,
        "seconds": args.seconds,
        "dataset": f"{args.symbols} x {args.bars}",
        "requests": total,
        "requests_per_s": round(total / args.seconds, 1),
        "answered_backtests": len(out["answered"]),
        "mismatches": len(out["mismatches"]),
        "busy_503": len(out["busy"]),
        "errors": len(out["errors"]),
        "error_examples": out["errors"][:5] + out["mismatches"][:5],
        "rss_mb": {"idle": round(idle), "peak": round(peak), "after": round(after)},
        "peak_above_idle_mb": round(rise),
        "peak_over_budget": round(rise / budget_mb, 2),
        "within_promise": rise <= 1.5 * budget_mb and not out["errors"] and not out["mismatches"],
        "latency_s": {
            k: {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (50, 95)} for k, v in sorted(timings.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="1024", help="SCANNER_SERVER_MB values, comma-separated")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--kinds", default="list,scan,backtest,backtest,page,montecarlo", help="the mix of requests")
    args = parser.parse_args()
    reports = []
    for budget in (int(b) for b in args.budgets.split(",")):
        report = run(budget, args)
        reports.append(report)
        rss = report["rss_mb"]
        print(
            f"budget {budget:,} MB: peak {rss['peak']:,} MB, {report['peak_above_idle_mb']:,} MB above the idle "
            f"{rss['idle']:,} MB ({report['peak_over_budget']:.2f}x the budget; the promise is at most 1.5x); "
            f"{report['requests']:,} requests ({report['requests_per_s']}/s), {report['answered_backtests']:,} "
            f"backtests answered, {report['mismatches']} unequal to the library's, {report['busy_503']:,} told to "
            f"retry (503), {report['errors']} errors"
        )
        for kind, figures in report["latency_s"].items():
            print(f"  {kind:>10}: " + ", ".join(f"{q} {s:.2f} s" for q, s in figures.items()))
        for e in report["error_examples"]:
            print("  error:", e)
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
