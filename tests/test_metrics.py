"""Each metric against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import metrics as mt
from engine import stats

EQ = np.array([100.0, 110.0, 99.0, 120.0])


def test_returns_total_and_cagr():
    np.testing.assert_allclose(mt.bar_returns(EQ), [0.1, -0.1, 120 / 99 - 1])
    assert mt.total_return_pct(EQ) == pytest.approx(20.0)
    dates = pd.DatetimeIndex(["2020-01-01", "2021-01-01", "2022-01-01", "2022-12-31"])
    years = (dates[-1] - dates[0]).days / 365.25
    assert mt.cagr_pct(EQ, dates) == pytest.approx((1.2 ** (1 / years) - 1) * 100)


def test_sharpe_sortino_volatility():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    sd = np.std(r, ddof=1)
    assert mt.volatility_pct(r) == pytest.approx(sd * math.sqrt(252) * 100)
    assert mt.sharpe_ratio(r) == pytest.approx(r.mean() / sd * math.sqrt(252))
    rf = 2.52  # % a year -> 0.0001 a bar
    assert mt.sharpe_ratio(r, rf) == pytest.approx((r.mean() - 0.0001) / sd * math.sqrt(252))
    downside = math.sqrt((0.02**2) / 4)
    assert mt.sortino_ratio(r) == pytest.approx(r.mean() / downside * math.sqrt(252))
    assert math.isnan(mt.sharpe_ratio(np.zeros(5)))


def test_drawdown_depth_duration_and_calmar():
    eq = np.array([100, 120, 90, 100, 130, 125, 126.0])
    np.testing.assert_allclose(mt.drawdown_pct(eq), [0, 0, -25, -100 / 6, 0, -100 / 26, -400 / 130])
    assert mt.max_drawdown_pct(eq) == pytest.approx(-25.0)
    assert mt.max_drawdown_bars(eq) == 2
    assert mt.max_drawdown_bars(np.array([1.0, 2, 3])) == 0
    assert mt.calmar_ratio(10.0, -25.0) == pytest.approx(0.4)
    assert math.isnan(mt.calmar_ratio(10.0, 0.0))


def test_trade_statistics():
    pnl = np.array([100.0, -50.0, 30.0, -20.0])
    assert mt.win_rate_pct(pnl) == 50.0
    assert mt.profit_factor(pnl) == pytest.approx(130 / 70)
    assert mt.profit_factor(np.array([5.0])) == math.inf
    assert math.isnan(mt.profit_factor(np.array([])))
    assert mt.expectancy(pnl) == pytest.approx(15.0)
    assert mt.exposure_pct(np.array([0, 1, 2, 0])) == 50.0


def test_buy_and_hold():
    close = np.array([[10.0, np.nan], [11.0, 20.0], [12.0, 30.0]])
    assert mt.buy_hold_return_pct(close) == pytest.approx((0.2 + 0.5) / 2 * 100)
    eq = mt.buy_hold_equity(close, 1000.0)
    assert eq[-1] == pytest.approx(500 * 1.2 + 500 * 1.5)


def test_one_annualisation_rule_inferred_from_the_dates():
    from engine.metrics import periods_per_year

    weekdays = pd.bdate_range("2020-01-01", "2022-12-31")
    every_day = pd.date_range("2020-01-01", "2022-12-31")
    assert periods_per_year(weekdays) == pytest.approx(261, abs=1)
    assert periods_per_year(every_day) == pytest.approx(365.25, abs=0.5)
    assert periods_per_year(every_day[:3]) == 252.0  # under a week: too short to infer
    r = np.array([0.01, -0.02, 0.015, 0.0, 0.005])
    assert mt.sharpe_ratio(r, 0.0, 365.25) == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(365.25))


def test_cagr_is_the_same_with_calendar_years_or_bars_per_year():
    from engine.metrics import periods_per_year

    dates = pd.bdate_range("2020-01-01", periods=600)
    equity = np.linspace(100, 150, 600)
    years = (len(dates) - 1) / periods_per_year(dates)
    assert mt.cagr_pct(equity, dates) == pytest.approx(((150 / 100) ** (1 / years) - 1) * 100)


def test_benchmark_tail_and_streak_metrics_by_hand():
    r = np.array([0.02, -0.01, 0.03, -0.02, 0.01])
    b = np.array([0.01, -0.02, 0.02, 0.0, 0.01])
    beta = np.cov(r, b, ddof=1)[0, 1] / np.var(b, ddof=1)
    alpha, got_beta = mt.alpha_beta(r, b, 252)
    assert got_beta == pytest.approx(beta) and alpha == pytest.approx((r.mean() - beta * b.mean()) * 252 * 100)
    d = r - b  # 0.01, 0.01, 0.01, -0.02, 0
    assert mt.tracking_error_pct(r, b, 252) == pytest.approx(np.std(d, ddof=1) * np.sqrt(252) * 100)
    assert mt.information_ratio(r, b, 252) == pytest.approx(d.mean() / np.std(d, ddof=1) * np.sqrt(252))
    assert mt.omega_ratio(r) == pytest.approx(0.06 / 0.03)
    assert mt.sqn(np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(3) * 2 / 1)
    x = np.arange(1, 101) / 1000 - 0.05  # -0.049 .. 0.05
    assert mt.value_at_risk_pct(x) == pytest.approx(np.percentile(x, 5) * 100)
    assert mt.conditional_var_pct(x) == pytest.approx(x[x <= np.percentile(x, 5)].mean() * 100)
    assert mt.tail_ratio(x) == pytest.approx(abs(np.percentile(x, 95)) / abs(np.percentile(x, 5)))
    # two drawdowns: 100 -> 90 (-10%), regained, then 120 -> 108 (-10%) -> 96 (-20%), not regained
    equity = np.array([100, 90, 100, 120, 108, 96.0])
    assert mt.avg_drawdown_pct(equity) == pytest.approx((-10 - 20) / 2)
    assert mt.max_drawdown_bars(equity) == 2
    assert mt.streaks(np.array([1, 2, -1, -1, -1, 0, 3, -2])) == (2, 3)


def test_backtest_metrics_against_a_benchmark_symbol(sample):
    from engine import backtest
    from engine.rules import scan

    r = backtest(sample, scan(sample, "rsi(14) < 30"), benchmark="AAPL")
    aapl = sample.frame("AAPL").close
    assert r.equity["buy_hold_equity"].iloc[-1] == pytest.approx(100_000 * aapl.iloc[-1] / aapl.iloc[0])
    assert np.isfinite(r.metrics["beta"]) and np.isfinite(r.metrics["alpha_pct"])
    with pytest.raises(mt_error(), match="Benchmark: Unknown symbol 'ZZZ'"):
        backtest(sample, scan(sample, "rsi(14) < 30"), benchmark="ZZZ")


def mt_error():
    from engine import DataError

    return DataError


def test_every_backtest_has_its_probabilistic_sharpe(sample):
    from engine import backtest
    from engine.rules import scan

    r = backtest(sample, scan(sample, "rsi(14) < 30"))
    returns = mt.bar_returns(r.equity["equity"].to_numpy())
    sr, skew, kurt, n = stats.moments(returns)
    assert r.metrics["psr_pct"] == pytest.approx(stats.probabilistic_sharpe(sr, skew, kurt, n) * 100)
    assert 0 <= r.metrics["psr_pct"] <= 100


def _streaks_by_loop(pnl):
    best, run, prev = {1: 0, -1: 0}, 0, 0
    for p in np.sign(pnl):
        run = run + 1 if p == prev and p != 0 else int(p != 0)
        prev = p
        if p:
            best[int(p)] = max(best[int(p)], run)
    return best[1], best[-1]


def _avg_drawdown_by_loop(equity):
    dd, depths, depth = mt.drawdown_pct(equity), [], None
    for x in dd:
        if x < 0:
            depth = x if depth is None else min(depth, x)
        elif depth is not None:
            depths.append(depth)
            depth = None
    depths += [] if depth is None else [depth]
    return float(np.mean(depths)) if depths else 0.0


@given(st.lists(st.integers(-2, 2), max_size=60))
def test_streaks_equal_a_plain_loop(pnl):
    assert mt.streaks(np.array(pnl, float)) == _streaks_by_loop(pnl)


@given(st.lists(st.floats(50, 150), min_size=1, max_size=60))
def test_avg_drawdown_equals_a_plain_loop(equity):
    equity = np.array(equity)
    assert mt.avg_drawdown_pct(equity) == pytest.approx(_avg_drawdown_by_loop(equity))


# --- named edge cases and invariances, as empyrical's tests have them ------------------------------------

EMPTY = np.array([], float)
ONE_BAR = np.array([0.01])
FLAT = np.zeros(250)
MIXED = np.array([0.01, -0.02, 0.015, 0.0, -0.005, 0.03, -0.01, 0.02, -0.015, 0.005] * 25)


def equity_of(returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    return start * np.concatenate([[1.0], np.cumprod(1 + returns)])


@pytest.mark.parametrize("returns", [EMPTY, ONE_BAR, FLAT], ids=["empty", "one bar", "flat"])
def test_ratios_are_undefined_not_infinite_on_degenerate_returns(returns):
    """No spread: Sharpe, Sortino and volatility-scaled figures are NaN (n/a), never inf or a crash."""
    assert np.isnan(mt.sharpe_ratio(returns))
    assert np.isnan(mt.sortino_ratio(returns))
    vol = mt.volatility_pct(returns)
    assert np.isnan(vol) or vol == 0.0


@pytest.mark.parametrize("returns", [EMPTY, ONE_BAR, FLAT, MIXED], ids=["empty", "one bar", "flat", "mixed"])
def test_drawdown_is_never_positive_and_zero_without_a_loss(returns):
    equity = equity_of(returns)
    dd = mt.drawdown_pct(equity)
    assert (dd <= 0).all()
    if (returns >= 0).all():
        assert mt.max_drawdown_pct(equity) == 0.0 and mt.max_drawdown_bars(equity) == 0


def test_sharpe_of_the_mixed_series_by_hand():
    expected = MIXED.mean() / MIXED.std(ddof=1) * np.sqrt(252)
    assert mt.sharpe_ratio(MIXED) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shift", [0.0005, 0.001, 0.002])
def test_adding_a_constant_return_raises_the_sharpe_by_its_share_of_the_spread(shift):
    """Sharpe shift invariance: r + c has the same spread, so Sharpe rises by c / sd * sqrt(periods)."""
    moved = mt.sharpe_ratio(MIXED + shift) - mt.sharpe_ratio(MIXED)
    assert moved == pytest.approx(shift / MIXED.std(ddof=1) * np.sqrt(252), rel=1e-9)


@pytest.mark.parametrize("scale", [0.5, 2.0, 10.0])
def test_the_sharpe_does_not_depend_on_the_size_of_the_bets(scale):
    """Scaling every return scales mean and spread alike."""
    assert mt.sharpe_ratio(MIXED * scale) == pytest.approx(mt.sharpe_ratio(MIXED), rel=1e-9)


@pytest.mark.parametrize("start", [1.0, 100.0, 1e6])
def test_drawdown_and_returns_do_not_depend_on_the_starting_capital(start):
    """Drawdown shift invariance: the same returns from any capital give the same drawdown path."""
    base, other = equity_of(MIXED), equity_of(MIXED, start)
    np.testing.assert_allclose(mt.drawdown_pct(other), mt.drawdown_pct(base), rtol=1e-12, atol=1e-12)
    assert mt.total_return_pct(other) == pytest.approx(mt.total_return_pct(base), rel=1e-12)


def test_a_later_deeper_loss_moves_the_max_drawdown_and_nothing_before_it():
    equity = equity_of(MIXED)
    deeper = equity.copy()
    deeper[-1] = equity.max() * 0.5  # a 50% fall from the peak on the last bar
    assert mt.max_drawdown_pct(deeper) == pytest.approx(-50.0)
    np.testing.assert_array_equal(mt.drawdown_pct(deeper)[:-1], mt.drawdown_pct(equity)[:-1])
