"""Selection-bias statistics against hand computations and against pure noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine import BacktestParams, stats
from engine import robustness as rb
from engine.data import market_from_frame
from engine.optimize import N_BLOCKS, optimize


def test_the_normal_quantile_inverts_the_cdf():
    for p in (1e-6, 0.01, 0.025, 0.3, 0.5, 0.9, 0.975, 0.999999):
        assert stats.norm_cdf(stats.norm_ppf(p)) == pytest.approx(p, rel=1e-9)
    assert stats.norm_ppf(0.975) == pytest.approx(1.959963984540054, rel=1e-12)


def test_probabilistic_sharpe_by_hand():
    # SR 0.1 per bar, normal returns (skew 0, kurt 3), n = 101: z = 0.1 x 10 / sqrt(1 + 0.5 x 0.01)
    z = 0.1 * 10 / math.sqrt(1 + 2 / 4 * 0.01)
    assert stats.probabilistic_sharpe(0.1, 0.0, 3.0, 101) == pytest.approx(stats.norm_cdf(z))
    assert stats.probabilistic_sharpe(0.0, 0.0, 3.0, 101) == pytest.approx(0.5)
    # negative skew and fat tails make the same Sharpe less certain
    assert stats.probabilistic_sharpe(0.1, -1.0, 8.0, 101) < stats.probabilistic_sharpe(0.1, 0.0, 3.0, 101)


def test_deflated_sharpe_by_hand():
    v, n_trials = 0.0025, 100
    expected = math.sqrt(v) * (
        (1 - rb.EULER_GAMMA) * stats.norm_ppf(0.99) + rb.EULER_GAMMA * stats.norm_ppf(1 - 1 / (100 * math.e))
    )
    assert rb.expected_max_sharpe(n_trials, v) == pytest.approx(expected)
    # 0.05 x (0.4228 x 2.3263 + 0.5772 x 2.6816) = 0.05 x 2.5314: ~2.5 standard deviations for 100 trials
    assert expected == pytest.approx(0.12657, abs=1e-4)
    dsr = rb.deflated_sharpe(0.15, 0.0, 3.0, 1000, n_trials, v)
    assert dsr == pytest.approx(stats.probabilistic_sharpe(0.15, 0.0, 3.0, 1000, expected))
    assert rb.deflated_sharpe(0.15, 0.0, 3.0, 1000, 1, v) == stats.probabilistic_sharpe(0.15, 0.0, 3.0, 1000)


def test_moments_from_block_sums_equal_the_direct_ones():
    r = np.random.default_rng(1).standard_t(4, 999) * 0.01
    blocks = np.zeros((3, 5))
    for b, part in enumerate(np.array_split(r, 3)):
        blocks[b] = [len(part), part.sum(), (part**2).sum(), (part**3).sum(), (part**4).sum()]
    assert stats.moments_from_sums(blocks) == pytest.approx(stats.moments(r))


def test_pbo_by_hand_on_two_strategies():
    # Strategy 0 is best in every block: it stays best out of sample -> lambda > 0 always -> PBO 0.
    def stats(means):
        return np.array([[100, m * 100, (m * m + 1e-4) * 100, 0, 0] for m in means])

    good = stats([0.01] * 4)
    bad = stats([0.0] * 4)
    pbo, lambdas = rb.pbo_cscv(np.stack([good, bad]))
    assert pbo == 0.0 and len(lambdas) == 6
    # One strategy wins the first half, the other the second. Splits {0,1} and {2,3}: the in-sample winner is
    # last out of sample (lambda < 0); the 4 mixed splits tie in and out of sample (w = 1/2, lambda = 0).
    a, b = stats([0.01, 0.01, 0.0, 0.0]), stats([0.0, 0.0, 0.01, 0.01])
    pbo, lambdas = rb.pbo_cscv(np.stack([a, b]))
    assert pbo == 1.0 and sorted(np.round(lambdas, 6)) == [-0.693147, -0.693147, 0, 0, 0, 0]


def noise_market(n_symbols: int, n_bars: int, seed: int):
    """Driftless random walks (arithmetic mean return 0): no rule can have an edge."""
    rng = np.random.default_rng(seed)
    log_r = rng.normal(-0.5 * 0.015**2, 0.015, (n_bars, n_symbols))
    close = 100 * np.exp(np.cumsum(log_r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    dates = pd.bdate_range("2015-01-01", periods=n_bars)
    frame = pd.DataFrame(
        {
            "symbol": np.tile([f"N{j}" for j in range(n_symbols)], n_bars),
            "date": np.repeat(dates, n_symbols),
            "open": open_.ravel(),
            "high": np.maximum(open_, close).ravel() * 1.002,
            "low": np.minimum(open_, close).ravel() * 0.998,
            "close": close.ravel(),
            "volume": 1e6,
        }
    )
    return market_from_frame(frame)


def test_on_pure_noise_the_grid_looks_overfit():
    market = noise_market(30, 1500, seed=11)
    grid = {"rule.0": [5, 10, 15, 20, 25, 30], "rule.1": [20, 30, 40, 50, 60, 70, 80]}
    result = optimize(
        market,
        "rsi(14) < 30",
        BacktestParams(max_positions=5),
        {"rule.1": grid["rule.1"], "holding_period": [3, 5, 10, 20, 40]},
        min_trades=5,
    )
    o = result.overfitting()
    assert o["n_trials"] == 35 and o["n_blocks"] == N_BLOCKS
    assert o["pbo"] >= 0.35, o
    assert o["deflated_sharpe"] < 0.95, o
    assert isinstance(o["verdict"], str) and "PBO" in o["verdict"]


def test_overfitting_of_a_result_without_a_best_says_so(sample):
    result = optimize(sample, "rsi(14) < 30", BacktestParams(), {"stop_loss": [2, 4]}, min_trades=10_000)
    o = result.overfitting()
    assert math.isnan(o["pbo"]) and o["verdict"].startswith("Not enough data")


def test_trade_day_returns_by_hand():
    close = np.array([[10.0], [11.0], [12.1], [12.1]])
    open_ = np.array([[10.0], [10.0], [11.0], [12.1]])
    r = rb.trade_day_returns(close, open_, np.array([0]), np.array([1]), np.array([2]), 4)
    np.testing.assert_allclose(r, [0.0, 0.1, 0.1, 0.0])  # 10 -> 11 at bar 1, 11 -> 12.1 at bar 2
    short = rb.trade_day_returns(close, open_, np.array([0]), np.array([1]), np.array([2]), 4, direction=-1)
    np.testing.assert_allclose(short, [0.0, -0.1, -0.1, 0.0])


def test_random_entries_do_not_call_a_noise_rule_skilful_but_do_call_a_prescient_one():
    from engine import backtest
    from engine.backtest import random_entry_test
    from engine.rules import scan

    market = noise_market(20, 1200, seed=5)
    result = backtest(market, scan(market, "rsi(14) < 35"), BacktestParams(holding_period=5))
    test = random_entry_test(market, result, n_draws=300)
    assert len(test["random"]) == 300 and test["p_value"] > 0.05
    # Prescient entries: the bars before each 5-bar rise of more than 3% (look-ahead on purpose).
    ahead = np.full(market.shape, False)
    ahead[:-6] = market.close[6:] / market.open[1:-5] > 1.03
    cheat = backtest(market, ahead, BacktestParams(holding_period=5, max_positions=20))
    assert random_entry_test(market, cheat, n_draws=300)["p_value"] < 0.01
