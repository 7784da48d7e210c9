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
