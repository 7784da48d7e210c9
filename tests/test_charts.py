"""Chart behaviour a user relies on (figures are plain Plotly objects, so this reads their layout)."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.data import market_from_frame
from engine.plots import charts
from tests.conftest import bars_market, flat


def test_a_trade_chart_opens_on_the_trade_with_context_around_it():
    prices = flat(100, 50.0)
    prices[60] = (50.0, 80.0, 20.0, 50.0)  # far outside the view: must not set its price scale
    prices[10] = (50.0, 56.0, 45.0, 55.0)
    m = bars_market({"AAA": prices})
    dates = m.dates
    fig = charts.candles(m, "AAA", focus=(dates[10], dates[14]))
    first, last = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert first == dates[0] and last == dates[14 + 20]  # 20 bars of context (clipped at the start)
    assert fig.layout.yaxis.range == pytest.approx((45.0 - 0.55, 56.0 + 0.55))
    assert charts.candles(m, "AAA").layout.xaxis.range is None  # without a focus: everything


def test_a_focus_on_a_symbol_without_volume_still_draws():
    rows = pd.DataFrame(
        {
            "symbol": "AAA",
            "date": pd.bdate_range("2024-01-01", periods=30),
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.0,
            "volume": 0.0,
        }
    )
    m = market_from_frame(rows)
    fig = charts.candles(m, "AAA", focus=(m.dates[5], m.dates[6]))
    assert fig.layout.yaxis2.range == (0, 1.0)


def test_candles_skip_weekends_only_where_the_data_has_none():
    weekdays = bars_market({"AAA": flat(10)})  # business days
    assert charts.candles(weekdays, "AAA").layout.xaxis.rangebreaks[0].bounds == ("sat", "mon")
    rows = pd.DataFrame(
        {
            "symbol": "BTC",
            "date": pd.date_range("2024-01-01", periods=10),
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.0,
            "volume": 5.0,
        }
    )
    assert not charts.candles(market_from_frame(rows), "BTC").layout.xaxis.rangebreaks  # crypto trades every day


def test_moving_averages_go_on_the_price_panel_and_oscillators_below(sample):
    from engine.rules import indicator_series

    j = sample.column("AAPL")  # 13 to 195 over the sample: RSI's 10-90 is on the same scale
    values = indicator_series(sample, "rsi(14) < 30 and close > sma(200) and atr(14) > 0 and bb_upper(20) > 0")
    on_price = {label: charts.moves_with_price(v[:, j], sample.close[:, j]) for label, v in values.items()}
    assert on_price == {"rsi(14)": False, "sma(200)": True, "atr(14)": False, "bb_upper(20)": True}


def test_every_skip_reason_reads_as_words():
    from engine._records import RULE_NAMES
    from engine.plots.format import SKIP_WORDS, skip_reasons

    assert set(SKIP_WORDS) == set(RULE_NAMES)  # a new rule code needs its words
    text = skip_reasons({"cash skip": 74, "size_zero skip": 1254, "max_position_pct cut": 3})
    assert text == "not enough cash (74), sized to zero shares (1,254), position size limit: size cut (3)"


def test_a_baseline_and_the_strategy_share_a_readable_scale_and_a_relative_view_shows_a_small_lead(sample):
    import numpy as np

    from engine import backtest, scan

    signals = scan(sample, "rsi(14) < 30")
    base, now = backtest(sample, signals, stop_loss=5), backtest(sample, signals, stop_loss=6)
    plain = charts.equity(now.equity, baseline=base.equity.equity, show_benchmark=False)
    assert [t.name for t in plain.data] == ["Baseline", "Strategy", "Drawdown %"]
    ticks = plain.layout.yaxis.ticktext
    assert len(ticks) >= 3 and all(t[-1] in "kMB" or t.replace(".", "").isdigit() and len(t) >= 3 for t in ticks)
    lead = charts.equity(now.equity, baseline=base.equity.equity, relative=True)
    expected = (now.equity.equity / base.equity.equity - 1) * 100
    assert lead.data[0].name == "Strategy against baseline %"
    np.testing.assert_allclose(lead.data[0].y, expected.to_numpy())
    with_bench = charts.equity(now.equity)
    assert [t.name for t in with_bench.data][:2] == ["Strategy", "Buy & hold (equal weight)"]


def test_log_ticks_are_labelled_in_full_at_one_two_five_steps_or_evenly_when_narrow():
    import numpy as np

    assert charts.log_ticks(np.array([100_000, 3_250_000]))[1] == ["100k", "200k", "500k", "1M", "2M"]
    assert charts.log_ticks(np.array([90_000, 141_000]))[1][:3] == ["90k", "100k", "110k"]
    assert charts.log_ticks(np.array([99_000, 101_500]))[1] == ["99k", "99.5k", "100k", "100.5k", "101k", "101.5k"]


def test_the_symbol_story_draws_every_indicator_of_the_rule_with_its_level_and_opens_on_the_last_year(sample):
    from engine import backtest, scan
    from engine.rules import indicator_series

    rule = "rsi(14) < 30 and close > sma(200)"
    result = backtest(sample, scan(sample, rule), stop_loss=5)
    values = indicator_series(sample, rule)
    fig = charts.symbol_story(sample, "NFLX", result.positions, result.equity, values, 5, None, rule=rule)
    axis_of = {t.name: t.yaxis for t in fig.data}
    assert axis_of["sma(200)"] == "y" and axis_of["NFLX"] == "y"  # on the price (NFLX: corr 0.8998 was dropped)
    assert axis_of["rsi(14)"] == "y2" and axis_of["equity"] == "y3"  # the oscillator in a panel of its own
    assert [(s.y0, s.yref) for s in fig.layout.shapes if s.type == "line"] == [(30.0, "y2")]  # with its level
    start, end = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert end == sample.dates[-1] and (end - start).days == 365
    assert fig.layout.legend.y < 0  # under the chart, clear of the toolbar
    plain = charts.symbol_story(sample, "NFLX", result.positions, result.equity, {"sma(200)": values["sma(200)"]})
    assert {t.yaxis for t in plain.data} == {"y", "y2"}  # no oscillator: price and equity only
    assert charts.compared_levels("rsi(14) < 30 and 70 > rsi(14) and close > -5") == {
        "rsi(14)": [30.0, 70.0],
        "close": [-5.0],
    }
