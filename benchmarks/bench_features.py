"""What each order and position feature costs when on: the same 500-symbol backtest as bench_bare.py, plain
and with one feature switched on, timed in turns (each against the plain run, so drift hits both alike).

    .venv/bin/python benchmarks/bench_features.py        # last line: one JSON object

A feature's figure is its run's median over the plain run's median; its trade count says how much it
changed the work (a limit entry trades less, an add or a partial exit writes more).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import interleaved, report  # noqa: E402
from benchmarks.bench_bare import DENSITY, N_BARS, N_SYMBOLS, PARAMS  # noqa: E402
from engine import backtest, synthetic_market  # noqa: E402

FEATURES = {
    "limit_entry": dict(entry_order="limit", entry_offset_pct=1.0, entry_valid_bars=3),
    "stop_entry": dict(entry_order="stop", entry_offset_pct=1.0, entry_valid_bars=3),
    "carry_costs": dict(signal_type="short", borrow_pct=3.0, cash_interest_pct=2.0),
    "margin_interest": dict(allow_leverage=True, max_leverage=2.0, max_positions=25, margin_interest_pct=6.0),
    "long_and_short": dict(signal_type="both", short_rule="rsi(14) > 70", on_opposite="reverse"),
    "scaling_in": dict(max_adds=2, add_rule="rsi(14) < 35", max_positions=100),
    "scaling_out": dict(partial_exits="50@4,25@8", breakeven_after_partial=True),
}


def main() -> None:
    market = synthetic_market(N_SYMBOLS, N_BARS, seed=42)
    signals = np.random.default_rng(0).random(market.shape) < DENSITY
    plain = backtest(market, signals, **PARAMS)
    figures: dict[str, object] = {"universe": f"{N_SYMBOLS}x{N_BARS}", "plain_trades": plain.metrics["n_trades"]}
    for name, extra in FEATURES.items():
        params = {**PARAMS, **extra}
        on, off = interleaved(
            lambda p=params: backtest(market, signals, **p), lambda: backtest(market, signals, **PARAMS)
        )
        figures[f"{name}_ms"] = round(on * 1e3, 1)
        figures[f"{name}_over_plain_x"] = round(on / off, 2)
        figures[f"{name}_fills"] = len(backtest(market, signals, **params).trades)
    figures["plain_ms"] = round(off * 1e3, 1)
    report(figures)


if __name__ == "__main__":
    main()
