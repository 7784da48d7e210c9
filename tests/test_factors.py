"""Factor quantiles and the information coefficient, against a pandas oracle written from the documented rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import InputError, scan, synthetic_market
from engine import _event_kernels as ek
from engine.factors import _sorted_keys, factor_returns
from engine.rules import expression_values


def oracle(market, factor: str, quantiles: int, horizon: int, entry: str, universe_rule: str | None = None):
    """Per bar: percentile ranks (ties averaged) cut into quantiles; forward returns by shift; IC by pandas'
    Spearman correlation across the symbols with both values."""
    cols = list(market.symbols)
    close = pd.DataFrame(market.close, index=market.dates, columns=cols)
    price = pd.DataFrame(market.open, index=market.dates, columns=cols).shift(-1) if entry == "next_open" else close
    fwd = close.shift(-horizon) / price - 1
    values = pd.DataFrame(expression_values(market, factor), index=market.dates, columns=cols).where(close.notna())
    if universe_rule:
        values = values.where(scan(market, universe_rule).matrix)
    bucket = np.ceil(values.rank(axis=1, pct=True) * quantiles).clip(1, quantiles)
    both = fwd.notna() & bucket.notna()
    means = {q: fwd[both & (bucket == q)].stack().mean() for q in range(1, quantiles + 1)}
    ic = values.where(both).rank(axis=1).corrwith(fwd.where(both).rank(axis=1), axis=1)
    return means, ic[both.sum(axis=1) >= 3].dropna()  # a correlation needs 3 symbols


@pytest.mark.parametrize(("factor", "entry"), [("roc(20)", "next_open"), ("rsi(14) - 50", "close")])
def test_quantile_means_spread_and_ic_equal_the_pandas_oracle(sample, factor, entry):
    study = factor_returns(sample, factor, quantiles=3, horizons=(5,), entry=entry)
    means, ic = oracle(sample, factor, 3, 5, entry)
    np.testing.assert_allclose(study.by_quantile[5].to_numpy(), list(means.values()), rtol=1e-10)
    assert study.spread[5] == pytest.approx(means[3] - means[1], rel=1e-9)
    assert study.ic.loc[5, "mean"] == pytest.approx(ic.mean(), rel=1e-9)
    assert study.ic.loc[5, "std"] == pytest.approx(ic.std(), rel=1e-9)
    assert study.ic.loc[5, "bars"] == len(ic)


def test_steady_trends_give_an_ic_of_one_and_quantiles_in_order_while_noise_gives_none():
    from tests.conftest import bars_market

    rates = [-0.02, -0.01, 0.0, 0.005, 0.01, 0.02]  # each symbol compounds at its own daily rate
    steady = bars_market({f"S{i}": [(100 * (1 + r) ** t,) * 4 for t in range(60)] for i, r in enumerate(rates)})
    study = factor_returns(steady, "roc(1)", quantiles=3, horizons=(1,), entry="close")
    assert study.ic.loc[1, "mean"] == pytest.approx(1.0) and study.ic.loc[1, "std"] == pytest.approx(0.0, abs=1e-12)
    assert study.by_quantile[1].is_monotonic_increasing and study.spread[1] > 0
    noise = factor_returns(synthetic_market(30, 300, seed=2), "roc(1)", horizons=(1,), entry="close")
    assert abs(noise.ic.loc[1, "mean"]) < 0.1  # yesterday's move does not know tomorrow's


def test_a_universe_rule_limits_the_cross_section_to_its_hits_as_the_oracle_does(sample):
    whole = factor_returns(sample, "roc(20)", quantiles=2, horizons=(5,))
    some = factor_returns(sample, "roc(20)", quantiles=2, horizons=(5,), universe_rule="close > sma(50)")
    assert some.counts.sum() < whole.counts.sum()
    means, ic = oracle(sample, "roc(20)", 2, 5, "next_open", universe_rule="close > sma(50)")
    np.testing.assert_allclose(some.by_quantile[5].to_numpy(), [means[1], means[2]], rtol=1e-10)
    assert some.ic.loc[5, "mean"] == pytest.approx(ic.mean(), rel=1e-10)
    assert some.ic.loc[5, "bars"] == len(ic)


_cell = st.sampled_from([np.nan, 0.0, -0.0, 1.0, 1.0 + 2**-52, -1.0, -1.0 - 2**-52, 2.5, np.inf, -np.inf, 1e-300])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_cell, min_size=7, max_size=7), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_ranks_from_packed_sort_keys_equal_pandas_rank_with_ties_near_ties_and_subsets(rows, seed):
    """The keys cut each value's last bits to carry its column: values equal that far (1 and 1 + 2^-52) must
    still rank apart, equal ones (0.0 and -0.0) together, and a subset ranks as pandas ranks it alone."""
    x = np.array(rows)
    among = np.where(np.random.default_rng(seed).random(x.shape) < 0.7, 1.0, np.nan)
    keys = _sorted_keys(x)
    np.testing.assert_array_equal(ek.ranks_from_sorted(keys, x, x), pd.DataFrame(x).rank(axis=1).to_numpy())
    subset = np.where(np.isnan(among), np.nan, x)
    expected = pd.DataFrame(subset).rank(axis=1).to_numpy()
    np.testing.assert_array_equal(ek.ranks_from_sorted(keys, x, among), expected)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"quantiles": 1}, "quantiles is a whole number"), ({"entry": "open"}, "entry must be one of")],
)
def test_bad_factor_settings_say_what_is_allowed(sample, kwargs, words):
    with pytest.raises(InputError, match=words):
        factor_returns(sample, "roc(20)", **kwargs)


def test_a_condition_is_not_a_factor(sample):
    with pytest.raises(InputError, match="is a condition"):
        factor_returns(sample, "roc(20) > 0")
