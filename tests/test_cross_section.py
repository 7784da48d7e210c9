"""Cross-sectional operators in rules: rank, percentile and zscore across the symbols on each bar (optionally
within each group of a text column), equal to pandas on real and synthetic data, with no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import InputError, scan, synthetic_market
from engine.rules import evaluate


def frame(market, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, index=market.dates, columns=list(market.symbols))


def used(market, rule: str, name: str) -> np.ndarray:
    return evaluate(market, rule)[1][name]


@pytest.mark.parametrize("data", ["sample", "synthetic"])
def test_rank_percentile_and_zscore_equal_pandas_across_the_symbols_on_each_bar(data, sample):
    market = sample if data == "sample" else synthetic_market(40, 400, seed=7)
    roc = frame(market, used(market, "roc(20) > 0", "roc(20)"))
    rank = used(market, "rank(roc(20)) <= 3", "rank(roc(20))")
    pct = used(market, "percentile(roc(20)) > 90", "percentile(roc(20))")
    z = used(market, "zscore(roc(20)) > 1", "zscore(roc(20))")
    np.testing.assert_allclose(rank, roc.rank(axis=1, ascending=False).to_numpy(), equal_nan=True)
    np.testing.assert_allclose(pct, roc.rank(axis=1, pct=True).to_numpy() * 100, equal_nan=True)
    expected_z = roc.sub(roc.mean(axis=1), axis=0).div(roc.std(axis=1), axis=0)
    np.testing.assert_allclose(z, expected_z.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_by_a_text_column_ranks_within_each_group():
    market = synthetic_market(30, 300, seed=3)  # with sectors
    roc = frame(market, used(market, "roc(10) > 0", "roc(10)"))
    got = used(market, "percentile(roc(10), by=sector) > 90", "percentile(roc(10), by=sector)")
    sectors = pd.Series(market.sectors, index=list(market.symbols))
    expected = roc.T.groupby(sectors).rank(pct=True).T * 100
    np.testing.assert_allclose(got, expected[list(market.symbols)].to_numpy(), equal_nan=True)


def test_ties_share_their_average_rank_and_a_lone_value_has_no_zscore():
    from tests.conftest import bars_market, flat

    market = bars_market({"A": flat(3, 10), "B": flat(3, 10), "C": flat(3, 12)})
    rank = used(market, "rank(close) > 0", "rank(close)")
    assert rank[0].tolist() == [2.5, 2.5, 1.0]  # C highest; A and B share ranks 2 and 3
    lone = bars_market({"A": flat(3, 10)})
    assert np.isnan(used(lone, "zscore(close) > 0", "zscore(close)")).all()


def test_no_look_ahead_a_bar_sees_only_its_own_values():
    market = synthetic_market(20, 300, seed=5)
    full = used(market, "percentile(roc(5)) > 50", "percentile(roc(5))")
    cut = used(market.window(0, 200), "percentile(roc(5)) > 50", "percentile(roc(5))")
    np.testing.assert_array_equal(full[:200], cut)


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("rank(close, by=close) < 3", "by= names a text column"),
        ("rank(close, sector) < 3", "takes 1 argument"),
        ("percentile(close, within=sector) > 50", "takes one keyword, by="),
    ],
)
def test_bad_cross_sections_say_how_to_write_them(rule, words):
    market = synthetic_market(10, 100, seed=1)
    with pytest.raises(InputError, match=words):
        scan(market, rule)
