"""The plain backtest where every position is independent (max positions = symbols, capital 1e9: no signal is
ever skipped for cash or a slot), timed against an earlier commit of this repository in turns.

This is the workload a peer would pick (vectorbt's `from_signals` with one column per symbol): every signal
trades, so the kernel's per-position work dominates, not the skips. Each side runs in its own process with the
same interpreter and packages, its own checkout on `sys.path`; the two alternate round by round so that both
meet the same drift of a shared machine.

    .venv/bin/python benchmarks/bench_independent.py                 # this tree against 2bbf513
    .venv/bin/python benchmarks/bench_independent.py --against HEAD~1 --rounds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_SYMBOLS, N_BARS, DENSITY = 500, 2520, 0.05
PARAMS = dict(
    stop_loss=5.0,
    take_profit=10.0,
    holding_period=20,
    max_positions=N_SYMBOLS,
    initial_capital=1e9,
    commission=0.05,
    slippage_bps=5,
)


def child(repo: str, calls: int) -> None:
    """Time `calls` backtests (metrics and the trade table read) with the engine of `repo`; print JSON."""
    sys.path.insert(0, repo)
    import numpy as np

    from engine import backtest, synthetic_market

    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY

    def run() -> int:
        result = backtest(market, signals, **PARAMS)
        result.metrics["n_trades"]
        return len(result.trades)

    run()  # compile or load the kernels, fill the memo
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "trades": run()}))


def side(repo: Path, calls: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(repo), "--calls", str(calls)],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="2bbf513", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=15, help="timed backtests per process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against], capture_output=True, check=True)
        old.mkdir()
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        side(old, 1), side(ROOT, 1)  # compile both sides' kernels into their own caches
        ours: list[float] = []
        theirs: list[float] = []
        trades = {}
        for _ in range(args.rounds):
            for name, repo, times in (("ours", ROOT, ours), ("theirs", old, theirs)):
                got = side(repo, args.calls)
                times.append(statistics.median(got["times"]))
                trades[name] = got["trades"]
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    figures = {
        "workload": f"{N_SYMBOLS}x{N_BARS}, every position independent",
        "against": args.against,
        "ours_ms": round(statistics.median(ours) * 1e3, 1),
        "theirs_ms": round(statistics.median(theirs) * 1e3, 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "trades": trades,
    }
    sys.path.insert(0, str(ROOT))
    from benchmarks._common import report

    report(figures)


if __name__ == "__main__":
    main()
