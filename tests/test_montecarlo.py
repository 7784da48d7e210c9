"""Monte Carlo: reproducible with a seed, percentiles as numpy computes them, hand-made distributions."""

from __future__ import annotations

import numpy as np
import pytest

from engine import DataError, backtest
from engine.montecarlo import monte_carlo, trade_returns
from tests.conftest import bars_market, flat, signal_at


def test_same_seed_same_paths_other_seed_other_paths():
    r = np.random.default_rng(1).normal(0.001, 0.02, 200)
    a, b, c = monte_carlo(r, 500, seed=7), monte_carlo(r, 500, seed=7), monte_carlo(r, 500, seed=8)
    np.testing.assert_array_equal(a.final_return_pct, b.final_return_pct)
    np.testing.assert_array_equal(a.bands.to_numpy(), b.bands.to_numpy())
    assert not np.array_equal(a.final_return_pct, c.final_return_pct)


def test_two_trade_bootstrap_matches_the_hand_made_distribution_and_numpy_percentiles():
    # Two draws from {+10%, -10%}: +21% (1/4), -1% (1/2), -19% (1/4).
    res = monte_carlo(np.array([0.1, -0.1]), 20_000, seed=1)
    values, counts = np.unique(np.round(res.final_return_pct, 9), return_counts=True)
    assert values.tolist() == [-19.0, -1.0, 21.0]
    np.testing.assert_allclose(counts / counts.sum(), [0.25, 0.5, 0.25], atol=0.015)
    summary = res.summary()
    np.testing.assert_allclose(summary["final return %"], np.percentile(res.final_return_pct, [5, 25, 50, 75, 95]))
    assert summary.loc["p5", "final return %"] == pytest.approx(-19.0)
    assert summary.loc["p50", "final return %"] == pytest.approx(-1.0)
    assert res.probability_of_loss() == pytest.approx(0.75, abs=0.015)
    # Max drawdown: -10% when the loss comes first or second after a win (1.1 -> 0.99), -19% for two losses.
    assert set(np.round(res.max_drawdown_pct, 9)) == {0.0, -10.0, -19.0}
    assert res.probability_of_drawdown_worse_than(15) == pytest.approx(0.25, abs=0.015)


def test_shuffle_keeps_the_final_return_and_varies_the_drawdown():
    r = np.array([0.2, -0.1, 0.05, -0.3, 0.1])
    res = monte_carlo(r, 2000, method="shuffle", seed=3)
    assert np.allclose(res.final_return_pct, (np.prod(1 + r) - 1) * 100)
    assert res.max_drawdown_pct.min() < res.max_drawdown_pct.max()
    assert res.bands.shape == (6, 5) and (res.bands.iloc[0] == 1).all()
    assert (res.bands["p5"] <= res.bands["p95"]).all()


def test_trade_returns_are_pnl_over_equity_before_entry():
    m = bars_market({"AAA": flat(2) + [(110,) * 4] * 2, "BBB": flat(4)})
    r = backtest(
        m, signal_at(m, AAA=[0], BBB=[0]), initial_capital=1000.0, max_positions=2, stop_loss=None, holding_period=2
    )
    np.testing.assert_allclose(trade_returns(r), [0.05, 0.0])  # 500 in AAA gains 50 = 5% of 1,000


def test_too_few_trades_or_too_many_cells_are_clear_errors():
    with pytest.raises(DataError, match="at least 2 closed trades"):
        monte_carlo(np.array([0.1]))
    with pytest.raises(DataError, match="over the limit"):
        monte_carlo(np.zeros(1000), n_simulations=100_000)


def test_compounding_stops_at_ruin():
    from engine.montecarlo import compound

    paths = compound(np.array([[-1.5, -1.5, 0.5], [0.1, -1.0, 2.0], [0.1, 0.1, 0.1]]))
    np.testing.assert_allclose(paths[0], [0.0, 0.0, 0.0])  # two -150% trades never multiply back to a gain
    np.testing.assert_allclose(paths[1], [1.1, 0.0, 0.0])
    np.testing.assert_allclose(paths[2], [1.1, 1.21, 1.331])
    mc = monte_carlo(np.array([-1.5, -1.5]), n_simulations=200, seed=1)
    assert (mc.final_return_pct == -100.0).all()


def test_daily_blocks_resample_the_portfolio_returns_whose_own_order_is_the_backtest(sample):
    from engine import backtest
    from engine.montecarlo import block_indices, compound, daily_returns, run_montecarlo
    from engine.rules import scan

    result = backtest(sample, scan(sample, "rsi(14) < 35"))
    r = daily_returns(result)
    equity = result.equity["equity"].to_numpy()
    np.testing.assert_allclose(compound(r) * equity[0], equity[1:], rtol=1e-12)  # unresampled = the backtest
    idx = block_indices(np.random.default_rng(0), 10, 4, 3)
    assert idx.shape == (3, 10) and idx.max() <= 9
    assert all((np.diff(row[:4]) == 1).all() and (np.diff(row[4:8]) == 1).all() for row in idx)  # blocks of 4
    mc = run_montecarlo(result, {"method": "daily_blocks", "n_simulations": 2000, "block_bars": 20, "seed": 3})
    assert mc.step == "bar" and len(mc.bands) == len(r) + 1
    own = result.metrics["total_return_pct"]
    assert mc.summary().loc["p5", "final return %"] < own < mc.summary().loc["p95", "final return %"]
