"""A morning's alerts: a family of 500 symbols x 2,520 bars with 50 saved screens (10 rules' shapes at 5
thresholds) gets one new day; the worker runs every screen on the new bar, claims it and writes the inbox
entries. Each screen's rule is scanned on the whole new version (a rule may look back any distance), so the
time grows with the history and the number of distinct rules; the claims and entries are a small part.

    .venv/bin/python benchmarks/bench_alerts.py
    .venv/bin/python benchmarks/bench_alerts.py --symbols 2000 --bars 5040 --screens 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import report  # noqa: E402
from engine import synthetic_market  # noqa: E402
from engine.data import market_from_frame  # noqa: E402
from engine.server.datasets import to_frame  # noqa: E402

SHAPES = (
    "rsi(14) < {x}",
    "close > sma(50) and rsi(14) < {x}",
    "roc(20) > {x} / 10",
    "close > high_n(20) * (1 - {x} / 1000)",
    "relative_volume(20) > 1 + {x} / 50",
    "crosses_above(close, sma(20)) and rsi(14) < {x} + 20",
    "atr(14) / close * 100 < {x} / 10",
    "close < bb_lower(20, 2) * (1 + {x} / 1000)",
    "ema(12) > ema(26) and roc(5) < {x} / 20 - 1",
    "stoch_k(14) < {x}",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--screens", type=int, default=50)
    args = parser.parse_args()
    whole = synthetic_market(args.symbols, args.bars + 1, seed=3)
    frame = to_frame(whole)
    family = market_from_frame(frame[frame.date < whole.dates[args.bars]], name="family")
    day = market_from_frame(frame[frame.date == whole.dates[args.bars]], name="day")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SCANNER_CACHE_DIR"] = cache
        from engine.server import alert_worker, service

        owner = "user:bench@example.org"
        service.create_family("bench", family, owner, shared=True)
        for i in range(args.screens):
            rule = SHAPES[i % len(SHAPES)].format(x=25 + 5 * (i // len(SHAPES)))
            service.save_screen(f"S{i}", rule, "family:bench", owner, shared=True)
            service.follow_screen(service.screens().list(owner)[0].id, "user:teammate@example.org")
        service.append_to_family("bench", day, owner)
        started = time.perf_counter()
        alerts = alert_worker.run_versions()
        seconds = time.perf_counter() - started
        entries = len(service.inbox(owner, limit=1000)) + len(service.inbox("user:teammate@example.org", limit=1000))
    figures = {
        "universe": f"{args.symbols}x{args.bars}",
        "screens": args.screens,
        "seconds": round(seconds, 2),
        "ms_per_screen": round(seconds / args.screens * 1e3, 1),
        "alerts": alerts,
        "inbox_entries": entries,
    }
    report(figures)


if __name__ == "__main__":
    main()
