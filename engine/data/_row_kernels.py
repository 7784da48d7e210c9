"""The loader's per-row price checks in one pass over the rows: no (rows x 4) copy of the prices and no
temporary array per check, which at 10 M rows is what decided the loader's peak memory and time."""

from __future__ import annotations

import numpy as np
from numba import njit

# The reason codes these checks write, in the order they are tried (the first problem found is the one
# reported); build.py's R_* constants name the same numbers.
SOME_EMPTY, INFINITE, NONPOSITIVE, HIGH_LOW, OUTSIDE, NEG_VOLUME, NEG_DIVIDEND = 5, 6, 7, 8, 9, 10, 13


@njit(cache=True, nogil=True)
def price_problems(open_, high, low, close, volume, dividend, reason, tolerance):
    """Write the first price problem of each row that has no reason yet into `reason`; return which rows
    (with no reason before these checks) have all four prices empty: missing bars, not bad rows.
    `dividend` is empty when the file has none; open or close may exceed [low, high] by `tolerance`
    times the high (prices are often rounded)."""
    n = len(close)
    all_empty = np.zeros(n, np.bool_)
    has_dividend = len(dividend) == n
    for i in range(n):
        if reason[i] != 0:
            continue
        o, h, lo, c, v = open_[i], high[i], low[i], close[i], volume[i]
        n_empty = int(np.isnan(o)) + int(np.isnan(h)) + int(np.isnan(lo)) + int(np.isnan(c))  # a count, not an or
        all_empty[i] = n_empty == 4
        tol = tolerance * abs(h)
        code = 0
        if 0 < n_empty < 4:
            code = SOME_EMPTY
        elif np.isinf(o) or np.isinf(h) or np.isinf(lo) or np.isinf(c) or np.isinf(v):
            code = INFINITE
        elif o <= 0 or h <= 0 or lo <= 0 or c <= 0:
            code = NONPOSITIVE
        elif h < lo:
            code = HIGH_LOW
        elif o > h + tol or o < lo - tol or c > h + tol or c < lo - tol:
            code = OUTSIDE
        elif v < 0:
            code = NEG_VOLUME
        elif has_dividend and dividend[i] < 0:
            code = NEG_DIVIDEND
        reason[i] = code
    return all_empty
