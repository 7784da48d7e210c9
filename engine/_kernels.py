"""Numba kernels: plain arrays in, plain arrays out. No pandas here.

Arrays are (bars x symbols) float64; NaN means the symbol has no bar. Every kernel that calls another
lives in this file, so Numba's on-disk cache never serves a stale callee (`make clean` clears it).

Order of events inside bar t (documented because results depend on it):
1. entries at open[t] for signals at bar t-1, sized from the equity marked at close[t-1]
   and, for Kelly, only trades closed by bar t-1;
2. exits for every open position (gap through stop/target at the open, then stop before target
   inside the bar, then holding period and end of data at the close);
3. mark to market at close[t]; equity <= 0 liquidates everything and stops the run (ruin).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Exit reasons (also used by backtest.py for labels).
EXIT_STOP, EXIT_TARGET, EXIT_HOLDING, EXIT_END, EXIT_RUIN = 0, 1, 2, 3, 4
# Sizing methods.
SIZE_EQUAL, SIZE_FIXED_FRACTIONAL, SIZE_KELLY, SIZE_VOL_TARGET, SIZE_ATR, SIZE_FIXED_AMOUNT = 0, 1, 2, 3, 4, 5
# Sizing parameter slots in the `sizing_params` array.
P_RISK, P_KELLY_MULT, P_KELLY_CAP, P_KELLY_MIN_TRADES, P_VOL_TARGET, P_ATR_MULT, P_AMOUNT, P_ATR_STOP = range(8)
N_SIZING_PARAMS = 8
# Event rules and actions (why a signal was skipped or cut).
RULE_MAX_POSITIONS, RULE_CASH, RULE_MAX_POSITION, RULE_MAX_SECTOR, RULE_MAX_CORR, RULE_SIZE, RULE_NO_BAR = range(7)
ACTION_SKIP, ACTION_CUT = 0, 1


@njit(cache=True, nogil=True)
def _load_window(ret_t, valid_t, s, t_end, window, out_x, out_v):
    """Copy symbol s's returns over bars (t_end-window, t_end] into contiguous buffers; returns the length."""
    t0 = max(0, t_end - window + 1)
    length = t_end + 1 - t0
    out_x[:length] = ret_t[s, t0 : t_end + 1]
    out_v[:length] = valid_t[s, t0 : t_end + 1]
    return length


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _masked_corr(xa, va, xb, vb, length):
    """Pearson correlation over the bars where both symbols have a return (x is 0 where v is 0).

    Branch-free so LLVM can use SIMD; the buffers are small and hot, which is what makes the
    correlation limit cheap: each candidate meets every open position at every entry.
    """
    n = sa = sb = saa = sbb = sab = 0.0
    for j in range(length):
        a = xa[j]
        b = xb[j]
        n += va[j] * vb[j]
        sa += a * vb[j]
        sb += b * va[j]
        saa += a * a * vb[j]
        sbb += b * b * va[j]
        sab += a * b
    if n < 3.0:
        return np.nan
    cov = sab - sa * sb / n
    var_a = saa - sa * sa / n
    var_b = sbb - sb * sb / n
    if var_a <= 1e-300 or var_b <= 1e-300:
        return np.nan
    return cov / np.sqrt(var_a * var_b)


@njit(cache=True, nogil=True)
def _target_value(method, params, equity, entry, stop_frac, vol, atr, max_positions, kelly_stats):
    """Notional value to put in one new position; 0 means do not trade."""
    if method == SIZE_EQUAL:
        return equity / max_positions
    if method == SIZE_FIXED_FRACTIONAL:
        if stop_frac <= 0.0:
            return 0.0
        return params[P_RISK] * equity / stop_frac
    if method == SIZE_KELLY:
        n, wins, sum_win, sum_loss = kelly_stats[0], kelly_stats[1], kelly_stats[2], kelly_stats[3]
        if n < params[P_KELLY_MIN_TRADES]:
            return equity / max_positions
        w = wins / n
        losses = n - wins
        if wins == 0:
            return 0.0
        if losses == 0 or sum_loss == 0.0:
            f = w
        else:
            r = (sum_win / wins) / (sum_loss / losses)
            f = w - (1.0 - w) / r
        f *= params[P_KELLY_MULT]
        f = min(f, params[P_KELLY_CAP])
        return max(f, 0.0) * equity
    if method == SIZE_VOL_TARGET:
        if not (vol > 0.0):
            return 0.0
        return equity * params[P_VOL_TARGET] / vol
    if method == SIZE_ATR:
        if not (atr > 0.0):
            return 0.0
        return params[P_RISK] * equity / (params[P_ATR_MULT] * atr) * entry
    return params[P_AMOUNT]


@njit(cache=True, nogil=True)
def simulate(
    open_,
    high,
    low,
    close,
    entry_signal,
    priority,
    stop_frac,
    target_frac,
    holding_bars,
    max_positions,
    sizing_params,
    direction,
    commission_frac,
    slippage_frac,
    initial_capital,
    fractional_shares,
    max_leverage,
    shrink_unfunded,
    sizing_method,
    vol,
    atr,
    ret_t,
    valid_t,
    sector_id,
    max_position_frac,
    max_sector_frac,
    max_corr,
    corr_window,
):
    """Simulate one portfolio with shared cash. See the module docstring for the order of events.

    Arguments: bars, signals, what a grid may vary per combination (exits, max positions, sizing
    parameters), then what every combination shares (backtest.portfolio_args builds that part).

    stop_frac/target_frac/holding_bars <= 0 disable that exit; max_position_frac, max_sector_frac <= 0
    and max_corr >= 1 disable that limit. Returns trade, equity and event arrays, and the ruin bar (-1).
    """
    n_bars, n_sym = close.shape
    cap = 0
    for t in range(n_bars):
        for s in range(n_sym):
            if entry_signal[t, s]:
                cap += 1
    # A signal makes at most one trade and at most three events (cuts, then a skip).
    tr_sym = np.empty(cap, np.int64)
    tr_entry_bar = np.empty(cap, np.int64)
    tr_exit_bar = np.empty(cap, np.int64)
    tr_entry_price = np.empty(cap)
    tr_exit_price = np.empty(cap)
    tr_shares = np.empty(cap)
    tr_pnl = np.empty(cap)
    tr_fees = np.empty(cap)
    tr_reason = np.empty(cap, np.int64)
    ev_bar = np.empty(4 * cap, np.int64)
    ev_sym = np.empty(4 * cap, np.int64)
    ev_rule = np.empty(4 * cap, np.int64)
    ev_value = np.empty(4 * cap)
    ev_limit = np.empty(4 * cap)
    ev_action = np.empty(4 * cap, np.int64)
    eq = np.empty(n_bars)
    cash_out = np.empty(n_bars)
    long_out = np.empty(n_bars)
    short_out = np.empty(n_bars)
    nopen_out = np.empty(n_bars, np.int64)

    shares = np.zeros(n_sym)
    entry_px = np.zeros(n_sym)
    entry_bar = np.zeros(n_sym, np.int64)
    entry_fee = np.zeros(n_sym)
    stop_px = np.zeros(n_sym)
    target_px = np.zeros(n_sym)
    bars_held = np.zeros(n_sym, np.int64)
    mark = np.full(n_sym, np.nan)
    open_list = np.empty(n_sym, np.int64)
    n_open = 0
    n_trades = 0
    n_events = 0
    kelly_stats = np.zeros(4)  # closed trades, wins, sum of winning returns, sum of |losing returns|
    n_sectors = 0
    for s in range(n_sym):
        n_sectors = max(n_sectors, sector_id[s] + 1)
    sector_value = np.zeros(max(n_sectors, 1))
    last_valid = np.full(n_sym, -1, np.int64)
    for t in range(n_bars):
        for s in range(n_sym):
            if not np.isnan(close[t, s]):
                last_valid[s] = t

    cash = initial_capital
    equity = initial_capital
    gross = 0.0
    ruin_bar = -1
    d = float(direction)
    cand = np.empty(n_sym, np.int64)
    cand_prio = np.empty(n_sym)
    # Correlation limit: open positions' trailing returns, copied once per bar into contiguous rows.
    corr_on = max_corr < 1.0
    rows = min(max_positions, n_sym) if corr_on else 1
    win = corr_window if corr_on else 1
    book_x = np.empty((rows, win))
    book_v = np.empty((rows, win))
    cand_x = np.empty(win)
    cand_v = np.empty(win)
    book_bar = -1
    book_n = 0
    win_len = 0

    for t in range(n_bars):
        # 1. Entries at the open for yesterday's signals.
        if t > 0 and ruin_bar < 0:
            n_cand = 0
            for s in range(n_sym):
                if entry_signal[t - 1, s] and shares[s] == 0.0:
                    cand[n_cand] = s
                    cand_prio[n_cand] = -priority[t - 1, s]
                    n_cand += 1
            order = np.argsort(cand_prio[:n_cand], kind="mergesort")
            for k in range(n_cand):
                s = cand[order[k]]
                first_event = n_events
                o = open_[t, s]
                if np.isnan(o) or o <= 0.0:
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_NO_BAR
                    ev_value[n_events], ev_limit[n_events], ev_action[n_events] = np.nan, np.nan, ACTION_SKIP
                    n_events += 1
                    continue
                if n_open >= max_positions:
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_MAX_POSITIONS
                    ev_value[n_events], ev_limit[n_events], ev_action[n_events] = n_open, max_positions, ACTION_SKIP
                    n_events += 1
                    continue
                fill = o * (1.0 + d * slippage_frac)
                this_stop = stop_frac
                if sizing_method == SIZE_ATR and sizing_params[P_ATR_STOP] > 0.0 and atr[t - 1, s] > 0.0:
                    this_stop = sizing_params[P_ATR_MULT] * atr[t - 1, s] / fill
                vol_s = vol[t - 1, s] if vol.shape[0] > 0 else np.nan
                atr_s = atr[t - 1, s] if atr.shape[0] > 0 else np.nan
                value = _target_value(
                    sizing_method, sizing_params, equity, fill, this_stop, vol_s, atr_s, max_positions, kelly_stats
                )
                if not (value > 0.0):
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_SIZE
                    ev_value[n_events], ev_limit[n_events], ev_action[n_events] = 0.0, 0.0, ACTION_SKIP
                    n_events += 1
                    continue
                if max_position_frac > 0.0 and value > max_position_frac * equity:
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_MAX_POSITION
                    ev_value[n_events], ev_limit[n_events] = value / equity * 100.0, max_position_frac * 100.0
                    ev_action[n_events] = ACTION_CUT
                    n_events += 1
                    value = max_position_frac * equity
                if max_sector_frac > 0.0:
                    room = max_sector_frac * equity - sector_value[sector_id[s]]
                    if value > room:
                        ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_MAX_SECTOR
                        ev_value[n_events] = (sector_value[sector_id[s]] + value) / equity * 100.0
                        ev_limit[n_events] = max_sector_frac * 100.0
                        ev_action[n_events] = ACTION_CUT if room > 0.0 else ACTION_SKIP
                        n_events += 1
                        if room <= 0.0:
                            continue
                        value = room
                # Budgets include the entry commission: value = shares x fill x (1 + commission).
                room = max_leverage * equity - gross
                if direction > 0 and max_leverage <= 1.0:
                    room = min(room, cash)
                room *= 1.0 + 1e-12  # float noise must not turn an exact fit into a skip
                if value > room:
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_CASH
                    ev_value[n_events], ev_limit[n_events] = value, max(room, 0.0)
                    if not shrink_unfunded or room <= 0.0:
                        ev_action[n_events] = ACTION_SKIP
                        n_events += 1
                        continue
                    ev_action[n_events] = ACTION_CUT
                    n_events += 1
                    value = room
                qty = value / (fill * (1.0 + commission_frac))
                if not fractional_shares:
                    qty = np.floor(qty + 1e-9)
                if qty <= 0.0:
                    ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_SIZE
                    ev_value[n_events], ev_limit[n_events], ev_action[n_events] = value, fill, ACTION_SKIP
                    n_events += 1
                    continue
                # Correlation runs last: it is the costliest check, and most skips happen before it.
                if corr_on and n_open > 0:
                    if book_bar != t:
                        for i in range(n_open):
                            win_len = _load_window(ret_t, valid_t, open_list[i], t - 1, win, book_x[i], book_v[i])
                        book_bar, book_n = t, n_open
                    _load_window(ret_t, valid_t, s, t - 1, win, cand_x, cand_v)
                    breach = np.nan  # the first open position's correlation above the limit, if any
                    for i in range(book_n):
                        c = _masked_corr(cand_x, cand_v, book_x[i], book_v[i], win_len)
                        if c > max_corr:
                            breach = c
                            break
                    if not np.isnan(breach):
                        n_events = first_event  # the skip replaces any cut recorded for this signal
                        ev_bar[n_events], ev_sym[n_events], ev_rule[n_events] = t, s, RULE_MAX_CORR
                        ev_value[n_events], ev_limit[n_events], ev_action[n_events] = breach, max_corr, ACTION_SKIP
                        n_events += 1
                        continue
                notional = qty * fill
                fee = notional * commission_frac
                cash -= d * notional + fee
                equity -= fee
                gross += notional
                sector_value[sector_id[s]] += notional
                shares[s] = qty
                entry_px[s] = fill
                entry_bar[s] = t
                entry_fee[s] = fee
                bars_held[s] = 0
                stop_px[s] = fill * (1.0 - d * this_stop) if this_stop > 0.0 else np.nan
                target_px[s] = fill * (1.0 + d * target_frac) if target_frac > 0.0 else np.nan
                mark[s] = fill
                open_list[n_open] = s
                n_open += 1
                if corr_on and book_bar == t:  # the candidate's window is loaded: add it to the book
                    book_x[book_n, :win_len] = cand_x[:win_len]
                    book_v[book_n, :win_len] = cand_v[:win_len]
                    book_n += 1

        # 2. Exits.
        i = 0
        while i < n_open:
            s = open_list[i]
            c = close[t, s]
            if np.isnan(c):
                i += 1
                continue
            bars_held[s] += 1
            o, h, lo = open_[t, s], high[t, s], low[t, s]
            st, tg = stop_px[s], target_px[s]
            px = np.nan
            reason = -1
            if direction > 0:
                if entry_bar[s] < t and not np.isnan(st) and o <= st:
                    px, reason = o, EXIT_STOP
                elif entry_bar[s] < t and not np.isnan(tg) and o >= tg:
                    px, reason = o, EXIT_TARGET
                elif not np.isnan(st) and lo <= st:
                    px, reason = st, EXIT_STOP
                elif not np.isnan(tg) and h >= tg:
                    px, reason = tg, EXIT_TARGET
            else:
                if entry_bar[s] < t and not np.isnan(st) and o >= st:
                    px, reason = o, EXIT_STOP
                elif entry_bar[s] < t and not np.isnan(tg) and o <= tg:
                    px, reason = o, EXIT_TARGET
                elif not np.isnan(st) and h >= st:
                    px, reason = st, EXIT_STOP
                elif not np.isnan(tg) and lo <= tg:
                    px, reason = tg, EXIT_TARGET
            if reason < 0 and holding_bars > 0 and bars_held[s] >= holding_bars:
                px, reason = c, EXIT_HOLDING
            if reason < 0 and t == last_valid[s]:
                px, reason = c, EXIT_END
            if reason < 0:
                i += 1
                continue
            fill = px * (1.0 - d * slippage_frac)
            qty = shares[s]
            fee = qty * fill * commission_frac
            cash += d * qty * fill - fee
            pnl = d * qty * (fill - entry_px[s]) - entry_fee[s] - fee
            tr_sym[n_trades], tr_entry_bar[n_trades], tr_exit_bar[n_trades] = s, entry_bar[s], t
            tr_entry_price[n_trades], tr_exit_price[n_trades], tr_shares[n_trades] = entry_px[s], fill, qty
            tr_pnl[n_trades], tr_fees[n_trades], tr_reason[n_trades] = pnl, entry_fee[s] + fee, reason
            n_trades += 1
            ret = pnl / (qty * entry_px[s])
            kelly_stats[0] += 1.0
            if ret > 0.0:
                kelly_stats[1] += 1.0
                kelly_stats[2] += ret
            else:
                kelly_stats[3] += -ret
            shares[s] = 0.0
            mark[s] = np.nan
            n_open -= 1
            open_list[i] = open_list[n_open]

        # 3. Mark to market.
        long_v = 0.0
        short_v = 0.0
        sector_value[:] = 0.0
        for i in range(n_open):
            s = open_list[i]
            if not np.isnan(close[t, s]):
                mark[s] = close[t, s]
            v = shares[s] * mark[s]
            sector_value[sector_id[s]] += v
            if direction > 0:
                long_v += v
            else:
                short_v += v
        equity = cash + long_v - short_v
        gross = long_v + short_v
        if equity <= 0.0 and ruin_bar < 0:
            ruin_bar = t
            for i in range(n_open):
                s = open_list[i]
                qty = shares[s]
                tr_sym[n_trades], tr_entry_bar[n_trades], tr_exit_bar[n_trades] = s, entry_bar[s], t
                tr_entry_price[n_trades], tr_exit_price[n_trades], tr_shares[n_trades] = entry_px[s], mark[s], qty
                tr_pnl[n_trades] = d * qty * (mark[s] - entry_px[s]) - entry_fee[s]
                tr_fees[n_trades], tr_reason[n_trades] = entry_fee[s], EXIT_RUIN
                n_trades += 1
                shares[s] = 0.0
            n_open = 0
            cash = 0.0
            equity = 0.0
            long_v = short_v = gross = 0.0
        eq[t] = equity
        cash_out[t] = cash
        long_out[t] = long_v
        short_out[t] = short_v
        nopen_out[t] = n_open

    return (
        tr_sym[:n_trades],
        tr_entry_bar[:n_trades],
        tr_exit_bar[:n_trades],
        tr_entry_price[:n_trades],
        tr_exit_price[:n_trades],
        tr_shares[:n_trades],
        tr_pnl[:n_trades],
        tr_fees[:n_trades],
        tr_reason[:n_trades],
        eq,
        cash_out,
        long_out,
        short_out,
        nopen_out,
        ev_bar[:n_events],
        ev_sym[:n_events],
        ev_rule[:n_events],
        ev_value[:n_events],
        ev_limit[:n_events],
        ev_action[:n_events],
        ruin_bar,
    )


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
# Grid search: many parameter combinations of `simulate`, in parallel threads, reduced to metrics at
# once so that no (combinations x bars) array is ever held. Formulas follow engine/metrics.py.
# ---------------------------------------------------------------------------------------------------

GRID_METRICS = (
    "total_return_pct", "cagr_pct", "sharpe", "sortino", "calmar", "max_drawdown_pct", "n_trades",
    "win_rate_pct", "profit_factor", "expectancy", "final_equity",
)  # fmt: skip


@njit(cache=True, nogil=True)
def summary_metrics(equity, years, pnl, trade_ret, rf_per_bar, periods_per_year):
    """The metrics named in GRID_METRICS for one run (NaN where undefined, as metrics.py)."""
    out = np.full(len(GRID_METRICS), np.nan)
    n = len(equity)
    if n == 0 or equity[0] <= 0.0:
        return out
    out[0] = (equity[-1] / equity[0] - 1.0) * 100.0
    if n >= 2 and years > 0.0:
        out[1] = ((max(equity[-1], 0.0) / equity[0]) ** (1.0 / years) - 1.0) * 100.0
    if n >= 3:
        ex = np.empty(n - 1)
        for t in range(1, n):
            ex[t - 1] = (equity[t] / equity[t - 1] - 1.0 if equity[t - 1] > 0.0 else 0.0) - rf_per_bar
        mean = ex.mean()
        sd = np.sqrt(((ex - mean) ** 2).sum() / (n - 2))
        if sd > 0.0:
            out[2] = mean / sd * np.sqrt(periods_per_year)
        down = np.sqrt((np.minimum(ex, 0.0) ** 2).mean())
        if down > 0.0:
            out[3] = mean / down * np.sqrt(periods_per_year)
    peak = equity[0]
    mdd = 0.0
    for t in range(n):
        peak = max(peak, equity[t])
        if peak > 0.0:
            mdd = min(mdd, (equity[t] / peak - 1.0) * 100.0)
    out[5] = mdd
    if mdd < 0.0:
        out[4] = out[1] / abs(mdd)
    k = len(pnl)
    out[6] = k
    if k > 0:
        gains = losses = 0.0
        wins = 0
        for i in range(k):
            if trade_ret[i] > 0.0:
                wins += 1
            if pnl[i] > 0.0:
                gains += pnl[i]
            elif pnl[i] < 0.0:
                losses -= pnl[i]
        out[7] = wins / k * 100.0
        if losses > 0.0:
            out[8] = gains / losses
        elif gains > 0.0:
            out[8] = np.inf
        out[9] = pnl.mean()
    out[10] = equity[-1]
    return out


@njit(cache=True, nogil=True, parallel=True)
def simulate_grid(
    open_, high, low, close, entry_signal, priority, exits, sizing_stack,
    direction, commission_frac, slippage_frac, initial_capital, fractional_shares, max_leverage,
    shrink_unfunded, sizing_method, vol, atr, ret_t, valid_t, sector_id, max_position_frac,
    max_sector_frac, max_corr, corr_window, years, rf_per_bar, periods_per_year,
):  # fmt: skip
    """exits rows: (stop_frac, target_frac, holding_bars, max_positions) of one combination; sizing_stack
    rows: its sizing parameters. The rest is shared, as in `simulate`. Returns (combinations x GRID_METRICS)."""
    n_combo = exits.shape[0]
    out = np.empty((n_combo, len(GRID_METRICS)))
    for c in prange(n_combo):
        res = simulate(
            open_, high, low, close, entry_signal, priority, exits[c, 0], exits[c, 1], int(exits[c, 2]),
            int(exits[c, 3]), sizing_stack[c], direction, commission_frac, slippage_frac, initial_capital,
            fractional_shares, max_leverage, shrink_unfunded, sizing_method, vol, atr, ret_t, valid_t, sector_id,
            max_position_frac, max_sector_frac, max_corr, corr_window,
        )  # fmt: skip
        pnl = res[6]
        trade_ret = pnl / (res[5] * res[3])
        out[c] = summary_metrics(res[9], years, pnl, trade_ret, rf_per_bar, periods_per_year)
    return out
