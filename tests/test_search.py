"""Search beyond the grid: random and TPE trials, constraints, and every trial counted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine import BacktestParams, load_sample
from engine.data import DataError
from engine.optimize import optimize, run_optimization
from engine.search import TpeSearch, check_constraint, random_table, satisfies

RULE = "rsi(14) < 35"
GRID = {"stop_loss": [float(x) for x in range(1, 11)], "take_profit": [float(x) for x in range(2, 22, 2)]}


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def test_random_search_draws_exactly_n_distinct_trials_and_the_same_seed_draws_the_same(sample):
    first = optimize(sample, RULE, BacktestParams(), GRID, min_trades=0, search="random", n_trials=30, seed=4)
    again = optimize(sample, RULE, BacktestParams(), GRID, min_trades=0, search="random", n_trials=30, seed=4)
    other = optimize(sample, RULE, BacktestParams(), GRID, min_trades=0, search="random", n_trials=30, seed=5)
    keys = ["stop_loss", "take_profit"]
    assert len(first.table) == 30 and not first.table[keys].duplicated().any()
    pd.testing.assert_frame_equal(first.table, again.table)
    assert not first.table[keys].equals(other.table[keys])
    full = optimize(sample, RULE, BacktestParams(), GRID, min_trades=0).table.set_index(keys)
    for row in first.table.itertuples():  # each trial's metrics are the grid's for that combination
        assert row.sharpe == pytest.approx(full.loc[(row.stop_loss, row.take_profit), "sharpe"], rel=1e-12)
    assert first.overfitting()["n_trials"] == 30  # every evaluated trial counts, not the space's 100


def test_a_space_too_big_for_a_grid_is_searched_at_random():
    grid = {f"k{i}": [float(v) for v in range(20)] for i in range(8)}  # 20^8 = 2.56e10 combinations
    table = random_table(grid, 500, seed=1)
    assert len(table) == 500 and not table.duplicated().any()
    assert table.equals(random_table(grid, 500, seed=1))


def test_constraints_prune_the_space_in_every_search(sample):
    for search in ("grid", "random", "tpe"):
        result = optimize(
            sample,
            RULE,
            BacktestParams(),
            GRID,
            min_trades=0,
            search=search,
            n_trials=20,
            constraint="take_profit > 2 * stop_loss",
        )
        t = result.table
        assert len(t) > 0 and (t.take_profit > 2 * t.stop_loss).all(), search
    assert len(
        optimize(sample, RULE, BacktestParams(), GRID, min_trades=0, constraint="take_profit > 2 * stop_loss").table
    ) == sum(tp > 2 * sl for sl in GRID["stop_loss"] for tp in GRID["take_profit"])
    tree = check_constraint("rule.1 >= 30 and not stop_loss == 3", ["stop_loss", "rule_1"])
    frame = pd.DataFrame({"stop_loss": [3.0, 4.0, 4.0], "rule.1": [40.0, 40.0, 20.0]})
    assert satisfies(frame, tree, {}).tolist() == [False, True, False]
    for bad, words in (
        ("import os", "not an expression"),
        ("target > 1", "names 'target'"),
        ("stop_loss.real", "may use"),
    ):
        with pytest.raises(DataError, match=words):
            check_constraint(bad, ["stop_loss"])


def test_tpe_finds_a_planted_optimum_within_a_quarter_of_its_space():
    """A synthetic space (20 x 20 values) whose objective peaks at one planted point; TPE by ask and tell."""
    grid = {"x": [float(v) for v in range(20)], "y": [float(v) for v in range(0, 40, 2)]}
    search = TpeSearch(grid, seed=0)
    best, tried = -np.inf, 0
    while tried < 100:  # a quarter of the 400 combinations
        asked = search.ask(8)
        value = -((asked.x - 13.0) ** 2) - ((asked.y - 26.0) / 2) ** 2
        search.tell(value.to_numpy())
        best = max(best, float(value.max()))
        tried += len(asked)
    assert best == 0.0  # (13, 26) was asked


def test_tpe_never_evaluates_a_combination_twice_and_counts_distinct_ones():
    """A 3 x 3 space: TPE proposes repeats soon. Each is answered from the trials already run (the sampler
    still learns from it) and never returned again; a batch's own repeats wait for its first copy's value."""
    search = TpeSearch({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0]}, seed=1)
    seen: set[tuple[float, float]] = set()
    for _ in range(6):
        asked = search.ask(4)
        rows = set(map(tuple, asked.to_numpy()))
        assert len(rows) == len(asked) and not rows & seen
        seen |= rows
        search.tell(-((asked.x.to_numpy() - 1.0) ** 2))
    assert len(seen) <= 9 and search.n_asked > len(seen)
    assert len(search.study.trials) == search.n_asked  # every repeat was told too


def test_tpe_n_trials_counts_distinct_combinations_and_stops_when_the_space_runs_out(sample):
    grid = {"stop_loss": [2.0, 4.0, 6.0], "take_profit": [5.0, 10.0]}  # 6 combinations
    result = optimize(sample, RULE, BacktestParams(), grid, min_trades=0, search="tpe", n_trials=20, seed=0)
    assert len(result.table) == 6 and not result.table[["stop_loss", "take_profit"]].duplicated().any()


def test_tpe_runs_through_the_chunk_kernel_reproducibly_and_in_every_mode(sample):
    kwargs = {"min_trades": 0, "search": "tpe", "n_trials": 24, "seed": 3}
    one = optimize(sample, RULE, BacktestParams(), GRID, **kwargs)
    two = optimize(sample, RULE, BacktestParams(), GRID, **kwargs)
    assert len(one.table) == 24 and one.search == "tpe"
    pd.testing.assert_frame_equal(one.table, two.table)
    settings = {"search": "random", "n_trials": 12, "min_trades": 0, "train_bars": 504, "test_bars": 252}
    split = run_optimization(sample, RULE, BacktestParams(), GRID, {**settings, "mode": "split"})
    assert len(split.ranked) == 12 and "sharpe_oos" in split.ranked  # the out-of-sample run of those 12
    walk = run_optimization(sample, RULE, BacktestParams(), GRID, {**settings, "mode": "walk_forward"})
    assert len(walk.ranked) > 0 and walk.best_params() is not None


def test_a_time_budget_keeps_the_trials_done(sample):
    result = optimize(
        sample,
        RULE,
        BacktestParams(),
        GRID,
        min_trades=0,
        search="random",
        n_trials=100,
        time_budget_s=1e-9,
        chunk_size=8,
    )
    assert result.out_of_time and 8 <= len(result.table) < 100


def test_the_cli_searches_at_random(capsys):
    from engine.__main__ import main

    grid = "stop_loss:1:10:1,take_profit:2:20:2"
    argv = ["optimize", "--rule", RULE, "--grid", grid, "--optimize.search", "random", "--optimize.n-trials", "9"]
    assert main([*argv, "--optimize.min-trades", "0", "--optimize.mode", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overfitting"]["n_trials"] == 9 and out["best"] is not None


def test_a_continuous_range_is_drawn_anywhere_in_it_by_random_and_tpe(sample):
    """A step of 0 in a spec is a continuous range: random and tpe try any value from 'from' to 'to' (whole
    numbers for a whole-number key), reproducibly; a grid refuses it and says what to do."""
    from engine.optimize import grid_from_spec, parse_grid_spec
    from engine.search import Span

    spec = parse_grid_spec("stop_loss:1:10:0,holding_period:5:40:0")
    grid = grid_from_spec(RULE, spec)
    assert grid == {"stop_loss": Span(1.0, 10.0), "holding_period": Span(5.0, 40.0, integral=True)}
    for search in ("random", "tpe"):
        kwargs = {"min_trades": 0, "search": search, "n_trials": 16, "seed": 2}
        one = optimize(sample, RULE, BacktestParams(), grid, **kwargs)
        two = optimize(sample, RULE, BacktestParams(), grid, **kwargs)
        pd.testing.assert_frame_equal(one.table, two.table)
        table = one.table
        assert len(table) == 16 and not table[["stop_loss", "holding_period"]].duplicated().any()
        assert table.stop_loss.between(1, 10).all() and table.holding_period.between(5, 40).all()
        assert (table.holding_period % 1 == 0).all() and table.stop_loss.nunique() > 8  # not a few steps
        assert one.overfitting()["n_trials"] == 16
    with pytest.raises(DataError, match="A grid needs a step for stop_loss"):
        optimize(sample, RULE, BacktestParams(), grid)
    with pytest.raises(DataError, match="below"):
        parse_grid_spec("stop_loss:10:1:0")


@pytest.mark.parametrize("search", ["grid", "random", "tpe"])
def test_a_constraint_no_combination_satisfies_says_so_in_every_search(sample, search):
    """It raised IndexError in every search (the API's job said "unexpected error")."""
    grid = {"stop_loss": [2.0, 4.0], "take_profit": [5.0, 10.0]}
    kw = {"search": search, "n_trials": 4, "constraint": "take_profit < 0"}
    with pytest.raises(DataError, match="No combination satisfies take_profit < 0: widen the ranges"):
        optimize(sample, RULE, BacktestParams(), grid, **kw)
