"""Performance metrics. Each is one function with its formula; edge cases return NaN (undefined) or 0.

Conventions: `equity` is the per-bar portfolio value; returns are simple bar-to-bar returns; percentages are
in percent units (5.0 means 5%). One annualisation rule for every metric: `periods_per_year(dates)`, the
bars per calendar year of the data (about 252 for US stocks, 365 for crypto), used by CAGR, volatility,
Sharpe and Sortino alike and shown in the metrics table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

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


def periods_per_year(dates: pd.DatetimeIndex) -> float:
    """Bars per calendar year of the data: (bars - 1) / (calendar days spanned / 365.25); PERIODS_PER_YEAR
    when the dates span less than a week."""
    if len(dates) < 2:
        return float(PERIODS_PER_YEAR)
    days = (dates[-1] - dates[0]).days
    return (len(dates) - 1) / (days / 365.25) if days >= 7 else float(PERIODS_PER_YEAR)


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """r_t = E_t / E_{t-1} - 1 for t >= 1 (a bar starting at zero equity has return 0)."""
    e = np.asarray(equity, dtype=float)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, e[1:] / prev - 1.0, 0.0)
    return r


def total_return_pct(equity: np.ndarray) -> float:
    """(E_last / E_first - 1) x 100."""
    return float((equity[-1] / equity[0] - 1.0) * 100.0) if len(equity) and equity[0] > 0 else float("nan")


def cagr_pct(equity: np.ndarray, dates: pd.DatetimeIndex) -> float:
    """((E_last / E_first) ^ (1 / years) - 1) x 100, years = calendar days / 365.25 (the same as
    (bars - 1) / periods_per_year(dates))."""
    if len(equity) < 2 or equity[0] <= 0:
        return float("nan")
    years = (dates[-1] - dates[0]).days / 365.25
    if years <= 0:
        return float("nan")
    return float(((max(equity[-1], 0.0) / equity[0]) ** (1.0 / years) - 1.0) * 100.0)


def volatility_pct(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """std(r, ddof=1) x sqrt(periods_per_year) x 100."""
    return float(np.std(returns, ddof=1) * np.sqrt(periods_per_year) * 100.0) if len(returns) > 1 else float("nan")


def sharpe_ratio(returns: np.ndarray, risk_free_pct: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - rf) / std(r - rf, ddof=1) x sqrt(periods_per_year); rf per bar = annual rf / periods."""
    if len(returns) < 2:
        return float("nan")
    excess = returns - risk_free_pct / 100.0 / periods_per_year
    sd = np.std(excess, ddof=1)
    return float(np.mean(excess) / sd * np.sqrt(periods_per_year)) if sd > 0 else float("nan")


def sortino_ratio(returns: np.ndarray, risk_free_pct: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) x sqrt(periods_per_year)."""
    if len(returns) < 2:
        return float("nan")
    excess = returns - risk_free_pct / 100.0 / periods_per_year
    downside = np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2))
    return float(np.mean(excess) / downside * np.sqrt(periods_per_year)) if downside > 0 else float("nan")


def drawdown_pct(equity: np.ndarray) -> np.ndarray:
    """(E_t / max_{s<=t} E_s - 1) x 100, per bar (<= 0)."""
    e = np.asarray(equity, dtype=float)
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, (e / peak - 1.0) * 100.0, 0.0)


def max_drawdown_pct(equity: np.ndarray) -> float:
    """min_t drawdown_pct(E)_t (a negative number, or 0)."""
    return float(drawdown_pct(equity).min()) if len(equity) else float("nan")


def max_drawdown_bars(equity: np.ndarray) -> int:
    """Longest run of consecutive bars below a previous peak: the bars after the peak up to, not including,
    the bar that regains it (an unrecovered drawdown counts to the last bar)."""
    starts, ends = _underwater(drawdown_pct(equity))
    return int((ends - starts).max()) if len(starts) else 0


def _underwater(dd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the drawdown episodes: the runs of bars [start, end) below a previous peak."""
    edges = np.diff(np.concatenate(([0], (dd < 0).astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def calmar_ratio(cagr: float, max_dd: float) -> float:
    """CAGR / |max drawdown| (both in %); NaN when there was no drawdown."""
    return float(cagr / abs(max_dd)) if max_dd < 0 else float("nan")


def win_rate_pct(trade_returns: np.ndarray) -> float:
    """Share of trades with return > 0, x 100."""
    return float((trade_returns > 0).mean() * 100.0) if len(trade_returns) else float("nan")


def profit_factor(pnl: np.ndarray) -> float:
    """sum of winning pnl / |sum of losing pnl|; inf with wins and no losses, NaN with no trades."""
    gains = pnl[pnl > 0].sum()
    losses = -pnl[pnl < 0].sum()
    if losses > 0:
        return float(gains / losses)
    return float("inf") if gains > 0 else float("nan")


def expectancy(pnl: np.ndarray) -> float:
    """Mean pnl per trade, in currency."""
    return float(pnl.mean()) if len(pnl) else float("nan")


def exposure_pct(n_open: np.ndarray) -> float:
    """Share of bars with at least one open position, x 100."""
    return float((np.asarray(n_open) > 0).mean() * 100.0) if len(n_open) else float("nan")


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


def buy_hold_equity(close: np.ndarray, initial_capital: float) -> np.ndarray:
    """Equity of equal-weight buy and hold: each symbol gets capital / N at its first close, cash until then."""
    n = close.shape[1]
    filled = pd.DataFrame(close).ffill().bfill().to_numpy()
    first = filled[0]
    return initial_capital / n * (filled / first).sum(axis=1)


def alpha_beta(returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR,
               risk_free_pct: float = 0.0) -> tuple[float, float]:  # fmt: skip
    """CAPM on excess bar returns: beta = cov(r - rf, b - rf) / var(b - rf); alpha = (mean(r - rf) - beta
    mean(b - rf)) x periods_per_year x 100 (annualised, simple)."""
    if len(returns) < 3:
        return float("nan"), float("nan")
    rf = risk_free_pct / 100.0 / periods_per_year
    x, y = bench - rf, returns - rf
    var = np.var(x, ddof=1)
    if not var > 0:
        return float("nan"), float("nan")
    beta = float(((y - y.mean()) * (x - x.mean())).sum() / (len(x) - 1) / var)
    return float((y.mean() - beta * x.mean()) * periods_per_year * 100.0), beta


def tracking_error_pct(returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """std(r - b, ddof=1) x sqrt(periods_per_year) x 100."""
    return volatility_pct(returns - bench, periods_per_year)


def information_ratio(returns: np.ndarray, bench: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """mean(r - b) / std(r - b, ddof=1) x sqrt(periods_per_year)."""
    return sharpe_ratio(returns - bench, 0.0, periods_per_year)


def sqn(trade_returns: np.ndarray) -> float:
    """System quality number (Van Tharp): sqrt(n) x mean(R) / std(R, ddof=1) over trade returns R."""
    if len(trade_returns) < 2:
        return float("nan")
    sd = np.std(trade_returns, ddof=1)
    return float(np.sqrt(len(trade_returns)) * np.mean(trade_returns) / sd) if sd > 0 else float("nan")


def omega_ratio(returns: np.ndarray, threshold: float = 0.0) -> float:
    """sum(max(r - threshold, 0)) / sum(max(threshold - r, 0)); inf with no loss, NaN with no returns."""
    gains = np.maximum(returns - threshold, 0.0).sum()
    losses = np.maximum(threshold - returns, 0.0).sum()
    if losses > 0:
        return float(gains / losses)
    return float("inf") if gains > 0 else float("nan")


def value_at_risk_pct(returns: np.ndarray, level: float = 0.95) -> float:
    """Historical VaR: the (1 - level) quantile of bar returns x 100 (a loss is negative)."""
    return float(np.percentile(returns, (1 - level) * 100) * 100.0) if len(returns) else float("nan")


def conditional_var_pct(returns: np.ndarray, level: float = 0.95) -> float:
    """Expected shortfall: the mean of the bar returns at or below the VaR, x 100."""
    if not len(returns):
        return float("nan")
    cut = np.percentile(returns, (1 - level) * 100)
    return float(returns[returns <= cut].mean() * 100.0)


def tail_ratio(returns: np.ndarray) -> float:
    """|95th percentile| / |5th percentile| of bar returns: right tail against left."""
    if not len(returns):
        return float("nan")
    low, high = np.abs(np.percentile(returns, [5, 95]))
    return float(high / low) if low > 0 else float("nan")


def avg_drawdown_pct(equity: np.ndarray) -> float:
    """Mean depth of the drawdown episodes (each from a peak until it is regained, or the last bar); 0 if none."""
    dd = drawdown_pct(equity)
    starts, _ = _underwater(dd)
    if not len(starts):
        return 0.0
    # Each episode's minimum: reduceat over [start, next start), which holds the episode and the
    # (non-negative) bars back at the peak after it.
    return float(np.minimum.reduceat(dd, starts).mean())


def streaks(trade_pnl: np.ndarray) -> tuple[int, int]:
    """(longest run of winning trades, longest run of losing trades), trades in exit order; 0 pnl breaks both."""
    sign = np.sign(np.asarray(trade_pnl, dtype=float))
    if not len(sign):
        return 0, 0
    starts = np.flatnonzero(np.concatenate(([True], sign[1:] != sign[:-1])))
    lengths = np.diff(np.append(starts, len(sign)))
    run_sign = sign[starts]
    longest = [int(lengths[run_sign == want].max(initial=0)) for want in (1.0, -1.0)]
    return longest[0], longest[1]


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
    """All metrics for one backtest, keyed by the names in LABELS. `trades`: columns pnl, return_pct and
    bars_held, in exit order (for the streaks); buy_hold_pct: buy_hold_return_pct(close), when the caller
    has it already."""
    r = bar_returns(equity)
    ppy = periods_per_year(dates)
    cagr = cagr_pct(equity, dates)
    mdd = max_drawdown_pct(equity)
    trade_ret = np.asarray(trades["return_pct"], dtype=float)
    pnl = np.asarray(trades["pnl"], dtype=float)
    bars_held = np.asarray(trades["bars_held"])
    wins, losses = trade_ret[trade_ret > 0], trade_ret[trade_ret <= 0]
    return {
        "total_return_pct": total_return_pct(equity),
        "cagr_pct": cagr,
        "volatility_pct": volatility_pct(r, ppy),
        "sharpe": sharpe_ratio(r, risk_free_pct, ppy),
        "sortino": sortino_ratio(r, risk_free_pct, ppy),
        "calmar": calmar_ratio(cagr, mdd),
        "max_drawdown_pct": mdd,
        "max_drawdown_bars": max_drawdown_bars(equity),
        "n_trades": len(pnl),
        "win_rate_pct": win_rate_pct(trade_ret),
        "profit_factor": profit_factor(pnl),
        "expectancy": expectancy(pnl),
        "avg_win_pct": float(wins.mean()) if len(wins) else float("nan"),
        "avg_loss_pct": float(losses.mean()) if len(losses) else float("nan"),
        "best_trade_pct": float(trade_ret.max()) if len(trade_ret) else float("nan"),
        "worst_trade_pct": float(trade_ret.min()) if len(trade_ret) else float("nan"),
        "avg_bars_held": float(bars_held.mean()) if len(bars_held) else float("nan"),
        "exposure_pct": exposure_pct(n_open),
        "buy_hold_return_pct": buy_hold_return_pct(close) if buy_hold_pct is None else buy_hold_pct,
        "final_equity": float(equity[-1]) if len(equity) else float("nan"),
        "periods_per_year": ppy,
        **_extended(r, equity, trade_ret, pnl, ppy, risk_free_pct, benchmark),
    }


def _extended(r, equity, trade_ret, pnl, ppy, risk_free_pct, benchmark) -> dict[str, float]:
    """The benchmark-relative, tail and trade-sequence metrics (benchmark: its equity curve, one per bar)."""
    bench = bar_returns(benchmark) if benchmark is not None and len(benchmark) == len(equity) else None
    alpha, beta = alpha_beta(r, bench, ppy, risk_free_pct) if bench is not None else (float("nan"),) * 2
    wins, losses = streaks(pnl)
    return {
        "alpha_pct": alpha,
        "beta": beta,
        "information_ratio": information_ratio(r, bench, ppy) if bench is not None else float("nan"),
        "tracking_error_pct": tracking_error_pct(r, bench, ppy) if bench is not None else float("nan"),
        "sqn": sqn(trade_ret),
        "omega": omega_ratio(r),
        "var_95_pct": value_at_risk_pct(r),
        "cvar_95_pct": conditional_var_pct(r),
        "tail_ratio": tail_ratio(r),
        "avg_drawdown_pct": avg_drawdown_pct(equity),
        "max_win_streak": wins,
        "max_loss_streak": losses,
        "psr_pct": psr_pct(r),
    }


def psr_pct(returns: np.ndarray) -> float:
    """Probabilistic Sharpe ratio x 100: the probability that the true Sharpe is above 0, given the bar
    returns' length, skewness and kurtosis (Bailey and Lopez de Prado 2012; engine/robustness.py)."""
    from .robustness import moments, probabilistic_sharpe

    return probabilistic_sharpe(*moments(returns)) * 100.0
