"""Search beyond the grid: which combinations of a grid's space an optimisation evaluates, and in what order.

`grid` evaluates every combination; `random` a seeded sample of `n_trials` distinct ones; `tpe` asks Optuna's
TPE sampler (the optional extra `search`) in batches, each batch evaluated through the same compiled chunk
kernel as a grid, and tells it the objective. A `constraint` over parameter names (`take_profit >
stop_loss`; `rule.1` is written `rule_1`) removes combinations before any is evaluated. The same seed gives
the same trials. Every evaluated trial is a row of the result, in evaluation order, and counts in the
deflated Sharpe and PBO.
"""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .rules import parse_expression

MAX_CONSTRAINT_CHARS = 300
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal}
_COMPARE |= {ast.Eq: np.equal, ast.NotEq: np.not_equal}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}


@dataclass(frozen=True)
class Span:
    """A continuous range of one key, `low` to `high` inclusive: random and tpe searches may try any value in
    it (whole numbers when `integral`); a grid needs steps. A spec writes it with a step of 0."""

    low: float
    high: float
    integral: bool = False

    def size(self) -> float:
        """How many distinct values it holds: infinite unless integral."""
        return self.high - self.low + 1 if self.integral else math.inf

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.integral:
            return rng.integers(int(self.low), int(self.high) + 1, n).astype(float)
        return np.round(rng.uniform(self.low, self.high, n), 6)


Values = Sequence[float] | Span  # one key's space: listed values (a grid's), or a continuous range


def space_size(grid: Mapping[str, Values]) -> float:
    """How many combinations the space holds (math.inf with a continuous range)."""
    return math.prod(v.size() if isinstance(v, Span) else len(v) for v in grid.values())


def continuous_keys(grid: Mapping[str, Values]) -> list[str]:
    return [key for key, values in grid.items() if isinstance(values, Span)]


def column_name(key: str) -> str:
    """A grid key as a constraint names it: `rule.1` -> `rule_1` (`stop_loss` stays)."""
    return key.replace(".", "_")


def check_constraint(constraint: str, names: Sequence[str]) -> ast.Expression | None:
    """The parsed constraint (None when empty), checked against a whitelist: comparisons, and/or/not,
    + - * /, numbers and the given names. DataError says what is wrong and what is allowed."""
    text = (constraint or "").strip()
    if not text:
        return None
    if len(text) > MAX_CONSTRAINT_CHARS:
        raise DataError(f"The constraint is {len(text):,} characters; the limit is {MAX_CONSTRAINT_CHARS}.")
    allowed = ", ".join(names)
    try:
        tree = parse_expression(text.replace("rule.", "rule_"))
    except SyntaxError:
        raise DataError(f"The constraint {text!r} is not an expression; e.g. take_profit > stop_loss.") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names:
            raise DataError(f"The constraint names {node.id!r}; it can use {allowed}.")
        ok: tuple[type, ...] = (ast.Expression, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not)
        ok += (ast.USub, ast.BinOp, ast.Name, ast.Load, *_COMPARE, *_ARITH)
        numeric = isinstance(node, ast.Constant) and isinstance(node.value, int | float)
        if not (isinstance(node, ok) or numeric) or isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise DataError(
                f"The constraint may use comparisons, and/or/not, + - * /, numbers and {allowed}; not {text!r}."
            )
    return tree


def satisfies(table: pd.DataFrame, tree: ast.Expression | None, fixed: Mapping[str, float]) -> np.ndarray:
    """Which rows of a combination table meet the constraint (names: its columns, else `fixed` values)."""
    if tree is None:
        return np.ones(len(table), bool)
    columns = {column_name(c): table[c].to_numpy(float) for c in table.columns}

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # the check let only numbers through
        if isinstance(node, ast.Name):
            return columns[node.id] if node.id in columns else float(fixed[node.id])
        if isinstance(node, ast.UnaryOp):
            inner = value(node.operand)
            return ~np.asarray(inner, bool) if isinstance(node.op, ast.Not) else -inner
        if isinstance(node, ast.BinOp):
            with np.errstate(all="ignore"):
                return _ARITH[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.BoolOp):
            parts = [np.asarray(value(v), bool) for v in node.values]
            return np.logical_and.reduce(parts) if isinstance(node.op, ast.And) else np.logical_or.reduce(parts)
        assert isinstance(node, ast.Compare)  # the check let nothing else through
        left, out = value(node.left), np.ones(len(table), bool)  # a comparison, perhaps chained
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = value(right_node)
            out &= _COMPARE[type(op)](left, right)
            left = right
        return out

    return np.broadcast_to(np.asarray(value(tree), bool), (len(table),)).copy()


def require_steps(grid: Mapping[str, Values]) -> None:
    """A grid lists every combination, so every key needs steps: DataError names the continuous ranges."""
    if spans := continuous_keys(grid):
        raise DataError(
            f"A grid needs a step for {', '.join(spans)} (a continuous range, step 0, is for random or tpe search)."
        )


def grid_table(grid: Mapping[str, Values]) -> pd.DataFrame:
    """Every combination, in product order (the last key varies fastest)."""
    require_steps(grid)
    listed = [v for v in grid.values() if not isinstance(v, Span)]
    return pd.DataFrame(list(itertools.product(*listed)), columns=list(grid), dtype=float)


def random_table(
    grid: Mapping[str, Values],
    n_trials: int,
    seed: int,
    tree: ast.Expression | None = None,
    fixed: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """`n_trials` distinct combinations drawn uniformly from the space (fewer when it has fewer feasible ones),
    in the order drawn; the same seed draws the same ones. A continuous range is drawn as any value in it."""
    total = space_size(grid)
    rng = np.random.default_rng(seed)
    if not continuous_keys(grid) and (total <= 4 * n_trials or total <= 1_000_000):
        # small: a permutation of the whole space, no repeats
        lists = [np.asarray(v, float) for v in grid.values()]
        sizes = [len(v) for v in lists]
        order = rng.permutation(int(total))
        indices = np.stack(np.unravel_index(order, sizes), axis=1) if sizes else np.zeros((1, 0), int)
        candidates = pd.DataFrame(
            {key: values[indices[:, i]] for i, (key, values) in enumerate(zip(grid, lists, strict=True))}
        )
        keep = satisfies(candidates, tree, fixed or {})
        return candidates[keep].head(n_trials).reset_index(drop=True)
    picked: list[tuple[float, ...]] = []
    seen: set[tuple[float, ...]] = set()
    for _ in range(50):  # large: independent draws, repeats dropped, until enough feasible ones
        rows = pd.DataFrame({key: _draw(values, rng, 4 * n_trials) for key, values in grid.items()})
        feasible = satisfies(rows, tree, fixed or {})
        for row in rows.to_numpy(float)[feasible]:
            key = tuple(row)
            if key not in seen:
                seen.add(key)
                picked.append(key)
                if len(picked) == n_trials:
                    return pd.DataFrame(picked, columns=list(grid), dtype=float)
    return pd.DataFrame(picked, columns=list(grid), dtype=float)


def _draw(values: Values, rng: np.random.Generator, n: int) -> np.ndarray:
    """n values of one key drawn uniformly: any value of a continuous range, else one of the listed values."""
    if isinstance(values, Span):
        return values.draw(rng, n)
    listed = np.asarray(values, float)
    return listed[rng.integers(0, len(listed), n)]


class TpeSearch:
    """Optuna's TPE sampler over the grid's values, by ask and tell. Each key is a categorical choice among
    its values when they are few, else a stepped float or int range snapped to the nearest value."""

    def __init__(self, grid: Mapping[str, Values], seed: int, maximise: bool = True) -> None:
        try:
            import optuna
        except ImportError:
            raise DataError(
                "search='tpe' needs Optuna, the optional extra `search`: pip install 'scanner-backtester[search]' "
                "(or use search='random')."
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.grid = {k: v if isinstance(v, Span) else np.asarray(v, float) for k, v in grid.items()}
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=10)
        self.study = optuna.create_study(direction="maximize" if maximise else "minimize", sampler=sampler)
        self._pending: list[tuple[Any, tuple[float, ...]]] = []  # (trial, its combination) awaiting a value
        self._echoes: list[tuple[Any, tuple[float, ...]]] = []  # repeats of a pending combination
        self._seen: dict[tuple[float, ...], float | None] = {}  # every combination told so far
        self.n_asked = 0  # proposals, repeats included

    def ask(self, n: int) -> pd.DataFrame:
        """Up to n new distinct combinations to evaluate. A combination the sampler proposes again is answered
        from the trials already run (or, if it is in this batch, once its first copy is told): it is never
        evaluated twice and never counts as a new trial. At most 20 x n proposals a call, so a space smaller
        than the trials asked for ends the search instead of looping."""
        rows: list[dict[str, float]] = []
        batch: set[tuple[float, ...]] = set()
        for _ in range(20 * n):
            if len(rows) == n:
                break
            trial = self.study.ask()
            self.n_asked += 1
            row = {key: self._suggest(trial, key, values) for key, values in self.grid.items()}
            key = tuple(row.values())
            if key in self._seen:
                self._answer(trial, self._seen[key])
            elif key in batch:
                self._echoes.append((trial, key))
            else:
                batch.add(key)
                rows.append(row)
                self._pending.append((trial, key))
        return pd.DataFrame(rows, columns=list(self.grid), dtype=float)

    def reject(self, feasible: np.ndarray) -> None:
        """Tell the sampler which of the last asked combinations break the constraint (never evaluated)."""
        kept = []
        for (trial, key), ok in zip(self._pending, feasible, strict=True):
            if ok:
                kept.append((trial, key))
            else:
                self._seen[key] = None
                self._answer(trial, None)
        self._pending = kept
        self._tell_echoes()

    def tell(self, values: np.ndarray) -> None:
        """The objective of each pending combination, in order (NaN: not eligible, told as failed)."""
        for (trial, key), v in zip(self._pending, values, strict=True):
            self._seen[key] = float(v)
            self._answer(trial, float(v))
        self._pending = []
        self._tell_echoes()

    def _tell_echoes(self) -> None:
        """Answer the repeats of this batch whose first copy is now known."""
        waiting = []
        for trial, key in self._echoes:
            if key in self._seen:
                self._answer(trial, self._seen[key])
            else:
                waiting.append((trial, key))
        self._echoes = waiting

    def _answer(self, trial: Any, value: float | None) -> None:
        """Tell one trial its objective: None (breaks the constraint) as pruned, NaN (not eligible) as failed."""
        states = self._optuna.trial.TrialState
        if value is None:
            self.study.tell(trial, state=states.PRUNED)
        elif np.isfinite(value):
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=states.FAIL)

    @staticmethod
    def _suggest(trial: Any, key: str, values: np.ndarray | Span) -> float:
        if isinstance(values, Span):
            if values.integral:
                return float(trial.suggest_int(key, int(values.low), int(values.high)))
            return round(float(trial.suggest_float(key, values.low, values.high)), 6)
        if len(values) <= 1:
            return float(values[0])
        steps = np.diff(values)
        even = np.allclose(steps, steps[0], rtol=1e-9, atol=1e-12) and steps[0] > 0
        if not even or len(values) <= 4:
            return float(trial.suggest_categorical(key, [float(v) for v in values]))
        if all(float(v).is_integer() for v in values) and float(steps[0]).is_integer():
            return float(trial.suggest_int(key, int(values[0]), int(values[-1]), step=int(steps[0])))
        index = trial.suggest_int(f"{key}#", 0, len(values) - 1)  # an even float range: its position
        return float(values[index])
