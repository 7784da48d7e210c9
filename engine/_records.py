"""The kernel's vocabulary, NumPy only: integer codes with their labels, and the record layouts that cross
the boundary between the kernels and the library. Nothing here compiles, so the parameter table and the
results can read it without importing Numba.

Numba's disk cache keys a kernel on its own file, not on this one: `_kernels.RECORDS_FINGERPRINT` must match
`fingerprint()`, so an edit here forces an edit there (and with it a recompile); importing `_kernels` with a
stale fingerprint fails and says the new value.
"""

from __future__ import annotations

import hashlib

import numpy as np

# --- codes and their labels -----------------------------------------------------------------------------------
(
    EXIT_STOP,
    EXIT_TRAIL,
    EXIT_TARGET,
    EXIT_RULE,
    EXIT_HOLDING,
    EXIT_END,
    EXIT_RUIN,
    EXIT_OPPOSITE,
    EXIT_PARTIAL,
    EXIT_REBALANCE,
    EXIT_DELISTED,
) = range(11)
EXIT_NAMES = (
    "stop_loss",
    "trailing_stop",
    "take_profit",
    "exit_rule",
    "holding_period",
    "end_of_data",
    "ruin",
    "opposite_signal",
    "partial_exit",
    "rebalance",  # a rotation sold it (dropped out of the top) or trimmed it to its weight
    "delisted",  # held on the symbol's last bar, which has a delisting return: closed at close x (1 + it)
)
SIZE_EQUAL, SIZE_FIXED_FRACTIONAL, SIZE_KELLY, SIZE_VOL_TARGET, SIZE_ATR, SIZE_FIXED_AMOUNT = range(6)
SIZING_NAMES = ("equal_weight", "fixed_fractional", "kelly", "volatility_target", "atr_risk", "fixed_amount")
# Why a signal was skipped or cut.
(
    RULE_MAX_POSITIONS,
    RULE_CASH,
    RULE_MAX_POSITION,
    RULE_MAX_SECTOR,
    RULE_MAX_CORR,
    RULE_SIZE,
    RULE_NO_BAR,
    RULE_MAX_VOLUME,
    RULE_EXPIRED,
    RULE_ATR_WARMUP,
    RULE_NO_SCORE,
) = range(11)
RULE_NAMES = (
    "max_positions",
    "cash",
    "max_position_pct",
    "max_sector_pct",
    "max_correlation",
    "size_zero",
    "no_bar",
    "max_volume_pct",
    "order_expired",
    "atr_warmup",
    "no_score",  # a rotation's hit whose rank-by score is undefined at the rebalance: its share stays in cash
)
ACTION_SKIP, ACTION_CUT = range(2)
ACTION_NAMES = ("skip", "cut")
ORDER_MARKET, ORDER_LIMIT, ORDER_STOP = range(3)
ORDER_NAMES = ("market", "limit", "stop")
OPPOSITE_IGNORE, OPPOSITE_CLOSE, OPPOSITE_REVERSE = range(3)
OPPOSITE_NAMES = ("ignore", "close", "reverse")

# --- record layouts -------------------------------------------------------------------------------------------
# What a grid may vary per combination (fractions; 0 = off), written and read by field name.
COMBO = np.dtype(
    [
        ("stop", np.float64),
        ("target", np.float64),
        ("trail", np.float64),
        ("trail_atr", np.float64),  # k: trail k x ATR at the signal bar
        ("holding", np.int64),
        ("max_positions", np.int64),
        ("risk", np.float64),  # fixed fractional and ATR risk: the share of equity risked
        ("kelly_multiplier", np.float64),
        ("kelly_cap", np.float64),
        ("kelly_min_trades", np.int64),
        ("vol_target", np.float64),
        ("atr_multiplier", np.float64),
        ("fixed_amount", np.float64),
        ("atr_stop", np.bool_),  # ATR sizing also sets the stop at atr_multiplier x ATR
        ("entry_offset", np.float64),  # a limit or stop order's distance from the signal's close, a fraction
        ("entry_offset_atr", np.float64),  # or k x ATR at the signal bar
        ("entry_valid", np.int64),  # bars a limit or stop order stays live
        ("max_adds", np.int64),  # scaling in: adds per position (0: off)
        ("add_min_bars", np.int64),  # bars from a fill to the next add
    ]
)
TRADE = np.dtype(
    [
        ("symbol", np.int64),
        ("position_id", np.int64),  # the position's entry rank: a position with partial exits has a row per fill
        ("signal_bar", np.int64),
        ("adds", np.int64),  # fills that added to the position before this exit
        ("side", np.float64),  # +1 long, -1 short
        ("entry_bar", np.int64),
        ("exit_bar", np.int64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("shares", np.float64),
        ("pnl", np.float64),
        ("fees", np.float64),
        ("reason", np.int64),
        ("mae_pct", np.float64),
        ("mfe_pct", np.float64),
        ("slippage", np.float64),  # cost of slippage on both fills, in currency
        ("financing", np.float64),  # borrow fee and margin interest charged while held
        ("dividends", np.float64),  # dividends received (long) or paid (short)
        ("order_price", np.float64),  # the limit or stop order's level; NaN for a market entry
        ("closes", np.bool_),  # this fill closes the position
    ],
    align=True,  # padded to whole 8-byte words: NumPy copies unaligned fields on a slow path
)
# 32 bytes, not 48: a run can log several events per trade, and they are copied out of the kernel's buffer.
EVENT = np.dtype(
    [
        ("value", np.float64),
        ("limit", np.float64),
        ("bar", np.int32),
        ("symbol", np.int32),
        ("rule", np.int8),
        ("action", np.int8),
    ],
    align=True,
)
CURVE = np.dtype(
    [
        ("equity", np.float64),
        ("cash", np.float64),
        ("long_value", np.float64),
        ("short_value", np.float64),
        ("open_positions", np.int64),
        ("borrow", np.float64),  # borrow fee charged at this close
        ("interest", np.float64),  # interest at this close: earned on cash (+), paid on a margin loan (-)
    ]
)
# One open position (or, for Kelly, one shadow trade) per symbol.
POSITION = np.dtype(
    [
        # Read and written every bar a position is held (two cache lines: keep them first and together).
        ("shares", np.float64),
        ("side", np.float64),  # +1 long, -1 short (of the position, or of the live order)
        ("entry_price", np.float64),  # the average fill
        ("entry_bar", np.int64),
        ("stop", np.float64),
        ("target", np.float64),
        ("trail_frac", np.float64),
        ("trail_dist", np.float64),
        ("extreme", np.float64),  # the best high (long; a short's: low) of the bars held, for the trailing stop
        ("worst", np.float64),
        ("best", np.float64),
        ("bars_held", np.int64),
        ("mark", np.float64),
        # Read at entries, adds, partial exits, the close and overnight.
        ("partials_done", np.int64),
        ("entry_fee", np.float64),
        ("seq", np.int64),
        ("closed_bar", np.int64),  # the bar its last position closed on
        ("signal_bar", np.int64),  # the bar of the signal that opened it
        ("stop_frac", np.float64),  # the stop's distance from the average fill, a fraction (0: none)
        ("adds", np.int64),
        ("last_fill", np.int64),  # the bar of its last entry fill (the first, or an add)
        ("full_shares", np.float64),  # shares bought (partial exits are fractions of this)
        ("realized", np.float64),  # pnl of its partial exits so far
        ("basis", np.float64),  # cost of the shares those exits sold
        ("slippage", np.float64),
        ("financing", np.float64),
        ("dividends", np.float64),
        ("order_price", np.float64),
        # The symbol's live limit or stop order (while no position is open): its level, its last live bar
        # (-1: none), its signal bar and the signal's priority.
        ("order_level", np.float64),
        ("order_until", np.int64),
        ("order_signal", np.int64),
        ("order_prio", np.float64),
        ("fill_inside", np.bool_),  # entered inside its bar (a limit or stop order): no target on that bar
    ],
    align=True,
)
# One trade of a rotation's rebalance (bought: shares > 0; sold: < 0), at the open after the rebalance bar.
REBALANCE = np.dtype(
    [
        ("bar", np.int64),
        ("symbol", np.int64),
        ("shares", np.float64),
        ("price", np.float64),  # the fill, after slippage
        ("value", np.float64),  # shares x price (negative: sold)
        ("fee", np.float64),
        ("weight", np.float64),  # the symbol's target weight (0: dropped out)
        ("portfolio", np.float64),  # the portfolio's value at that open, which the weights apply to
    ]
)
# One grid combination's summary (NaN where undefined, as engine/metrics.py).
GRID_METRIC = np.dtype(
    [
        ("total_return_pct", np.float64),
        ("cagr_pct", np.float64),
        ("sharpe", np.float64),
        ("sortino", np.float64),
        ("calmar", np.float64),
        ("max_drawdown_pct", np.float64),
        ("n_trades", np.float64),
        ("win_rate_pct", np.float64),
        ("profit_factor", np.float64),
        ("expectancy", np.float64),
        ("final_equity", np.float64),
    ]
)
GRID_METRICS: tuple[str, ...] = GRID_METRIC.names or ()


def fingerprint() -> str:
    """A short hash of every code and layout above (see the module docstring)."""
    text = repr(
        (
            EXIT_NAMES,
            SIZING_NAMES,
            RULE_NAMES,
            ACTION_NAMES,
            ORDER_NAMES,
            OPPOSITE_NAMES,
            *(d.descr for d in (COMBO, TRADE, EVENT, CURVE, POSITION, REBALANCE, GRID_METRIC)),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]
