"""Candlestick pattern kernels: (bars x symbols) OHLC in, +100 (bullish), -100 (bearish), +-80 (a weaker
form) or 0 out per bar, NaN where a symbol has no bar, as TA-Lib's CDL functions answer on each symbol's own
bars. Every kernel that calls another stays in this file (Numba's disk cache misses edits to a callee in
another file).

TA-Lib measures "long", "short" and "near" against the average of a candle range over the candles before
the one measured (its candle settings, below), summed as a running total from the first bar it answers
for; these kernels keep the same running totals, so ties compare exactly as TA-Lib's do.
"""

from __future__ import annotations

import numpy as np
from numba import njit

REAL_BODY, HIGH_LOW, SHADOWS = 0, 1, 2
# TA-Lib's default candle settings: (range measured, candles averaged, factor).
BODY_LONG = (REAL_BODY, 10, 1.0)
BODY_SHORT = (REAL_BODY, 10, 1.0)
BODY_DOJI = (HIGH_LOW, 10, 0.1)
SHADOW_LONG = (REAL_BODY, 0, 1.0)
SHADOW_VERY_SHORT = (HIGH_LOW, 10, 0.1)
NEAR = (HIGH_LOW, 5, 0.2)
FAR = (HIGH_LOW, 5, 0.6)

PATTERNS = (  # rule name -> kernel index; cdl_<name>() in rules
    "doji",
    "engulfing",
    "hammer",
    "hanging_man",
    "inverted_hammer",
    "shooting_star",
    "harami",
    "piercing",
    "dark_cloud_cover",
    "morning_star",
    "evening_star",
    "three_white_soldiers",
    "three_black_crows",
)
STAR_PENETRATION = 0.3  # TA-Lib's default: the third candle closes this share into the first one's body


@njit(cache=True, nogil=True)
def _range(o, h, lo, c, kind):
    """A candle range per bar: the real body, the high-low range, or both shadows together."""
    if kind == REAL_BODY:
        return np.abs(c - o)
    if kind == HIGH_LOW:
        return h - lo
    return (h - np.maximum(o, c)) + (np.minimum(o, c) - lo)


@njit(cache=True, nogil=True)
def _average(o, h, lo, c, kind, n, factor, first):
    """TA-Lib's candle average for each candle j >= first: factor x the mean range of the n candles before j
    (a running total started at `first`, as TA-Lib keeps it), or of candle j itself when n is 0; half of it
    for shadows (two of them)."""
    r = _range(o, h, lo, c, kind)
    out = np.full(len(r), np.nan)
    div = 2.0 if kind == SHADOWS else 1.0
    if n == 0:
        for j in range(max(first, 0), len(r)):
            out[j] = factor * r[j] / div
        return out
    if first - n < 0:
        return out
    total = 0.0
    for j in range(first - n, first):
        total += r[j]
    for j in range(first, len(r)):
        out[j] = factor * (total / n) / div
        total += r[j] - r[j - n]
    return out


@njit(cache=True, nogil=True)
def _tiny(o, h, lo, c, first):
    """The very-short-shadow average (a tenth of the high-low range) per candle, its total started at first."""
    kind, n, factor = SHADOW_VERY_SHORT
    return _average(o, h, lo, c, kind, n, factor, first)


@njit(cache=True, nogil=True)
def _color(o, c):
    return 1.0 if c >= o else -1.0


@njit(cache=True, nogil=True)
def _one(pattern, o, h, lo, c):
    """One symbol's bars (no gaps): the pattern's value per bar, 0 before TA-Lib's lookback."""
    t = len(c)
    out = np.zeros(t)
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    body = np.abs(c - o)
    if pattern == 0:  # doji: a real body within a tenth of the average high-low range
        start = BODY_DOJI[1]
        doji = _average(o, h, lo, c, BODY_DOJI[0], BODY_DOJI[1], BODY_DOJI[2], start)
        for i in range(start, t):
            out[i] = 100.0 if body[i] <= doji[i] else 0.0
    elif pattern == 1:  # engulfing: this body engulfs the previous opposite one (80: one end equal)
        for i in range(2, t):
            ci, cp = _color(o[i], c[i]), _color(o[i - 1], c[i - 1])
            white = ci == 1.0 and cp == -1.0
            white = white and ((c[i] >= o[i - 1] and o[i] < c[i - 1]) or (c[i] > o[i - 1] and o[i] <= c[i - 1]))
            black = ci == -1.0 and cp == 1.0
            black = black and ((o[i] >= c[i - 1] and c[i] < o[i - 1]) or (o[i] > c[i - 1] and c[i] <= o[i - 1]))
            if white or black:
                strict = o[i] != c[i - 1] and c[i] != o[i - 1]
                out[i] = ci * (100.0 if strict else 80.0)
    elif pattern <= 5:  # hammer, hanging man, inverted hammer, shooting star: a small body, one long shadow
        start = max(BODY_SHORT[1], SHADOW_LONG[1], SHADOW_VERY_SHORT[1], NEAR[1]) + 1
        if pattern >= 4:
            start = max(BODY_SHORT[1], SHADOW_LONG[1], SHADOW_VERY_SHORT[1]) + 1
        short = _average(o, h, lo, c, BODY_SHORT[0], BODY_SHORT[1], BODY_SHORT[2], start)
        long_ = _average(o, h, lo, c, SHADOW_LONG[0], SHADOW_LONG[1], SHADOW_LONG[2], start)
        tiny = _average(o, h, lo, c, SHADOW_VERY_SHORT[0], SHADOW_VERY_SHORT[1], SHADOW_VERY_SHORT[2], start)
        near = _average(o, h, lo, c, NEAR[0], NEAR[1], NEAR[2], start - 1)
        for i in range(start, t):
            upper, lower = h[i] - top[i], bottom[i] - lo[i]
            small = body[i] < short[i]
            if pattern == 2:  # hammer: long lower shadow, body at or near the previous low
                hit = small and lower > long_[i] and upper < tiny[i] and bottom[i] <= lo[i - 1] + near[i - 1]
                out[i] = 100.0 if hit else 0.0
            elif pattern == 3:  # hanging man: the same candle at or near the previous high
                hit = small and lower > long_[i] and upper < tiny[i] and bottom[i] >= h[i - 1] - near[i - 1]
                out[i] = -100.0 if hit else 0.0
            elif pattern == 4:  # inverted hammer: long upper shadow, its body gapping down
                hit = small and upper > long_[i] and lower < tiny[i] and top[i] < bottom[i - 1]
                out[i] = 100.0 if hit else 0.0
            else:  # shooting star: long upper shadow, its body gapping up
                hit = small and upper > long_[i] and lower < tiny[i] and bottom[i] > top[i - 1]
                out[i] = -100.0 if hit else 0.0
    elif pattern == 6:  # harami: a long body, then a short one inside it (80: an edge shared)
        start = max(BODY_SHORT[1], BODY_LONG[1]) + 1
        long_ = _average(o, h, lo, c, BODY_LONG[0], BODY_LONG[1], BODY_LONG[2], start - 1)
        short = _average(o, h, lo, c, BODY_SHORT[0], BODY_SHORT[1], BODY_SHORT[2], start)
        for i in range(start, t):
            if body[i - 1] > long_[i - 1] and body[i] <= short[i]:
                if top[i] < top[i - 1] and bottom[i] > bottom[i - 1]:
                    out[i] = -_color(o[i - 1], c[i - 1]) * 100.0
                elif top[i] <= top[i - 1] and bottom[i] >= bottom[i - 1]:
                    out[i] = -_color(o[i - 1], c[i - 1]) * 80.0
    elif (
        pattern <= 8
    ):  # piercing line (7) and dark cloud cover (8): a long candle, then an opposite one past its middle
        start = BODY_LONG[1] + 1
        prev_long = _average(o, h, lo, c, BODY_LONG[0], BODY_LONG[1], BODY_LONG[2], start - 1)
        this_long = _average(o, h, lo, c, BODY_LONG[0], BODY_LONG[1], BODY_LONG[2], start)
        for i in range(start, t):
            cp, ci = _color(o[i - 1], c[i - 1]), _color(o[i], c[i])
            if pattern == 7:
                hit = cp == -1.0 and body[i - 1] > prev_long[i - 1] and ci == 1.0 and body[i] > this_long[i]
                hit = hit and o[i] < lo[i - 1] and c[i] < o[i - 1] and c[i] > c[i - 1] + body[i - 1] * 0.5
                out[i] = 100.0 if hit else 0.0
            else:
                hit = cp == 1.0 and body[i - 1] > prev_long[i - 1] and ci == -1.0
                hit = hit and o[i] > h[i - 1] and c[i] > o[i - 1] and c[i] < c[i - 1] - body[i - 1] * 0.5
                out[i] = -100.0 if hit else 0.0
    elif pattern <= 10:  # morning star (9) and evening star (10): long, a short body gapping away, back in
        start = max(BODY_SHORT[1], BODY_LONG[1]) + 2
        long_ = _average(o, h, lo, c, BODY_LONG[0], BODY_LONG[1], BODY_LONG[2], start - 2)
        star = _average(o, h, lo, c, BODY_SHORT[0], BODY_SHORT[1], BODY_SHORT[2], start - 1)
        short = _average(o, h, lo, c, BODY_SHORT[0], BODY_SHORT[1], BODY_SHORT[2], start)
        d = 1.0 if pattern == 9 else -1.0  # the side the pattern turns to
        for i in range(start, t):
            first = _color(o[i - 2], c[i - 2]) == -d and body[i - 2] > long_[i - 2]
            gap = top[i - 1] < bottom[i - 2] if d > 0 else bottom[i - 1] > top[i - 2]
            third = body[i] > short[i] and _color(o[i], c[i]) == d
            third = third and d * (c[i] - (c[i - 2] + d * body[i - 2] * STAR_PENETRATION)) > 0.0
            out[i] = d * 100.0 if first and body[i - 1] <= star[i - 1] and gap and third else 0.0
    elif pattern == 11:  # three white soldiers: three white candles, each opening in or near the last body
        start = max(SHADOW_VERY_SHORT[1], BODY_SHORT[1], FAR[1], NEAR[1]) + 2
        tiny2, tiny1, tiny0 = _tiny(o, h, lo, c, start - 2), _tiny(o, h, lo, c, start - 1), _tiny(o, h, lo, c, start)
        near2 = _average(o, h, lo, c, NEAR[0], NEAR[1], NEAR[2], start - 2)
        near1 = _average(o, h, lo, c, NEAR[0], NEAR[1], NEAR[2], start - 1)
        far2 = _average(o, h, lo, c, FAR[0], FAR[1], FAR[2], start - 2)
        far1 = _average(o, h, lo, c, FAR[0], FAR[1], FAR[2], start - 1)
        short = _average(o, h, lo, c, BODY_SHORT[0], BODY_SHORT[1], BODY_SHORT[2], start)
        for i in range(start, t):
            white = (
                _color(o[i - 2], c[i - 2]) == 1.0 and _color(o[i - 1], c[i - 1]) == 1.0 and _color(o[i], c[i]) == 1.0
            )
            shadows = h[i - 2] - top[i - 2] < tiny2[i - 2] and h[i - 1] - top[i - 1] < tiny1[i - 1]
            shadows = shadows and h[i] - top[i] < tiny0[i]
            rising = c[i] > c[i - 1] and c[i - 1] > c[i - 2]
            opens = o[i - 1] > o[i - 2] and o[i - 1] <= c[i - 2] + near2[i - 2]
            opens = opens and o[i] > o[i - 1] and o[i] <= c[i - 1] + near1[i - 1]
            sizes = body[i - 1] > body[i - 2] - far2[i - 2] and body[i] > body[i - 1] - far1[i - 1]
            sizes = sizes and body[i] > short[i]
            out[i] = 100.0 if white and shadows and rising and opens and sizes else 0.0
    else:  # three black crows: after a white candle, three black ones, each opening in the last body
        start = SHADOW_VERY_SHORT[1] + 3
        tiny2, tiny1, tiny0 = _tiny(o, h, lo, c, start - 2), _tiny(o, h, lo, c, start - 1), _tiny(o, h, lo, c, start)
        for i in range(start, t):
            black = _color(o[i - 3], c[i - 3]) == 1.0 and _color(o[i - 2], c[i - 2]) == -1.0
            black = black and _color(o[i - 1], c[i - 1]) == -1.0 and _color(o[i], c[i]) == -1.0
            shadows = bottom[i - 2] - lo[i - 2] < tiny2[i - 2] and bottom[i - 1] - lo[i - 1] < tiny1[i - 1]
            shadows = shadows and bottom[i] - lo[i] < tiny0[i]
            opens = o[i - 1] < o[i - 2] and o[i - 1] > c[i - 2] and o[i] < o[i - 1] and o[i] > c[i - 1]
            falling = h[i - 3] > c[i - 2] and c[i - 2] > c[i - 1] and c[i - 1] > c[i]
            out[i] = -100.0 if black and shadows and opens and falling else 0.0
    return out


@njit(cache=True, nogil=True)
def pattern(index, o, h, lo, c):
    """Pattern `index` (of PATTERNS) for every symbol, each on its own bars (rows where it has none skipped)."""
    t_len, m = c.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        rows = np.flatnonzero(~(np.isnan(o[:, j]) | np.isnan(h[:, j]) | np.isnan(lo[:, j]) | np.isnan(c[:, j])))
        values = _one(index, o[rows, j], h[rows, j], lo[rows, j], c[rows, j])
        for k in range(len(rows)):
            out[rows[k], j] = values[k]
    return out
