"""Loader speed and memory: a large CSV (peak RSS as a multiple of its size), a 2,000 x 5,040 Parquet
(10 M rows), and a gzip bomb (how fast it is refused). Each load runs in a fresh process so its peak
RSS is its own. Prints a table; the last line is one JSON object.

Run: .venv/bin/python benchmarks/bench_load.py [--symbols 2000 --bars 5040]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from engine import load_market
from engine.data import DataError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    m = load_market({path!r}, max_bytes=10**12)
    outcome = f"{{m.shape[1]}} symbols x {{m.shape[0]}} dates"
except DataError as exc:
    outcome = "refused: " + str(exc)[:80]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, (peak - base) / 1024, outcome, sep="|")
"""


def measure(path: Path) -> tuple[float, float, str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
        capture_output=True,
        text=True,
        check=True,
        env={"SCANNER_MAX_DECOMPRESSED_MB": "100000"},
    )
    seconds, peak_mb, outcome = out.stdout.strip().splitlines()[-1].split("|")
    return float(seconds), float(peak_mb), outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=5040)
    parser.add_argument("--csv-symbols", type=int, default=400)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.server.datasets import to_frame
    from engine.synthetic import synthetic_market

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "universe.csv"
        to_frame(synthetic_market(args.csv_symbols, 2520, seed=1)).to_csv(csv, index=False)
        size_mb = csv.stat().st_size / 2**20
        seconds, peak, outcome = measure(csv)
        figures["csv"] = {
            "mb": round(size_mb, 1),
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak),
            "peak_over_size": round(peak / size_mb, 2),
            "outcome": outcome,
        }

        parquet = Path(tmp) / "big.parquet"
        to_frame(synthetic_market(args.symbols, args.bars, seed=2)).to_parquet(parquet, index=False)
        seconds, peak, outcome = measure(parquet)
        figures["parquet"] = {
            "rows_m": round(args.symbols * args.bars / 1e6, 1),
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak),
            "outcome": outcome,
        }

        bomb = Path(tmp) / "bomb.csv.gz"
        bomb.write_bytes(gzip.compress(b"symbol,date,open,high,low,close\n" + b"0" * 400_000_000, compresslevel=9))
        seconds, peak, outcome = measure(bomb)
        figures["gzip_bomb"] = {
            "compressed_mb": round(bomb.stat().st_size / 2**20, 2),
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak),
            "outcome": outcome,
        }

    for name, f in figures.items():
        print(f"{name:<10} " + "  ".join(f"{k}={v}" for k, v in f.items()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
