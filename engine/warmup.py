"""Compile every Numba kernel once (Numba caches the machine code on disk), so that a user's first
backtest after an install or a server start returns at once instead of waiting ~13 s for compilation.

`make run`/`make test` call `python -m engine warmup` after installing; the app also starts
`warm_up_in_background()` when the server starts.
"""

from __future__ import annotations

import threading
import time

_started = threading.Event()


def warm_up() -> float:
    """Run a scan with every indicator, backtests with each sizing method and limits, and a small grid on a
    tiny synthetic market; returns the seconds it took."""
    from .backtest import BacktestParams, backtest
    from .filters import scan
    from .indicators import CATALOGUE, indicators_for
    from .optimize import optimize
    from .risk import RiskLimits
    from .sizing import METHODS, Sizing
    from .synthetic import synthetic_market

    start = time.perf_counter()
    market = synthetic_market(4, 300, seed=1)
    memo = indicators_for(market)
    for name, spec in CATALOGUE.items():
        memo.get(name, *(p.default for p in spec.params))
    signals = scan(market, "crosses_above(close, sma(20)) or rsi(14) < 40 rank by relative_volume(20)")
    for method in METHODS:
        backtest(market, signals, BacktestParams(sizing=Sizing(method=method)))
    backtest(market, signals, BacktestParams(signal_type="short", limits=RiskLimits.defaults()))
    optimize(market, "rsi(14) < 40", BacktestParams(), {"stop_loss": [2, 4]}, min_trades=0)
    return time.perf_counter() - start


def warm_up_in_background() -> None:
    """Start warm_up once per process, in a daemon thread (later calls do nothing)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=warm_up, name="numba-warm-up", daemon=True).start()
