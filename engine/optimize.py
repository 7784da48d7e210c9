"""Grid search over backtest parameters and numbers in the rule, with in/out-of-sample and walk-forward checks.

Grid keys: the parameters with a grid range in the one parameter table (`params.grid_keys()`: stop_loss,
take_profit, holding_period, max_positions, sizing.<field>), 0 switching an exit off as everywhere, and
numbers in the rule as `rule.<i>` (see `rules.rule_numbers`: in 'rsi(14) < 30', rule.0 is 14, rule.1 30).

Combinations that share a rule share one scan (indicators are memoised per dataset); each chunk of
combinations runs in one Numba call, in parallel threads (`_kernels.simulate_grid`), reduced to metrics
at once: memory stays flat in the number of combinations. With a Dask scheduler address the chunks run
on that cluster instead.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from . import _kernels as k
from . import params as table
from . import robustness as rb
from . import stats
from ._records import GRID_METRIC, GRID_METRICS
from .backtest import (
    BacktestParams,
    combo_fields,
    combo_records,
    kernel_inputs,
    read_only,
    signal_matrix,
    window_backtest,
    window_inputs,
    with_rotation,
)
from .data import DataError, Market
from .metrics import LABELS, cagr_pct, periods_per_year
from .params import SEARCHES
from .rules import RuleError, RuleNumber, rule_numbers, scan, substitute_numbers
from .search import (
    Span,
    TpeSearch,
    Values,
    check_constraint,
    column_name,
    grid_table,
    random_table,
    require_steps,
    satisfies,
    space_size,
)

log = logging.getLogger("engine.optimize")
METRICS = GRID_METRICS
OBJECTIVES = {m: LABELS[m] for m in METRICS if m not in ("n_trades", "final_equity")}
MAX_COMBINATIONS = 100_000
MAX_GRID_KEYS = 24  # keys varied at once (the combinations are capped too)
MAX_WINDOWS = 200
N_BLOCKS = 16  # blocks of time for the probability of backtest overfitting (CSCV), as in the paper
CELLS_PER_SECOND = 1.0e8  # symbol-bars simulated per second per combination, measured on 2 cores (conservative)


def work_limit() -> float:
    """Symbol-bar-combinations one optimisation may simulate: SCANNER_GRID_WORK (default 6e10, ~10 minutes)."""
    return float(os.environ.get("SCANNER_GRID_WORK", "6e10"))


@dataclass(frozen=True)
class WorkEstimate:
    """How much an optimisation will simulate, before it runs: combinations x windows x bars x symbols."""

    combinations: int
    windows: int
    cells: float
    seconds: float

    def check(self) -> None:
        """DataError, with the limit and how to stay under it, when the work is over the budget."""
        if self.combinations > MAX_COMBINATIONS:
            raise DataError(
                f"{self.combinations:,} combinations is over the {MAX_COMBINATIONS:,} limit; use fewer "
                "values (a larger step)."
            )
        if self.windows > MAX_WINDOWS:
            raise DataError(
                f"{self.windows:,} walk-forward windows is over the {MAX_WINDOWS} limit; use longer test windows."
            )
        if self.cells > work_limit():
            raise DataError(
                f"This optimisation would simulate {self.cells:,.0f} symbol-bars (about "
                f"{duration(self.seconds)}), over the {work_limit():,.0f} limit (SCANNER_GRID_WORK). Use "
                "fewer values, fewer walk-forward windows or fewer symbols."
            )


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:,.1f} hours"


def estimate_work(
    market: Market,
    grid: Mapping[str, Values],
    mode: str = "all",
    train_bars: int = 0,
    test_bars: int = 0,
    trials: int | None = None,
) -> WorkEstimate:
    """The work of optimise ('all'), in/out-of-sample ('split': every combination on all bars, in two parts)
    or walk-forward ('walk_forward': each training window for every combination, plus each test window);
    `trials`: a random or tpe search evaluates at most that many combinations of the space."""
    n = grid_size(grid) if trials is None else int(min(trials, space_size(grid)))
    bars, symbols = market.shape
    windows = 1
    if mode == "walk_forward":
        windows = window_count(bars, train_bars, test_bars) if train_bars and test_bars else 0
        cells = float(windows) * (n * train_bars + test_bars) * symbols
    else:
        cells = float(n) * bars * symbols
    return WorkEstimate(n, windows, cells, cells / CELLS_PER_SECOND)


def grid_size(grid: Mapping[str, Values]) -> int:
    """How many combinations the grid has (shown before running); a Python int, so it cannot overflow. A
    continuous range has no count: DataError says to give it a step or search at random or with tpe."""
    require_steps(grid)
    return math.prod(len(v) for v in grid.values() if not isinstance(v, Span))


def check_grid(rule: str, grid: Mapping[str, Values]) -> None:
    """Clear errors for unknown keys, empty ranges and oversized grids, before anything runs (the combination
    limit is `estimate_work`'s: a full grid's size, a search's trials)."""
    n_numbers = len(rule_numbers(rule))
    problems = []
    for key, values in grid.items():
        group, _, name = key.rpartition(".")
        param = table.grid_keys().get(key)
        if param is None and not (group == "rule" and name.isdigit() and int(name) < n_numbers):
            problems.append(f"unknown grid parameter {key!r}")
        elif isinstance(values, Span) and not values.low <= values.high:
            problems.append(f"{key}: 'to' ({values.high:g}) is below 'from' ({values.low:g})")
        elif not isinstance(values, Span) and len(values) == 0:
            problems.append(f"{key} has no values")
        elif param is not None:
            for v in (values.low, values.high) if isinstance(values, Span) else values:
                try:
                    param.check(v)
                except table.ParamError as exc:
                    problems.append(f"{key}: {exc}")
                    break
    if len(grid) > MAX_GRID_KEYS:
        problems.append(f"{len(grid)} keys is over the limit of {MAX_GRID_KEYS}")
    if problems:
        raise DataError(
            "; ".join(p.rstrip(".") for p in problems)
            + f". Grid keys: {', '.join(table.grid_keys())}, rule.0-{n_numbers - 1} (the numbers in the rule)."
        )


def default_range(rule: str, name: str) -> tuple[float, float, float]:
    """A grid key's default (from, to, step): the table's, or for rule.<i> half to one and a half times
    the number written in the rule."""
    if name in table.grid_keys():
        grid = table.grid_keys()[name].grid
        assert grid is not None  # a grid key has a grid range by definition
        return grid
    number = _rule_number(rule, name)
    v = float(number.text)
    return v * 0.5, v * 1.5, max(abs(v) * 0.25, 0.1 if "." in number.text else 1.0)


def is_integral(rule: str, name: str) -> bool:
    """Does the key take whole numbers (bars, positions, a rule's integer like the 14 in rsi(14))?"""
    if name in table.grid_keys():
        return table.grid_keys()[name].kind is int
    return not any(c in _rule_number(rule, name).text for c in ".eE")


def _rule_number(rule: str, name: str) -> RuleNumber:
    """The number a `rule.<i>` grid key stands for; DataError when the rule has no such number."""
    numbers = rule_numbers(rule)
    index = name[len("rule.") :]
    if not (name.startswith("rule.") and index.isdigit() and int(index) < len(numbers)):
        raise DataError(f"{name!r} is not a grid key of this rule (it has {len(numbers)} numbers).")
    return numbers[int(index)]


def check_range(name: str, start: float, stop: float, step: float | None = None) -> None:
    """A key's from and to (and step, when it has one) are finite, the step positive and to not below from."""
    for label, x in (("from", start), ("to", stop), *([("step", step)] if step is not None else [])):
        if not math.isfinite(x):
            raise DataError(f"{name}: '{label}' must be a finite number, not {x}.")
    if step is not None and step <= 0:
        raise DataError(f"{name}: the step must be positive, not {step:g}.")
    if stop < start:
        raise DataError(f"{name}: 'to' ({stop:g}) is below 'from' ({start:g}).")


def grid_values(name: str, start: float, stop: float, step: float, integral: bool = False) -> list[float]:
    """start, start + step, ... up to stop: the count is checked before anything is allocated."""
    check_range(name, start, stop, step)
    count = math.floor((stop - start) / step + 0.5) + 1
    if count > MAX_COMBINATIONS:
        raise DataError(
            f"{name}: {start:g} to {stop:g} in steps of {step:g} is {count:,} values, over the "
            f"{MAX_COMBINATIONS:,} limit; use a larger step or a narrower range."
        )
    values = np.round(start + step * np.arange(count), 6)
    values = values[values <= stop + step * 1e-9]
    if integral:
        values = np.unique(np.round(values).astype(int))
    return values.tolist()


def parse_grid_spec(text: str) -> dict[str, tuple[float, float, float]]:
    """'stop_loss:2:10:2,rule.1:25:35:5' (a link's grid) -> {key: (from, to, step)}, each checked."""
    spec: dict[str, tuple[float, float, float]] = {}
    if len(text) > 2_000:
        raise DataError(f"the grid text is {len(text):,} characters long; the limit is 2,000.")
    for part in filter(None, text.split(",")):
        fields = part.split(":")
        name = fields[0]
        valid_name = name in table.grid_keys() or (name.startswith("rule.") and name[5:].isdigit() and len(name) < 9)
        if len(fields) != 4 or not valid_name:
            raise DataError(
                f"{part[:40]!r} is not key:from:to:step with a grid key ({', '.join(table.grid_keys())} or rule.<i>)."
            )
        try:
            lo, hi, step = (float(x) for x in fields[1:])
        except ValueError:
            raise DataError(f"{part[:40]!r}: from, to and step must be numbers.") from None
        if step == 0:  # a continuous range, for random and tpe search
            check_range(name, lo, hi)
        else:
            grid_values(name, lo, hi, step)
        spec[name] = (lo, hi, step)
    return spec


def format_grid_spec(spec: dict[str, tuple[float, float, float]]) -> str:
    """The inverse of parse_grid_spec: key:from:to:step, comma-separated (what links carry)."""
    return ",".join(name + ":" + ":".join(f"{float(x):g}" for x in span) for name, span in spec.items())


@dataclass
class OptimizeResult:
    """One row per combination: the parameters, then the metrics. `best()` honours min_trades."""

    table: pd.DataFrame
    keys: list[str]
    objective: str
    min_trades: int
    seconds: float
    cancelled: bool = False
    failed: int = 0  # combinations lost with a cluster worker (the rest are kept)
    blocks: np.ndarray | None = None  # per combination (row order), its bar-return sums per block of time
    search: str = "grid"  # engine/search.py: the rows are the trials, in evaluation order
    out_of_time: bool = False  # the time budget ended the search (the trials done are kept)

    def overfitting(self) -> dict[str, Any]:
        """How much the best combination's Sharpe owes to the search (engine/robustness.py): the deflated
        Sharpe ratio of the best (Bailey and Lopez de Prado 2014) from the number of combinations tried and the
        variance of their Sharpe ratios, its probabilistic Sharpe ratio against 0, and the probability of
        backtest overfitting by CSCV over N_BLOCKS blocks of time (Bailey et al. 2015)."""
        unknown = dict.fromkeys(("deflated_sharpe", "pbo", "psr", "sharpe_variance", "expected_max_sharpe"), math.nan)
        out: dict[str, Any] = {"n_trials": len(self.table), **unknown, "n_blocks": N_BLOCKS}
        best = self.best()
        if best is None or self.blocks is None or len(self.table) != len(self.blocks):
            out["verdict"] = rb.verdict(math.nan, math.nan)
            return out
        everything = np.ones(self.blocks.shape[1], bool)
        sharpe = rb.block_sharpe(self.blocks, everything)
        variance = float(np.nanvar(sharpe)) if np.isfinite(sharpe).sum() > 1 else math.nan
        sr, skew, kurt, n = stats.moments_from_sums(self.blocks[self.table.index.get_loc(best.name)])
        out |= {
            "sharpe_variance": variance,
            "expected_max_sharpe": rb.expected_max_sharpe(len(self.table), variance),
            "psr": stats.probabilistic_sharpe(sr, skew, kurt, n),
            "deflated_sharpe": rb.deflated_sharpe(sr, skew, kurt, n, len(self.table), variance),
            "pbo": rb.pbo_cscv(self.blocks)[0],
        }
        out["verdict"] = rb.verdict(out["deflated_sharpe"], out["pbo"])
        return out

    def ranked(self) -> pd.DataFrame:
        """Eligible combinations (enough trades, objective defined) first, best first."""
        t = self.table
        ok = (t["n_trades"] >= self.min_trades) & t[self.objective].notna()
        return pd.concat([t[ok].sort_values(self.objective, ascending=False, kind="stable"), t[~ok]])

    def best(self) -> pd.Series | None:
        top = self.ranked()
        if top.empty or top["n_trades"].iloc[0] < self.min_trades or pd.isna(top[self.objective].iloc[0]):
            return None
        return top.iloc[0]

    def best_params(self) -> dict[str, float] | None:
        row = self.best()
        return None if row is None else {key: float(row[key]) for key in self.keys}

    @property
    def combos_per_second(self) -> float:
        return len(self.table) / self.seconds if self.seconds > 0 else float("nan")


def heatmap_cells(
    table: pd.DataFrame, x: str, y: str, z: str, fixed: dict[str, float] | None = None, others: str = "best"
) -> pd.DataFrame:
    """z over the (y rows x x columns) grid of two parameters, with `fixed` parameters held at a value (a
    slice of the grid) and the rest at their best ('best') or averaged ('mean')."""
    aggregate = "max" if others == "best" else "mean"
    return _rows_at(table, fixed or {}).pivot_table(index=y, columns=x, values=z, aggfunc=aggregate)


def _rows_at(table: pd.DataFrame, values: dict[str, float]) -> pd.DataFrame:
    """The rows of a grid table whose parameters equal `values` (to float tolerance)."""
    for key, v in values.items():
        table = table[np.isclose(table[key], v)]
    return table


def stability(cells: pd.DataFrame) -> pd.DataFrame:
    """Each cell's value averaged with its neighbours (the 3 x 3 block around it, missing cells left out): a
    plateau keeps its height, a lone spike is pulled down to its surroundings."""
    v = cells.to_numpy(float)
    padded = np.pad(v, 1, constant_values=np.nan)
    stack = np.stack(
        [padded[1 + i : 1 + i + v.shape[0], 1 + j : 1 + j + v.shape[1]] for i in (-1, 0, 1) for j in (-1, 0, 1)]
    )
    with warnings.catch_warnings():  # an all-missing neighbourhood: NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmean(stack, axis=0)
    out[np.isnan(v)] = np.nan
    return pd.DataFrame(out, index=cells.index, columns=cells.columns)


def cell_combination(table: pd.DataFrame, objective: str, keys: list[str], picked: dict[str, float]) -> dict | None:
    """The combination a heatmap cell stands for: the picked values, and for the other keys the values of the
    best row (by the objective) among the rows with those picked values."""
    rows = _rows_at(table, picked)
    rows = rows[rows[objective].notna()]
    if rows.empty:
        return None
    best = rows.loc[rows[objective].idxmax()]
    return {key: float(best[key]) for key in keys}


def apply_params(rule: str, base: BacktestParams, values: dict[str, float]) -> tuple[str, BacktestParams]:
    """The rule and BacktestParams one grid point stands for (0 switches an exit off, as everywhere)."""
    rule_values = {int(key.split(".")[1]): v for key, v in values.items() if key.startswith("rule.")}
    changes: dict[str, dict] = {"": {}}
    for key, v in values.items():
        param = table.grid_keys().get(key)
        if param is not None:
            changes.setdefault(param.group, {})[param.name] = param.to_library(param.check(v))
    nested = {name: replace(getattr(base, name), **fields) for name, fields in changes.items() if name}
    params = replace(base, **changes[""], **nested)
    return substitute_numbers(rule, rule_values) if rule_values else rule, params


def optimize(
    market: Market,
    rule: str,
    base: BacktestParams,
    grid: Mapping[str, Values],
    *,
    objective: str = "sharpe",
    min_trades: int = 10,
    bars: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    scheduler: str | None = None,
    chunk_size: int = 64,
    search: str = "grid",
    n_trials: int = 200,
    seed: int = 0,
    time_budget_s: float | None = None,
    constraint: str = "",
) -> OptimizeResult:
    """Backtest combinations of the grid's space on bars [start, stop) (default all) and rank by `objective`:
    every one (`search='grid'`), `n_trials` drawn at random, or `n_trials` asked of Optuna's TPE model in
    batches (engine/search.py); `constraint` (e.g. 'take_profit > stop_loss') removes combinations first.

    progress(done, total) is called after each chunk; should_stop() is checked between chunks (the partial
    result is returned with cancelled=True), and so is `time_budget_s` (out_of_time=True). `scheduler` is a
    Dask address, e.g. 'tcp://10.0.0.5:8786'.
    """
    if objective not in OBJECTIVES:
        raise DataError(f"Unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}.")
    if search not in SEARCHES:
        raise DataError(f"Unknown search {search!r}; choose one of {', '.join(SEARCHES)}.")
    check_grid(rule, grid)
    tree = check_constraint(constraint, [column_name(k) for k in grid])
    a, b = bars or (0, market.shape[0])
    estimate_work(market.window(a, b), grid, trials=None if search == "grid" else n_trials).check()
    run = _Evaluation(market, rule, base, list(grid), bars, scheduler, chunk_size, time_budget_s)
    if search == "tpe":
        result = run.tpe(TpeSearch(grid, seed), tree, n_trials, objective, min_trades, progress, should_stop)
        if result.table.empty and tree is not None:
            raise _unsatisfiable(constraint)
        return result
    if search == "random":
        table = random_table(grid, n_trials, seed, tree)
    else:
        table = grid_table(grid)
        table = table[satisfies(table, tree, {})].reset_index(drop=True)
    if table.empty and tree is not None:
        raise _unsatisfiable(constraint)
    return run.table(table, objective, min_trades, progress, should_stop, search)


def check_satisfiable(grid: Mapping[str, Values], constraint: str) -> None:
    """Before any work (a job's submission): DataError when no combination of the space satisfies the
    constraint: every one is tried in a space of up to a million, else tens of thousands of draws."""
    tree = check_constraint(constraint, [column_name(k) for k in grid])
    if tree is not None and random_table(grid, 250, 0, tree).empty:
        raise _unsatisfiable(constraint)


def _unsatisfiable(constraint: str) -> DataError:
    """A constraint that removed every combination: said before any run, with what to change."""
    return DataError(
        f"No combination satisfies {constraint}: widen the ranges or change the constraint (each key's values "
        "are the grid's; a rule number is rule_1)."
    )


def evaluate_table(
    market: Market, rule: str, base: BacktestParams, combinations: pd.DataFrame, **kwargs: Any
) -> OptimizeResult:
    """These combinations (one column per grid key), as `optimize` evaluates its own: e.g. an in-sample
    search's trials on the out-of-sample bars."""
    keys = list(combinations.columns)
    run = _Evaluation(market, rule, base, keys, kwargs.pop("bars", None), kwargs.pop("scheduler", None), 64, None)
    return run.table(combinations.reset_index(drop=True).astype(float), **kwargs)


@dataclass
class _Evaluation:
    """Runs combination tables chunk by chunk (each chunk one rule variant: one scan, one parallel kernel
    call), in-process or on a cluster, until done, cancelled or out of time."""

    market: Market
    rule: str
    base: BacktestParams
    keys: list[str]
    bars: tuple[int, int] | None
    scheduler: str | None
    chunk_size: int
    time_budget_s: float | None
    start: float = field(default_factory=time.perf_counter)

    def out_of_time(self) -> bool:
        return bool(self.time_budget_s) and time.perf_counter() - self.start > float(self.time_budget_s or 0)

    def table(
        self,
        table: pd.DataFrame,
        objective: str = "sharpe",
        min_trades: int = 10,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        search: str = "grid",
        total: int | None = None,
        done_before: int = 0,
    ) -> OptimizeResult:
        rule_keys = [key for key in self.keys if key.startswith("rule.")]
        # Chunks never mix rule variants, so each variant needs one scan.
        groups = table.groupby(rule_keys, sort=False).indices.values() if rule_keys else [np.arange(len(table))]
        metrics = np.full(len(table), np.nan, GRID_METRIC)
        blocks = np.zeros((len(table), N_BLOCKS, 5))
        done, cancelled, failed, late = 0, False, 0, False
        order: list[np.ndarray] = []
        work = _execute(self.market, self.rule, self.base, table, groups, self.chunk_size, self.bars, self.scheduler)
        for rows, values in work:
            if values is None:
                failed += len(rows)
                cancelled = True
                continue
            metrics[rows], blocks[rows] = values
            order.append(rows)
            done += len(rows)
            if progress:
                progress(done_before + done, total or len(table))
            if should_stop and should_stop():
                cancelled = True
                break
            if self.out_of_time():
                late = True
                break
        table = table.copy()
        for name in METRICS:
            table[name] = metrics[name]
        if search != "grid" or cancelled or late:  # the trials done, in the order they were evaluated
            evaluated = np.concatenate(order) if order else np.zeros(0, int)
            if search == "grid":
                evaluated = np.sort(evaluated)
            table, blocks = table.iloc[evaluated].reset_index(drop=True), blocks[evaluated]
        seconds = time.perf_counter() - self.start
        return OptimizeResult(table, self.keys, objective, min_trades, seconds, cancelled, failed, blocks, search, late)

    def tpe(
        self,
        sampler: TpeSearch,
        tree: Any,
        n_trials: int,
        objective: str,
        min_trades: int,
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> OptimizeResult:
        """Ask, evaluate, tell, in batches through the chunk kernel, until n_trials distinct combinations are
        evaluated (the sampler answers its own repeats: `TpeSearch.ask`)."""
        batch = max(4, min(self.chunk_size, n_trials // 8))
        parts: list[OptimizeResult] = []
        done = 0
        cancelled = late = False
        while done < n_trials and sampler.n_asked < 20 * n_trials:
            asked_now = sampler.ask(min(batch, n_trials - done))
            if asked_now.empty:
                break
            feasible = satisfies(asked_now, tree, {})
            sampler.reject(feasible)
            if not feasible.any():
                continue
            part = self.table(asked_now[feasible], objective, min_trades, progress, should_stop, "tpe", n_trials, done)
            eligible = (part.table["n_trades"] >= min_trades).to_numpy()
            sampler.tell(np.where(eligible, part.table[objective].to_numpy(float), np.nan))
            parts.append(part)
            done += len(part.table)
            cancelled, late = part.cancelled, part.out_of_time
            if cancelled or late:
                break
        table = pd.concat([p.table for p in parts], ignore_index=True) if parts else pd.DataFrame(columns=self.keys)
        blocks = np.concatenate([p.blocks for p in parts if p.blocks is not None]) if parts else None
        seconds = time.perf_counter() - self.start
        failed = sum(p.failed for p in parts)
        return OptimizeResult(table, self.keys, objective, min_trades, seconds, cancelled, failed, blocks, "tpe", late)


def _execute(market, rule, base, table, groups, chunk_size, bars, scheduler):
    """Yield (row indices, metrics) per chunk of each rule variant's rows, in-process (the variant's inputs
    built once) or on a Dask cluster. On a cluster each chunk is retried on another worker if its worker
    dies; a chunk that still fails yields (rows, None), so the finished chunks are kept and the result
    says how many combinations are missing."""
    if scheduler is None:
        for group in groups:
            variant = prepare_variant(market, rule, base, table.iloc[group], bars)
            for i in range(0, len(group), chunk_size):
                yield group[i : i + chunk_size], variant.run(slice(i, i + chunk_size))
        return
    chunks = [idx[i : i + chunk_size] for idx in groups for i in range(0, len(idx), chunk_size)]
    try:  # dask is the optional extra `dask`: only a cluster grid needs it
        from dask.distributed import Client, as_completed
    except ImportError:
        advice = "pip install 'scanner-backtester[dask]', or unset it to run in this process"
        raise DataError(
            f"SCANNER_DASK_SCHEDULER names a Dask cluster ({scheduler}), but dask is not installed here: {advice}."
        ) from None

    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise DataError(
            f"The Dask cluster at {scheduler} does not answer ({exc.__class__.__name__}). Start it, or "
            "unset SCANNER_DASK_SCHEDULER to run in this process."
        ) from None
    with client:
        remote_market = client.scatter(market, broadcast=True)
        futures = {
            client.submit(run_chunk, remote_market, rule, base, table.iloc[rows], bars, pure=False, retries=2): rows
            for rows in chunks
        }
        for future in as_completed(futures, raise_errors=False):
            try:
                yield futures[future], future.result()
            except RuleError:
                raise
            except Exception as exc:  # a lost worker or cluster: keep what finished
                log.warning("grid chunk failed on %s: %r", scheduler, exc)
                yield futures[future], None


@dataclass
class _Variant:
    """One rule variant's kernel inputs, built once (one scan, one records table for all its combinations,
    checks included) and then run chunk by chunk: a chunk pays one parallel kernel call and nothing else."""

    inputs: tuple
    records: np.ndarray
    years: float
    rf_per_bar: float
    ppy: float

    def run(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kbars, entries, priority, shared = self.inputs
        records = read_only(np.ascontiguousarray(self.records[rows]))
        return k.simulate_grid(  # type: ignore[call-arg]
            kbars, entries, priority, records, shared, self.years, self.rf_per_bar, self.ppy, N_BLOCKS
        )


def prepare_variant(
    market: Market, rule: str, base: BacktestParams, combos: pd.DataFrame, bars: tuple[int, int] | None
) -> _Variant:
    """The kernel inputs of combinations that share one rule variant. Signals come from the whole history
    (indicators never look ahead), trading from bars [start, stop) only."""
    first = combos.iloc[0].to_dict()
    variant_rule, _ = apply_params(rule, base, first)
    try:
        signals = scan(market, variant_rule)
    except RuleError as exc:
        raise RuleError(f"Grid point {first} makes the rule invalid: {exc}") from exc
    records, probe = combo_table(rule, base, combos)
    # Shared inputs (volatility, ATR, correlations, the exit rule) on the whole history, then cut to the window.
    bars_all, _, shared = kernel_inputs(market, probe)
    a, b = bars or (0, market.shape[0])
    window, kbars = market, bars_all
    if (a, b) != (0, market.shape[0]):
        window, kbars, shared = window_inputs(market, shared, a, b)
    entries, priority = signal_matrix(market, signals)
    entries, shared = with_rotation(market, entries, priority, probe, shared)
    if (a, b) != (0, market.shape[0]):
        shared = shared._replace(target_row=np.ascontiguousarray(shared.target_row[a:b]))
    entries, priority = np.ascontiguousarray(entries[a:b]), np.ascontiguousarray(priority[a:b])
    days = (window.dates[-1] - window.dates[0]).days if len(window.dates) > 1 else 0
    ppy = periods_per_year(window.dates)
    inputs = tuple(map(read_only, (kbars, entries, priority, shared)))
    return _Variant(inputs, records, days / 365.25, base.risk_free_pct / 100 / ppy, ppy)


def run_chunk(
    market: Market, rule: str, base: BacktestParams, combos: pd.DataFrame, bars: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """GRID_METRIC records (one per combination) and block sums (len(combos) x N_BLOCKS x 5, see
    OptimizeResult.blocks) for combinations that share one rule variant: a cluster's unit of work."""
    return prepare_variant(market, rule, base, combos, bars).run(slice(None))


def combo_table(rule: str, base: BacktestParams, combos: pd.DataFrame) -> tuple[np.ndarray, BacktestParams]:
    """(one COMBO record per row of a chunk, the settings its shared inputs are built for). Column by column:
    each grid key's distinct values go once through `apply_params` and `combo_fields` (the one path every
    setting takes, checks included) and are spread to the rows with NumPy, so a chunk pays Python per
    distinct value, not per combination. Should two keys write one record field, each row takes that path.
    The probe: the chunk's largest value of every key (an ATR stop, the most adds), for the inputs."""
    keys = [key for key in combos.columns if not str(key).startswith("rule.")]
    probe = apply_params(rule, base, combos[keys].max().to_dict())[1]
    base_fields = combo_fields(base)
    out = np.repeat(combo_records([base]), len(combos))
    owner: dict[str, str] = {}
    for key in keys:
        values, at = np.unique(combos[key].to_numpy(float), return_inverse=True)
        fields = [combo_fields(apply_params(rule, base, {key: v})[1]) for v in values]
        for name in {f for row in fields for f, v in row.items() if v != base_fields[f]}:
            if owner.setdefault(name, key) != key:  # not separable: every row through the one path
                rows = combos.to_dict("records")
                return combo_records([apply_params(rule, base, row)[1] for row in rows]), probe
            out[name] = np.array([row[name] for row in fields])[at]
    return out, probe


def in_out_of_sample(
    market: Market,
    rule: str,
    base: BacktestParams,
    grid: Mapping[str, Values],
    *,
    split: float = 0.7,
    **kwargs,
) -> tuple[OptimizeResult, pd.DataFrame]:
    """Optimise on the first `split` of the bars, then run every combination it tried on the rest.

    Returns the in-sample result and one table with each metric as `<metric>` (in-sample) and
    `<metric>_oos` (out-of-sample), ranked by the in-sample objective.
    """
    cut = split_bar(market, split)
    ins = optimize(market, rule, base, grid, bars=(0, cut), **kwargs)
    oos = evaluate_table(
        market,
        rule,
        base,
        ins.table[ins.keys],
        bars=(cut, market.shape[0]),
        objective=ins.objective,
        min_trades=0,
        scheduler=kwargs.get("scheduler"),
        should_stop=kwargs.get("should_stop"),
    )
    merged = ins.ranked().join(oos.table[list(METRICS)].add_suffix("_oos"))
    return ins, merged


def split_bar(market: Market, split: float) -> int:
    if not 0.1 <= split <= 0.9:
        raise DataError("The in-sample share must be between 10% and 90% of the bars.")
    return int(round(market.shape[0] * split))


def window_count(n_bars: int, train_bars: int, test_bars: int) -> int:
    """How many walk-forward windows fit: train on [a, a + train), test on the next test_bars, step test_bars."""
    return max(0, (n_bars - train_bars - test_bars) // test_bars + 1)


def walk_forward_windows(
    n_bars: int, train_bars: int, test_bars: int, anchored: bool = False
) -> list[tuple[int, int, int]]:
    """(train start, test start, test stop): train on [a, b), test on [b, c), step c - b. Rolling windows keep
    train_bars of history; anchored ones all start at bar 0 (the first has train_bars)."""
    if train_bars < 20 or test_bars < 5:
        raise DataError("Walk-forward needs at least 20 training bars and 5 test bars per window.")
    count = window_count(n_bars, train_bars, test_bars)
    if count > MAX_WINDOWS:
        raise DataError(f"{count:,} walk-forward windows is over the {MAX_WINDOWS} limit; use longer test windows.")
    windows = []
    a = 0
    while a + train_bars + test_bars <= n_bars:
        windows.append((0 if anchored else a, a + train_bars, a + train_bars + test_bars))
        a += test_bars
    if not windows:
        raise DataError(f"{n_bars:,} bars are too few for {train_bars:,} training + {test_bars:,} test bars.")
    return windows


@dataclass
class WalkForwardResult:
    """One row per window (dates, chosen parameters, in-sample objective, out-of-sample metrics), the
    out-of-sample equity curve of the re-optimised parameters stitched window after window (each window's
    returns compounded on the last), and the walk-forward efficiency: the stitched out-of-sample annualised
    return over the mean in-sample annualised return of the chosen parameters (near 1: holds up; near 0 or
    below: the in-sample edge did not carry over)."""

    windows: pd.DataFrame
    oos_equity: pd.DataFrame  # date -> equity (starts at the base's initial capital)
    efficiency: float
    anchored: bool
    objective: str
    keys: list[str]


def walk_forward(
    market: Market,
    rule: str,
    base: BacktestParams,
    grid: Mapping[str, Values],
    *,
    train_bars: int,
    test_bars: int,
    objective: str = "sharpe",
    min_trades: int = 10,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    anchored: bool = False,
    **search: Any,
) -> WalkForwardResult:
    """Re-optimise on each training window and test the winner on the next, unseen, window; `search`
    (search, n_trials, seed, time_budget_s, constraint) is how each window searches (`optimize`)."""
    windows = walk_forward_windows(market.shape[0], train_bars, test_bars, anchored)
    check_grid(rule, grid)
    trials = search.get("n_trials") if search.get("search", "grid") != "grid" else None
    estimate_work(market, grid, "walk_forward", train_bars, test_bars, trials).check()
    rows, curves, in_sample_cagr = [], [], []
    for i, (a, b, c) in enumerate(windows):
        if should_stop and should_stop():
            break
        ins = optimize(
            market,
            rule,
            base,
            grid,
            objective=objective,
            min_trades=min_trades,
            bars=(a, b),
            scheduler=scheduler,
            should_stop=should_stop,
            **search,
        )
        best = ins.best_params()
        row = {"train_start": market.dates[a], "test_start": market.dates[b], "test_end": market.dates[c - 1]}
        if best is None:
            rows.append({**row, "note": f"no combination had {min_trades}+ trades in-sample"})
            curves.append(pd.Series(1.0, index=market.dates[b:c]))  # flat: nothing traded in this window
        else:
            variant, params = apply_params(rule, base, best)
            oos = window_backtest(market, scan(market, variant), params, b, c)
            top = ins.best()
            assert top is not None  # `best` came from it
            rows.append(
                {
                    **row,
                    **best,
                    f"{objective}_in_sample": top[objective],
                    **{f"{m}_oos": oos.metrics[m] for m in METRICS},
                }
            )
            curves.append(oos.equity["equity"] / params.initial_capital)
            in_sample_cagr.append(top["cagr_pct"])
        if progress:
            progress(i + 1, len(windows))
    oos_equity = _stitch(curves, base.initial_capital)
    return WalkForwardResult(
        pd.DataFrame(rows), oos_equity, _efficiency(oos_equity, in_sample_cagr), anchored, objective, list(grid)
    )


def _stitch(curves: list[pd.Series], capital: float) -> pd.DataFrame:
    """Window curves (each starting at 1) compounded one after another into one equity curve."""
    level, parts = capital, []
    for curve in curves:
        parts.append(curve * level)
        level = float(parts[-1].iloc[-1]) if len(curve) else level
    series = pd.concat(parts) if parts else pd.Series(dtype=float)
    return pd.DataFrame({"equity": series.to_numpy(float)}, index=pd.DatetimeIndex(series.index, name="date"))


def _efficiency(oos_equity: pd.DataFrame, in_sample_cagr: list[float]) -> float:
    """Stitched out-of-sample CAGR over the mean in-sample CAGR of the chosen parameters."""
    if len(oos_equity) < 2 or not in_sample_cagr:
        return math.nan
    ins = float(np.nanmean(in_sample_cagr))
    oos = cagr_pct(oos_equity["equity"].to_numpy(), oos_equity.index)
    return oos / ins if ins and math.isfinite(ins) and math.isfinite(oos) else math.nan


def optimize_settings(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Optimize settings (the table's `optimize` group, by name; missing ones are defaults) that decide
    the outcome: objective, min_trades, mode, and the split or the window sizes of that mode."""
    out = {p.name: p.default for p in table.group("optimize")} | (settings or {})
    used = {"objective": out["objective"], "min_trades": out["min_trades"], "mode": out["mode"]}
    if out.get("search", "grid") != "grid":  # a search: what it draws and for how long
        used |= {k: out[k] for k in ("search", "n_trials", "seed", "time_budget_s")}
    if (out.get("constraint") or "").strip():
        used["constraint"] = out["constraint"].strip()
    if out["mode"] == "split":
        used["split"] = out["split"]
    elif out["mode"] == "walk_forward":
        used |= {"train_bars": out["train_bars"], "test_bars": out["test_bars"], "anchored": out["anchored"]}
    return used


def optimization_key(base: BacktestParams, grid: Mapping[str, Values], settings: dict[str, Any]) -> dict:
    """What the run cache keys an optimisation on (besides data and rule): the same for the page and the API."""
    spaces = {k: [v.low, v.high, "continuous"] if isinstance(v, Span) else list(v) for k, v in grid.items()}
    return {"base": base, "grid": spaces, **optimize_settings(settings)}


@dataclass
class OptimizationRun:
    """What `run_optimization` answers in every mode ('all', 'split' or 'walk_forward'), so that no face
    branches on a type: `ranked` is the table to show, best first (every combination; in 'split' with its
    out-of-sample metrics; in 'walk_forward' one row per window), `grid` the whole grid on the (in-sample)
    bars with its overfitting figures, and the walk-forward's stitched out-of-sample equity and efficiency."""

    mode: str
    objective: str
    keys: list[str]
    ranked: pd.DataFrame
    grid: OptimizeResult | None = None  # 'all' and 'split'
    oos_equity: pd.DataFrame | None = None  # 'walk_forward'
    efficiency: float = math.nan  # 'walk_forward'
    anchored: bool = False

    def best_params(self) -> dict[str, float] | None:
        """The best combination's grid values (None when none had enough trades); in a walk-forward, those
        chosen for the latest window."""
        if self.grid is not None:
            return self.grid.best_params()
        chosen = self.ranked.dropna(subset=[k for k in self.keys if k in self.ranked])
        if chosen.empty or not all(k in chosen for k in self.keys):
            return None
        return {k: float(chosen[k].iloc[-1]) for k in self.keys}

    def overfitting(self) -> dict[str, Any] | None:
        """The grid's deflated Sharpe, PBO and verdict; None for a walk-forward (each window has its own)."""
        return None if self.grid is None else self.grid.overfitting()


def grid_from_spec(rule: str, spec: Mapping[str, tuple[float, float, float]]) -> dict[str, Values]:
    """A grid from its spec, key -> (from, to, step), as links, the CLI and the API write it: each key's values,
    whole numbers where the rule's number is one; a step of 0 is the continuous range (random and tpe). Checked
    against the parameter table here, where a face submits it, not when the work starts."""
    grid = {name: space_values(rule, name, *span) for name, span in spec.items()}
    check_grid(rule, grid)
    return grid


def space_values(rule: str, name: str, start: float, stop: float, step: float) -> Values:
    """One key's space from its from, to and step: the stepped values, or with step 0 the continuous range."""
    integral = is_integral(rule, name)
    if step == 0:
        check_range(name, start, stop)
        return Span(float(start), float(stop), integral)
    return grid_values(name, start, stop, step, integral=integral)


def run_optimization(
    market: Market,
    rule: str,
    base: BacktestParams,
    grid: Mapping[str, Values],
    settings: dict[str, Any] | None = None,
    **kwargs: Any,
) -> OptimizationRun:
    """The optimisation the settings' mode asks for: `optimize` (mode 'all'), `in_out_of_sample` ('split')
    or `walk_forward`, as one OptimizationRun; kwargs (progress, should_stop, scheduler) pass through."""
    s = optimize_settings(settings)
    common = {"objective": s["objective"], "min_trades": s["min_trades"], **kwargs}
    common |= {k: s[k] for k in ("search", "n_trials", "seed", "constraint") if k in s}
    if s.get("time_budget_s"):
        common["time_budget_s"] = s["time_budget_s"]
    keys = list(grid)
    if s["mode"] == "walk_forward":
        wf = walk_forward(
            market,
            rule,
            base,
            grid,
            train_bars=s["train_bars"],
            test_bars=s["test_bars"],
            anchored=s["anchored"],
            **common,
        )
        return OptimizationRun(
            "walk_forward",
            wf.objective,
            keys,
            wf.windows,
            oos_equity=wf.oos_equity,
            efficiency=wf.efficiency,
            anchored=wf.anchored,
        )
    if s["mode"] == "split":
        ins, merged = in_out_of_sample(market, rule, base, grid, split=s["split"], **common)
        return OptimizationRun("split", ins.objective, keys, merged, grid=ins)
    result = optimize(market, rule, base, grid, **common)
    return OptimizationRun("all", result.objective, keys, result.ranked(), grid=result)


__all__ = [
    "OptimizationRun",
    "WalkForwardResult",
    "grid_from_spec",
    "optimization_key",
    "run_optimization",
    "OptimizeResult",
    "default_range",
    "estimate_work",
    "grid_size",
    "grid_values",
    "space_values",
    "in_out_of_sample",
    "is_integral",
    "optimize",
    "parse_grid_spec",
    "walk_forward",
]
