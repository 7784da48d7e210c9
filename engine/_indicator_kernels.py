"""Indicator kernels: plain (bars x symbols) float64 arrays in and out, no pandas. None of them calls a
kernel in another file (Numba's disk cache does not notice an edit to a callee in another file, so every
kernel that calls another stays with it: the portfolio engine's in `_kernels.py`)."""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------------------------------------------
# Indicator kernels. Each works column by column on (bars x symbols) arrays and SKIPS NaN rows: the
# result equals the indicator computed on the symbol's own bars only, with NaN where it has no bar and
# during warm-up. Seeding follows TA-Lib (EMA and Wilder averages start from a simple mean).
# ---------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def rolling_mean(x, n):
    """Mean of the last n valid values (running sum, as TA-Lib's SMA)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        buf = np.empty(n)
        k = 0
        acc = 0.0
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            if k >= n:
                acc -= buf[k % n]
            buf[k % n] = v
            acc += v
            k += 1
            if k >= n:
                out[t, j] = acc / n
    return out


@njit(cache=True, nogil=True)
def rolling_std(x, n, ddof):
    """Standard deviation of the last n valid values (mean-centred two-pass per window, stable)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        buf = np.empty(n)
        k = 0
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            buf[k % n] = v
            k += 1
            if k >= n and n > ddof:
                mu = buf.mean()
                ss = 0.0
                for i in range(n):
                    ss += (buf[i] - mu) ** 2
                out[t, j] = np.sqrt(ss / (n - ddof))
    return out


@njit(cache=True, nogil=True)
def rolling_wma(x, n):
    """Linearly weighted mean of the last n valid values, weights 1..n (newest heaviest)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    denom = n * (n + 1) / 2.0
    for j in range(m):
        buf = np.empty(n)
        k = 0
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            buf[k % n] = v
            k += 1
            if k >= n:
                acc = 0.0
                for i in range(n):
                    acc += (i + 1) * buf[(k + i) % n]
                out[t, j] = acc / denom
    return out


@njit(cache=True, nogil=True)
def rolling_extreme(x, n, want_max):
    """Max (or min) of the last n valid values, with a monotonic deque (O(1) amortised per bar)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        vals = np.empty(t_len)
        pos = np.empty(t_len, np.int64)
        head = 0
        tail = 0
        k = 0
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            while tail > head and ((vals[tail - 1] <= v) if want_max else (vals[tail - 1] >= v)):
                tail -= 1
            vals[tail] = v
            pos[tail] = k
            tail += 1
            if pos[head] <= k - n:
                head += 1
            k += 1
            if k >= n:
                out[t, j] = vals[head]
    return out


@njit(cache=True, nogil=True)
def ema(x, n, alpha, seed_end):
    """Exponential average with factor alpha, seeded with the mean of the n valid values ending at
    valid position seed_end (>= n-1; TA-Lib's MACD seeds its fast EMA late so both lines align)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        k = 0
        acc = 0.0
        prev = np.nan
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            if k < seed_end - n + 1:
                pass
            elif k <= seed_end:
                acc += v
                if k == seed_end:
                    prev = acc / n
                    out[t, j] = prev
            else:
                prev = prev + alpha * (v - prev)
                out[t, j] = prev
            k += 1
    return out


@njit(cache=True, nogil=True)
def shift_valid(x, lag):
    """The value `lag` valid bars earlier (NaN at missing bars and for the first `lag` valid bars)."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        buf = np.empty(lag + 1)
        k = 0
        for t in range(t_len):
            v = x[t, j]
            if np.isnan(v):
                continue
            buf[k % (lag + 1)] = v
            if k >= lag:
                out[t, j] = buf[(k - lag) % (lag + 1)]
            k += 1
    return out


@njit(cache=True, nogil=True)
def true_range(high, low, close):
    """max(high, prev close) - min(low, prev close); NaN on a symbol's first bar (as TA-Lib)."""
    t_len, m = close.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        prev = np.nan
        for t in range(t_len):
            c = close[t, j]
            if np.isnan(c):
                continue
            if not np.isnan(prev):
                out[t, j] = max(high[t, j], prev) - min(low[t, j], prev)
            prev = c
    return out


@njit(cache=True, nogil=True)
def obv(close, volume):
    """On-balance volume: starts at the first bar's volume, then +/- volume as close rises/falls."""
    t_len, m = close.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        prev = np.nan
        acc = 0.0
        for t in range(t_len):
            c = close[t, j]
            if np.isnan(c):
                continue
            vol = volume[t, j] if not np.isnan(volume[t, j]) else 0.0
            if np.isnan(prev):
                acc = vol
            elif c > prev:
                acc += vol
            elif c < prev:
                acc -= vol
            out[t, j] = acc
            prev = c
    return out


@njit(cache=True, nogil=True)
def adx(high, low, close, n):
    """Wilder's ADX, step for step as TA-Lib computes it (first value after 2n-1 valid bars)."""
    t_len, m = close.shape
    out = np.full((t_len, m), np.nan)
    for j in range(m):
        k = 0
        ph = pl = pc = 0.0
        pdm = mdm = tr = 0.0
        sum_dx = 0.0
        prev_adx = 0.0
        for t in range(t_len):
            c = close[t, j]
            if np.isnan(c):
                continue
            h = high[t, j]
            lo = low[t, j]
            if k > 0:
                up = h - ph
                dn = pl - lo
                if k >= n:
                    pdm -= pdm / n
                    mdm -= mdm / n
                    tr -= tr / n
                if dn > 0 and up < dn:
                    mdm += dn
                elif up > 0 and up > dn:
                    pdm += up
                tr += max(h, pc) - min(lo, pc)
                if k >= n:
                    dx = np.nan
                    if abs(tr) >= 1e-8:
                        mdi = 100.0 * mdm / tr
                        pdi = 100.0 * pdm / tr
                        s = mdi + pdi
                        if abs(s) >= 1e-8:
                            dx = 100.0 * abs(mdi - pdi) / s
                    if k < 2 * n:
                        if not np.isnan(dx):
                            sum_dx += dx
                        if k == 2 * n - 1:
                            prev_adx = sum_dx / n
                            out[t, j] = prev_adx
                    else:
                        if not np.isnan(dx):
                            prev_adx = (prev_adx * (n - 1) + dx) / n
                        out[t, j] = prev_adx
            ph, pl, pc = h, lo, c
            k += 1
    return out


# ---------------------------------------------------------------------------------------------------
# Cross-sectional kernels: each bar (row) on its own, over the symbols with a value on it (and, with groups,
# within each group): no bar sees another, so there is no look-ahead by construction.
# ---------------------------------------------------------------------------------------------------

CS_RANK, CS_PERCENTILE, CS_ZSCORE = 0, 1, 2


@njit(cache=True, nogil=True)
def cross_section(x, groups, mode):
    """Per bar and group: rank (1 = highest, ties share their average rank), percentile (the ascending average
    rank over the count, x 100: pandas' rank(pct=True) * 100) or z-score ((x - mean) / sample std, NaN under
    two values). `groups` (bars or 1 x symbols) holds a group code per cell, NaN for none; one group: zeros."""
    t_len, m = x.shape
    out = np.full((t_len, m), np.nan)
    idx = np.empty(m, np.int64)
    vals = np.empty(m)
    for t in range(t_len):
        g_row = groups[t if groups.shape[0] > 1 else 0]
        done = np.zeros(m, np.bool_)
        for start in range(m):
            if done[start] or np.isnan(x[t, start]) or np.isnan(g_row[start]):
                continue
            g = g_row[start]
            n = 0
            for j in range(start, m):  # the group's members with a value on this bar
                if not done[j] and g_row[j] == g and not np.isnan(x[t, j]):
                    done[j] = True
                    idx[n] = j
                    vals[n] = x[t, j]
                    n += 1
            if mode == CS_ZSCORE:
                if n < 2:
                    continue
                mean = 0.0
                for a in range(n):
                    mean += vals[a]
                mean /= n
                var = 0.0
                for a in range(n):
                    var += (vals[a] - mean) ** 2
                sd = np.sqrt(var / (n - 1))
                for a in range(n):
                    out[t, idx[a]] = (vals[a] - mean) / sd if sd > 0 else np.nan
                continue
            order = np.argsort(vals[:n], kind="mergesort")
            a = 0
            while a < n:  # a run of ties shares the average of its ascending ranks
                b = a
                while b + 1 < n and vals[order[b + 1]] == vals[order[a]]:
                    b += 1
                ascending = (a + b) / 2.0 + 1.0
                for c in range(a, b + 1):
                    j = idx[order[c]]
                    out[t, j] = ascending / n * 100.0 if mode == CS_PERCENTILE else n + 1.0 - ascending
                a = b + 1
    return out
