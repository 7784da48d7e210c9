"""Compile every Numba kernel once (Numba caches the machine code on disk), so that a user's first backtest
after an install or a server start returns at once instead of waiting for compilation.

`make run`/`make test` call `python -m engine warmup` after installing. The dashboard's launcher
(`python -m serve`, what `make run` starts) begins `warm_up_in_background()` when the server starts, not when
the first visitor arrives; a page that needs the engine before it is ready shows `progress()` meanwhile.
From an empty cache the compile takes about 30 s on 2 cores; from a warm disk cache, a second or two.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backtest import BacktestParams, backtest
from .indicators import CATALOGUE, indicators_for
from .optimize import optimize
from .risk import RiskLimits
from .rules import scan
from .sizing import METHODS, Sizing
from .synthetic import synthetic_market

log = logging.getLogger("engine.warmup")

COLD_SECONDS = 35.0  # compile time from an empty cache on this project's 2-core machines (README, Hosting)


@dataclass
class Progress:
    """Where the warm-up stands: steps done of total, and since when."""

    done: int = 0
    total: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def ready(self) -> bool:
        """Nothing to wait for: finished, or never started (then each kernel compiles when first used)."""
        return self.started is None or self.finished is not None

    def seconds_left(self) -> float:
        """A guess of the time left: the pace so far, or the cold compile time before any step is done."""
        if self.ready or self.started is None:
            return 0.0
        elapsed = time.monotonic() - self.started
        if self.done == 0:
            return max(COLD_SECONDS - elapsed, 5.0)
        return max(elapsed / self.done * (self.total - self.done), 1.0)


_progress = Progress()
_started = threading.Event()


def progress() -> Progress:
    return _progress


def _steps() -> list[Callable[[], object]]:
    """Each kernel family on a tiny synthetic market: indicators, a scan, backtests with each sizing method
    and limits, a short backtest, a small grid."""
    market = synthetic_market(4, 300, seed=1)
    memo = indicators_for(market)
    signals: list = []
    steps: list[Callable[[], object]] = [
        functools.partial(memo.get, name, *(p.default for p in spec.params)) for name, spec in CATALOGUE.items()
    ]
    rule = "crosses_above(close, sma(20)) or rsi(14) < 40 rank by relative_volume(20)"
    steps.append(lambda: signals.append(scan(market, rule)))
    for method in METHODS:
        params = BacktestParams(sizing=Sizing(method=method))
        steps.append(functools.partial(lambda p: backtest(market, signals[0], p), params))
    steps.append(
        lambda: backtest(market, signals[0], BacktestParams(signal_type="short", limits=RiskLimits.defaults()))
    )
    steps.append(lambda: optimize(market, "rsi(14) < 40", BacktestParams(), {"stop_loss": [2, 4]}, min_trades=0))
    return steps


def warm_up() -> float:
    """Run every step, counting them in progress(); returns the seconds it took."""
    _progress.started = _progress.started or time.monotonic()
    start = time.perf_counter()
    try:
        steps = _steps()
        _progress.total = len(steps)
        for step in steps:
            step()
            _progress.done += 1
    finally:  # a failed step must not leave pages waiting: the kernels then compile when first used
        _progress.finished = time.monotonic()
    seconds = time.perf_counter() - start
    log.warning("engine ready: kernels compiled or loaded from the cache in %.1f s", seconds)
    return seconds


def warm_up_in_background() -> None:
    """Start warm_up once per process, in a daemon thread (later calls do nothing)."""
    if _started.is_set():
        return
    _started.set()
    _progress.started = time.monotonic()
    threading.Thread(target=warm_up, name="numba-warm-up", daemon=True).start()
