"""Measure the peak memory of one POST /api/scan request in this fresh process (run by tests/test_memory.py).

Usage: python tests/helpers/scan_peak.py N_INDICATORS SYMBOLS BARS. Prints JSON: the server's estimate and
the measured rise of the process's peak resident memory over the request (the response and the cache write
included). Run with MALLOC_MMAP_THRESHOLD_ small so that every large array is its own mapping and freed
memory does not hide a later allocation.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["SCANNER_CACHE_DIR"] = tempfile.mkdtemp()

from fastapi.testclient import TestClient  # noqa: E402

import api.app  # noqa: E402
import engine.server.service  # noqa: E402
from engine.budget import scan_bytes  # noqa: E402
from engine.rules import indicator_names, scan  # noqa: E402
from engine.synthetic import synthetic_market  # noqa: E402

KINDS = (
    "sma({})",
    "rsi({})",
    "ema({})",
    "stoch_k({})",
    "atr({})",
    "bb_upper({})",
    "roc({})",
    "macd({}, 40)",
    "volatility({})",
    "wma({})",
    "adx({})",
    "relative_volume({})",
)


def rule(n: int) -> str:
    calls = [KINDS[i % len(KINDS)].format(5 + i) for i in range(n)] or ["close"]
    return " and ".join(f"{c} > 0" for c in calls)


def resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak() -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


def main(n: int, symbols: int, bars: int) -> None:
    market = synthetic_market(symbols, bars, seed=3)
    engine.server.service.builtin = lambda name: market  # the request's dataset: this market
    scan(synthetic_market(3, 300, seed=1), rule(n))  # compile the kernels first: their memory is not the scan's
    with TestClient(api.app.create_app()) as client:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak
        before = resident()
        response = client.post("/api/scan", json={"data": "synthetic", "rule": rule(n), "limit": 1000})
        assert response.status_code == 200, response.text
        rise = peak() - before
    estimate = scan_bytes(market.close.nbytes, indicator_names(rule(n)))
    print(json.dumps({"n": n, "estimate": estimate, "peak": rise, "array": market.close.nbytes}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
