"""The tear sheet's return tables, hand-computed, and its equity metrics against the backtest's own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine import backtest, load_sample, scan
from engine.plots.report import tear_sheet
from engine.returns import drawdown_periods, equity_metrics, period_returns, yearly_returns


def test_drawdowns_run_from_a_peak_to_its_recovery_deepest_first():
    dates = pd.date_range("2024-01-01", periods=9, freq="D")
    equity = pd.Series([100, 110, 99, 88, 110, 120, 108, 114, 115.0], index=dates)
    table = drawdown_periods(equity)
    assert table.depth_pct.tolist() == pytest.approx([-20.0, -10.0])
    first = table.iloc[0]
    assert (first.start, first.valley, first.recovery, first.days) == (dates[1], dates[3], dates[4], 3)
    second = table.iloc[1]  # from 120, not recovered by the end
    assert (second.start, second.valley) == (dates[5], dates[6]) and pd.isna(second.recovery) and second.days == 3
    assert len(drawdown_periods(equity, n=1)) == 1


def test_yearly_and_period_returns():
    dates = pd.bdate_range("2020-01-01", "2023-06-30")
    equity = pd.Series(np.linspace(100, 200, len(dates)), index=dates)
    flat = pd.Series(100.0, index=dates)
    years = yearly_returns(equity, flat)
    first_year = equity[equity.index.year == 2020].iloc[-1] / 100 - 1
    assert years.loc[2020, "strategy"] == pytest.approx(first_year * 100)
    second = equity[equity.index.year == 2021].iloc[-1] / equity[equity.index.year == 2020].iloc[-1] - 1
    assert years.loc[2021, "strategy"] == pytest.approx(second * 100) and (years.benchmark == 0).all()
    periods = period_returns(equity, flat)
    ytd = equity.iloc[-1] / equity[equity.index < "2023-01-01"].iloc[-1] - 1
    assert periods.loc["YTD", "strategy"] == pytest.approx(ytd * 100)
    three_years = equity[equity.index >= equity.index[equity.index < "2020-06-30"][-1]]
    years_span = (three_years.index[-1] - three_years.index[0]).days / 365.25
    cagr = (three_years.iloc[-1] / three_years.iloc[0]) ** (1 / years_span) - 1
    assert periods.loc["3Y (ann.)", "strategy"] == pytest.approx(cagr * 100)
    assert math.isnan(periods.loc["5Y (ann.)", "strategy"])  # 3.5 years of history
    assert periods.loc["All (ann.)", "benchmark"] == 0


def test_the_equity_metrics_agree_with_the_backtests_and_the_tear_sheet_has_every_section():
    market = load_sample()
    result = backtest(market, scan(market, "rsi(14) < 30"), risk_free_pct=0.0)
    ours = equity_metrics(result.equity.equity)
    for key in ("total_return_pct", "cagr_pct", "sharpe", "sortino", "max_drawdown_pct", "volatility_pct"):
        assert ours[key] == pytest.approx(result.metrics[key], rel=1e-6), key
    sheet = tear_sheet(market, "rsi(14) < 30", result)
    for section in ("Strategy and benchmark", "Returns over periods", "End-of-year returns", "Worst 5 drawdowns"):
        assert f"<h2>{section}</h2>" in sheet
    assert "<h2>Dataset and rule</h2>" in sheet and "<h2>Robustness</h2>" in sheet


def test_the_tear_sheet_lists_the_best_and_worst_20_trades_in_words_and_points_to_the_csv():
    market = load_sample()
    result = backtest(market, scan(market, "rsi(14) < 40"), stop_loss=4)
    assert len(result.trades) > 40
    sheet = tear_sheet(market, "rsi(14) < 40", result)
    assert f"The best and the worst 20 of {len(result.trades):,} trades by profit" in sheet and "--trades-csv" in sheet
    best = f"{result.trades.pnl.max():,.2f}"
    worst = f"{result.trades.pnl.min():,.2f}"
    section = sheet[sheet.index("<h3>Best 20</h3>") :]
    assert best in section and worst in section and section.count("<tr>") == 2 * 20  # two tables of 20 rows
    assert "exit_reason" not in section and "exit reason" in section  # headed in words


def test_the_tear_sheets_plotly_bundle_is_the_version_plotly_py_writes_figures_for():
    import gzip

    from plotly.offline import get_plotlyjs_version

    from engine.plots.report import PLOTLY_JS

    head = gzip.decompress(PLOTLY_JS.read_bytes())[:200].decode()
    assert f"v{get_plotlyjs_version()}" in head, head  # update vendor/ with plotly (vendor/SOURCE.md)
