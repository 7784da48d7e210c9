"""Scanner speed: 5 indicators + a 3-condition rule on 500 symbols x 2,520 bars (cold memo each run).

Run: .venv/bin/python benchmarks/bench_scanner.py   (last line: one JSON object)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, report, timed  # noqa: E402
from engine import synthetic_market  # noqa: E402
from engine.indicators import Indicators  # noqa: E402
from engine.rules import evaluate  # noqa: E402

RULE = "rsi(14) < 35 and close > sma(200) and relative_volume(20) > 1.5 and macd_hist() > 0 and atr_pct(14) < 5"


def main() -> None:
    market = synthetic_market(500, 2520, seed=42)
    first, warm = timed(lambda: evaluate(market, RULE, Indicators(market)))
    memo = Indicators(market)
    evaluate(market, RULE, memo)
    _, memo_hit = timed(lambda: evaluate(market, RULE, memo))
    figures = {
        "universe": "500x2520",
        "rule": RULE,
        "first_call_s": round(first, 3),
        "warm_ms_5_indicators_and_rule": round(warm * 1e3, 1),
        "warm_ms_memoised_indicators": round(memo_hit * 1e3, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    report(figures)


if __name__ == "__main__":
    main()
