"""The whole market at scale: for each size (symbols x bars), a plain Arrow read of the Parquet file beside
`load_market`, then a scan (two indicators), a backtest and a 100-combination grid, each with the process's
peak RSS so far. Every size runs in a fresh process (its own peak), and the Arrow read in another.

Run: .venv/bin/python benchmarks/bench_scale.py [--sizes 500x2520,2000x5040,5000x7560]
Prints a table; the last line is one JSON object. Files are generated once into --dir (default a temp dir).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULE = "close > sma(50) and rsi(14) < 40"
# Peaks are VmHWM: getrusage's ru_maxrss starts at the parent's (kept across exec), which generated the file.
PEAK = "lambda: int(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1]) / 1024"
ARROW = """
import json, time
import pyarrow.parquet as pq
peak = {peak}
start = time.perf_counter()
table = pq.read_table({path!r})
seconds = time.perf_counter() - start
print(json.dumps({{"arrow_s": seconds, "arrow_peak_mb": peak()}}))
"""
STEPS = """
import json, sys, time
sys.path.insert(0, {root!r})
from engine import BacktestParams, backtest, load_market, scan
from engine.optimize import optimize
peak = {peak}
out = {{}}
start = time.perf_counter(); market = load_market({path!r}); out["load_s"] = time.perf_counter() - start
out["load_peak_mb"] = peak()
start = time.perf_counter(); signals = scan(market, {rule!r}); out["scan_s"] = time.perf_counter() - start
out["scan_peak_mb"] = peak()
backtest(market, signals)  # compiled kernels loaded from the cache; the second run is the figure
start = time.perf_counter(); result = backtest(market, signals); out["backtest_s"] = time.perf_counter() - start
out["backtest_peak_mb"] = peak()
grid = {{"stop_loss": [2.0, 4.0, 6.0, 8.0, 10.0], "take_profit": [5.0, 10.0, 15.0, 20.0]}}
grid["holding_period"] = [5, 10, 20, 40, 60]  # 5 x 4 x 5 = 100 combinations
start = time.perf_counter(); optimize(market, {rule!r}, BacktestParams(), grid, min_trades=0)
out["grid_s"] = time.perf_counter() - start
out["grid_peak_mb"] = peak()
out["trades"] = int(result.metrics["n_trades"])
print(json.dumps(out))
"""


def run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


BATCH = 1000  # symbols generated and written at a time past 5,000 (a 75 M-row frame would not fit)


def make_file(directory: Path, n_sym: int, n_bars: int) -> Path:
    path = directory / f"scale_{n_sym}x{n_bars}.parquet"
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.server.datasets import to_frame
    from engine.synthetic import synthetic_frame, synthetic_market

    if n_sym <= 5000:
        to_frame(synthetic_market(n_sym, n_bars, seed=7)).to_parquet(path, index=False)
        return path
    with pq.ParquetWriter(path, pa.Table.from_pandas(synthetic_frame(2, 2), preserve_index=False).schema) as out:
        for batch in range(n_sym // BATCH):
            frame = synthetic_frame(BATCH, n_bars, seed=7 + batch)
            frame["symbol"] = f"B{batch}" + frame["symbol"]
            out.write_table(pa.Table.from_pandas(frame, preserve_index=False), row_group_size=1_000_000)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500x2520,2000x5040,5000x7560")
    parser.add_argument("--dir", default="")
    args = parser.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench_scale_"))
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        n_sym, n_bars = (int(x) for x in size.split("x"))
        path = make_file(directory, n_sym, n_bars)
        figures = {"size": size, "file_mb": path.stat().st_size / 2**20}
        figures |= run(ARROW.format(path=str(path), peak=PEAK))
        figures |= run(STEPS.format(root=str(ROOT), path=str(path), rule=RULE, peak=PEAK))
        figures["load_vs_arrow"] = figures["load_s"] / figures["arrow_s"]
        rows.append(figures)
        print(
            f"{size:>10}: file {figures['file_mb']:,.0f} MB | Arrow read {figures['arrow_s']:.2f} s "
            f"(peak {figures['arrow_peak_mb']:,.0f} MB) | load {figures['load_s']:.2f} s "
            f"({figures['load_vs_arrow']:.1f}x, peak {figures['load_peak_mb']:,.0f} MB) | scan "
            f"{figures['scan_s']:.2f} s (peak {figures['scan_peak_mb']:,.0f} MB) | backtest "
            f"{figures['backtest_s']:.3f} s | 100-combination grid {figures['grid_s']:.2f} s "
            f"(peak {figures['grid_peak_mb']:,.0f} MB)",
            flush=True,
        )
    print(json.dumps({"bench": "scale", "rule": RULE, "rows": rows}))


if __name__ == "__main__":
    main()
