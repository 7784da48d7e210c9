"""Event-study kernels: what each signal's symbol did over the next bars. Plain arrays in and out; no kernel
here calls one in another file (Numba's disk cache would miss an edit to it)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def entry_prices(open_, close, bars, symbols, next_open):
    """(entry bar, entry price) per event: the open of t+1 (next_open) or the close of t; bar -1 and NaN when
    the entry bar is past the data."""
    n = len(bars)
    n_bars = close.shape[0]
    entry_bar = np.empty(n, np.int64)
    price = np.full(n, np.nan)
    for i in range(n):
        t = bars[i] + (1 if next_open else 0)
        if t >= n_bars:
            entry_bar[i] = -1
            continue
        entry_bar[i] = t
        price[i] = open_[t, symbols[i]] if next_open else close[t, symbols[i]]
    return entry_bar, price


@njit(cache=True, nogil=True)
def forward_paths(close, bars, symbols, price, horizons):
    """Per event and horizon h: the close of t+h over the entry price minus 1, and the highest and lowest close
    over bars t+1..t+h over it minus 1 (NaN past the data, or without a close at t+h or an entry price)."""
    n, k = len(bars), len(horizons)
    n_bars = close.shape[0]
    ret = np.full((n, k), np.nan)
    mfe = np.full((n, k), np.nan)
    mae = np.full((n, k), np.nan)
    longest = 0
    for j in range(k):
        longest = max(longest, horizons[j])
    order = np.argsort(horizons)
    for i in range(n):
        p = price[i]
        if not p > 0:
            continue
        t, s = bars[i], symbols[i]
        hi, lo = -np.inf, np.inf
        j = 0
        for step in range(1, longest + 1):
            if t + step >= n_bars:
                break
            c = close[t + step, s]
            if c == c:
                hi = max(hi, c)
                lo = min(lo, c)
            while j < k and horizons[order[j]] == step:
                col = order[j]
                if c == c:
                    ret[i, col] = c / p - 1.0
                if hi > -np.inf:
                    mfe[i, col] = hi / p - 1.0
                    mae[i, col] = lo / p - 1.0
                j += 1
    return ret, mfe, mae


@njit(cache=True, nogil=True)
def universe_returns(open_, close, horizons, next_open):
    """(bars x horizons): the equal-weight mean over every symbol priced at both ends of the return from the
    entry at bar t (the open of t+1, or the close of t) to the close of t+h; NaN where none is."""
    n_bars, m = close.shape
    k = len(horizons)
    out = np.full((n_bars, k), np.nan)
    for t in range(n_bars):
        e = t + (1 if next_open else 0)
        if e >= n_bars:
            continue
        for j in range(k):
            end = t + horizons[j]
            if end >= n_bars:
                continue
            total, count = 0.0, 0
            for s in range(m):
                p = open_[e, s] if next_open else close[e, s]
                c = close[end, s]
                if p > 0 and c == c:
                    total += c / p - 1.0
                    count += 1
            if count:
                out[t, j] = total / count
    return out


@njit(cache=True, nogil=True)
def keep_after_cooldown(bars, symbols, n_symbols, cooldown):
    """Which events count when a signal within `cooldown` bars of the previous counted event on its symbol is
    dropped (events in bar order)."""
    keep = np.zeros(len(bars), np.bool_)
    last = np.full(n_symbols, -(2**62), np.int64)
    for i in range(len(bars)):
        s = symbols[i]
        if bars[i] - last[s] > cooldown:
            keep[i] = True
            last[s] = bars[i]
    return keep


@njit(cache=True, nogil=True)
def clustered_mean(values, clusters):
    """(n, mean, standard error clustered by `clusters`, the number of clusters) of the finite values; the error
    is statsmodels' for an OLS on a constant with cov_type='cluster' (small-sample factor G/(G-1))."""
    n, total = 0, 0.0
    for i in range(len(values)):
        if values[i] == values[i]:
            n += 1
            total += values[i]
    if n == 0:
        return 0, np.nan, np.nan, 0
    mean = total / n
    sums = np.zeros(len(values))  # clusters are 0..G-1
    g_count = 0
    seen = np.zeros(len(values), np.bool_)
    for i in range(len(values)):
        v = values[i]
        if v == v:
            g = clusters[i]
            sums[g] += v - mean
            if not seen[g]:
                seen[g] = True
                g_count += 1
    if g_count < 2:
        return n, mean, np.nan, g_count
    acc = 0.0
    for g in range(len(sums)):
        acc += sums[g] * sums[g]
    se = np.sqrt(acc * g_count / (g_count - 1)) / n
    return n, mean, se, g_count


@njit(cache=True, nogil=True)
def random_means(close, entry_px, offset, symbols, bars, horizons, n_draws, seed):
    """(n_draws x horizons): the mean return of n_draws sets of random events, as many as the real ones, each a
    symbol and a date drawn from the real events' symbols and dates (the same mix of names and of periods),
    entered as the real ones (entry_px at bar t + offset: the open of t+1, or the close of t)."""
    np.random.seed(seed)
    n, k = len(bars), len(horizons)
    n_bars = close.shape[0]
    out = np.full((n_draws, k), np.nan)
    total = np.zeros(k)
    count = np.zeros(k, np.int64)
    for d in range(n_draws):
        total[:] = 0.0
        count[:] = 0
        for _ in range(n):
            s = symbols[np.random.randint(n)]
            t = bars[np.random.randint(n)]
            if t + offset >= n_bars:
                continue
            p = entry_px[t + offset, s]
            if not p > 0:
                continue
            for j in range(k):
                if t + horizons[j] < n_bars:
                    c = close[t + horizons[j], s]
                    if c == c:
                        total[j] += c / p - 1.0
                        count[j] += 1
        for j in range(k):
            if count[j]:
                out[d, j] = total[j] / count[j]
    return out


@njit(cache=True, nogil=True)
def random_moments(close, entry_px, offset, dates, date_weight, symbols, symbol_weight, horizons):
    """Per horizon, over every (date, symbol) pair of the real events' dates and symbols weighted by how often
    each occurs (what one random event draws): the weight of the pairs with a return, and the weighted sums of
    the return and of its square. The mean of n random events tends to a normal with these moments."""
    n_bars = close.shape[0]
    k = len(horizons)
    s0, s1, s2 = np.zeros(k), np.zeros(k), np.zeros(k)
    for a in range(len(dates)):
        t = dates[a]
        if t + offset >= n_bars:
            continue
        for b in range(len(symbols)):
            s = symbols[b]
            p = entry_px[t + offset, s]
            if not p > 0:
                continue
            w = date_weight[a] * symbol_weight[b]
            for j in range(k):
                if t + horizons[j] < n_bars:
                    c = close[t + horizons[j], s]
                    if c == c:
                        r = c / p - 1.0
                        s0[j] += w
                        s1[j] += w * r
                        s2[j] += w * r * r
    return s0, s1, s2


@njit(cache=True, nogil=True)
def forward_matrix(open_, close, horizon, next_open):
    """(bars x symbols): the return from the entry at bar t (the open of t+1, or the close of t) to the close of
    t+h, NaN past the data or without either price: every cell's forward return, for a factor's quantiles."""
    n_bars, m = close.shape
    out = np.full((n_bars, m), np.nan)
    offset = 1 if next_open else 0
    for t in range(n_bars - horizon):
        if t + offset >= n_bars:
            break
        for s in range(m):
            p = open_[t + offset, s] if next_open else close[t, s]
            c = close[t + horizon, s]
            if p > 0 and c == c:
                out[t, s] = c / p - 1.0
    return out


@njit(cache=True, nogil=True)
def average_ranks(values):
    """Ascending ranks from 1, ties sharing their average (as pandas' rank)."""
    n = len(values)
    order = np.argsort(values)
    ranks = np.empty(n)
    a = 0
    while a < n:
        b = a
        while b + 1 < n and values[order[b + 1]] == values[order[a]]:
            b += 1
        for c in range(a, b + 1):
            ranks[order[c]] = (a + b) / 2.0 + 1.0
        a = b + 1
    return ranks


@njit(cache=True, nogil=True)
def factor_pass(values, fwd, bucket, factor_pct, quantiles):
    """One horizon of a factor study in one pass over the bars: per bar the Spearman correlation of the factor and
    the forward return over the symbols with both (NaN under 3), and per quantile the sum and count of the
    forward returns (bucket: each cell's quantile 1..Q, NaN for none). factor_pct holds the factor's percentile
    over its symbols on the bar: where every one of them has a forward return, its ranks are read from it
    instead of sorted again."""
    n_bars, m = values.shape
    ic = np.full(n_bars, np.nan)
    sums = np.zeros(quantiles + 1)
    counts = np.zeros(quantiles + 1, np.int64)
    f = np.empty(m)
    r = np.empty(m)
    pct = np.empty(m)
    for t in range(n_bars):
        n, n_factor = 0, 0
        for s in range(m):
            v, x = values[t, s], fwd[t, s]
            if v == v:
                n_factor += 1
            if v == v and x == x:
                f[n] = v
                r[n] = x
                pct[n] = factor_pct[t, s]
                n += 1
                q = bucket[t, s]
                if q == q:
                    sums[int(q)] += x
                    counts[int(q)] += 1
        if n < 3:
            continue
        # the same symbols as the factor's own percentiles: its ranks are those scaled back, not sorted again
        rf = pct[:n] * (n / 100.0) if n == n_factor else average_ranks(f[:n])
        rr = average_ranks(r[:n])
        mean = (n + 1) / 2.0
        cov, vf, vr = 0.0, 0.0, 0.0
        for i in range(n):
            df, dr = rf[i] - mean, rr[i] - mean
            cov += df * dr
            vf += df * df
            vr += dr * dr
        if vf > 0 and vr > 0:
            ic[t] = cov / np.sqrt(vf * vr)
    return ic, sums, counts
