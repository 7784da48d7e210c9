"""Performance metrics. Each is one function with its formula; edge cases return NaN (undefined) or 0.

Conventions: `equity` is the per-bar portfolio value; returns are simple bar-to-bar returns; percentages are
in percent units (5.0 means 5%). One annualisation rule for every metric: `periods_per_year(dates)`, the
bars per calendar year of the data (about 252 for US stocks, 365 for crypto), used by CAGR, volatility,
Sharpe and Sortino alike and shown in the metrics table.

The metrics on arrays are Numba functions (callable from Python as they are), and `compute_metrics` gets
them all in one compiled call (`_array_metrics`): forty NumPy calls, each with its Python overhead, were
a sixth of a backtest. They call only each other, so they live in this file (Numba's disk cache).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numba import njit

from .stats import moments, probabilistic_sharpe

KEY_METRICS = ("total_return_pct", "cagr_pct", "sharpe", "max_drawdown_pct", "win_rate_pct", "n_trades")  # run lists
PERIODS_PER_YEAR = 252  # only when the dates span less than a week: too short to infer

LABELS = {
    "total_return_pct": "Total return [%]",
    "cagr_pct": "CAGR [%]",
    "volatility_pct": "Volatility (ann.) [%]",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown_pct": "Max drawdown [%]",
    "max_drawdown_bars": "Max drawdown duration [bars]",
    "n_trades": "# Trades",
    "win_rate_pct": "Win rate [%]",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy [per trade]",
    "avg_win_pct": "Avg win [%]",
    "avg_loss_pct": "Avg loss [%]",
    "best_trade_pct": "Best trade [%]",
    "worst_trade_pct": "Worst trade [%]",
    "avg_bars_held": "Avg bars held",
    "exposure_pct": "Exposure time [%]",
    "buy_hold_return_pct": "Buy & hold return [%]",
    "signals_skipped": "Signals skipped",
    "final_equity": "Final equity",
    "periods_per_year": "Bars per year (annualisation)",
    "alpha_pct": "Alpha (ann.) [%]",
    "beta": "Beta",
    "information_ratio": "Information ratio",
    "tracking_error_pct": "Tracking error (ann.) [%]",
    "sqn": "SQN",
    "omega": "Omega ratio",
    "var_95_pct": "Daily VaR (95%) [%]",
    "cvar_95_pct": "Daily CVaR (95%) [%]",
    "tail_ratio": "Tail ratio",
    "avg_drawdown_pct": "Avg drawdown [%]",
    "max_win_streak": "Longest winning streak [trades]",
    "max_loss_streak": "Longest losing streak [trades]",
    "psr_pct": "Probabilistic Sharpe (SR > 0) [%]",
}
# A backtest's costs and carry, from its trades and curve (engine/backtest.py), not from the equity alone.
COST_LABELS = {
    "total_commission": "Commission paid",
    "total_slippage": "Slippage cost",
    "total_borrow": "Borrow fees paid",
    "interest_earned": "Interest earned on cash",
    "interest_paid": "Margin interest paid",
    "total_dividends": "Dividends (+ received, - paid)",
}
LABELS |= COST_LABELS
# What a metric means where its label cannot say it (the metrics table's third column, the cards' help).
DEFINITIONS = {
    "sharpe": "Mean bar return over the risk-free rate / its standard deviation x sqrt(bars per year).",
    "sortino": "Mean bar return over the risk-free rate / its downside deviation x sqrt(bars per year).",
    "n_trades": "Closed positions; one with partial exits counts once.",
    "win_rate_pct": "Share of closed positions with a positive return (net of costs).",
    "profit_factor": "Sum of winning positions' pnl / sum of losing positions' |pnl|.",
    "expectancy": "Mean pnl per closed position, in currency, net of costs.",
    "sqn": "System quality number (Van Tharp): sqrt(trades) x mean / standard deviation of the per-trade "
    "percent returns.",
    "total_commission": "Commission on every entry and exit.",
    "total_slippage": "What slippage moved the fills by, in currency, entries and exits.",
    "total_borrow": "Borrow fees on shorts: value at each close x annual rate / bars per year.",
    "interest_earned": "Interest earned on positive cash, per night at the cash rate.",
    "interest_paid": "Margin interest paid on negative cash (a loan for leverage), per night; each long's share is in "
    "its trade's financing.",
    "total_dividends": "Dividends credited to longs minus dividends debited from shorts.",
}


def periods_per_year(dates: pd.DatetimeIndex) -> float:
    """Bars per calendar year of the data: (bars - 1) / (calendar days spanned / 365.25); PERIODS_PER_YEAR
    when the dates span less than a week."""
    days = _span_days(dates)
    return (len(dates) - 1) / (days / 365.25) if days >= 7 else float(PERIODS_PER_YEAR)


def _span_days(dates: pd.DatetimeIndex) -> int:
    """Calendar days from the first date to the last (0 with fewer than two)."""
    if len(dates) < 2:
        return 0
    values = np.asarray(dates)  # NumPy's datetime64: no Timestamp built per call
    return int((values[-1] - values[0]) // np.timedelta64(1, "D"))


@njit(cache=True, nogil=True)
def bar_returns(equity: np.ndarray) -> np.ndarray:
    """r_t = E_t / E_{t-1} - 1 for t >= 1 (a bar starting at zero equity has return 0)."""
    r = np.empty(max(len(equity) - 1, 0))
    for t in range(1, len(equity)):
        r[t - 1] = equity[t] / equity[t - 1] - 1.0 if equity[t - 1] > 0 else 0.0
    return r


@njit(cache=True, nogil=True)
def total_return_pct(equity: np.ndarray) -> float:
    """(E_last / E_first - 1) x 100."""
    return (equity[-1] / equity[0] - 1.0) * 100.0 if len(equity) and equity[0] > 0 else np.nan


def cagr_pct(equity: np.ndarray, dates: pd.DatetimeIndex) -> float:
    """((E_last / E_first) ^ (1 / years) - 1) x 100, years = calendar days / 365.25 (the same as
    (bars - 1) / periods_per_year(dates))."""
    return _cagr_pct(np.asarray(equity, float), _years(dates))


def _years(dates: pd.DatetimeIndex) -> float:
    return _span_days(dates) / 365.25


@njit(cache=True, nogil=True)
def _cagr_pct(equity: np.ndarray, years: float) -> float:
    if len(equity) < 2 or equity[0] <= 0 or years <= 0:
        return np.nan
    return ((max(equity[-1], 0.0) / equity[0]) ** (1.0 / years) - 1.0) * 100.0


# Sums over a whole array may be reordered (into SIMD lanes): 4x faster over 100,000 trades, and the result
# moves by ~1e-16 relative, far inside any tolerance these figures are compared at.
SUMS = {"reassoc"}


@njit(cache=True, nogil=True, fastmath=SUMS)
def _std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof = 1)."""
    mean = x.mean()
    squares = 0.0
    for v in x:  # no temporary array: trade returns can number 100,000
        squares += (v - mean) ** 2
    return np.sqrt(squares / (len(x) - 1))


@njit(cache=True, nogil=True)
def volatility_pct(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """std(r, ddof=1) x sqrt(periods_per_year) x 100."""
    return _std(returns) * np.sqrt(periods_per_year) * 100.0 if len(returns) > 1 else np.nan


@njit(cache=True, nogil=True)
def sharpe_ratio(returns: np.ndarray, risk_free_pct: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - rf) / std(r - rf, ddof=1) x sqrt(periods_per_year); rf per bar = annual rf / periods."""
    if len(returns) < 2:
        return np.nan
    excess = returns - risk_free_pct / 100.0 / periods_per_year
    sd = _std(excess)
    return excess.mean() / sd * np.sqrt(periods_per_year) if sd > 0 else np.nan


@njit(cache=True, nogil=True)
def sortino_ratio(returns: np.ndarray, risk_free_pct: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) x sqrt(periods_per_year)."""
    if len(returns) < 2:
        return np.nan
    excess = returns - risk_free_pct / 100.0 / periods_per_year
    downside = np.sqrt((np.minimum(excess, 0.0) ** 2).mean())
    return excess.mean() / downside * np.sqrt(periods_per_year) if downside > 0 else np.nan


@njit(cache=True, nogil=True)
def drawdown_pct(equity: np.ndarray) -> np.ndarray:
    """(E_t / max_{s<=t} E_s - 1) x 100, per bar (<= 0)."""
    dd = np.empty(len(equity))
    peak = -np.inf
    for t in range(len(equity)):
        peak = max(peak, equity[t])
        dd[t] = (equity[t] / peak - 1.0) * 100.0 if peak > 0 else 0.0
    return dd


@njit(cache=True, nogil=True)
def max_drawdown_pct(equity: np.ndarray) -> float:
    """min_t drawdown_pct(E)_t (a negative number, or 0)."""
    return drawdown_pct(equity).min() if len(equity) else np.nan


@njit(cache=True, nogil=True)
def max_drawdown_bars(equity: np.ndarray) -> int:
    """Longest run of consecutive bars below a previous peak: the bars after the peak up to, not including,
    the bar that regains it (an unrecovered drawdown counts to the last bar)."""
    starts, ends = underwater(drawdown_pct(equity))
    return (ends - starts).max() if len(starts) else 0


@njit(cache=True, nogil=True)
def underwater(dd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the drawdown episodes: the runs of bars [start, end) below a previous peak."""
    below = np.append(np.append(0, (dd < 0).astype(np.int64)), 0)
    edges = below[1:] - below[:-1]
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


@njit(cache=True, nogil=True)
def calmar_ratio(cagr: float, max_dd: float) -> float:
    """CAGR / |max drawdown| (both in %); NaN when there was no drawdown."""
    return cagr / abs(max_dd) if max_dd < 0 else np.nan


@njit(cache=True, nogil=True)
def win_rate_pct(trade_returns: np.ndarray) -> float:
    """Share of trades (positions: a position's partial exits are one) with return > 0, x 100."""
    return (trade_returns > 0).sum() / len(trade_returns) * 100.0 if len(trade_returns) else np.nan


@njit(cache=True, nogil=True, fastmath=SUMS)
def profit_factor(pnl: np.ndarray) -> float:
    """sum of winning pnl / |sum of losing pnl| over positions (partial exits summed); inf with wins and no
    losses, NaN with no trades."""
    gains = losses = 0.0
    for p in pnl:  # one pass, no temporaries (a backtest can close 100,000 positions)
        if p > 0.0:
            gains += p
        elif p < 0.0:
            losses -= p
    if losses > 0:
        return gains / losses
    return np.inf if gains > 0 else np.nan


@njit(cache=True, nogil=True, fastmath=SUMS)
def expectancy(pnl: np.ndarray) -> float:
    """Mean pnl per position (its partial exits summed), in currency."""
    return pnl.mean() if len(pnl) else np.nan


@njit(cache=True, nogil=True)
def exposure_pct(n_open: np.ndarray) -> float:
    """Share of bars with at least one open position, x 100."""
    return (n_open > 0).sum() / len(n_open) * 100.0 if len(n_open) else np.nan


def buy_hold_return_pct(close: np.ndarray) -> float:
    """Equal-weight buy and hold of every symbol: mean over symbols of (last close / first close - 1) x 100."""
    valid = ~np.isnan(close)
    enough = valid.sum(axis=0) >= 2
    if not enough.any():
        return float("nan")
    cols = np.flatnonzero(enough)
    first = close[valid.argmax(axis=0)[cols], cols]
    last = close[len(close) - 1 - valid[::-1].argmax(axis=0)[cols], cols]
    return float(np.mean(last / first - 1.0) * 100.0)


def buy_hold_equity(close: np.ndarray, initial_capital: float, skip: np.ndarray | None = None) -> np.ndarray:
    """Equity of equal-weight buy and hold: each symbol gets capital / N at its first close, cash until then.
    `skip` (bars x symbols, bool): bars whose one-day move is left out (flagged splits and outliers: a 2:1
    split is not a halving of the benchmark), each symbol's path continuing from the bar before."""
    n = close.shape[1]
    filled = pd.DataFrame(close).ffill().bfill().to_numpy()
    if skip is not None and skip[1:].any():
        ratio = filled[1:] / filled[:-1]
        ratio[skip[1:]] = 1.0
        filled = filled[0] * np.vstack([np.ones((1, n)), np.cumprod(ratio, axis=0)])
    first = filled[0]
    return initial_capital / n * (filled / first).sum(axis=1)


@njit(cache=True, nogil=True)
def alpha_beta(
    returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR, risk_free_pct: float = 0.0
) -> tuple[float, float]:
    """CAPM on excess bar returns: beta = cov(r - rf, b - rf) / var(b - rf); alpha = (mean(r - rf) - beta
    mean(b - rf)) x periods_per_year x 100 (annualised, simple)."""
    if len(returns) < 3:
        return np.nan, np.nan
    rf = risk_free_pct / 100.0 / periods_per_year
    x, y = bench - rf, returns - rf
    var = _std(x) ** 2
    if not var > 0:
        return np.nan, np.nan
    beta = ((y - y.mean()) * (x - x.mean())).sum() / (len(x) - 1) / var
    return (y.mean() - beta * x.mean()) * periods_per_year * 100.0, beta


@njit(cache=True, nogil=True)
def tracking_error_pct(returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """std(r - b, ddof=1) x sqrt(periods_per_year) x 100."""
    return volatility_pct(returns - bench, periods_per_year)


@njit(cache=True, nogil=True)
def information_ratio(returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - b) / std(r - b, ddof=1) x sqrt(periods_per_year)."""
    return sharpe_ratio(returns - bench, 0.0, periods_per_year)


@njit(cache=True, nogil=True, fastmath=SUMS)
def sqn(trade_returns: np.ndarray) -> float:
    """System quality number (Van Tharp): sqrt(n) x mean(R) / std(R, ddof=1) over trade returns R."""
    if len(trade_returns) < 2:
        return np.nan
    sd = _std(trade_returns)
    return np.sqrt(len(trade_returns)) * trade_returns.mean() / sd if sd > 0 else np.nan


@njit(cache=True, nogil=True)
def omega_ratio(returns: np.ndarray, threshold: float = 0.0) -> float:
    """sum(max(r - threshold, 0)) / sum(max(threshold - r, 0)); inf with no loss, NaN with no returns."""
    gains = np.maximum(returns - threshold, 0.0).sum()
    losses = np.maximum(threshold - returns, 0.0).sum()
    if losses > 0:
        return gains / losses
    return np.inf if gains > 0 else np.nan


@njit(cache=True, nogil=True)
def value_at_risk_pct(returns: np.ndarray, level: float = 0.95) -> float:
    """Historical VaR: the (1 - level) quantile of bar returns x 100 (a loss is negative)."""
    return np.percentile(returns, (1 - level) * 100) * 100.0 if len(returns) else np.nan


@njit(cache=True, nogil=True)
def conditional_var_pct(returns: np.ndarray, level: float = 0.95) -> float:
    """Expected shortfall: the mean of the bar returns at or below the VaR, x 100."""
    if not len(returns):
        return np.nan
    cut = np.percentile(returns, (1 - level) * 100)
    return returns[returns <= cut].mean() * 100.0


@njit(cache=True, nogil=True)
def tail_ratio(returns: np.ndarray) -> float:
    """|95th percentile| / |5th percentile| of bar returns: right tail against left."""
    if not len(returns):
        return np.nan
    low, high = abs(np.percentile(returns, 5.0)), abs(np.percentile(returns, 95.0))
    return high / low if low > 0 else np.nan


@njit(cache=True, nogil=True)
def avg_drawdown_pct(equity: np.ndarray) -> float:
    """Mean depth of the drawdown episodes (each from a peak until it is regained, or the last bar); 0 if none."""
    dd = drawdown_pct(equity)
    starts, ends = underwater(dd)
    if not len(starts):
        return 0.0
    depth = 0.0
    for i in range(len(starts)):
        depth += dd[starts[i] : ends[i]].min()
    return depth / len(starts)


@njit(cache=True, nogil=True)
def streaks(trade_pnl: np.ndarray) -> tuple[int, int]:
    """(longest run of winning trades, longest run of losing trades), trades in exit order; 0 pnl breaks both."""
    best_win = best_loss = run = 0
    prev = 0.0
    for x in trade_pnl:
        p = 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)  # the sign, without a temporary array
        run = run + 1 if p == prev and p != 0 else int(p != 0)
        prev = p
        if p > 0:
            best_win = max(best_win, run)
        elif p < 0:
            best_loss = max(best_loss, run)
    return best_win, best_loss


def compute_metrics(
    equity: np.ndarray,
    dates: pd.DatetimeIndex,
    trades: Mapping[str, np.ndarray],
    n_open: np.ndarray,
    close: np.ndarray,
    risk_free_pct: float = 0.0,
    buy_hold_pct: float | None = None,
    benchmark: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics for one backtest, keyed by the names in LABELS. `trades`: columns pnl (in exit order, for
    the streaks), return_pct and bars_held; benchmark: its equity curve, one value per bar; buy_hold_pct:
    buy_hold_return_pct(close), when the caller has it already."""
    equity = np.asarray(equity, dtype=float)
    r = bar_returns(equity)
    pnl = np.asarray(trades["pnl"], dtype=float)
    has_bench = benchmark is not None and len(benchmark) == len(equity)
    bench = bar_returns(np.asarray(benchmark, dtype=float)) if has_bench else np.empty(0)
    ppy = periods_per_year(dates)
    values = _array_metrics(
        equity,
        r,
        np.asarray(trades["return_pct"], dtype=float),
        pnl,
        np.asarray(trades["bars_held"], dtype=float),
        np.asarray(n_open),
        bench,
        has_bench,
        _years(dates),
        ppy,
        float(risk_free_pct),
    )
    out: dict[str, float] = {}
    for name, value in zip(_ARRAY_METRICS, values.tolist(), strict=True):
        out[name] = int(value) if name in _COUNTS else value
    out.update(
        n_trades=len(pnl),
        periods_per_year=ppy,
        psr_pct=psr_pct(r),
        buy_hold_return_pct=buy_hold_return_pct(close) if buy_hold_pct is None else buy_hold_pct,
    )
    return {name: out[name] for name in LABELS if name in out}  # in the labels' order


_ARRAY_METRICS = (
    "total_return_pct",
    "cagr_pct",
    "volatility_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "max_drawdown_bars",
    "win_rate_pct",
    "profit_factor",
    "expectancy",
    "avg_win_pct",
    "avg_loss_pct",
    "best_trade_pct",
    "worst_trade_pct",
    "avg_bars_held",
    "exposure_pct",
    "final_equity",
    "alpha_pct",
    "beta",
    "information_ratio",
    "tracking_error_pct",
    "sqn",
    "omega",
    "var_95_pct",
    "cvar_95_pct",
    "tail_ratio",
    "avg_drawdown_pct",
    "max_win_streak",
    "max_loss_streak",
)
_COUNTS = ("max_drawdown_bars", "max_win_streak", "max_loss_streak")


@njit(cache=True, nogil=True, fastmath=SUMS)
def _mean_win_loss(trade_returns: np.ndarray) -> tuple[float, float]:
    """(mean of the returns > 0, mean of the returns <= 0), NaN where there are none: one pass."""
    win_sum = loss_sum = 0.0
    wins = losses = 0
    for r in trade_returns:
        if r > 0:
            win_sum += r
            wins += 1
        elif r <= 0:  # NaN is neither
            loss_sum += r
            losses += 1
    return (win_sum / wins if wins else np.nan), (loss_sum / losses if losses else np.nan)


@njit(cache=True, nogil=True)  # no fastmath here: a callee compiled for it (drawdowns) would inherit it
def _array_metrics(equity, r, trade_ret, pnl, bars_held, n_open, bench, has_bench, years, ppy, rf_pct):
    """The metrics named in _ARRAY_METRICS, in that order (bench: the benchmark's bar returns)."""
    cagr = _cagr_pct(equity, years)
    mdd = max_drawdown_pct(equity)
    avg_win, avg_loss = _mean_win_loss(trade_ret)
    alpha = beta = info = te = np.nan
    if has_bench:
        alpha, beta = alpha_beta(r, bench, ppy, rf_pct)
        info, te = information_ratio(r, bench, ppy), tracking_error_pct(r, bench, ppy)
    win_streak, loss_streak = streaks(pnl)
    some = len(trade_ret) > 0
    return np.array(
        [
            total_return_pct(equity),
            cagr,
            volatility_pct(r, ppy),
            sharpe_ratio(r, rf_pct, ppy),
            sortino_ratio(r, rf_pct, ppy),
            calmar_ratio(cagr, mdd),
            mdd,
            float(max_drawdown_bars(equity)),
            win_rate_pct(trade_ret),
            profit_factor(pnl),
            expectancy(pnl),
            avg_win,
            avg_loss,
            trade_ret.max() if some else np.nan,
            trade_ret.min() if some else np.nan,
            bars_held.mean() if some else np.nan,
            exposure_pct(n_open),
            equity[-1] if len(equity) else np.nan,
            alpha,
            beta,
            info,
            te,
            sqn(trade_ret),
            omega_ratio(r),
            value_at_risk_pct(r),
            conditional_var_pct(r),
            tail_ratio(r),
            avg_drawdown_pct(equity),
            float(win_streak),
            float(loss_streak),
        ]
    )


def psr_pct(returns: np.ndarray) -> float:
    """Probabilistic Sharpe ratio x 100: the probability that the true Sharpe is above 0, given the bar
    returns' length, skewness and kurtosis (Bailey and Lopez de Prado 2012; engine/stats.py)."""
    return probabilistic_sharpe(*moments(returns)) * 100.0
