"""Each metric against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine import metrics as mt

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
