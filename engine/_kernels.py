"""Numba kernels: plain arrays and record arrays in and out. No pandas here.

Arrays are (bars x symbols) float64; NaN means the symbol has no bar. Every kernel that calls another
lives in this file, so Numba's on-disk cache never serves a stale callee (`make clean` clears it). The
integer codes below and their labels (`*_NAMES`) are the only ones; backtest.py turns codes into labels.

`simulate` allocates, then `_run` loops over bars through small named steps. Order of events inside bar t
(results depend on it):
0. what every position held through close[t-1] carried into bar t, valued at that close: a dividend with
   its ex-date on bar t, a short's borrow fee, a long's share of the margin interest;
1. at the open: a rotation whose rebalance bar was t-1 sells what dropped out of its target and trims what
   is above its weight by more than the band, then buys and tops up in rank order (`_rebalance`; each weight
   a share of the portfolio's value at open[t]);
   with both sides, positions whose opposite rule signalled at close[t-1] close (on_opposite);
   adds to open positions whose add rule was true at close[t-1]; then entries: market orders at open[t] for
   signals at bar t-1, or (limit and stop entries) signals at bar t-1 place orders and the live orders that
   fill on bar t enter at their fill. Sized from the equity marked at close[t-1] and, for Kelly, from
   positions (and shadow trades) closed by bar t-1; then caps and limits in a fixed order: max positions,
   ATR warm-up, sizing, max position, max sector, cash/leverage, max volume, correlation;
2. exits for every open position: the exit rule (true at close[t-1]) at the open; a gap through the stop
   (the tighter of the fixed and trailing stop) or target at the open; partial exits at the open, then the
   stop, partial exits and the target touched inside the bar (stops first: conservative); the holding
   period, then end of data, at the close;
3. mark to market at close[t] (each position held, in the same pass as its step 2), with the bar's interest
   on the cash at close[t-1] (paid when negative, earned when positive); equity <= 0 closes every position at
   close[t] and stops the run (ruin): the loss is booked as it is, so equity may stay below zero.

Positions carry their side (+1 long, -1 short): one step prices every exit for both directions by
multiplying by it. Every exit fill, partial or last, is a TRADE record with its position's `position_id`.

Exit conventions: a long's trailing level on bar j is max(average fill, highest high of bars e..j-1) x
(1 - trail) (or minus k x ATR at the signal bar); a short's mirrors it with the lowest low.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import literal_unroll, njit, prange

from ._records import (
    ACTION_CUT,
    ACTION_SKIP,
    CURVE,
    EVENT,
    EXIT_DELISTED,
    EXIT_END,
    EXIT_HOLDING,
    EXIT_OPPOSITE,
    EXIT_PARTIAL,
    EXIT_REBALANCE,
    EXIT_RUIN,
    EXIT_RULE,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TRAIL,
    GRID_METRIC,
    GRID_METRICS,
    OPPOSITE_IGNORE,
    OPPOSITE_REVERSE,
    ORDER_LIMIT,
    ORDER_MARKET,
    POSITION,
    REBALANCE,
    RULE_ATR_WARMUP,
    RULE_CASH,
    RULE_EXPIRED,
    RULE_MAX_CORR,
    RULE_MAX_POSITION,
    RULE_MAX_POSITIONS,
    RULE_MAX_SECTOR,
    RULE_MAX_VOLUME,
    RULE_NO_BAR,
    RULE_NO_SCORE,
    RULE_SIZE,
    SIZE_ATR,
    SIZE_FIXED_AMOUNT,
    SIZE_FIXED_FRACTIONAL,
    SIZE_KELLY,
    SIZE_VOL_TARGET,
    TRADE,
    fingerprint,
)

# Edit this with engine/_records.py (its docstring says why): the edit here is what makes Numba recompile.
RECORDS_FINGERPRINT = "8162ab6b7471"
if fingerprint() != RECORDS_FINGERPRINT:
    raise ImportError(
        f"engine/_records.py changed: set RECORDS_FINGERPRINT in engine/_kernels.py to {fingerprint()!r}"
        " (editing this file is what makes Numba recompile the kernels that use the records)."
    )
Array = np.ndarray  # annotations only: Numba types the arguments it is called with
Record = np.void  # one record (a POSITION, a COMBO, ...): a view into its array, written through
MIN_FILL = 0.1  # an order the volume cap cuts below this share of its intended size is skipped


class Bars(NamedTuple):
    """The market as the kernel reads it; `last_valid[s]` is the symbol's last bar with a close, `delisting[s]`
    the return a position held on that bar gets beyond its close (a delisting; 0 for none)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    last_valid: np.ndarray
    delisting: np.ndarray


class Shared(NamedTuple):
    """What every combination of one run shares: direction, costs, capital, sizing inputs, risk limits.
    Empty (0 x 0) arrays switch their feature off; fractions are 0 when off."""

    direction: int  # +1 long, -1 short, 0 both (entries open longs, short_signal shorts)
    commission: float  # fraction of traded value
    commission_fixed: float  # per order
    commission_min: float  # per order
    slippage: float  # fraction, against the trader
    initial_capital: float
    fractional_shares: bool
    max_leverage: float
    shrink_unfunded: bool
    sizing_method: int
    vol: np.ndarray  # annualised volatility fraction, for volatility targeting
    atr: np.ndarray  # ATR, for ATR sizing, the ATR stop and the ATR trailing stop
    exit_signal: np.ndarray  # bool, the exit rule; 0 x 0 when off
    ret_t: np.ndarray  # (symbols x bars) returns, 0 where missing, for the correlation limit
    valid_t: np.ndarray
    sector_id: np.ndarray
    max_position: float
    max_sector: float
    max_corr: float  # >= 1: off
    corr_window: int
    max_volume: float  # fraction of the signal bar's volume one order may take; 0: off
    entry_order: int  # ORDER_MARKET, ORDER_LIMIT or ORDER_STOP
    borrow: float  # borrow fee per bar, a fraction of a short's value at each close
    margin_rate: float  # interest per bar on negative cash
    cash_rate: float  # interest per bar earned on positive cash
    dividend: np.ndarray  # cash per share on each ex-date (NaN or 0: none); 0 x 0 when off
    short_signal: np.ndarray  # bool, the short rule when direction is 0 (both); 0 x 0 otherwise
    short_priority: np.ndarray  # its `rank by` score; 0 x 0: all alike
    on_opposite: int  # OPPOSITE_IGNORE, _CLOSE or _REVERSE: what a held position does on the other side's signal
    add_signal: np.ndarray  # bool, the add rule (scaling in); 0 x 0 when off
    partial_frac: np.ndarray  # scaling out: each level's share of the position's full size, in order; empty: off
    partial_pct: np.ndarray  # each level's distance from the average fill, a fraction
    breakeven: bool  # after the first partial exit, the stop moves to the average fill
    # Rotation: per bar, the row of its rebalance's targets when it is a rebalance bar (-1: not); empty: off.
    target_row: np.ndarray
    target_symbol: np.ndarray  # (rebalances x hold_top) symbols in rank order, -1 where fewer passed the rule
    target_weight: np.ndarray  # their weights, a fraction of the portfolio's value
    target_unscored: np.ndarray  # (rebalances x hold_top) hits skipped for an undefined score, -1 where fewer
    rebalance_band: float  # a trade changing a holding's weight by less than this fraction is skipped


class Scratch(NamedTuple):
    """One run's working memory: the book of open positions (and Kelly's shadow trades) per symbol, the open
    symbols, entry candidates, Kelly's statistics, value per sector, the correlation limit's windows, and
    the exit fills written so far (`tally`: positions entered, fills written), in the order they happened."""

    book: np.ndarray
    shadow: np.ndarray
    open_list: np.ndarray
    cand: np.ndarray
    cand_prio: np.ndarray
    kelly: np.ndarray
    sector_value: np.ndarray
    corr_buf: tuple
    corr_state: np.ndarray  # bar loaded, rows loaded, window length
    tally: np.ndarray  # positions entered, exit fills written, positions closed, rebalance trades written
    closing: np.ndarray  # the ids of the positions in the order they closed
    order_fill: np.ndarray  # per symbol: the fill price of its order on this bar
    cand_side: np.ndarray  # per symbol: the side (+1, -1) of its entry candidate on this bar
    order_inside: np.ndarray  # per symbol: that fill was inside the bar (not at its open)
    target_value: np.ndarray  # per symbol: its target value at this rebalance (rotation)
    rebalances: np.ndarray  # REBALANCE records: a rotation's trades (tally[3] written)


# --- steps ---------------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _log(events: Array, n: int, bar: int, sym: int, rule: int, value: float, limit: float, action: int) -> int:
    """Write one event; returns the new event count."""
    e = events[n]
    e["bar"], e["symbol"], e["rule"], e["value"], e["limit"], e["action"] = bar, sym, rule, value, limit, action
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _many_fills(sh: Shared) -> bool:
    """Can a position have several exit fills (partial exits, a rotation's trims)? Then fills are written as
    they happen and sorted into entry order at the end; else each at its position's entry number."""
    return sh.partial_frac.shape[0] > 0 or sh.target_row.shape[0] > 0


@njit(cache=True, nogil=True, inline="always")
def _fee(notional: float, sh: Shared) -> float:
    """Commission of one order: percent of value plus a fixed amount, at least the minimum."""
    if notional <= 0.0:
        return 0.0
    return max(notional * sh.commission + sh.commission_fixed, sh.commission_min)


@njit(cache=True, nogil=True, inline="always")
def _quantity(value: float, fill: float, sh: Shared) -> float:
    """Shares whose cost including commission is `value` (rounded down to whole shares unless fractional)."""
    qty = (value - sh.commission_fixed) / (fill * (1.0 + sh.commission))
    if qty * fill * sh.commission + sh.commission_fixed < sh.commission_min:
        qty = (value - sh.commission_min) / fill
    if not sh.fractional_shares:
        qty = np.floor(qty + 1e-9)
    return max(qty, 0.0)


@njit(cache=True, nogil=True)
def _load_window(ret_t: Array, valid_t: Array, s: int, t_end: int, window: int, out_x: Array, out_v: Array) -> int:
    """Copy symbol s's returns over bars (t_end-window, t_end] into contiguous buffers; returns the length."""
    t0 = max(0, t_end - window + 1)
    length = t_end + 1 - t0
    for j in range(length):  # loops, not slice copies: `_run` has no allocator (see `simulate`)
        out_x[j] = ret_t[s, t0 + j]
        out_v[j] = valid_t[s, t0 + j]
    return length


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _masked_corr(xa: Array, va: Array, xb: Array, vb: Array, length: int) -> float:
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


@njit(cache=True, nogil=True, inline="always")
def _kelly_fraction(combo: Record, kelly: Array) -> float:
    """Kelly fraction from closed (and shadow) trades: w - (1 - w) / R, times the multiplier, capped; NaN
    until `min trades` have closed."""
    n, wins, sum_win, sum_loss = kelly[0], kelly[1], kelly[2], kelly[3]
    if n < combo["kelly_min_trades"]:
        return np.nan
    if wins == 0:
        return 0.0
    w = wins / n
    losses = n - wins
    f = w if losses == 0 or sum_loss == 0.0 else w - (1.0 - w) / ((sum_win / wins) / (sum_loss / losses))
    return max(min(f * combo["kelly_multiplier"], combo["kelly_cap"]), 0.0)


@njit(cache=True, nogil=True, inline="always")
def _target_value(
    method: int, combo: Record, equity: float, entry: float, stop_frac: float, vol: float, atr: float, kelly: Array
) -> float:
    """Notional value to put in one new position; 0 means do not trade."""
    if method == SIZE_FIXED_FRACTIONAL:
        return combo["risk"] * equity / stop_frac if stop_frac > 0.0 else 0.0
    if method == SIZE_KELLY:
        f = _kelly_fraction(combo, kelly)
        return equity / combo["max_positions"] if np.isnan(f) else f * equity
    if method == SIZE_VOL_TARGET:
        return equity * combo["vol_target"] / vol if vol > 0.0 else 0.0
    if method == SIZE_ATR:
        return combo["risk"] * equity / (combo["atr_multiplier"] * atr) * entry if atr > 0.0 else 0.0
    if method == SIZE_FIXED_AMOUNT:
        return combo["fixed_amount"]
    return equity / combo["max_positions"]


@njit(cache=True, nogil=True, inline="always")
def _candidates(entries: Array, priority: Array, book: Array, t: int, cand: Array, cand_prio: Array) -> int:
    """Symbols with a signal at bar t-1 and no open position, highest priority first, then symbol order
    (a stable insertion sort in place: few candidates per bar, no allocation). Returns their count in
    `cand`. An empty (0 x 0) priority ranks all alike."""
    n = 0
    ranked = priority.shape[0] > 0
    for s in range(entries.shape[1]):
        if entries[t - 1, s] and book[s]["shares"] == 0.0:
            n = _insert(cand, cand_prio, n, s, priority[t - 1, s] if ranked else 0.0)
    return n


@njit(cache=True, nogil=True, inline="always")
def _signal_side(entries: Array, t: int, s: int, sh: Shared) -> float:
    """The side of a flat symbol s's signal at the close of bar t-1: +1 long, -1 short, 0 none. With both sides,
    the entry rule's signals are longs and the short rule's shorts; a flat symbol with both takes neither."""
    if sh.direction != 0:
        return float(sh.direction) if entries[t - 1, s] else 0.0
    long_, short = entries[t - 1, s], sh.short_signal[t - 1, s]
    if long_ == short:
        return 0.0
    return 1.0 if long_ else -1.0


@njit(cache=True, nogil=True, inline="always")
def _opposite_fired(entries: Array, t: int, s: int, sh: Shared, d: float) -> bool:
    """Did the rule of the side opposite a held position (side d) signal at the close of bar t-1? Whatever
    the position's own rule did on that bar: for a held long, its own signal has nothing to add."""
    return sh.short_signal[t - 1, s] if d > 0.0 else entries[t - 1, s]


@njit(cache=True, nogil=True, inline="always")
def _entry_side(entries: Array, t: int, s: int, sh: Shared, pos: Record) -> float:
    """The side a flat symbol s enters at bar t (0: none). A position closed at this open by the opposite
    signal (`_close_opposites`) re-enters only with on_opposite = reverse, on the other side, whatever its
    own rule did; any other flat symbol follows its signal (`_signal_side`)."""
    if sh.direction == 0 and sh.on_opposite != OPPOSITE_IGNORE and pos["closed_bar"] == t:
        return -pos["side"] if sh.on_opposite == OPPOSITE_REVERSE else 0.0
    return _signal_side(entries, t, s, sh)


@njit(cache=True, nogil=True)
def _both_candidates(entries: Array, priority: Array, t: int, sh: Shared, work: Scratch) -> int:
    """`_candidates` for a book of longs and shorts: each flat symbol's signal with its side in `cand_side`,
    ranked by its rule's `rank by` score (`_entry_side`)."""
    n = 0
    for s in range(entries.shape[1]):
        pos = work.book[s]
        if pos["shares"] != 0.0:
            continue
        side = _entry_side(entries, t, s, sh, pos)
        if side == 0.0:
            continue
        ranks = priority if side > 0.0 else sh.short_priority
        work.cand_side[s] = side
        n = _insert(work.cand, work.cand_prio, n, s, ranks[t - 1, s] if ranks.shape[0] > 0 else 0.0)
    return n


@njit(cache=True, nogil=True, inline="always")
def _insert(cand: Array, cand_prio: Array, n: int, s: int, p: float) -> int:
    """Insert symbol s with priority p among the first n candidates (highest first, ties in arrival order)."""
    i = n
    while i > 0 and cand_prio[i - 1] < p:
        cand[i], cand_prio[i] = cand[i - 1], cand_prio[i - 1]
        i -= 1
    cand[i], cand_prio[i] = s, p
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _atr_ready(combo: Record, sh: Shared, sig: int, s: int) -> bool:
    """False when the run needs ATR (an ATR trailing stop, ATR sizing or an ATR entry offset) and the signal
    bar has none yet (the ATR warm-up): such a signal is skipped, not traded without it."""
    if sh.atr.shape[0] == 0:
        return True
    needs = combo["trail_atr"] > 0.0 or combo["entry_offset_atr"] > 0.0 or sh.sizing_method == SIZE_ATR
    return not needs or sh.atr[sig, s] > 0.0


@njit(cache=True, nogil=True)
def _place_orders(
    bars: Bars, entries: Array, priority: Array, t: int, combo: Record, sh: Shared, book: Array, events: Array, n: int
) -> int:
    """Limit and stop entries: a signal at the close of bar t-1 on a symbol with no position and no live order
    places one order, live on bars t .. t-1+valid, at close[t-1] x (1 -/+ offset) or -/+ k x ATR[t-1] (a long
    limit below the close, a long stop above; shorts mirror). Returns the event count."""
    limit = sh.entry_order == ORDER_LIMIT
    for s in range(entries.shape[1]):
        pos = book[s]
        if pos["shares"] != 0.0 or pos["order_until"] >= t:
            continue
        d = _entry_side(entries, t, s, sh, pos)
        if d == 0.0:
            continue
        side = -d if limit else d  # which side of the close the level lies
        if not _atr_ready(combo, sh, t - 1, s):
            n = _log(events, n, t, s, RULE_ATR_WARMUP, np.nan, np.nan, ACTION_SKIP)
            continue
        c = bars.close[t - 1, s]
        if combo["entry_offset_atr"] > 0.0:
            pos["order_level"] = c + side * combo["entry_offset_atr"] * sh.atr[t - 1, s]
        else:
            pos["order_level"] = c * (1.0 + side * combo["entry_offset"])
        pos["order_until"], pos["order_signal"], pos["side"] = t - 1 + combo["entry_valid"], t - 1, d
        ranks = priority if d > 0.0 or sh.direction != 0 else sh.short_priority
        pos["order_prio"] = ranks[t - 1, s] if ranks.shape[0] > 0 else 0.0
    return n


@njit(cache=True, nogil=True)
def _order_fills(bars: Bars, t: int, sh: Shared, work: Scratch, events: Array, n_events: int) -> tuple[int, int]:
    """The live orders that fill on bar t, as candidates (highest priority first, then symbol order), their
    fills in `work.order_fill`. A long limit fills at the open if the bar opens at or below its level, else at
    the level if the low reaches it; a long stop at the open if it opens at or above, else at the level if the
    high reaches it; shorts mirror. A triggered stop is a market order and pays slippage; a limit never fills
    worse than its level and pays none. An order unfilled on its last live bar expires (logged). Returns
    (candidate count, event count)."""
    limit = sh.entry_order == ORDER_LIMIT
    book = work.book
    n = 0
    for s in range(book.shape[0]):
        pos = book[s]
        if pos["order_until"] < t:
            continue
        d = pos["side"]
        level, o = pos["order_level"], bars.open[t, s]
        fill = np.nan
        inside = False
        if not np.isnan(o):
            adverse, favourable = (bars.low[t, s], bars.high[t, s]) if d > 0 else (bars.high[t, s], bars.low[t, s])
            if limit:
                if d * (o - level) <= 0.0:
                    fill = o
                elif d * (adverse - level) <= 0.0:
                    fill, inside = level, True
            else:
                if d * (o - level) >= 0.0:
                    fill = o * (1.0 + d * sh.slippage)
                elif d * (favourable - level) >= 0.0:
                    fill, inside = level * (1.0 + d * sh.slippage), True
        if np.isnan(fill):
            if pos["order_until"] == t:
                n_events = _log(events, n_events, t, s, RULE_EXPIRED, level, np.nan, ACTION_SKIP)
                pos["order_until"] = -1
            continue
        pos["order_until"] = -1  # consumed, whether or not the limits let it through
        work.order_fill[s], work.order_inside[s], work.cand_side[s] = fill, inside, d
        n = _insert(work.cand, work.cand_prio, n, s, pos["order_prio"])
    return n, n_events


@njit(cache=True, nogil=True, inline="always")
def _caps(
    value: float,
    s: int,
    t: int,
    equity: float,
    gross: float,
    cash: float,
    sector_value: Array,
    sh: Shared,
    events: Array,
    n_events: int,
    d: float,
    held: float = 0.0,
) -> tuple[float, int]:
    """Apply the position, sector and cash/leverage limits to an order's value (a long's, d = 1, or a
    short's; `held`: the value the position holds already, for an add), logging each cut or skip. Returns
    (value, 0 = skipped, events count)."""
    if sh.max_position > 0.0 and held + value > sh.max_position * equity:
        room = sh.max_position * equity - held
        n_events = _log(
            events,
            n_events,
            t,
            s,
            RULE_MAX_POSITION,
            (held + value) / equity * 100.0,
            sh.max_position * 100.0,
            ACTION_CUT if room > 0.0 else ACTION_SKIP,
        )
        if room <= 0.0:
            return 0.0, n_events
        value = room
    if sh.max_sector > 0.0:
        room = sh.max_sector * equity - sector_value[sh.sector_id[s]]
        if value > room:
            n_events = _log(
                events,
                n_events,
                t,
                s,
                RULE_MAX_SECTOR,
                (sector_value[sh.sector_id[s]] + value) / equity * 100.0,
                sh.max_sector * 100.0,
                ACTION_CUT if room > 0.0 else ACTION_SKIP,
            )
            if room <= 0.0:
                return 0.0, n_events
            value = room
    # Budgets include the entry commission: value = shares x fill + commission.
    room = sh.max_leverage * equity - gross
    if d > 0 and sh.max_leverage <= 1.0:
        room = min(room, cash)
    room *= 1.0 + 1e-12  # float noise must not turn an exact fit into a skip
    if value > room:
        skip = not sh.shrink_unfunded or room <= 0.0
        n_events = _log(events, n_events, t, s, RULE_CASH, value, max(room, 0.0), ACTION_SKIP if skip else ACTION_CUT)
        if skip:
            return 0.0, n_events
        value = room
    return value, n_events


@njit(cache=True, nogil=True, inline="always")
def _volume_cap(
    qty: float, s: int, t: int, fill: float, bars: Bars, sh: Shared, events: Array, n_events: int
) -> tuple[float, int]:
    """At most `max_volume` of the signal bar's volume (the fill bar's is unknown at its open); an order cut
    below MIN_FILL of its size is skipped. Returns (shares, events count)."""
    if sh.max_volume <= 0.0:
        return qty, n_events
    allowed = sh.max_volume * bars.volume[t - 1, s]
    if not sh.fractional_shares:
        allowed = np.floor(allowed + 1e-9)
    if not (qty > allowed):
        return qty, n_events
    skip = not (allowed >= MIN_FILL * qty) or allowed <= 0.0
    n_events = _log(
        events,
        n_events,
        t,
        s,
        RULE_MAX_VOLUME,
        qty * fill,
        max(allowed, 0.0) * fill,
        ACTION_SKIP if skip else ACTION_CUT,
    )
    return (0.0 if skip else allowed), n_events


@njit(cache=True, nogil=True)
def _corr_breach(s: int, t: int, n_open: int, work: Scratch, sh: Shared) -> float:
    """The first open position's correlation with s above the limit (NaN: none). `work.corr_buf` holds the
    open positions' return windows, loaded once per bar (`work.corr_state`: bar loaded, rows, window length)."""
    book_x, book_v, cand_x, cand_v = work.corr_buf
    buf_state, open_list = work.corr_state, work.open_list
    win = book_x.shape[1]
    if buf_state[0] != t:
        for i in range(n_open):
            buf_state[2] = _load_window(sh.ret_t, sh.valid_t, open_list[i], t - 1, win, book_x[i], book_v[i])
        buf_state[0], buf_state[1] = t, n_open
    _load_window(sh.ret_t, sh.valid_t, s, t - 1, win, cand_x, cand_v)
    for i in range(buf_state[1]):
        c = _masked_corr(cand_x, cand_v, book_x[i], book_v[i], buf_state[2])
        if c > sh.max_corr:
            return c
    return np.nan


@njit(cache=True, nogil=True, inline="always")
def _open(
    pos: Record,
    t: int,
    fill: float,
    qty: float,
    fee: float,
    stop_frac: float,
    combo: Record,
    atr_at_signal: float,
    d: float,
    inside: bool,
    order_price: float,
    slippage: float,
    sig: int,
) -> None:
    """Set up a position (or a shadow trade) entered at bar t (`inside`: filled inside the bar, not at its
    open; `order_price`: the limit or stop level, NaN for a market order; `slippage`: its cost)."""
    pos["shares"], pos["entry_price"], pos["entry_bar"], pos["entry_fee"], pos["side"] = qty, fill, t, fee, d
    pos["fill_inside"], pos["order_price"], pos["slippage"], pos["signal_bar"] = inside, order_price, slippage, sig
    pos["financing"] = pos["dividends"] = pos["realized"] = pos["basis"] = 0.0
    pos["stop_frac"], pos["full_shares"], pos["last_fill"], pos["adds"], pos["partials_done"] = stop_frac, qty, t, 0, 0
    pos["stop"] = fill * (1.0 - d * stop_frac) if stop_frac > 0.0 else np.nan
    pos["target"] = fill * (1.0 + d * combo["target"]) if combo["target"] > 0.0 else np.nan
    pos["trail_frac"] = combo["trail"]
    pos["trail_dist"] = combo["trail_atr"] * atr_at_signal if combo["trail_atr"] > 0.0 and atr_at_signal > 0.0 else 0.0
    pos["worst"] = pos["best"] = pos["mark"] = fill
    pos["extreme"] = -d * np.inf  # no bar seen yet: the trailing stop starts at the fill
    pos["bars_held"] = 0


@njit(cache=True, nogil=True, inline="always")
def _stop_level(pos: Record, d: float) -> tuple[float, int]:
    """(level, reason): the tighter of the fixed stop and the trailing stop (NaN: no stop). The trailing stop
    trails the best price since entry, never worse than the average fill."""
    trail = np.nan
    if pos["trail_frac"] > 0.0 or pos["trail_dist"] > 0.0:
        best = pos["extreme"] if d * (pos["extreme"] - pos["entry_price"]) > 0.0 else pos["entry_price"]
        if pos["trail_frac"] > 0.0:
            trail = best * (1.0 - d * pos["trail_frac"])
        if pos["trail_dist"] > 0.0:
            by_atr = best - d * pos["trail_dist"]
            trail = by_atr if np.isnan(trail) or d * (by_atr - trail) > 0.0 else trail
    if np.isnan(trail) or (not np.isnan(pos["stop"]) and d * (pos["stop"] - trail) >= 0.0):
        return pos["stop"], EXIT_STOP
    return trail, EXIT_TRAIL


@njit(cache=True, nogil=True, inline="always")
def _exit_price(
    pos: Record,
    o: float,
    h: float,
    lo: float,
    c: float,
    t: int,
    d: float,
    rule_exit: bool,
    holding: int,
    last_bar: int,
) -> tuple[float, int, bool]:
    """(price, reason, at the open) of the exit on this bar, or (NaN, -1, False) to hold. One step for long
    (d = 1) and short (d = -1): "through" a level means d x (price - level) <= 0 for a stop, >= 0 for a target.
    A position filled inside its entry bar (a limit or stop order) checks its stop against that bar's range
    and its target only from the next bar."""
    after_entry = pos["entry_bar"] < t
    if after_entry and rule_exit:
        return o, EXIT_RULE, True
    stop, stop_reason = _stop_level(pos, d)
    adverse, favourable = (lo, h) if d > 0 else (h, lo)
    if after_entry and d * (o - stop) <= 0.0:
        return o, stop_reason, True
    if after_entry and d * (o - pos["target"]) >= 0.0:
        return o, EXIT_TARGET, True
    if d * (adverse - stop) <= 0.0:
        return stop, stop_reason, False
    if d * (favourable - pos["target"]) >= 0.0 and (after_entry or not pos["fill_inside"]):
        return pos["target"], EXIT_TARGET, False
    if holding > 0 and pos["bars_held"] >= holding:
        return c, EXIT_HOLDING, False
    if t == last_bar:
        return c, EXIT_END, False
    return np.nan, -1, False


@njit(cache=True, nogil=True, inline="always")
def _track(pos: Record, o: float, h: float, lo: float, d: float, at_open: bool, holds: bool) -> None:
    """Update the excursions with this bar, and the trailing extreme while the position `holds`: only its open
    when the position exits there (the exit rule, or a gap through the stop or target), else the whole bar.
    Selects, not branches: which way a bar moves is a coin flip the CPU cannot predict (this was 20% of a
    run)."""
    up = o if at_open else h
    down = o if at_open else lo
    favourable = up if d > 0 else down
    adverse = down if d > 0 else up
    best, worst, extreme = pos["best"], pos["worst"], pos["extreme"]
    pos["best"] = favourable if d * (favourable - best) > 0.0 else best
    pos["worst"] = adverse if d * (adverse - worst) < 0.0 else worst
    pos["extreme"] = favourable if holds and d * (favourable - extreme) > 0.0 else extreme


@njit(cache=True, nogil=True, inline="always")
def _close(
    pos: Record, s: int, t: int, px: float, reason: int, sh: Shared, trades: Array, work: Scratch, qty: float
) -> tuple[float, float]:
    """Sell `qty` shares of the position (all of them, or a partial exit) at px and write the fill's row: the
    exit after slippage and commission, with its share of the entry commission, financing and dividends, so
    the rows of a position add up to it. Returns (cash change, the position's return when this closes it,
    else NaN)."""
    d = pos["side"]
    fill = px * (1.0 - d * sh.slippage) if reason != EXIT_RUIN else px
    closes = qty >= pos["shares"] * (1.0 - 1e-12)
    qty = pos["shares"] if closes else qty
    part = 1.0 if closes else qty / pos["shares"]
    fee = _fee(qty * fill, sh) if reason != EXIT_RUIN else 0.0
    entry_fee, financing, dividends = part * pos["entry_fee"], part * pos["financing"], part * pos["dividends"]
    slippage = part * pos["slippage"]
    pnl = d * qty * (fill - pos["entry_price"]) - entry_fee - fee - financing + dividends
    # Without partial exits a position has one fill: its row is its entry number, so the rows come out in
    # entry order with no sort (and no copy).
    r = trades[work.tally[1] if _many_fills(sh) else pos["seq"]]
    work.tally[1] += 1
    if closes:
        work.closing[work.tally[2]] = pos["seq"]
        work.tally[2] += 1
    r["position_id"], r["closes"], r["adds"], r["side"] = pos["seq"], closes, pos["adds"], d
    r["signal_bar"] = pos["signal_bar"]
    r["symbol"], r["entry_bar"], r["exit_bar"], r["entry_price"], r["exit_price"] = (
        s,
        pos["entry_bar"],
        t,
        pos["entry_price"],
        fill,
    )
    r["shares"], r["pnl"], r["fees"], r["reason"] = qty, pnl, entry_fee + fee, reason
    r["mae_pct"] = d * (pos["worst"] / pos["entry_price"] - 1.0) * 100.0
    r["mfe_pct"] = d * (pos["best"] / pos["entry_price"] - 1.0) * 100.0
    r["slippage"] = slippage + qty * abs(px - fill)
    r["financing"], r["dividends"], r["order_price"] = financing, dividends, pos["order_price"]
    pos["realized"] += pnl
    pos["basis"] += qty * pos["entry_price"]
    if not closes:
        pos["shares"] -= qty
        pos["entry_fee"] -= entry_fee
        pos["financing"] -= financing
        pos["dividends"] -= dividends
        pos["slippage"] -= slippage
        return d * qty * fill - fee, np.nan
    pos["shares"] = 0.0
    pos["mark"] = np.nan
    pos["closed_bar"] = t
    return d * qty * fill - fee, pos["realized"] / pos["basis"]


@njit(cache=True, nogil=True, inline="always")
def _learn(kelly: Array, ret: float) -> None:
    """Kelly's statistics: closed trades, wins, sum of winning returns, sum of |losing returns|."""
    kelly[0] += 1.0
    if ret > 0.0:
        kelly[1] += 1.0
        kelly[2] += ret
    else:
        kelly[3] -= ret


@njit(cache=True, nogil=True, inline="always")
def _exit_all(
    work: Scratch,
    n_open: int,
    bars: Bars,
    t: int,
    combo: Record,
    sh: Shared,
    trades: Array,
    scaling_out: bool,
    one_side: bool,
) -> tuple[float, int, float, float]:
    """Steps 2 and 3 for every open position in one pass: exit, or hold and mark to market (and step 2 for
    every shadow trade). Returns (cash change, open count, long value held, short value held)."""
    book, shadow, open_list, kelly = work.book, work.shadow, work.open_list, work.kelly
    cash_change = long_v = short_v = 0.0
    if sh.max_sector > 0.0:  # value per sector is read only by the sector limit
        work.sector_value[:] = 0.0
    kept = 0  # open_list stays in symbol order, so each bar reads its rows of prices in ascending order
    for i in range(n_open):
        s = open_list[i]
        d = float(sh.direction) if one_side else book[s]["side"]
        px, reason, at_open = _step_position(book[s], s, bars, t, d, combo, sh)
        if scaling_out:
            change, ret = _partials(book[s], s, bars, t, d, reason, at_open, sh, trades, work)
            cash_change += change
            if book[s]["shares"] == 0.0:  # its partial exits sold it all
                _learn(kelly, ret)
                continue
        if reason < 0:
            open_list[kept] = s
            kept += 1
            value = _mark(book[s], s, bars.close[t, s], sh, work.sector_value)
            if d > 0.0:
                long_v += value
            else:
                short_v += value
            continue
        change, ret = _close(book[s], s, t, px, reason, sh, trades, work, book[s]["shares"])
        cash_change += change
        _learn(kelly, ret)
    n_open = kept
    if sh.sizing_method == SIZE_KELLY:
        for s in range(shadow.shape[0]):
            pos = shadow[s]
            if pos["shares"] > 0.0:
                d = pos["side"]
                px, reason, _ = _step_position(pos, s, bars, t, d, combo, sh)
                if reason >= 0:
                    fill = px * (1.0 - d * sh.slippage)
                    _learn(kelly, d * (fill / pos["entry_price"] - 1.0) - 2.0 * sh.commission)
                    pos["shares"] = 0.0
    return cash_change, n_open, long_v, short_v


@njit(cache=True, nogil=True)
def _overnight_all(work: Scratch, n_open: int, t: int, sh: Shared, margin: float) -> tuple[float, float]:
    """Step 0 of bar t, before anything trades: what every position held through the close of bar t-1
    carried into bar t (`_overnight`). Returns (dividend cash, borrow fees)."""
    dividends = borrow = 0.0
    for i in range(n_open):
        s = work.open_list[i]
        dividend, fee = _overnight(work.book[s], s, t, work.book[s]["side"], sh, margin)
        dividends += dividend
        borrow += fee
    return dividends, borrow


@njit(cache=True, nogil=True, inline="always")
def _overnight(pos: Record, s: int, t: int, d: float, sh: Shared, margin: float) -> tuple[float, float]:
    """What a position held through the close of bar t-1 carried into bar t, valued at that close: a dividend
    with its ex-date on bar t (credited to a long, debited from a short), a short's borrow fee, a long's share
    of the margin interest (`margin` per unit of value). Returns (dividend cash, borrow fee)."""
    value = pos["shares"] * pos["mark"]
    dividend = 0.0
    if sh.dividend.shape[0] > 0 and sh.dividend[t, s] > 0.0:
        dividend = d * pos["shares"] * sh.dividend[t, s]
        pos["dividends"] += dividend
    fee = value * sh.borrow if d < 0.0 else 0.0
    pos["financing"] += fee + (margin * value if d > 0.0 else 0.0)
    return dividend, fee


@njit(cache=True, nogil=True, inline="always")
def _interest(cash: float, sh: Shared) -> float:
    """Interest for one bar on the cash held at the close before it: paid on negative cash (a margin loan),
    earned on positive cash. Returns it (+ earned, - paid)."""
    if cash < 0.0:
        return cash * sh.margin_rate
    return cash * sh.cash_rate


@njit(cache=True, nogil=True, inline="always")
def _step_position(
    pos: Record, s: int, bars: Bars, t: int, d: float, combo: Record, sh: Shared
) -> tuple[float, int, bool]:
    """One position on bar t: count the bar, find its exit, track excursions. Returns (price, reason, at the
    open); (NaN, -1, False): hold (or no bar)."""
    c = bars.close[t, s]
    if np.isnan(c):
        return np.nan, -1, False
    pos["bars_held"] += 1
    o, h, lo = bars.open[t, s], bars.high[t, s], bars.low[t, s]
    rule_exit = sh.exit_signal.shape[0] > 0 and t > 0 and sh.exit_signal[t - 1, s]
    px, reason, at_open = _exit_price(pos, o, h, lo, c, t, d, rule_exit, combo["holding"], bars.last_valid[s])
    if reason == EXIT_END and bars.delisting[s] != 0.0:  # the holder gets what the delisting paid
        px, reason = c * (1.0 + bars.delisting[s]), EXIT_DELISTED
    _track(pos, o, h, lo, d, at_open, reason < 0)
    return px, reason, at_open


@njit(cache=True, nogil=True, inline="always")  # no call in the exit loop: a call there slows every bar
def _partials(
    pos: Record,
    s: int,
    bars: Bars,
    t: int,
    d: float,
    reason: int,
    at_open: bool,
    sh: Shared,
    trades: Array,
    work: Scratch,
) -> tuple[float, float]:
    """Scaling out on bar t: each pending level of `partial_exits` (a distance above a long's average fill,
    in order) that the bar reaches sells its share of the position's full size, at the open when the bar
    opens beyond it, else at the level. Not when the bar's exit takes everything at the open; inside the bar
    not after a touched stop (stops first: conservative), not beyond a take-profit that ends the position,
    and not on a bar the position was filled inside (its target waits for the next bar too). The first
    partial exit can move the stop to the average fill (`breakeven`) from the next bar. Returns (cash change,
    the position's return if this sold it all, else NaN)."""
    n, k = sh.partial_frac.shape[0], pos["partials_done"]
    if k >= n or (reason >= 0 and at_open):
        return 0.0, np.nan
    o = bars.open[t, s]
    favourable = bars.high[t, s] if d > 0 else bars.low[t, s]
    after = pos["entry_bar"] < t
    inside = (after or not pos["fill_inside"]) and reason != EXIT_STOP and reason != EXIT_TRAIL
    cash, ret = 0.0, np.nan
    while k < n and pos["shares"] > 0.0:
        level = pos["entry_price"] * (1.0 + d * sh.partial_pct[k])
        if reason == EXIT_TARGET and d * (level - pos["target"]) > 0.0:
            break
        if after and d * (o - level) >= 0.0:
            px = o
        elif inside and d * (favourable - level) >= 0.0:
            px = level
        else:
            break
        qty = sh.partial_frac[k] * pos["full_shares"]
        if not sh.fractional_shares:
            qty = np.floor(qty + 1e-9)
        k += 1
        if qty > 0.0:
            change, ret = _close(pos, s, t, px, EXIT_PARTIAL, sh, trades, work, min(qty, pos["shares"]))
            cash += change
    if sh.breakeven and pos["partials_done"] == 0 and k > 0 and pos["shares"] > 0.0:
        pos["stop"] = pos["entry_price"]
    pos["partials_done"] = k
    return cash, ret


@njit(cache=True, nogil=True)
def _adds(
    bars: Bars,
    t: int,
    combo: Record,
    sh: Shared,
    work: Scratch,
    n_open: int,
    events: Array,
    n_events: int,
    cash: float,
    equity: float,
    gross: float,
) -> tuple[float, float, float, int]:
    """Scaling in, before new entries: a position whose add rule was true at the close of bar t-1 (at most
    `max_adds`, `add_min_bars` after its last fill) adds at the open of bar t, sized by the sizing method and
    checked against every limit on the whole position (each cut or skip logged). Its stop, target and the
    trailing stop's floor then measure from the new average fill; its holding period still counts from the
    first. Returns (cash, equity, gross, event count)."""
    book, kelly, sector_value = work.book, work.kelly, work.sector_value
    for i in range(n_open):
        s = work.open_list[i]
        pos = book[s]
        if (
            not sh.add_signal[t - 1, s]
            or pos["adds"] >= combo["max_adds"]
            or t - pos["last_fill"] < combo["add_min_bars"]
        ):
            continue
        o = bars.open[t, s]
        if np.isnan(o) or o <= 0.0:
            continue
        d = pos["side"]
        fill = o * (1.0 + d * sh.slippage)
        atr_s = sh.atr[t - 1, s] if sh.atr.shape[0] > 0 else np.nan
        vol_s = sh.vol[t - 1, s] if sh.vol.shape[0] > 0 else np.nan
        value = _target_value(sh.sizing_method, combo, equity, fill, pos["stop_frac"], vol_s, atr_s, kelly)
        if not (value > 0.0):
            n_events = _log(events, n_events, t, s, RULE_SIZE, 0.0, 0.0, ACTION_SKIP)
            continue
        held = pos["shares"] * pos["mark"]
        value, n_events = _caps(value, s, t, equity, gross, cash, sector_value, sh, events, n_events, d, held)
        qty = _quantity(value, fill, sh) if value > 0.0 else 0.0
        qty, n_events = _volume_cap(qty, s, t, fill, bars, sh, events, n_events)
        if qty <= 0.0:
            continue
        fee, cash, equity, gross = _book_fill(qty, fill, d, s, sh, sector_value, cash, equity, gross)
        _add(pos, t, fill, qty, fee, combo, d, qty * abs(fill - o))
    return cash, equity, gross, n_events


@njit(cache=True, nogil=True, inline="always")
def _book_fill(
    qty: float, fill: float, d: float, s: int, sh: Shared, sector_value: Array, cash: float, equity: float, gross: float
) -> tuple[float, float, float, float]:
    """Pay for an entry or an add of qty shares at fill on side d: the cash moves by the value and the fee,
    equity by the fee, gross exposure and the symbol's sector by the value. Returns (fee, cash, equity, gross)."""
    notional = qty * fill
    fee = _fee(notional, sh)
    if sh.max_sector > 0.0:
        sector_value[sh.sector_id[s]] += notional
    return fee, cash - d * notional - fee, equity - fee, gross + notional


@njit(cache=True, nogil=True, inline="always")
def _add(pos: Record, t: int, fill: float, qty: float, fee: float, combo: Record, d: float, slippage: float) -> None:
    """Add qty shares filled at bar t's open to a position: a new average fill, and the stop and the target
    measured from it (the trailing stop's floor is the average fill: `_stop_level`)."""
    total = pos["shares"] + qty
    avg = (pos["shares"] * pos["entry_price"] + qty * fill) / total
    pos["shares"], pos["full_shares"], pos["entry_price"] = total, pos["full_shares"] + qty, avg
    pos["entry_fee"] += fee
    pos["slippage"] += slippage
    pos["adds"] += 1
    pos["last_fill"] = t
    if pos["stop_frac"] > 0.0:
        pos["stop"] = avg * (1.0 - d * pos["stop_frac"])
    if combo["target"] > 0.0:
        pos["target"] = avg * (1.0 + d * combo["target"])


@njit(cache=True, nogil=True, inline="always")
def _register(work: Scratch, s: int, n_open: int) -> int:
    """A position just opened on symbol s: its entry number, and its symbol at the end of the open list (a
    step that registers some calls `_in_symbol_order` once after them). Returns the open count."""
    work.book[s]["seq"] = work.tally[0]
    work.tally[0] += 1
    work.open_list[n_open] = s
    return n_open + 1


@njit(cache=True, nogil=True)
def _in_symbol_order(work: Scratch, n_sorted: int, n_open: int) -> None:
    """Put the open list back in symbol order (each bar then reads its rows of prices in ascending order, and
    positions exit in symbol order): the symbols registered after the first n_sorted are sorted among
    themselves (a few a bar, in rank order) and merged in from the end, O(open positions) a bar instead of
    a shift of the list per entry."""
    open_list, tail = work.open_list, work.cand
    m = n_open - n_sorted
    for j in range(m):  # insertion sort of the new symbols into the scratch buffer
        s = open_list[n_sorted + j]
        i = j
        while i > 0 and tail[i - 1] > s:
            tail[i] = tail[i - 1]
            i -= 1
        tail[i] = s
    i, j = n_sorted - 1, m - 1
    for k in range(n_open - 1, -1, -1):
        if j < 0:
            break
        if i >= 0 and open_list[i] > tail[j]:
            open_list[k] = open_list[i]
            i -= 1
        else:
            open_list[k] = tail[j]
            j -= 1


@njit(cache=True, nogil=True, inline="always")
def _mark(pos: Record, s: int, c: float, sh: Shared, sector_value: Array) -> float:
    """Step 3 for a position held through the bar: its value at the close (the last close where its symbol
    has no bar), added to its sector's."""
    if not np.isnan(c):
        pos["mark"] = c
    v = pos["shares"] * pos["mark"]
    if sh.max_sector > 0.0:  # off, this add was a chain through memory from each position to the next
        sector_value[sh.sector_id[s]] += v
    return v


@njit(cache=True, nogil=True, inline="always")
def _touch_opens(open_: Array, t: int, cand: Array, n: int, scratch: Array) -> None:
    """Read every candidate's open before the entries use it. This bar's row of opens is not in cache yet;
    read in this tight loop, the loads overlap (one wait for memory, not one per candidate, which was a sixth
    of a run). `scratch` (market orders leave `order_fill` unused) keeps the loads from being optimised away."""
    acc = 0.0
    for k in range(n):
        acc += open_[t, cand[k]]
    if n > 0:
        scratch[0] = acc


@njit(cache=True, nogil=True, inline="always")
def _enter_all(
    bars: Bars,
    entries: Array,
    priority: Array,
    t: int,
    combo: Record,
    sh: Shared,
    work: Scratch,
    n_open: int,
    events: Array,
    n_events: int,
    cash: float,
    equity: float,
    gross: float,
) -> tuple[float, float, float, int, int]:
    """Step 1: open positions for yesterday's signals (market orders) or for the limit and stop orders that
    fill on this bar, highest priority first, through sizing, caps and limits (each cut or skip logged).
    Returns (cash, equity, gross, open count, event count)."""
    corr_on = sh.max_corr < 1.0
    market = sh.entry_order == ORDER_MARKET
    one_side = sh.direction != 0
    book, shadow, kelly, sector_value = work.book, work.shadow, work.kelly, work.sector_value
    if market and one_side:
        n_cand = _candidates(entries, priority, book, t, work.cand, work.cand_prio)
        _touch_opens(bars.open, t, work.cand, n_cand, work.order_fill)
    elif market:
        n_cand = _both_candidates(entries, priority, t, sh, work)
        _touch_opens(bars.open, t, work.cand, n_cand, work.order_fill)
    else:
        n_events = _place_orders(bars, entries, priority, t, combo, sh, book, events, n_events)
        n_cand, n_events = _order_fills(bars, t, sh, work, events, n_events)
    for k in range(n_cand):
        s = work.cand[k]
        d = float(sh.direction) if one_side and market else work.cand_side[s]
        if n_open >= combo["max_positions"]:  # first: most skips are this, and it needs no price (a cache miss)
            n_events = _log(events, n_events, t, s, RULE_MAX_POSITIONS, n_open, combo["max_positions"], ACTION_SKIP)
            continue
        if market:
            o = bars.open[t, s]
            if np.isnan(o) or o <= 0.0:
                n_events = _log(events, n_events, t, s, RULE_NO_BAR, np.nan, np.nan, ACTION_SKIP)
                continue
            if not _atr_ready(combo, sh, t - 1, s):
                n_events = _log(events, n_events, t, s, RULE_ATR_WARMUP, np.nan, np.nan, ACTION_SKIP)
                continue
            fill, sig, inside, order_price = o * (1.0 + d * sh.slippage), t - 1, False, np.nan
        else:
            fill, sig, inside = work.order_fill[s], book[s]["order_signal"], work.order_inside[s]
            order_price = book[s]["order_level"]
        unslipped = fill if sh.entry_order == ORDER_LIMIT else fill / (1.0 + d * sh.slippage)
        first_event = n_events
        atr_s = sh.atr[sig, s] if sh.atr.shape[0] > 0 else np.nan
        vol_s = sh.vol[t - 1, s] if sh.vol.shape[0] > 0 else np.nan
        stop_frac = combo["stop"]
        if sh.sizing_method == SIZE_ATR and combo["atr_stop"] and atr_s > 0.0:
            stop_frac = combo["atr_multiplier"] * atr_s / fill
        value = _target_value(sh.sizing_method, combo, equity, fill, stop_frac, vol_s, atr_s, kelly)
        if not (value > 0.0):
            n_events = _log(events, n_events, t, s, RULE_SIZE, 0.0, 0.0, ACTION_SKIP)
            if (
                sh.sizing_method == SIZE_KELLY and shadow[s]["shares"] == 0.0
            ):  # a unit-stake shadow keeps Kelly learning
                _open(shadow[s], t, fill, 1.0, 0.0, stop_frac, combo, atr_s, d, inside, order_price, 0.0, sig)
            continue
        value, n_events = _caps(value, s, t, equity, gross, cash, sector_value, sh, events, n_events, d)
        if value <= 0.0:
            continue
        qty = _quantity(value, fill, sh)
        if qty <= 0.0:
            n_events = _log(events, n_events, t, s, RULE_SIZE, value, fill, ACTION_SKIP)
            continue
        qty, n_events = _volume_cap(qty, s, t, fill, bars, sh, events, n_events)
        if qty <= 0.0:
            continue
        # Correlation runs last: it is the costliest check, and most skips happen before it.
        if corr_on and n_open > 0:
            breach = _corr_breach(s, t, n_open, work, sh)
            if not np.isnan(breach):  # the skip replaces any cut recorded for this signal
                n_events = _log(events, first_event, t, s, RULE_MAX_CORR, breach, sh.max_corr, ACTION_SKIP)
                continue
        fee, cash, equity, gross = _book_fill(qty, fill, d, s, sh, sector_value, cash, equity, gross)
        _open(
            book[s],
            t,
            fill,
            qty,
            fee,
            stop_frac,
            combo,
            atr_s,
            d,
            inside,
            order_price,
            qty * abs(fill - unslipped),
            sig,
        )
        n_open = _register(work, s, n_open)
        if corr_on and work.corr_state[0] == t:  # the candidate's window is loaded: add it to the book
            book_x, book_v, cand_x, cand_v = work.corr_buf
            row = work.corr_state[1]
            for j in range(work.corr_state[2]):
                book_x[row, j], book_v[row, j] = cand_x[j], cand_v[j]
            work.corr_state[1] += 1
    return cash, equity, gross, n_open, n_events


@njit(cache=True, nogil=True)
def _rebalance(
    bars: Bars,
    t: int,
    combo: Record,
    sh: Shared,
    work: Scratch,
    n_open: int,
    trades: Array,
    events: Array,
    n_events: int,
    cash: float,
    equity: float,
    gross: float,
) -> tuple[float, float, float, int, int]:
    """Rotation, at the open after a rebalance bar and before any entry: each target's weight is a share of
    the portfolio's value at this open; holdings that dropped out are sold, holdings above their target by
    more than the band trimmed, then the targets bought or topped up in rank order through every limit
    (each cut or skip logged). A symbol without a bar at this open is not traded. Every trade is written to
    `work.rebalances`. Returns (cash, equity, gross, open count, event count)."""
    row = sh.target_row[t - 1]
    book, open_list, want = work.book, work.open_list, work.target_value
    worth = cash
    for i in range(n_open):
        s = open_list[i]
        o = bars.open[t, s]
        worth += book[s]["shares"] * (o if o > 0.0 else book[s]["mark"])
    band = max(sh.rebalance_band, 1e-9) * worth  # at least float noise: a trimmed holding needs no top-up
    want[:] = 0.0
    for k in range(sh.target_symbol.shape[1]):
        s = sh.target_symbol[row, k]
        if s < 0:
            break
        want[s] = sh.target_weight[row, k] * worth
    kept = 0
    for i in range(n_open):  # sells first: they pay for the buys
        s = open_list[i]
        pos = book[s]
        o = bars.open[t, s]
        excess = pos["shares"] * o - want[s]
        if not (o > 0.0) or not (excess > 0.0) or (want[s] > 0.0 and excess <= band):
            open_list[kept] = s
            kept += 1
            continue
        qty = pos["shares"] if want[s] <= 0.0 else excess / o
        if want[s] > 0.0 and not sh.fractional_shares:
            qty = np.floor(qty)
        if qty <= 0.0:
            open_list[kept] = s
            kept += 1
            continue
        held = pos["shares"]
        cash, equity, gross, change = _sell_at_open(
            pos, s, t, o, EXIT_REBALANCE, qty, sh, trades, work, cash, equity, gross
        )
        sold = held - pos["shares"]
        fill = o * (1.0 - sh.slippage)
        _log_rebalance(work, t, s, -sold, fill, sold * fill - change, want[s], worth)
        if pos["shares"] > 0.0:  # trimmed, still held
            open_list[kept] = s
            kept += 1
    n_open = n_sorted = kept
    for k in range(sh.target_unscored.shape[1]):  # hits that could not be ranked: their share stays in cash
        s = sh.target_unscored[row, k]
        if s < 0:
            break
        n_events = _log(events, n_events, t, s, RULE_NO_SCORE, np.nan, np.nan, ACTION_SKIP)
    for k in range(sh.target_symbol.shape[1]):  # then buys, best ranked first
        s = sh.target_symbol[row, k]
        if s < 0:
            break
        pos = book[s]
        o = bars.open[t, s]
        if not (o > 0.0):
            n_events = _log(events, n_events, t, s, RULE_NO_BAR, np.nan, np.nan, ACTION_SKIP)
            continue
        need = want[s] - pos["shares"] * o
        if not (need > 1e-9 * worth) or (pos["shares"] > 0.0 and need <= band):
            continue
        if pos["shares"] == 0.0 and n_open >= combo["max_positions"]:
            n_events = _log(events, n_events, t, s, RULE_MAX_POSITIONS, n_open, combo["max_positions"], ACTION_SKIP)
            continue
        if sh.max_leverage <= 1.0 and cash > 0.0:  # the sells' costs leave the last buy a little short: buy less
            need = min(need, cash)
        fill = o * (1.0 + sh.slippage)
        held = pos["shares"] * pos["mark"] if pos["shares"] > 0.0 else 0.0
        value, n_events = _caps(need, s, t, equity, gross, cash, work.sector_value, sh, events, n_events, 1.0, held)
        qty = _quantity(value, fill, sh) if value > 0.0 else 0.0
        qty, n_events = _volume_cap(qty, s, t, fill, bars, sh, events, n_events)
        if qty <= 0.0:
            continue
        fee, cash, equity, gross = _book_fill(qty, fill, 1.0, s, sh, work.sector_value, cash, equity, gross)
        _log_rebalance(work, t, s, qty, fill, fee, want[s], worth)
        if pos["shares"] > 0.0:
            _add(pos, t, fill, qty, fee, combo, 1.0, qty * (fill - o))
            continue
        atr_s = sh.atr[t - 1, s] if sh.atr.shape[0] > 0 else np.nan
        _open(pos, t, fill, qty, fee, combo["stop"], combo, atr_s, 1.0, False, np.nan, qty * (fill - o), t - 1)
        n_open = _register(work, s, n_open)
    if n_open > n_sorted:
        _in_symbol_order(work, n_sorted, n_open)
    return cash, equity, gross, n_open, n_events


@njit(cache=True, nogil=True, inline="always")
def _sell_at_open(
    pos: Record,
    s: int,
    t: int,
    o: float,
    reason: int,
    qty: float,
    sh: Shared,
    trades: Array,
    work: Scratch,
    cash: float,
    equity: float,
    gross: float,
) -> tuple[float, float, float, float]:
    """Sell qty shares of a position at bar t's open, before the entries (an opposite signal, a rotation's
    sale or trim). Selling them all closes it: the bar counts as held and Kelly learns its return. Their value
    at the last mark leaves gross exposure and the sector. Returns (cash, equity, gross, the sale's cash)."""
    d = pos["side"]
    full = qty >= pos["shares"] * (1.0 - 1e-12)
    value = (pos["shares"] if full else qty) * pos["mark"]
    if full:
        pos["bars_held"] += 1
        _track(pos, o, o, o, d, True, False)
    change, ret = _close(pos, s, t, o, reason, sh, trades, work, qty)
    if full:
        _learn(work.kelly, ret)
    if sh.max_sector > 0.0:
        work.sector_value[sh.sector_id[s]] -= value
    return cash + change, equity + change - d * value, gross - value, change


@njit(cache=True, nogil=True, inline="always")
def _log_rebalance(
    work: Scratch, t: int, s: int, shares: float, price: float, fee: float, want: float, worth: float
) -> None:
    """Write one rebalance trade (shares > 0 bought, < 0 sold) with its target weight."""
    r = work.rebalances[work.tally[3]]
    r["bar"], r["symbol"], r["shares"], r["price"], r["value"] = t, s, shares, price, shares * price
    r["fee"], r["weight"], r["portfolio"] = fee, want / worth if worth > 0.0 else 0.0, worth
    work.tally[3] += 1


@njit(cache=True, nogil=True)
def _close_opposites(
    bars: Bars,
    entries: Array,
    t: int,
    sh: Shared,
    work: Scratch,
    n_open: int,
    trades: Array,
    cash: float,
    equity: float,
    gross: float,
) -> tuple[float, float, float, int]:
    """With both sides and on_opposite close or reverse: a position whose opposite side signalled at the close
    of bar t-1 exits at the open of bar t, before the entries (so that a reverse can open the other side at
    that same open). Returns (cash, equity, gross, open count)."""
    book, open_list = work.book, work.open_list
    kept = 0
    for i in range(n_open):
        s = open_list[i]
        pos = book[s]
        d = pos["side"]
        o = bars.open[t, s]
        if not _opposite_fired(entries, t, s, sh, d) or np.isnan(o):
            open_list[kept] = s
            kept += 1
            continue
        cash, equity, gross, _ = _sell_at_open(
            pos, s, t, o, EXIT_OPPOSITE, pos["shares"], sh, trades, work, cash, equity, gross
        )
    return cash, equity, gross, kept


@njit(cache=True, nogil=True)
def _liquidate(work: Scratch, n_open: int, t: int, sh: Shared, trades: Array, cash: float) -> float:
    """Ruin: equity reached zero or below at the close of bar t. Every open position closes at that close (its
    mark), without costs, and the loss is booked as it is: with leverage or shorts the equity ends below zero,
    and the fills' pnl add up to the curve's change. Returns the cash after it (the final equity)."""
    book, open_list = work.book, work.open_list
    for i in range(n_open):
        s = open_list[i]
        change, _ = _close(book[s], s, t, book[s]["mark"], EXIT_RUIN, sh, trades, work, book[s]["shares"])
        cash += change
    return cash


@njit(cache=True, nogil=True)
def _allocate(bars, entries, combo, sh):
    """Every buffer one run writes: (trades, events, curve, Scratch), sized for the worst case."""
    n_bars, n_sym = bars.close.shape
    # A signal makes at most one position, with a fill per partial exit and a last one, and four events
    # (cuts, then a skip); an add signal at most four events.
    # A rotation's target makes at most one position or one top-up, a trim, and four events (cuts, a skip).
    targets = int((sh.target_symbol >= 0).sum())
    cap = max(int(entries.sum()) + int(sh.short_signal.sum()) + targets + int((sh.target_unscored >= 0).sum()), 1)
    n_events = 4 * (cap + int(sh.add_signal.sum()))
    trades = np.empty(cap * (1 + sh.partial_frac.shape[0]) + targets, TRADE)
    events = np.empty(n_events, EVENT)
    curve = np.empty(n_bars, CURVE)
    rows, win = (min(combo["max_positions"], n_sym), sh.corr_window) if sh.max_corr < 1.0 else (1, 1)
    work = Scratch(
        np.zeros(n_sym, POSITION),
        np.zeros(n_sym, POSITION),
        np.empty(n_sym, np.int64),
        np.empty(n_sym, np.int64),
        np.empty(n_sym),
        np.zeros(4),
        np.zeros(sh.sector_id.max() + 1 if n_sym else 1),
        (np.empty((rows, win)), np.empty((rows, win)), np.empty(win), np.empty(win)),
        np.array([-1, 0, 0]),
        np.zeros(4, np.int64),
        np.empty(cap, np.int64),
        np.empty(n_sym),
        np.empty(n_sym),
        np.zeros(n_sym, np.bool_),
        np.zeros(n_sym),
        np.empty(3 * targets + 1 if targets else 0, REBALANCE),
    )
    return trades, events, curve, work


@njit(cache=True, nogil=True)
def simulate(bars, entries, priority, combo, sh):
    """Simulate one portfolio with shared cash (see the module docstring for the order of events).

    Returns (trades: TRADE records, one per exit fill, in entry order (a position's fills in the order they
    happened); closing: the position ids in the order they closed; events: EVENT records; curve: CURVE records
    per bar; ruin bar or -1).
    Allocates here, then runs `_run`, which is compiled without Numba's runtime: reference counting the
    arrays inside the steps cost 40% of the time. The records come back as views of the worst-case buffers
    (their untouched pages cost no memory; a copy would fault in every page again), sorted into entry order
    only when partial exits made several fills a position.
    """
    trades, events, curve, work = _allocate(bars, entries, combo, sh)
    n_events, ruin = _run(bars, entries, priority, combo, sh, trades, events, curve, work)
    rebalances = work.rebalances[: work.tally[3]]
    return _fills(trades, sh, work), work.closing[: work.tally[2]], events[:n_events], curve, ruin, rebalances


@njit(cache=True, nogil=True)
def _fills(trades, sh, work):
    """The exit fills a run wrote, in entry order (a position's fills in the order they happened)."""
    written = _written_fills(trades, sh, work)
    return _entry_order(written, work.tally[0]) if _many_fills(sh) else written


@njit(cache=True, nogil=True)
def _written_fills(trades, sh, work):
    """The exit fills a run wrote, in no set order where partial exits wrote them as they happened (the grid
    sums them per position and needs no order): the first rows, or without partial exits the rows of the
    positions that closed (`_close` writes each at its entry number)."""
    n_positions, n_fills, n_closed = work.tally[0], work.tally[1], work.tally[2]
    if _many_fills(sh) or n_closed == n_positions:
        return trades[:n_fills]
    return _closed_rows(trades, work.closing[:n_closed], n_positions)


@njit(cache=True, nogil=True)
def _closed_rows(trades, closing, n_positions):
    """The rows of the positions that closed, in entry order: a position whose symbol's data ends without a
    close (raw inputs only; `last_valid` closes the others) has no row."""
    closed = np.zeros(n_positions, np.bool_)
    for p in closing:
        closed[p] = True
    out = np.empty(closing.shape[0], TRADE)
    j = 0
    for p in range(n_positions):
        if closed[p]:
            out[j] = trades[p]
            j += 1
    return out


@njit(cache=True, nogil=True)
def _entry_order(fills, n_positions):
    """The fills sorted by position id, a position's fills kept in the order they happened. A counting sort
    in one pass: records are copied whole here, where NumPy's fancy indexing copies them field by field."""
    start = np.zeros(n_positions + 1, np.int64)
    for i in range(fills.shape[0]):
        start[fills[i]["position_id"] + 1] += 1
    for p in range(n_positions):
        start[p + 1] += start[p]
    out = np.empty(fills.shape[0], TRADE)
    for i in range(fills.shape[0]):
        p = fills[i]["position_id"]
        out[start[p]] = fills[i]
        start[p] += 1
    return out


@njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
def _run(
    bars: Bars,
    entries: Array,
    priority: Array,
    combo: Record,
    sh: Shared,
    trades: Array,
    events: Array,
    curve: Array,
    work: Scratch,
) -> tuple[int, int]:
    """The bar loop. No allocation here (no runtime): returns (event count, ruin bar or -1)."""
    n_open = n_events = 0
    cash = equity = sh.initial_capital
    gross = 0.0
    ruin = -1
    long_v = 0.0
    carry = sh.dividend.shape[0] > 0 or sh.borrow > 0.0 or sh.margin_rate > 0.0
    plain_exits = sh.partial_frac.shape[0] == 0 and sh.direction != 0
    for t in range(bars.close.shape[0]):
        # Interest for the night before this bar, on the cash at the last close; a margin loan's interest is
        # charged to the longs held then, by value.
        interest = _interest(cash, sh) if t > 0 and ruin < 0 else 0.0
        margin = -interest / long_v if interest < 0.0 and long_v > 0.0 else 0.0
        borrow = 0.0
        if carry and n_open > 0:
            dividends, borrow = _overnight_all(work, n_open, t, sh, margin)
            cash += dividends - borrow
        if t > 0 and ruin < 0:
            if sh.target_row.shape[0] > 0 and sh.target_row[t - 1] >= 0:
                cash, equity, gross, n_open, n_events = _rebalance(
                    bars, t, combo, sh, work, n_open, trades, events, n_events, cash, equity, gross
                )
            if sh.direction == 0 and sh.on_opposite != OPPOSITE_IGNORE:
                cash, equity, gross, n_open = _close_opposites(
                    bars, entries, t, sh, work, n_open, trades, cash, equity, gross
                )
            if sh.add_signal.shape[0] > 0:
                cash, equity, gross, n_events = _adds(
                    bars, t, combo, sh, work, n_open, events, n_events, cash, equity, gross
                )
            n_sorted = n_open
            cash, equity, gross, n_open, n_events = _enter_all(
                bars, entries, priority, t, combo, sh, work, n_open, events, n_events, cash, equity, gross
            )
            if n_open > n_sorted:
                _in_symbol_order(work, n_sorted, n_open)
        if plain_exits:  # a copy of the exit step with the features that are off compiled out
            change, n_open, long_v, short_v = _exit_all(work, n_open, bars, t, combo, sh, trades, False, True)
        else:
            change, n_open, long_v, short_v = _exit_all(
                work, n_open, bars, t, combo, sh, trades, sh.partial_frac.shape[0] > 0, sh.direction != 0
            )
        cash += change + interest
        equity, gross = cash + long_v - short_v, long_v + short_v
        if equity <= 0.0 and ruin < 0:  # ruin: everything closes at this bar's close and trading stops
            ruin = t
            cash = _liquidate(work, n_open, t, sh, trades, cash)
            n_open, equity, long_v, short_v, gross = 0, cash, 0.0, 0.0, 0.0
        c = curve[t]
        c["equity"], c["cash"], c["long_value"], c["short_value"], c["open_positions"] = (
            equity,
            cash,
            long_v,
            short_v,
            n_open,
        )
        c["borrow"], c["interest"] = borrow, interest
    return n_events, ruin


# ---------------------------------------------------------------------------------------------------
# Grid search: many parameter combinations of `simulate`, in parallel threads, reduced to metrics at
# once so that no (combinations x bars) array is ever held. Formulas follow engine/metrics.py.
# ---------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def summary_metrics(out, equity, years, pnl, trade_ret, rf_per_bar, periods_per_year):
    """Write one run's GRID_METRIC record `out`, field by field (NaN where undefined, as metrics.py)."""
    for name in literal_unroll(GRID_METRICS):  # each name a constant
        out[name] = np.nan
    n = len(equity)
    if n == 0 or equity[0] <= 0.0:
        return
    out["total_return_pct"] = (equity[-1] / equity[0] - 1.0) * 100.0
    if n >= 2 and years > 0.0:
        out["cagr_pct"] = ((max(equity[-1], 0.0) / equity[0]) ** (1.0 / years) - 1.0) * 100.0
    if n >= 3:
        ex = np.empty(n - 1)
        for t in range(1, n):
            ex[t - 1] = (equity[t] / equity[t - 1] - 1.0 if equity[t - 1] > 0.0 else 0.0) - rf_per_bar
        mean = ex.mean()
        sd = np.sqrt(((ex - mean) ** 2).sum() / (n - 2))
        if sd > 0.0:
            out["sharpe"] = mean / sd * np.sqrt(periods_per_year)
        down = np.sqrt((np.minimum(ex, 0.0) ** 2).mean())
        if down > 0.0:
            out["sortino"] = mean / down * np.sqrt(periods_per_year)
    peak = equity[0]
    mdd = 0.0
    for t in range(n):
        peak = max(peak, equity[t])
        if peak > 0.0:
            mdd = min(mdd, (equity[t] / peak - 1.0) * 100.0)
    out["max_drawdown_pct"] = mdd
    if mdd < 0.0:
        out["calmar"] = out["cagr_pct"] / abs(mdd)
    k = len(pnl)
    out["n_trades"] = k
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
        out["win_rate_pct"] = wins / k * 100.0
        if losses > 0.0:
            out["profit_factor"] = gains / losses
        elif gains > 0.0:
            out["profit_factor"] = np.inf
        out["expectancy"] = pnl.mean()
    out["final_equity"] = equity[-1]


@njit(cache=True, nogil=True)
def block_stats(equity, n_blocks):
    """(n_blocks x 5): per block of bars, the count and the sums of r, r^2, r^3, r^4 of the bar returns
    r_t = E_t / E_t-1 - 1 (t >= 1; 0 after ruin), for overfitting statistics over any union of blocks."""
    out = np.zeros((n_blocks, 5))
    n = len(equity) - 1
    for t in range(1, n + 1):
        r = equity[t] / equity[t - 1] - 1.0 if equity[t - 1] > 0.0 else 0.0
        b = min((t - 1) * n_blocks // n, n_blocks - 1)
        out[b, 0] += 1.0
        out[b, 1] += r
        out[b, 2] += r * r
        out[b, 3] += r * r * r
        out[b, 4] += r * r * r * r
    return out


@njit(cache=True, nogil=True)
def position_totals(fills, n_positions):
    """Per position id, its exit fills summed: (pnl, cost of the shares sold, bars held from the first fill
    to the last exit, closed), and the run's commission, slippage and dividends over every fill (one pass
    over the records, which are wide). The metrics count positions, not fills (partial exits make several);
    the backtest and the grid both sum them here."""
    pnl, cost = np.zeros(n_positions), np.zeros(n_positions)
    bars_held = np.zeros(n_positions, np.int64)
    closed = np.zeros(n_positions, np.bool_)
    fees = slippage = dividends = 0.0  # locals, not an array: the sums stay in registers
    for i in range(fills.shape[0]):
        f = fills[i]
        p = f["position_id"]
        pnl[p] += f["pnl"]
        cost[p] += f["shares"] * f["entry_price"]
        fees += f["fees"]
        slippage += f["slippage"]
        dividends += f["dividends"]
        if f["closes"]:
            closed[p] = True
            bars_held[p] = f["exit_bar"] - f["entry_bar"] + 1
    return pnl, cost, bars_held, closed, np.array([fees, slippage, dividends])


@njit(cache=True, nogil=True)
def position_returns(fills, n_positions):
    """(pnl, return) of each closed position, in entry order (`position_totals`); return = pnl / cost."""
    pnl, cost, _, closed, _ = position_totals(fills, n_positions)
    return pnl[closed], pnl[closed] / cost[closed]


@njit(cache=True, nogil=True, parallel=True)
def simulate_grid(bars, entries, priority, combos, sh, years, rf_per_bar, periods_per_year, n_blocks):
    """One run per COMBO record of `combos`, in parallel threads. Returns one GRID_METRIC record per
    combination and its `block_stats` over n_blocks blocks of bars (combinations x n_blocks x 5)."""
    n_combo = combos.shape[0]
    out = np.empty(n_combo, GRID_METRIC)
    blocks = np.zeros((n_combo, n_blocks, 5))
    for c in prange(n_combo):
        combo = combos[c]
        trades, events, curve, work = _allocate(bars, entries, combo, sh)
        _run(bars, entries, priority, combo, sh, trades, events, curve, work)
        pnl, trade_ret = position_returns(_written_fills(trades, sh, work), work.tally[0])
        equity = curve["equity"].copy()
        summary_metrics(out[c], equity, years, pnl, trade_ret, rf_per_bar, periods_per_year)
        if n_blocks > 0 and len(equity) > n_blocks:
            blocks[c] = block_stats(equity, n_blocks)
    return out, blocks
