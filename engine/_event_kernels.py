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
    entry at bar t (the open of t+1, or the close of t) to the close of t+h; NaN where none is. The mean is
    sum(close / entry) / count - 1, two branch-free sums over the symbols per (bar, horizon)."""
    n_bars, m = close.shape
    k = len(horizons)
    out = np.full((n_bars, k), np.nan)
    ends = np.zeros((n_bars, m))  # the close, 0 where there is none
    missing = np.zeros(n_bars + 1, np.int64)  # per bar, the symbols without a close: missing[t]..missing[t + 1]
    n_gaps = 0
    for t in range(n_bars):
        for s in range(m):
            n_gaps += 1 if close[t, s] != close[t, s] else 0
    gaps = np.empty(n_gaps, np.int64)
    for t in range(n_bars):
        missing[t + 1] = missing[t]
        for s in range(m):
            c = close[t, s]
            if c == c:
                ends[t, s] = c
            else:
                gaps[missing[t + 1]] = s
                missing[t + 1] += 1
    inverse = np.zeros(m)  # 1 / entry price, 0 where there is none
    for t in range(n_bars):
        e = t + (1 if next_open else 0)
        if e >= n_bars:
            continue
        n_priced = 0
        for s in range(m):
            p = open_[e, s] if next_open else close[e, s]
            inverse[s] = 1.0 / p if p > 0 else 0.0
            n_priced += 1 if p > 0 else 0
        for j in range(k):
            end = t + horizons[j]
            if end >= n_bars:
                continue
            count = n_priced
            for g in range(missing[end], missing[end + 1]):
                count -= 1 if inverse[gaps[g]] > 0 else 0
            if count > 0:
                out[t, j] = _dot(inverse, ends[end]) / count - 1.0
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(a, b):
    """sum(a * b) in vector lanes."""
    total = 0.0
    for s in range(len(a)):
        total += a[s] * b[s]
    return total


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
def random_means(close, entry_px, offset, symbols, bars, horizons, n_draws, seed, per_draw, bench):
    """(n_draws x horizons): the mean return of n_draws sets of `per_draw` random events, each a symbol and a
    date drawn from the real events' symbols and dates (the same mix of names and of periods), entered as the
    real ones (entry_px at bar t + offset: the open of t+1, or the close of t), less the benchmark's return
    over the same span when `bench` (bars x horizons) has columns."""
    np.random.seed(seed)
    n, k = len(bars), len(horizons)
    n_bars = close.shape[0]
    excess = bench.shape[1] > 0
    out = np.full((n_draws, k), np.nan)
    total = np.zeros(k)
    count = np.zeros(k, np.int64)
    for d in range(n_draws):
        total[:] = 0.0
        count[:] = 0
        for _ in range(per_draw):
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
                        total[j] += c / p - 1.0 - (bench[t, j] if excess else 0.0)
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
def compact(values):
    """A factor's cells with a value, packed to the left of each row: (columns, values) as (bars x widest row),
    padded with -1 and NaN, so that a factor on a rule's hits costs its hits, not the whole universe."""
    n_bars, m = values.shape
    width = 0
    for t in range(n_bars):
        n = 0
        for s in range(m):
            n += 1 if values[t, s] == values[t, s] else 0
        width = max(width, n)
    cols = np.full((n_bars, width), -1, np.int64)
    packed = np.full((n_bars, width), np.nan)
    for t in range(n_bars):
        n = 0
        for s in range(m):
            if values[t, s] == values[t, s]:
                cols[t, n] = s
                packed[t, n] = values[t, s]
                n += 1
    return cols, packed


@njit(cache=True, nogil=True)
def forward_compact(open_, close, cols, horizon, next_open):
    """Per packed cell (compact's columns) the return from the entry at bar t (the open of t+1, or the close of
    t) to the close of t+h; NaN past the data or without either price."""
    n_bars, width = cols.shape
    out = np.full((n_bars, width), np.nan)
    offset = 1 if next_open else 0
    for t in range(n_bars - max(horizon, offset)):
        for i in range(width):
            s = cols[t, i]
            if s < 0:
                break
            p = open_[t + offset, s] if next_open else close[t, s]
            c = close[t + horizon, s]
            if p > 0 and c == c:
                out[t, i] = c / p - 1.0
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


_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_TOP = np.uint64(0x8000000000000000)


@njit(cache=True, nogil=True)
def column_bits(m):
    """How many low bits a sort key needs to carry a column number below m."""
    bits = 1
    while (1 << bits) < m:
        bits += 1
    return bits


@njit(cache=True, nogil=True)
def sort_keys(x):
    """Per cell an unsigned key whose order is the value's order, with the column in the low bits (NaN: the
    largest key), so that numpy's vectorised sort of whole rows stands in for an argsort per bar. The low bits
    cut off the value's last bits: values that agree that far share a head and ranks_from_sorted orders them
    exactly."""
    n_bars, m = x.shape
    shift = np.uint64(column_bits(m))
    keys = np.empty((n_bars, m), np.uint64)
    row = np.empty(m)
    row_bits = row.view(np.uint64)
    for t in range(n_bars):
        for s in range(m):
            row[s] = x[t, s] + 0.0  # -0.0 becomes 0.0: equal values, equal keys
        for s in range(m):
            if x[t, s] != x[t, s]:
                keys[t, s] = _ALL
                continue
            b = row_bits[s]
            b = ~b if b & _TOP else b | _TOP  # the IEEE bits in the values' order
            keys[t, s] = ((b >> shift) << shift) | np.uint64(s)
    return keys


@njit(cache=True, nogil=True)
def ranks_from_sorted(keys, x, among):
    """Per cell its ascending rank from 1 among the row's values where `among` has a value too, ties sharing
    their average (pandas' rank); `keys` are sort_keys(x) sorted along each row, so a subset of the symbols is
    ranked in one walk, without sorting again. A run of keys with one head (equal values, or values equal to
    the cut bits) is ranked exactly from the values themselves."""
    n_bars, m = x.shape
    shift = np.uint64(column_bits(m))
    low = (np.uint64(1) << shift) - np.uint64(1)
    ranks = np.full((n_bars, m), np.nan)
    cols = np.empty(m, np.int64)
    heads = np.empty(m, np.uint64)
    vals = np.empty(m)
    for t in range(n_bars):
        n = 0
        for i in range(m):  # the kept cells in the values' order
            key = keys[t, i]
            if key == _ALL:
                break
            s = np.int64(key & low)
            if among[t, s] == among[t, s]:
                cols[n] = s
                heads[n] = key >> shift
                n += 1
        a = 0
        while a < n:
            b = a
            while b + 1 < n and heads[b + 1] == heads[a]:
                b += 1
            if b == a:
                ranks[t, cols[a]] = a + 1.0
            else:
                for i in range(a, b + 1):
                    vals[i] = x[t, cols[i]]
                within = average_ranks(vals[a : b + 1])
                for i in range(a, b + 1):
                    ranks[t, cols[i]] = a + within[i - a]
            a = b + 1
    return ranks


@njit(cache=True, nogil=True)
def factor_pass(fwd, fwd_ranks, factor_ranks, bucket, quantiles):
    """One horizon of a factor study in one pass over the bars: per bar the Spearman correlation of the factor and
    the forward return (their average ranks over the symbols with both; NaN under 3), and per quantile the sum
    and count of the forward returns (bucket: each cell's quantile 1..Q, NaN for none)."""
    n_bars, m = fwd.shape
    ic = np.full(n_bars, np.nan)
    sums = np.zeros(quantiles + 1)
    counts = np.zeros(quantiles + 1, np.int64)
    for t in range(n_bars):
        n = 0
        cov, vf, vr = 0.0, 0.0, 0.0
        for s in range(m):
            x = fwd[t, s]
            if x == x:
                n += 1
                q = bucket[t, s]
                if q == q:
                    sums[int(q)] += x
                    counts[int(q)] += 1
        if n < 3:
            continue
        mean = (n + 1) / 2.0
        for s in range(m):
            if fwd[t, s] == fwd[t, s]:
                df, dr = factor_ranks[t, s] - mean, fwd_ranks[t, s] - mean
                cov += df * dr
                vf += df * df
                vr += dr * dr
        if vf > 0 and vr > 0:
            ic[t] = cov / np.sqrt(vf * vr)
    return ic, sums, counts
