"""Technical indicators over all symbols at once: (bars x symbols) arrays in, same shape out.

Each indicator is computed on each symbol's own bars (missing bars are skipped, not filled), matches
TA-Lib's definition and warm-up, and at bar t reads only bars <= t. `Indicators` memoises results per
(name, parameters) so editing a rule recomputes only what changed.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import numpy as np

from . import _candle_kernels as candles
from . import _indicator_kernels as k
from .budget import SERVER_MEMO_MB, available_bytes
from .data import Market
from .data.columns import reserve_names

ANNUALISATION = np.sqrt(252.0)


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last n bars."""
    return k.rolling_mean(x, int(n))


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the SMA of the first n bars."""
    return k.ema(x, int(n), 2.0 / (n + 1.0), int(n) - 1)


def wma(x: np.ndarray, n: int) -> np.ndarray:
    """Linearly weighted moving average (weights 1..n)."""
    return k.rolling_wma(x, int(n))


def wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/n), seeded with the SMA of the first n values."""
    return k.ema(x, int(n), 1.0 / n, int(n) - 1)


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI: 100 - 100 / (1 + avg gain / avg loss)."""
    delta = close - k.shift_valid(close, 1)
    gain = wilder(np.where(np.isnan(delta), np.nan, np.maximum(delta, 0.0)), n)
    loss = wilder(np.where(np.isnan(delta), np.nan, np.maximum(-delta, 0.0)), n)
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 0.0))


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, ...]:
    """(MACD line, signal line, histogram); both EMAs start at bar slow-1 as in TA-Lib."""
    fast, slow = sorted((int(fast), int(slow)))
    fast_ema = k.ema(close, fast, 2.0 / (fast + 1.0), slow - 1)
    slow_ema = k.ema(close, slow, 2.0 / (slow + 1.0), slow - 1)
    line = fast_ema - slow_ema
    sig = ema(line, signal)
    line = np.where(np.isnan(sig), np.nan, line)
    return line, sig, line - sig


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's average true range."""
    return wilder(k.true_range(high, low, close), n)


def bollinger(close: np.ndarray, n: int = 20, width: float = 2.0) -> tuple[np.ndarray, ...]:
    """(upper, middle, lower): SMA(n) +/- width x population stdev(n)."""
    mid = sma(close, n)
    sd = k.rolling_std(close, int(n), 0)
    return mid + width * sd, mid, mid - width * sd


def stochastic(high, low, close, n: int = 14, smooth: int = 3, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Slow stochastic (%K, %D): %K = SMA(smooth) of 100 x (close - LL_n) / (HH_n - LL_n); %D = SMA(d) of %K."""
    hh = k.rolling_extreme(high, int(n), True)
    ll = k.rolling_extreme(low, int(n), False)
    rng = hh - ll
    with np.errstate(divide="ignore", invalid="ignore"):
        fast_k = np.where(rng > 0, 100.0 * (close - ll) / rng, np.where(np.isnan(rng), np.nan, 0.0))
    slow_k = sma(fast_k, smooth)
    slow_d = sma(slow_k, d)
    return np.where(np.isnan(slow_d), np.nan, slow_k), slow_d  # TA-Lib starts %K with %D


def roc(x: np.ndarray, n: int = 10) -> np.ndarray:
    """Rate of change in %: (x_t / x_{t-n} - 1) x 100."""
    return (x / k.shift_valid(x, int(n)) - 1.0) * 100.0


def rolling_volatility(close: np.ndarray, n: int = 20) -> np.ndarray:
    """Annualised stdev (ddof=1) of the last n simple returns, in %."""
    ret = close / k.shift_valid(close, 1) - 1.0
    return k.rolling_std(ret, int(n), 1) * ANNUALISATION * 100.0


def relative_volume(volume: np.ndarray, n: int = 20) -> np.ndarray:
    """Today's volume / mean volume of the previous n bars."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return volume / k.shift_valid(sma(volume, n), 1)


def gap_pct(open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Opening gap in %: (open_t / close_{t-1} - 1) x 100."""
    return (open_ / k.shift_valid(close, 1) - 1.0) * 100.0


# ---- The catalogue the rule language and the UI read -------------------------------------------------


@dataclass(frozen=True)
class IndicatorParam:
    name: str
    default: float | str
    kind: str = "int"  # "int", "float" or "series"


@dataclass(frozen=True)
class Spec:
    """One indicator as the rule language sees it: a name, parameters, a one-line description."""

    compute: Callable[..., np.ndarray]
    params: tuple[IndicatorParam, ...]
    description: str


SERIES = ("open", "high", "low", "close", "volume")


def _src() -> IndicatorParam:
    return IndicatorParam("source", "close", "series")


CATALOGUE: dict[str, Spec] = {
    "sma": Spec(lambda m, n, s: sma(s, n), (IndicatorParam("n", 20), _src()), "simple moving average"),
    "ema": Spec(lambda m, n, s: ema(s, n), (IndicatorParam("n", 20), _src()), "exponential moving average"),
    "wma": Spec(lambda m, n, s: wma(s, n), (IndicatorParam("n", 20), _src()), "weighted moving average"),
    "rsi": Spec(lambda m, n: rsi(m.close, n), (IndicatorParam("n", 14),), "Wilder RSI, 0-100"),
    "macd": Spec(
        lambda m, f, s, g: macd(m.close, f, s, g)[0],
        (IndicatorParam("fast", 12), IndicatorParam("slow", 26), IndicatorParam("signal", 9)),
        "MACD line",
    ),
    "macd_signal": Spec(
        lambda m, f, s, g: macd(m.close, f, s, g)[1],
        (IndicatorParam("fast", 12), IndicatorParam("slow", 26), IndicatorParam("signal", 9)),
        "MACD signal line",
    ),
    "macd_hist": Spec(
        lambda m, f, s, g: macd(m.close, f, s, g)[2],
        (IndicatorParam("fast", 12), IndicatorParam("slow", 26), IndicatorParam("signal", 9)),
        "MACD histogram",
    ),
    "atr": Spec(lambda m, n: atr(m.high, m.low, m.close, n), (IndicatorParam("n", 14),), "average true range"),
    "atr_pct": Spec(
        lambda m, n: atr(m.high, m.low, m.close, n) / m.close * 100.0, (IndicatorParam("n", 14),), "ATR as % of close"
    ),
    "bb_upper": Spec(
        lambda m, n, w: bollinger(m.close, n, w)[0],
        (IndicatorParam("n", 20), IndicatorParam("k", 2.0, "float")),
        "upper Bollinger band",
    ),
    "bb_middle": Spec(
        lambda m, n, w: bollinger(m.close, n, w)[1],
        (IndicatorParam("n", 20), IndicatorParam("k", 2.0, "float")),
        "middle Bollinger band (SMA)",
    ),
    "bb_lower": Spec(
        lambda m, n, w: bollinger(m.close, n, w)[2],
        (IndicatorParam("n", 20), IndicatorParam("k", 2.0, "float")),
        "lower Bollinger band",
    ),
    "bb_pct_b": Spec(
        lambda m, n, w: _pct_b(m.close, n, w),
        (IndicatorParam("n", 20), IndicatorParam("k", 2.0, "float")),
        "Bollinger %B: 0 at the lower band, 1 at the upper",
    ),
    "bb_width": Spec(
        lambda m, n, w: _bb_width(m.close, n, w),
        (IndicatorParam("n", 20), IndicatorParam("k", 2.0, "float")),
        "Bollinger band width, % of the middle band",
    ),
    "stoch_k": Spec(
        lambda m, n, s: stochastic(m.high, m.low, m.close, n, s)[0],
        (IndicatorParam("n", 14), IndicatorParam("smooth", 3)),
        "slow stochastic %K",
    ),
    "stoch_d": Spec(
        lambda m, n, s, d: stochastic(m.high, m.low, m.close, n, s, d)[1],
        (IndicatorParam("n", 14), IndicatorParam("smooth", 3), IndicatorParam("d", 3)),
        "slow stochastic %D",
    ),
    "adx": Spec(
        lambda m, n: k.adx(m.high, m.low, m.close, int(n)), (IndicatorParam("n", 14),), "Wilder ADX, trend strength"
    ),
    "obv": Spec(lambda m: k.obv(m.close, m.volume), (), "on-balance volume"),
    "roc": Spec(lambda m, n, s: roc(s, n), (IndicatorParam("n", 10), _src()), "rate of change, %"),
    "volatility": Spec(
        lambda m, n: rolling_volatility(m.close, n), (IndicatorParam("n", 20),), "annualised volatility, %"
    ),
    "avg_volume": Spec(lambda m, n: sma(m.volume, n), (IndicatorParam("n", 20),), "average volume"),
    "relative_volume": Spec(
        lambda m, n: relative_volume(m.volume, n),
        (IndicatorParam("n", 20),),
        "volume / average volume of the previous n bars",
    ),
    "high_n": Spec(
        lambda m, n: k.rolling_extreme(m.high, int(n), True),
        (IndicatorParam("n", 252),),
        "highest high of the last n bars (252 = 52 weeks)",
    ),
    "low_n": Spec(
        lambda m, n: k.rolling_extreme(m.low, int(n), False),
        (IndicatorParam("n", 252),),
        "lowest low of the last n bars",
    ),
    "dist_from_high_pct": Spec(
        lambda m, n: (m.close / k.rolling_extreme(m.high, int(n), True) - 1.0) * 100.0,
        (IndicatorParam("n", 252),),
        "close vs the n-bar high, % (<= 0)",
    ),
    "gap_pct": Spec(lambda m: gap_pct(m.open, m.close), (), "open vs previous close, %"),
}


def _pattern(index: int, m: Market) -> np.ndarray:
    return candles.pattern(index, m.open, m.high, m.low, m.close)


_PATTERN_WORDS = {  # candlestick patterns, as TA-Lib's CDL functions: +100 bullish, -100 bearish, 0 none
    "doji": "doji: open and close nearly equal (+100)",
    "engulfing": "engulfing: a body engulfs the previous opposite one (+100 bullish, -100 bearish, 80: one end equal)",
    "hammer": "hammer: small body on a long lower shadow at a low (+100)",
    "hanging_man": "hanging man: small body on a long lower shadow at a high (-100)",
    "inverted_hammer": "inverted hammer: small body under a long upper shadow, gapping down (+100)",
    "shooting_star": "shooting star: small body under a long upper shadow, gapping up (-100)",
    "harami": "harami: a short body inside the previous long one (+100 bullish, -100 bearish, 80: an edge shared)",
    "piercing": "piercing line: a long black candle, then a white one closing past its middle (+100)",
    "dark_cloud_cover": "dark cloud cover: a long white candle, then a black one closing past its middle (-100)",
    "morning_star": "morning star: long black, a short body gapping down, a white one back into the first (+100)",
    "evening_star": "evening star: long white, a short body gapping up, a black one back into the first (-100)",
    "three_white_soldiers": "three white soldiers: three rising white candles, short upper shadows (+100)",
    "three_black_crows": "three black crows: after a white candle, three falling black ones (-100)",
}
CATALOGUE |= {
    f"cdl_{name}": Spec(partial(_pattern, i), (), _PATTERN_WORDS[name]) for i, name in enumerate(candles.PATTERNS)
}
reserve_names([*CATALOGUE, *SERIES])  # own columns cannot shadow them


def _pct_b(close, n, w):
    upper, _, lower = bollinger(close, n, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (close - lower) / (upper - lower)


def _bb_width(close, n, w):
    upper, mid, lower = bollinger(close, n, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (upper - lower) / mid * 100.0


def memo_limit_bytes() -> int:
    """Bytes all indicator memos of this process may hold together: SCANNER_MEMO_MB (a server sets 512 unless
    told: `budget.serve_defaults`); in the library without it, a quarter of the memory available now and
    at least 512 MB, so a market of 5,000 x 7,560 bars keeps a rule's indicators between a scan and its
    backtest instead of computing them twice."""
    given = os.environ.get("SCANNER_MEMO_MB", "")
    return int(float(given) * 2**20) if given else max(SERVER_MEMO_MB * 2**20, available_bytes() // 4)


class Derived(StrEnum):
    """The values besides indicators that depend only on a dataset, memoised beside them under these names
    (with their arguments): one list, so two callers cannot spell one entry two ways."""

    LAST_VALID = "last_valid"  # per symbol, its last bar with a close
    DELISTING = "delisting"  # per symbol, the `delisting_return` on its last bar (0: none)
    CORRELATION_INPUTS = "correlation_inputs"  # returns and validity, (symbols x bars)
    SECTOR_IDS = "sector_ids"
    BUY_HOLD_PER_UNIT = "buy_hold_per_unit"  # argument: the benchmark's column, or none for equal weight
    VOL_FRACTION = "vol_fraction"  # argument: the lookback
    RULE_SIGNALS = "rule_signals"  # argument: a rule's text; (signal matrix, priority) of an exit, short or add rule


class Indicators:
    """Memoised indicator values for one Market: each (name, params) is computed once. It lives on the
    Market object, so it is freed with the last session holding that dataset; all memos together stay
    within memo_limit_bytes() (the least recently used dataset's arrays are dropped first)."""

    def __init__(self, market: Market) -> None:
        self._market = weakref.ref(market)  # no cycle: the memo dies with its market
        self._memo: OrderedDict[tuple, np.ndarray | tuple] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self.nbytes = 0
        self.last_used = time.monotonic()
        self._lock = threading.Lock()
        self.computed = 0  # how many arrays were actually computed (observable in tests)

    @property
    def market(self) -> Market:
        market = self._market()
        if market is None:
            raise RuntimeError("the dataset of this indicator memo is gone")
        return market

    def series(self, name: str) -> np.ndarray:
        return getattr(self.market, name)

    def get(self, name: str, *args) -> np.ndarray:
        spec = CATALOGUE[name]

        def compute() -> np.ndarray:
            resolved = [self.series(a) if p.kind == "series" else a for p, a in zip(spec.params, args, strict=True)]
            return spec.compute(self.market, *resolved)

        return self.memo((name, *args), compute)

    def derived(self, entry: Derived, *args: int | str, compute: Callable[[], np.ndarray | tuple]):
        """A named per-dataset value (see `Derived`), computed once per entry and arguments."""
        return self.memo((entry, *args), compute)

    def memo(self, key: tuple, compute: Callable[[], np.ndarray | tuple]):
        """compute() once per key; arrays come back read-only so a caller cannot corrupt the memo."""
        self.last_used = time.monotonic()
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = compute()
        arrays = value if isinstance(value, tuple) else (value,)
        for array in arrays:
            array.setflags(write=False)
        size = sum(a.nbytes for a in arrays)
        with self._lock:
            if key not in self._memo:
                self._memo[key], self._sizes[key] = value, size
                self.nbytes += size
                self.computed += 1
        _enforce_limit(keep=self)
        return value

    def trim(self, max_bytes: int) -> None:
        """Drop the least recently used arrays until at most max_bytes are held."""
        with self._lock:
            while self.nbytes > max_bytes and self._memo:
                key, _ = self._memo.popitem(last=False)
                self.nbytes -= self._sizes.pop(key)


_LIVE: weakref.WeakSet[Indicators] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def indicators_for(market: Market) -> Indicators:
    """The memo of this dataset (the same Market object shares it across sessions and pages)."""
    with _LIVE_LOCK:
        memo = market.__dict__.get("_indicators")
        if memo is None:
            memo = Indicators(market)
            object.__setattr__(market, "_indicators", memo)  # Market is frozen; the memo is not its data
            _LIVE.add(memo)
    return memo


def _enforce_limit(keep: Indicators) -> None:
    """Trim the least recently used memos (the one in use last) until all fit memo_limit_bytes()."""
    limit = memo_limit_bytes()
    with _LIVE_LOCK:
        memos = sorted(_LIVE, key=lambda m: (m is keep, m.last_used))
    total = sum(m.nbytes for m in memos)
    for memo in memos:
        if total <= limit:
            break
        before = memo.nbytes
        memo.trim(0 if memo is not keep else max(limit - (total - before), 0))
        total -= before - memo.nbytes
