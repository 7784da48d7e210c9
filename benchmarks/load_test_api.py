"""Load test of the HTTP API: uvicorn on 127.0.0.1 with named tokens, C concurrent clients for S seconds, each
looping a mix of what a team's scripts send (list datasets, scan, backtest with varying stops, Monte Carlo job
submitted and polled). Prints requests/s, p50/p95/p99 latency per endpoint, errors (any 5xx other than a 503
with Retry-After, any transport failure) and the server's RSS before, at peak and after. The last line is one
JSON object. Bounded in count and time; it stops by itself.

Run: make load-test-api, or .venv/bin/python benchmarks/load_test_api.py [--clients 20 --seconds 30]
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
TOKENS = {"alice": "alice-load-test-token-0001", "bob": "bob-load-test-token-00002"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(cache: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SCANNER_CACHE_DIR": cache,
        "MALLOC_ARENA_MAX": "2",
        "SCANNER_API_TOKEN": ",".join(f"{n}:{t}" for n, t in TOKENS.items()),
    }
    command = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/api/params", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("uvicorn did not start within 60 s")


def client_loop(url: str, who: str, until: float, seed: int, timings: dict, errors: list) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        while time.monotonic() < until:
            kind = rng.choice(["list", "scan", "backtest", "backtest", "montecarlo"])
            start = time.perf_counter()
            try:
                if kind == "list":
                    r = http.get("/api/data")
                elif kind == "scan":
                    r = http.post("/api/scan", json={"data": "synthetic", "rule": f"rsi(14) < {rng.randint(20, 40)}"})
                elif kind == "backtest":
                    body = {"data": "synthetic", "rule": "rsi(14) < 30", "params": {"stop_loss": rng.randint(1, 15)}}
                    r = http.post("/api/backtest/run", json=body)
                else:
                    body = {"data": "sample", "rule": "rsi(14) < 35", "settings": {"n_simulations": 2000}}
                    r = http.post("/api/montecarlo", json=body)
                    if r.status_code == 202:
                        while (job := http.get(r.json()["url"])).json()["status"] in ("queued", "running"):
                            time.sleep(0.1)
                        r = job
            except httpx.HTTPError as exc:
                errors.append(f"{kind}: {exc!r}"[:200])
                continue
            timings[kind].append(time.perf_counter() - start)
            busy = r.status_code in (429, 503) and "retry-after" in {k.lower() for k in r.headers}
            if r.status_code >= 500 and not busy:
                errors.append(f"{kind}: {r.status_code} {r.text[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        proc, url = start(cache)
        try:
            httpx.post(
                url + "/api/scan",
                json={"data": "synthetic", "rule": "close > 0"},
                headers={"Authorization": f"Bearer {TOKENS['alice']}"},
                timeout=120,
            )
            before = rss_mb(proc.pid)
            timings: dict[str, list[float]] = defaultdict(list)
            errors: list[str] = []
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client_loop, args=(url, "alice" if i % 2 else "bob", until, i, timings, errors))
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            peak = before
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.2)
            time.sleep(2)
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    total = sum(len(v) for v in timings.values())
    report = {
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": total,
        "requests_per_s": round(total / args.seconds, 1),
        "errors": len(errors),
        "rss_mb": {"before": round(before), "peak": round(peak), "after": round(after)},
        "latency_s": {
            k: {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (50, 95, 99)} for k, v in sorted(timings.items())
        },
    }
    for kind, figures in report["latency_s"].items():
        print(
            f"{kind:>10}: {len(timings[kind]):5,} requests, " + ", ".join(f"{q} {s:.3f} s" for q, s in figures.items())
        )
    print(
        f"{total:,} requests in {args.seconds:.0f} s ({report['requests_per_s']}/s), {len(errors)} errors; RSS "
        f"{before:,.0f} -> {peak:,.0f} -> {after:,.0f} MB"
    )
    for e in errors[:10]:
        print("  error:", e)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
