"""weekly(x) and monthly(x) in rules: period bars from each symbol's own daily bars, a period's value known
from the first bar after it ends, equal to TA-Lib on the period bars (an oracle built with pandas here)."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from conftest import bars_market, flat

from engine import BacktestParams, backtest
from engine.errors import RuleError
from engine.optimize import optimize
from engine.rules import evaluate, indicator_series, parse_rule, rule_numbers, scan


def values(market, rule_value: str) -> np.ndarray:
    """A numeric expression's daily values, through the rule language (the value shown for the rule)."""
    _, used = evaluate(market, f"{rule_value} > -1e15")
    return np.asarray(used[rule_value])


def test_a_weeks_value_reaches_the_bars_after_the_week_not_during_it():
    # 2024-01-01 is a Monday: bars 0-4 are week 1, 5-9 week 2, 10-14 week 3.
    closes = [float(100 + i) for i in range(15)]
    m = bars_market({"AAA": [(c, c + 1, c - 1, c) for c in closes]})
    weekly_close = values(m, "weekly(close)")[:, 0]
    assert np.isnan(weekly_close[:5]).all()  # nothing is known during the first week
    assert weekly_close[5:10].tolist() == [104.0] * 5  # week 1's Friday close, all through week 2
    assert weekly_close[10:].tolist() == [109.0] * 5
    high = values(m, "weekly(high)")[:, 0]
    low = values(m, "weekly(low)")[:, 0]
    assert high[7] == 105.0 and low[7] == 99.0  # week 1's highest high and lowest low
    assert values(m, "weekly(open)")[12, 0] == 105.0 and values(m, "weekly(volume)")[12, 0] == 5000.0


def test_a_change_on_the_weeks_last_bar_shows_only_on_the_next_weeks_first_bar():
    base = [float(100 + i) for i in range(15)]
    moved = base.copy()
    moved[9] = 200.0  # week 2's Friday
    a = values(bars_market({"AAA": [(c, c, c, c) for c in base]}), "weekly(sma(2))")[:, 0]
    b = values(bars_market({"AAA": [(c, c, c, c) for c in moved]}), "weekly(sma(2))")[:, 0]
    np.testing.assert_array_equal(a[:10], b[:10])  # through that Friday itself, nothing moved
    assert a[10] == (104.0 + 109.0) / 2 and b[10] == (104.0 + 200.0) / 2


def test_a_week_without_bars_is_skipped_and_the_last_value_carries():
    bars = [(100.0 + i,) * 4 for i in range(15)]
    bars[5:10] = [(None, None, None, None)] * 5  # AAA does not trade in week 2 (BBB does)
    m = bars_market({"AAA": bars, "BBB": flat(15)})
    closes = values(m, "weekly(close)")[:, 0]
    assert closes[10] == 104.0  # week 1's close: week 2 had no AAA bar
    assert np.isnan(values(m, "weekly(sma(2))")[10, 0])  # one AAA week so far: no 2-week average yet


def _oracle(market, symbol: str, freq: str, fn) -> np.ndarray:
    """The TA-Lib value of fn(period bars) for `symbol`, on each daily bar of the market: pandas resamples the
    symbol's own bars, drops empty periods, and each daily bar takes the last period that ended before its."""
    own = market.frame(symbol)
    rule = {"W-FRI": "W-FRI", "M": "ME"}[freq]
    agg = own.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    agg = agg.dropna(subset=["close"])
    value = fn(agg)
    periods = agg.index.to_period(freq).asi8
    daily = market.dates.to_period(freq).asi8
    at = np.searchsorted(periods, daily, side="left") - 1  # the last period strictly before the bar's own
    return np.where(at >= 0, np.asarray(value, float)[np.maximum(at, 0)], np.nan)


@pytest.mark.parametrize("freq, function", [("W-FRI", "weekly"), ("M", "monthly")])
def test_period_indicators_equal_talib_on_the_period_bars(sample, freq, function):
    cases = {
        "sma(10)": lambda a: talib.SMA(a.close.to_numpy(), 10),
        "ema(5)": lambda a: talib.EMA(a.close.to_numpy(), 5),
        "rsi(14)": lambda a: talib.RSI(a.close.to_numpy(), 14),
        "atr(14)": lambda a: talib.ATR(a.high.to_numpy(), a.low.to_numpy(), a.close.to_numpy(), 14),
        "close - open": lambda a: (a.close - a.open).to_numpy(),
    }
    for symbol in sample.symbols[:4]:
        j = sample.column(symbol)
        has_bar = ~np.isnan(sample.close[:, j])
        for text, fn in cases.items():
            ours = values(sample, f"{function}({text})")[:, j][has_bar]
            ref = _oracle(sample, symbol, freq, fn)[has_bar]
            assert np.array_equal(np.isnan(ours), np.isnan(ref)), (symbol, text)
            ok = ~np.isnan(ref)
            np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=1e-9, err_msg=f"{symbol} {text}")


def test_bars_after_t_never_change_a_period_signal_at_t(sample):
    rule = "close > weekly(sma(10)) and monthly(rsi(14)) > 50 and crosses_above(close, weekly(high))"
    whole = scan(sample, rule).matrix
    rng = np.random.default_rng(3)
    for t in rng.integers(50, sample.shape[0] - 50, 4):
        cut = sample.window(0, int(t) + 1)  # the future is gone: a new dataset, rebuilt from scratch
        np.testing.assert_array_equal(scan(cut, rule).matrix, whole[: t + 1])


def test_period_values_work_with_the_rest_of_the_language(sample):
    rule = "crosses_above(close, weekly(sma(10))) and prev(monthly(close)) > 0 rank by weekly(rsi(14))"
    signals = scan(sample, rule)
    assert signals.count > 0 and signals.priority is not None
    assert np.isfinite(signals.priority).mean() > 0.9  # NaN only while the weekly RSI warms up
    assert [n.text for n in rule_numbers(rule)] == ["10", "0", "14"]  # the grid reaches numbers inside
    result = optimize(sample, "close > weekly(sma(10))", BacktestParams(), {"rule.0": [5, 10]}, min_trades=0)
    assert len(result.table) == 2
    assert backtest(sample, signals).metrics["n_trades"] > 0
    shown = indicator_series(sample, "close > weekly(sma(10)) and rsi(14) < 70")
    assert list(shown) == ["weekly(sma(10))", "rsi(14)"]  # the period value as one line, not its daily sma


@pytest.mark.parametrize(
    "rule, message",
    [
        ("weekly(close > 1) > 0", "not a condition"),
        ("weekly(monthly(close)) > 1", "cannot sit inside"),
        ("weekly() > 1", "takes 1 arguments"),
        ("weekly(close, 2) > 1", "takes 1 arguments"),
    ],
)
def test_period_misuse_says_what_to_write(sample, rule, message):
    with pytest.raises(RuleError, match=message):
        parse_rule(rule)
        scan(sample, rule)


def test_period_bars_are_built_once_per_dataset(sample):
    from engine.periods import period_view

    assert period_view(sample, "weekly") is period_view(sample, "weekly")
    weeks = period_view(sample, "weekly").market
    assert weeks.shape[1] == sample.shape[1] and weeks.shape[0] < sample.shape[0] / 4
