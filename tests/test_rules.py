"""The rule language: each operator on hand-made data, presets, and hostile input."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

from engine import synthetic_market
from engine.rules import PRESETS, Condition, RuleError, conditions_to_rule, parse_rule, scan
from tests.conftest import bars_market


@pytest.fixture(scope="module")
def tiny():
    closes = [10, 11, 12, 11, 10, 13, 14]
    return bars_market({"AAA": [(c, c + 1, c - 1, c) for c in closes], "BBB": [(5, 6, 4, 5)] * 7})


def hits(market, rule, sym="AAA"):
    return np.flatnonzero(scan(market, rule).matrix[:, market.column(sym)]).tolist()


def test_comparisons_arithmetic_and_boolean_operators(tiny):
    assert hits(tiny, "close > 11") == [2, 5, 6]
    assert hits(tiny, "close >= 11 and close < 13") == [1, 2, 3]
    assert hits(tiny, "close < 11 or close > 13") == [0, 4, 6]
    assert hits(tiny, "not close > 11") == [0, 1, 3, 4]
    assert hits(tiny, "close * 2 - 1 == 21") == [1, 3]
    assert hits(tiny, "(close + 1) / 2 >= 7") == [5, 6]
    assert hits(tiny, "10 < close < 13") == [1, 2, 3]
    assert hits(tiny, "close ** 2 > 150") == [5, 6]
    assert hits(tiny, "-close < -13") == [6]
    assert hits(tiny, "CLOSE > 11 AND close < 14".replace("CLOSE", "close")) == [2, 5]


def test_between_prev_abs_min_max(tiny):
    assert hits(tiny, "between(close, 11, 12)") == [1, 2, 3]
    assert hits(tiny, "close > prev(close)") == [1, 2, 5, 6]
    assert hits(tiny, "close < prev(close, 2)") == [4]
    assert hits(tiny, "abs(close - prev(close)) >= 3") == [5]
    assert hits(tiny, "max(close, 12) == 12") == [0, 1, 2, 3, 4]
    assert hits(tiny, "min(close, 11) == 11") == [1, 2, 3, 5, 6]


def test_crosses(tiny):
    assert hits(tiny, "crosses_above(close, 11.5)") == [2, 5]
    assert hits(tiny, "crosses_below(close, 11.5)") == [3]
    assert hits(tiny, "crosses_above(close, sma(2))") == [5]


def test_indicator_values_are_reported_with_hits(tiny):
    s = scan(tiny, "close > sma(3)")
    table = s.table(tiny)
    assert list(table.columns) == ["date", "symbol", "close", "sma(3)"]
    row = table[table.date == tiny.dates[5]].iloc[0]
    assert row["sma(3)"] == pytest.approx((11 + 10 + 13) / 3)


def test_rank_by_sets_priority(tiny):
    s = scan(tiny, "close > 0 rank by close asc")
    first = s.table(tiny).sort_values(["date", "symbol"]).iloc[:2]
    assert first.rank_score.tolist() == [-10.0, -5.0] and first.symbol.tolist() == ["AAA", "BBB"]
    s = scan(tiny, "close > 0", rank_by="close")
    assert s.priority[tiny.column("BBB")] == 5.0  # the hits of bar 0 come first, by symbol
    assert s.priority.shape == (s.count,)  # one number per hit, not a dense array


def test_the_newest_hits_table_is_the_tail_of_the_full_table(tiny):
    s = scan(tiny, "close > 4 and sma(2) > 0 rank by close")
    full = s.table(tiny)
    for limit in (1, 2, 3, len(full), len(full) + 5):
        pd.testing.assert_frame_equal(s.table(tiny, limit), full.head(limit))


def test_structured_conditions_compile_to_the_same_rule(tiny):
    conds = [Condition("close", ">", "11"), Condition("close", "crosses_above", "sma(2)")]
    text = conditions_to_rule(conds, "or")
    assert text == "(close > 11) or crosses_above(close, sma(2))"
    np.testing.assert_array_equal(
        scan(tiny, text).matrix, scan(tiny, "close > 11 or crosses_above(close, sma(2))").matrix
    )
    with pytest.raises(RuleError):
        conditions_to_rule([Condition("close", "~", "1")])


def test_no_signal_on_a_missing_bar():
    m = bars_market({"AAA": [(1, 1, 1, 1), (None,) * 4, (1, 1, 1, 1)], "BBB": [(1, 1, 1, 1)] * 3})
    assert scan(m, "close > 0").matrix[:, 0].tolist() == [True, False, True]


def _rising_then_falling():
    up = [100 + i for i in range(260)]
    return bars_market({"AAA": [(c, c + 0.5, c - 0.5, c) for c in up]})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_compiles_and_runs(sample, name):
    s = scan(sample, PRESETS[name])
    assert s.matrix.shape == sample.shape and s.count > 0


def test_golden_cross_fires_exactly_when_the_fast_average_crosses():
    closes = [10.0] * 5 + [20.0] * 5
    m = bars_market({"AAA": [(c, c, c, c) for c in closes]})
    assert np.flatnonzero(scan(m, "crosses_above(sma(2), sma(4))").matrix[:, 0]).tolist() == [5]


def test_gap_up_and_volume_surge_presets_on_hand_made_data():
    bars = [(10, 10, 10, 10)] * 25 + [(11, 11.5, 10.9, 11.2)]
    m = bars_market({"AAA": bars})
    assert np.flatnonzero(scan(m, PRESETS["Gap up"]).matrix[:, 0]).tolist() == [25]
    m2 = _rising_then_falling()
    assert scan(m2, PRESETS["52-week-high breakout"]).matrix[252:, 0].all()


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('echo hi')", "Only plain function calls"),
        ("__import__('os')", "Unknown function '__import__'"),
        ("close.__class__", "not allowed"),
        ("(lambda: 1)()", "Only plain function calls"),
        ("(lambda: 1) > 0", "not allowed"),
        ("open('/etc/passwd')", "Unknown function .open."),
        ("2 ** 99999999 > 1", "Exponents"),
        ("(" * 200 + "1" + ")" * 200, "nests brackets"),
        ("close > 1 and " * 10_000, "characters long"),
        ("sma(50) >", "Syntax error"),
        ("rsi(14, 3) < 30", "at most 1 arguments"),
        ("sma(-5) > 1", "positive whole number"),
        ("sma(2.5) > 1", "positive whole number"),
        ("sma(n=5) > 1", "positional arguments only"),
        ("foo(3) > 1", "Unknown function 'foo'"),
        ("price_x > 1", "Unknown name 'price_x'"),
        ("rsi > 30", "rsi is a function"),
        ("close > 'a'", "Text compares with ==, !=, in or not in"),
        ("close == 'a'", "Text in quotes compares with a text column"),
        ("rsi('a') < 3", "must be a positive whole number"),
        ("close + 1", "must be a condition"),
        ("[c for c in close]", "not allowed"),
        ("", "empty"),
        ("close > 1; import os", "Syntax error"),
    ],
)
def test_hostile_or_broken_rules_are_rejected_before_anything_runs(tiny, text, message):
    with pytest.raises(RuleError, match=message):
        scan(tiny, text)


def test_errors_point_at_the_token_and_list_whats_available():
    with pytest.raises(RuleError) as err:
        parse_rule("close > smaa(50)")
    text = str(err.value)
    assert "column 9" in text and "^" in text and "sma" in text and "crosses_above" in text


@pytest.mark.parametrize(
    "rule, message",
    [
        ("close > 1 rank by a" + " " * 40_000 + "b", "40,020 characters long; the limit is 2,000"),
        ("close > 1 rank by a" + " " * 1_900 + "b", "Syntax error"),
        ("close > 99999999999999999999999", "only ordinary numbers"),
        ("not " * 450 + "close > 1", "nests operators 454 deep"),
        ("-" * 1900 + "1 < close", "nests operators"),
        (" and ".join(f"sma({n}) > 0" for n in range(2, 62)), "60 different indicators"),
    ],
)
def test_hostile_rules_are_refused_quickly_with_a_message(sample, rule, message):
    start = time.perf_counter()
    with pytest.raises(RuleError, match=message):
        scan(sample, rule)
    assert time.perf_counter() - start < 5  # milliseconds here; the bound only catches a quadratic regression


def test_a_rules_indicator_memory_is_budgeted_before_computing(monkeypatch):
    market = synthetic_market(200, 1000, seed=2)
    monkeypatch.setenv("SCANNER_RULE_MB", "5")  # 200 x 1,000 x 8 bytes = 1.6 MB per array
    with pytest.raises(RuleError, match=r"need about \d+ MB on this dataset.*5 MB \(SCANNER_RULE_MB\)"):
        scan(market, "sma(10) > sma(20) and rsi(14) < 30")


@pytest.mark.parametrize(
    "rule, hint",
    [
        ("close = high", "write =="),
        ("sma(50) crosses above sma(200)", "crosses_above(a, b)"),
        ("rsi(14) < 30 & close > 5", "combine conditions with and, or, not"),
        ("rsi(14) < 30 | close > 5", "combine conditions with and, or, not"),
        ("rsi(14) < 30 && close > 5", "Combine conditions with and, or, not"),
        ("rsi(14) < 30 || close > 5", "Combine conditions with and, or, not"),
    ],
)
def test_common_slips_get_a_hint_that_says_what_to_write(rule, hint):
    with pytest.raises(RuleError, match=re.escape(hint)):
        parse_rule(rule)


def test_names_are_case_insensitive(sample):
    typed = scan(sample, "RSI(14) < 40 AND Close > SMA(50) or Not (ATR_PCT(14) < 1)")
    plain = scan(sample, "rsi(14) < 40 and close > sma(50) or not (atr_pct(14) < 1)")
    np.testing.assert_array_equal(typed.matrix, plain.matrix)
    assert typed.count > 0


def test_each_number_of_a_rule_is_named_as_an_analyst_reads_it():
    from engine.rules import number_titles

    assert number_titles("rsi(14) < 30 and close > sma(200)") == {
        0: "RSI period (14 in rsi(14))",
        1: "threshold of rsi(14) (30 in rsi(14) < 30)",
        2: "SMA period (200 in sma(200))",
    }
    assert number_titles("bb_pct_b(20, 2) < 0.05")[1] == "bb_pct_b width in std devs (2 in bb_pct_b(20, 2))"
    assert number_titles("close > prev(close, 5)")[0] == "bars back (5 in prev(close, 5))"
    assert number_titles("rsi(14) < 30 >")[1] == "number 30 in rsi(14) < 30 >"  # does not parse: the text around it
