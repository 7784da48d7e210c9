"""Grid search equals a loop of single backtests; windows never leak; cancel, errors and Dask."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import BacktestParams, DataError, RiskLimits, Sizing, backtest, synthetic_market
from engine import params as table
from engine.data import Market
from engine.optimize import (
    METRICS,
    OptimizationRun,
    apply_params,
    grid_from_spec,
    grid_size,
    in_out_of_sample,
    optimize,
    run_optimization,
    walk_forward,
    walk_forward_windows,
)
from engine.rules import scan

MARKET = synthetic_market(8, 300, seed=5)
RULE = "rsi(14) < 40"
BASE = BacktestParams(max_positions=4, commission=0.05, slippage_bps=5)
GRID = {"stop_loss": [2.0, 5.0], "take_profit": [0.0, 8.0], "holding_period": [5, 20], "rule.1": [35, 45]}


def brute_force(market: Market, grid: dict, base=BASE, bars=None) -> pd.DataFrame:
    rows = []
    result = optimize(market, RULE, base, grid, min_trades=0, bars=bars)
    for values in result.table[list(grid)].to_dict("records"):
        rule, params = apply_params(RULE, base, values)
        m = market if bars is None else market.window(*bars)
        signals = scan(market, rule).matrix[slice(*bars) if bars else slice(None)]
        rows.append(backtest(m, signals, params).metrics)
    return result, pd.DataFrame(rows)


@pytest.mark.parametrize(
    "base",
    [
        BASE,
        BacktestParams(
            max_positions=3, signal_type="short", sizing=Sizing("volatility_target"), limits=RiskLimits.defaults()
        ),
    ],
    ids=["long equal weight", "short vol target with limits"],
)
def test_every_grid_row_and_the_best_equal_a_loop_of_single_backtests(base):
    result, loop = brute_force(MARKET, GRID, base)
    assert len(result.table) == grid_size(GRID) == 16
    for metric in METRICS:
        np.testing.assert_allclose(result.table[metric], loop[metric], rtol=1e-9, atol=1e-9, err_msg=metric)
    best_loop = loop["sharpe"].idxmax()
    assert result.best().name == best_loop
    assert result.best()["sharpe"] == pytest.approx(loop["sharpe"].max())


def test_a_grid_over_orders_and_positions_equals_a_loop_of_single_backtests():
    base = BacktestParams(
        signal_type="both",
        short_rule="rsi(14) > 70",
        on_opposite="reverse",
        entry_order="limit",
        add_rule="rsi(14) < 25",
        partial_exits="50@3",
        borrow_pct=2.0,
    )
    grid = {"entry_offset_pct": [0.5, 1.5], "entry_valid_bars": [1, 3], "max_adds": [0, 2]}
    result, loop = brute_force(MARKET, grid, base)
    for metric in METRICS:
        np.testing.assert_allclose(result.table[metric], loop[metric], rtol=1e-9, atol=1e-9, err_msg=metric)
    assert loop.n_trades.nunique() > 1  # the keys change the trades


def test_a_window_backtest_equals_a_single_backtest_on_that_window():
    result, loop = brute_force(MARKET, {"stop_loss": [3.0, 6.0]}, bars=(100, 250))
    np.testing.assert_allclose(result.table["total_return_pct"], loop["total_return_pct"], rtol=1e-9)


def test_min_trades_excludes_thin_combinations_from_best():
    result = optimize(MARKET, RULE, BASE, {"rule.1": [1, 40]}, min_trades=1)
    assert result.table["n_trades"].iloc[0] == 0  # rsi < 1 never fires
    assert result.best()["rule.1"] == 40
    assert optimize(MARKET, RULE, BASE, {"rule.1": [1]}, min_trades=1).best() is None


def test_walk_forward_windows_are_disjoint_and_ordered():
    windows = walk_forward_windows(1000, 300, 100)
    assert windows[0] == (0, 300, 400) and windows[-1] == (600, 900, 1000)
    for a, b, c in windows:
        assert a < b < c  # train [a, b), test [b, c): no shared bar
    assert [w[1] for w in windows[1:]] == [w[2] for w in windows[:-1]]  # tests tile the period


def perturbed_from(market: Market, bar: int) -> Market:
    scale = np.random.default_rng(0).uniform(0.5, 1.5, (market.shape[0] - bar, market.shape[1]))
    arrays = {a: getattr(market, a).copy() for a in ("open", "high", "low", "close", "volume")}
    for a in arrays:
        arrays[a][bar:] *= scale
    return Market(market.symbols, market.dates, **arrays, sectors=market.sectors)


def test_in_sample_results_never_see_out_of_sample_bars():
    cut = 200
    changed = perturbed_from(MARKET, cut)
    a = optimize(MARKET, RULE, BASE, GRID, bars=(0, cut), min_trades=0).table
    b = optimize(changed, RULE, BASE, GRID, bars=(0, cut), min_trades=0).table
    pd.testing.assert_frame_equal(a, b)
    wf_a = walk_forward(MARKET, RULE, BASE, GRID, train_bars=120, test_bars=40, min_trades=0).windows
    wf_b = walk_forward(changed, RULE, BASE, GRID, train_bars=120, test_bars=40, min_trades=0).windows
    before = wf_a["test_end"] < MARKET.dates[cut]
    assert before.sum() >= 1
    pd.testing.assert_frame_equal(wf_a[before], wf_b[before])


def test_in_and_out_of_sample_table_has_both_sides():
    ins, merged = in_out_of_sample(MARKET, RULE, BASE, GRID, split=0.6, min_trades=0)
    assert {"sharpe", "sharpe_oos", "n_trades_oos"} <= set(merged.columns) and len(merged) == 16
    assert merged.index[0] == ins.best().name


def test_cancel_returns_the_finished_part():
    seen = []
    result = optimize(
        MARKET,
        RULE,
        BASE,
        GRID,
        chunk_size=4,
        progress=lambda d, t: seen.append((d, t)),
        should_stop=lambda: len(seen) >= 2,
    )
    assert result.cancelled and len(result.table) == 8 and seen == [(4, 16), (8, 16)]


def test_bad_grids_are_clear_errors():
    with pytest.raises(DataError, match="unknown grid parameter 'stoploss'"):
        optimize(MARKET, RULE, BASE, {"stoploss": [1]})
    with pytest.raises(DataError, match="unknown grid parameter 'rule.5'"):
        optimize(MARKET, RULE, BASE, {"rule.5": [1]})
    with pytest.raises(DataError, match="over the 100,000 limit"):
        optimize(
            MARKET,
            RULE,
            BASE,
            {"stop_loss": list(range(1, 99)), "take_profit": list(range(1, 99)), "holding_period": list(range(1, 30))},
        )
    with pytest.raises(DataError, match="Unknown objective"):
        optimize(MARKET, RULE, BASE, {"stop_loss": [1]}, objective="luck")


def test_a_dask_cluster_gives_the_same_table(monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        remote = optimize(MARKET, RULE, BASE, GRID, scheduler=c.scheduler_address, chunk_size=3, min_trades=0)
    local = optimize(MARKET, RULE, BASE, GRID, min_trades=0)
    pd.testing.assert_frame_equal(remote.table, local.table)


def test_oversized_work_is_refused_before_anything_runs(sample, monkeypatch):
    from engine.optimize import estimate_work, walk_forward

    huge = {f"rule.{i}": list(range(16)) for i in range(16)}  # 2**64 combinations: no int64 overflow to 0
    with pytest.raises(DataError, match="18,446,744,073,709,551,616 combinations is over the 100,000 limit"):
        estimate_work(sample, huge).check()
    with pytest.raises(DataError, match="527 walk-forward windows is over the 200 limit"):
        walk_forward(sample, "rsi(14) < 30", BacktestParams(), {"stop_loss": [2.0, 4.0]}, train_bars=60, test_bars=5)
    monkeypatch.setenv("SCANNER_GRID_WORK", "1e4")
    with pytest.raises(DataError, match=r"would simulate 80,970 symbol-bars .* over the 10,000 limit"):
        optimize(sample, "rsi(14) < 30", BacktestParams(), {"stop_loss": [2.0, 4.0, 6.0, 8.0, 10.0]}, min_trades=0)


def test_a_lost_dask_worker_keeps_the_finished_chunks_and_a_gone_cluster_is_a_message(monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        killed = []

        def kill_a_worker(done: int, total: int) -> None:
            if not killed:
                killed.append(True)
                with distributed.Client(c.scheduler_address) as client:
                    worker = next(iter(client.scheduler_info()["workers"]))
                    with contextlib.suppress(Exception):  # the worker dies mid-call: that is the point
                        client.run(os._exit, 1, workers=[worker])  # a crash, as kill -9 would do

        result = optimize(
            MARKET, RULE, BASE, GRID, scheduler=c.scheduler_address, chunk_size=1, min_trades=0, progress=kill_a_worker
        )
    local = optimize(MARKET, RULE, BASE, GRID, min_trades=0)
    assert len(result.table) + result.failed == len(local.table)  # retried elsewhere, or counted as lost
    assert len(result.table) >= len(local.table) // 2
    got = result.table.set_index(list(GRID)).sort_index()  # rows by their combination: a lost chunk renumbers
    pd.testing.assert_frame_equal(got, local.table.set_index(list(GRID)).loc[got.index])
    with pytest.raises(DataError, match="does not answer"):
        optimize(MARKET, RULE, BASE, GRID, scheduler="tcp://127.0.0.1:9", min_trades=0)


def test_walk_forward_stitches_the_out_of_sample_curve_and_measures_efficiency():
    from engine.backtest import window_backtest

    wf = walk_forward(MARKET, RULE, BASE, GRID, train_bars=120, test_bars=40, min_trades=0)
    windows = walk_forward_windows(MARKET.shape[0], 120, 40)
    assert len(wf.windows) == len(windows) and not wf.anchored
    assert len(wf.oos_equity) == sum(c - b for _, b, c in windows)  # every test bar once, in order
    assert wf.oos_equity.index.is_monotonic_increasing and wf.oos_equity["equity"].iloc[0] > 0
    # The stitched curve compounds each window's own out-of-sample backtest.
    growth = 1.0
    for (_, b, c), (_, row) in zip(windows, wf.windows.iterrows(), strict=True):
        variant, params = apply_params(RULE, BASE, {k: row[k] for k in GRID})
        eq = window_backtest(MARKET, scan(MARKET, variant), params, b, c).equity["equity"]
        assert row["total_return_pct_oos"] == pytest.approx((eq.iloc[-1] / eq.iloc[0] - 1) * 100)
        growth *= eq.iloc[-1] / params.initial_capital
    assert wf.oos_equity["equity"].iloc[-1] == pytest.approx(BASE.initial_capital * growth)
    assert math.isfinite(wf.efficiency) or math.isnan(wf.efficiency)


def test_anchored_windows_all_start_at_the_first_bar():
    rolling = walk_forward_windows(1000, 300, 100)
    anchored = walk_forward_windows(1000, 300, 100, anchored=True)
    assert [w[1:] for w in rolling] == [w[1:] for w in anchored]
    assert {w[0] for w in anchored} == {0} and [w[0] for w in rolling] == [0, 100, 200, 300, 400, 500, 600]
    wf = walk_forward(MARKET, RULE, BASE, GRID, train_bars=120, test_bars=40, min_trades=0, anchored=True)
    assert wf.anchored and (wf.windows["train_start"] == MARKET.dates[0]).all()


def test_heatmap_cells_slices_and_stability_by_hand():
    from engine.optimize import cell_combination, heatmap_cells, stability

    t = pd.DataFrame(
        {
            "a": [1, 1, 2, 2, 1, 1, 2, 2.0],
            "b": [1, 2, 1, 2, 1, 2, 1, 2.0],
            "c": [0, 0, 0, 0, 1, 1, 1, 1.0],
            "sharpe": [0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 1.3, 5.0],
        }
    )
    at_c0 = heatmap_cells(t, "a", "b", "sharpe", {"c": 0})
    assert at_c0.loc[2.0, 2.0] == 0.4 and at_c0.loc[1.0, 1.0] == 0.1  # rows: b, columns: a
    best = heatmap_cells(t, "a", "b", "sharpe")
    assert best.loc[2.0, 2.0] == 5.0
    assert heatmap_cells(t, "a", "b", "sharpe", others="mean").loc[2.0, 2.0] == pytest.approx(2.7)
    spike = pd.DataFrame([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    assert stability(spike).iloc[1, 1] == pytest.approx(1.0)  # a lone spike is pulled down
    assert stability(spike).iloc[0, 0] == pytest.approx(9.0 / 4)  # a corner averages its 4 cells
    plateau = pd.DataFrame(np.full((3, 3), 2.0))
    assert (stability(plateau) == 2.0).all().all()
    assert cell_combination(t, "sharpe", ["a", "b", "c"], {"a": 2.0, "b": 2.0}) == {"a": 2.0, "b": 2.0, "c": 1.0}
    assert cell_combination(t, "sharpe", ["a", "b", "c"], {"a": 9.0}) is None


@pytest.mark.parametrize("mode", ["all", "split", "walk_forward"])
def test_run_optimization_answers_one_type_in_every_mode(mode):
    settings = {"mode": mode, "min_trades": 0, "train_bars": 120, "test_bars": 40}
    run = run_optimization(MARKET, RULE, BASE, GRID, settings)
    assert isinstance(run, OptimizationRun) and run.mode == mode and run.keys == list(GRID)
    if mode == "walk_forward":
        expected = walk_forward(MARKET, RULE, BASE, GRID, train_bars=120, test_bars=40, min_trades=0)
        pd.testing.assert_frame_equal(run.ranked, expected.windows)
        assert run.grid is None and run.overfitting() is None and run.efficiency == expected.efficiency
        assert run.best_params() == {k: float(expected.windows[k].dropna().iloc[-1]) for k in GRID}
    elif mode == "split":
        ins, merged = in_out_of_sample(MARKET, RULE, BASE, GRID, min_trades=0)
        pd.testing.assert_frame_equal(run.ranked, merged)
        assert run.best_params() == ins.best_params() and run.overfitting() == ins.overfitting()
    else:
        result = optimize(MARKET, RULE, BASE, GRID, min_trades=0)
        pd.testing.assert_frame_equal(run.ranked, result.ranked())
        assert run.best_params() == result.best_params()


def test_one_grid_builder_for_every_face():
    grid = grid_from_spec("rsi(14) < 30", {"stop_loss": (2, 6, 2), "rule.0": (10, 14, 2)})
    assert grid == {"stop_loss": [2.0, 4.0, 6.0], "rule.0": [10, 12, 14]}


def test_a_chunks_records_equal_each_rows_own_settings():
    """combo_table spreads each key's checked values with NumPy; the records equal the per-row path
    (apply_params then combo_records) for every grid key at once."""
    from engine.backtest import combo_records
    from engine.optimize import apply_params, combo_table

    base = BacktestParams(entry_order="limit", max_adds=None, add_rule="rsi(14) < 30")
    rng = np.random.default_rng(7)
    columns = {}
    for key, param in table.grid_keys().items():
        lo, hi, step = param.grid
        columns[key] = rng.choice(np.arange(lo, hi + step / 2, step), 40)
    columns["stop_loss"][:5] = 0.0  # off
    combos = pd.DataFrame(columns)
    records, probe = combo_table("rsi(14) < 30", base, combos)
    rows = combos.to_dict("records")
    expected = combo_records([apply_params("rsi(14) < 30", base, row)[1] for row in rows])
    for name in expected.dtype.names:
        np.testing.assert_array_equal(records[name], expected[name], err_msg=name)
    assert probe.max_adds == combos.max_adds.max() and probe.trailing_atr == combos.trailing_atr.max()
