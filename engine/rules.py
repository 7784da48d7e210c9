"""The scanner's rule language: text an analyst types, checked against a whitelist, evaluated on arrays.

    rsi(14) < 30 and close > sma(200)
    crosses_above(close, sma(50)) or between(rsi(14), 40, 60)
    volume > 2 * avg_volume(20) and gap_pct() > 3  rank by relative_volume(20) desc

Text is parsed with Python's `ast` and every node is checked against a whitelist before anything is
evaluated; nothing is ever passed to eval, exec, DataFrame.query or pandas.eval. Errors name the
offending token and say what is available.
"""

from __future__ import annotations

import ast
import io
import os
import re
import threading
import tokenize
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from . import _indicator_kernels as k
from .budget import available_bytes, scan_bytes
from .data import Market
from .data.columns import reserve_names
from .errors import InputError, RuleError
from .indicators import CATALOGUE, SERIES, Indicators, indicators_for
from .params import MAX_RULE_CHARS
from .periods import PERIODS, period_view

MAX_DEPTH = 30  # brackets
MAX_TREE_DEPTH = 60  # operators nested in one another (`not not not ...`, `- - - 1`)
MAX_INDICATORS = 40  # distinct indicator calls in one rule
MAX_EXPONENT = 4


def rule_memory_limit() -> int:
    """Bytes of indicator arrays one rule may need: SCANNER_RULE_MB (a server sets 1024 unless told:
    `budget.serve_defaults`); in the library without it, half the memory available now."""
    given = os.environ.get("SCANNER_RULE_MB", "")
    return int(float(given) * 2**20) if given else available_bytes() // 2


def check_length(text: str) -> None:
    """The first check on any rule text, before any other work: its length."""
    if not isinstance(text, str):
        raise RuleError("The rule must be text.")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(
            f"The rule is {len(text):,} characters long; the limit is {MAX_RULE_CHARS:,}. "
            "Shorten it (e.g. remove repeated spaces or conditions)."
        )


# CPython 3.11's AST construction keeps its recursion depth in state shared by threads: two parses at once
# can fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). The server
# parses rules and constraints on many threads, so one at a time.
_PARSING = threading.Lock()


def parse_expression(source: str) -> ast.Expression:
    """ast.parse(source, mode="eval"), one thread at a time."""
    with _PARSING:
        return ast.parse(source, mode="eval")


FUNCTIONS = {
    "crosses_above": "crosses_above(a, b): a rises above b on this bar",
    "crosses_below": "crosses_below(a, b): a falls below b on this bar",
    "between": "between(x, low, high): low <= x <= high",
    "prev": "prev(x, n=1): the value n bars earlier",
    "abs": "abs(x)",
    "min": "min(a, b)",
    "max": "max(a, b)",
    "weekly": "weekly(x): x on weekly bars (weeks ending Friday), from the first bar after the week ends",
    "monthly": "monthly(x): x on monthly bars, from the first bar after the month ends",
    "rank": "rank(x, by=sector): 1 for the highest x across the symbols on this bar (optionally within each group)",
    "percentile": "percentile(x, by=sector): 0-100 across the symbols on this bar (100: the highest)",
    "zscore": "zscore(x, by=sector): (x - mean) / std across the symbols on this bar",
}
CROSS_SECTION = {"rank": k.CS_RANK, "percentile": k.CS_PERCENTILE, "zscore": k.CS_ZSCORE}
reserve_names(FUNCTIONS)  # own columns cannot shadow them

PRESETS = {
    "Oversold bounce": "rsi(14) < 30 and close > sma(200)",
    "Golden cross": "crosses_above(sma(50), sma(200))",
    "52-week-high breakout": "close > prev(high_n(252))",
    "Volume surge": "relative_volume(20) > 2 and close > open",
    "Gap up": "gap_pct() > 3",
    "Bollinger squeeze breakout": "prev(bb_width(20, 2)) < 10 and crosses_above(close, bb_upper(20, 2))",
    "MACD bullish cross": "crosses_above(macd(12, 26, 9), macd_signal(12, 26, 9))",
    "Weekly uptrend pullback": "close > weekly(sma(10)) and rsi(14) < 40",
    "Bullish engulfing when oversold": "cdl_engulfing() > 0 and rsi(14) < 40",
}

COLUMN_PRESETS = {  # presets on a dataset's own columns: offered when the data has them
    "Cheap and oversold (pe_ratio)": "pe_ratio < 15 and rsi(14) < 40",
    "Technology in an uptrend (sector)": 'sector == "Technology" and close > sma(200) rank by roc(126)',
}


VOLUME_NAMES = frozenset({"volume", "avg_volume", "relative_volume", "obv"})


def missing_columns(rule: str, columns: Mapping[str, str], has_volume: bool = True) -> list[str]:
    """The columns a rule needs that the data lacks: own columns it names (a preset on pe_ratio needs a
    pe_ratio column), and volume when it reads volume and the file had none (`has_volume`)."""
    condition, rank_by, _ = split_rank(rule)
    wanted = {m.group(0) for m in _WORDS.finditer(f"{condition} {rank_by or ''}")}
    known = {*CATALOGUE, *SERIES, *FUNCTIONS, "and", "or", "not", "in"}
    words = {w.lower() for w in wanted if w[0] not in "\"'"}
    lacking = {w for w in words if w not in known and w not in columns}
    if not has_volume and words & VOLUME_NAMES:  # a file without volume: volume-based values are all empty
        lacking.add("volume")
    return sorted(lacking)


EXIT_PRESETS = {  # exit rules: true at a close exits at the next open
    "RSI overbought": "rsi(14) > 70",
    "Close below the 20-day average": "crosses_below(close, sma(20))",
    "New 10-day low": "close < prev(low_n(10))",
    "MACD bearish cross": "crosses_below(macd(12, 26, 9), macd_signal(12, 26, 9))",
}

_COMPARE = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}


@dataclass
class Signals:
    """Entry signals: a bool (bars x symbols) matrix for the engine, the rule that produced it, and `priority`,
    one number per hit in the order of np.nonzero(matrix) (row by row), not a dense array. The indicator values
    are not kept: they come back from the dataset's memo where shown, so a scan stays a bit matrix to keep
    and to cache, however many indicators its rule uses."""

    matrix: np.ndarray
    rule: str
    priority: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.matrix.sum())

    def symbols_hit(self) -> int:
        return int(self.matrix.any(axis=0).sum())

    def values(self, market: Market, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """Each indicator of the rule at the given cells, by its text (e.g. 'rsi(14)'); {} for a rule that is
        not a scanner rule (signals made by hand or loaded from a table)."""
        try:
            series = indicator_series(market, self.rule)
        except InputError:
            return {}
        return {label: np.broadcast_to(v, market.shape)[rows, cols] for label, v in series.items()}

    def table(self, market: Market, limit: int | None = None) -> pd.DataFrame:
        """Tidy hits, newest first: symbol, date, close and each indicator the rule used."""
        per_bar = np.count_nonzero(self.matrix, axis=1)
        first = 0
        if limit is not None:  # only the bars that hold the newest `limit` hits are searched
            from_end = np.cumsum(per_bar[::-1])
            first = len(per_bar) - int(np.searchsorted(from_end, limit)) - 1 if len(per_bar) else 0
            first = max(first, 0)
        rows, cols = np.nonzero(self.matrix[first:])
        at = int(per_bar[:first].sum()) + np.arange(len(rows))  # each hit's place in `priority`
        rows = rows + first
        order = np.lexsort((cols, -rows))[:limit]
        rows, cols, at = rows[order], cols[order], at[order]
        out = {
            "date": market.dates[rows],
            "symbol": np.array(market.symbols, dtype=object)[cols],
            "close": market.close[rows, cols],
            **self.values(market, rows, cols),
        }
        if self.priority is not None:
            out["rank_score"] = self.priority[at]
        return pd.DataFrame(out)

    def on(self, date: Any = None, market: Market | None = None) -> Screen:
        """The screen on one bar (the last bar on or before `date`; None: the latest): its matches ranked,
        and the symbols that entered (match now, not on the bar before) and left (the reverse). `market` is
        the scanned dataset, by default the one `scan()` was given."""
        market = market if market is not None else getattr(self, "_market", None)  # what scan() was given
        if market is None or market.shape != self.matrix.shape:
            raise InputError("Screen.on needs the scanned dataset: scan(market, rule).on(date) or .on(date, market).")
        bar = _bar_on(market, date)
        now = self.matrix[bar]
        before = self.matrix[bar - 1] if bar > 0 else np.zeros_like(now)
        matches = self._rows_on(market, bar, np.flatnonzero(now))
        entered = matches[matches.symbol.isin([market.symbols[j] for j in np.flatnonzero(now & ~before)])]
        left = self._rows_on(market, bar, np.flatnonzero(before & ~now))
        left = left.drop(columns=[c for c in ("rank", "rank_score") if c in left])
        return Screen(market.dates[bar], matches.reset_index(drop=True), entered.reset_index(drop=True), left)

    def _rows_on(self, market: Market, bar: int, cols: np.ndarray) -> pd.DataFrame:
        """Symbol, rank (when the rule ranks), close and the rule's values on one bar, best first."""
        rows = np.full(len(cols), bar)
        out: dict[str, Any] = {"symbol": np.array(market.symbols, dtype=object)[cols]}
        if self.priority is not None:
            first = int(np.count_nonzero(self.matrix[:bar]))
            hit_cols = np.flatnonzero(self.matrix[bar])
            score = dict(zip(hit_cols.tolist(), self.priority[first : first + len(hit_cols)].tolist(), strict=True))
            out["rank_score"] = np.array([score.get(int(c), np.nan) for c in cols], float)
        out["close"] = market.close[rows, cols]
        out |= self.values(market, rows, cols)
        frame = pd.DataFrame(out)
        if self.priority is not None and len(frame):
            frame = frame.sort_values(["rank_score", "symbol"], ascending=[False, True], na_position="last")
            frame.insert(1, "rank", np.arange(1, len(frame) + 1))
        return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Screen:
    """A screen on one bar: `matches` (symbol, rank when the rule ranks, close and the rule's values, best
    first), `entered` (matches that did not match on the bar before) and `left` (the reverse, with their values
    on this bar)."""

    date: pd.Timestamp
    matches: pd.DataFrame
    entered: pd.DataFrame
    left: pd.DataFrame


def _bar_on(market: Market, date: Any) -> int:
    """The last bar on or before a date (None: the latest); InputError for a date before the data or not a date."""
    if date is None:
        return len(market.dates) - 1
    try:
        when = pd.Timestamp(date)
    except (TypeError, ValueError):
        when = pd.NaT
    if when is pd.NaT:
        raise InputError(f"The date {str(date)[:40]!r} is not a date; use YYYY-MM-DD.")
    bar = int(market.dates.searchsorted(when.normalize(), side="right")) - 1
    if bar < 0:
        raise InputError(f"The data starts on {market.dates[0].date()}; choose a date from then on.")
    return bar


@dataclass(frozen=True)
class Condition:
    """One structured condition for the UI's widgets: `left op right`, e.g. ('rsi(14)', '<', '30')."""

    left: str
    op: str
    right: str


def conditions_to_rule(conditions: list[Condition], join: str = "and") -> str:
    """The rule text for a list of widget conditions; it then compiles exactly like typed text."""
    if join not in ("and", "or"):
        raise RuleError(f"Conditions are joined with 'and' or 'or', not {join!r}.")
    parts = []
    for c in conditions:
        if c.op in ("crosses_above", "crosses_below"):
            parts.append(f"{c.op}({c.left}, {c.right})")
        elif c.op in ("<", "<=", ">", ">=", "==", "!="):
            parts.append(f"({c.left} {c.op} {c.right})")
        else:
            raise RuleError(f"Unknown comparison {c.op!r}; use <, <=, >, >=, ==, !=, crosses_above, crosses_below.")
    return f" {join} ".join(parts)


def available(columns: Mapping[str, str] | None = None) -> str:
    names = ", ".join(sorted(CATALOGUE))
    own = f"; the data's own columns: {', '.join(sorted(columns))}" if columns else ""
    return f"indicators: {names}; series: {', '.join(SERIES)}; functions: {', '.join(FUNCTIONS)}{own}"


def split_rank(text: str) -> tuple[str, str | None, bool]:
    """'rule rank by expr [asc|desc]' -> (rule, expr, descending). Linear in the text's length."""
    check_length(text)
    parts = re.split(r"\brank\s+by\b", text, maxsplit=1, flags=re.IGNORECASE)
    if len(parts) == 1:
        return text, None, True
    expr = parts[1].rstrip()
    descending = True
    head, _, last = expr.rpartition(" ")
    if last.lower() in ("asc", "desc") and head.strip():
        descending = last.lower() == "desc"
        expr = head
    return parts[0], expr.strip(), descending


def parse_rule(text: str, columns: Mapping[str, str] | None = None) -> ast.Expression:
    """Parse and whitelist-check rule text; raises RuleError pointing at the offending token. `columns` are
    the dataset's own columns (`Market.column_kinds()`: name -> 'number' or 'text'), names a rule may use."""
    check_length(text)
    if not text.strip():
        raise RuleError("The rule is empty. Example: rsi(14) < 30 and close > sma(200)")
    depth = max_depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        max_depth = max(max_depth, depth)
    if max_depth > MAX_DEPTH:
        raise RuleError(f"The rule nests brackets {max_depth} deep; the limit is {MAX_DEPTH}.")
    source = _names_lowered(" ".join(text.strip().splitlines()))
    try:
        tree = parse_expression(source)
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        raise RuleError(f"Syntax error at column {col + 1}: {exc.msg}.{_hint(source)}\n{_caret(source, col)}") from None
    except (RecursionError, MemoryError, ValueError):
        raise RuleError("The rule is too deeply nested or malformed to parse.") from None
    depth = _tree_depth(tree)
    if depth > MAX_TREE_DEPTH:
        raise RuleError(
            f"The rule nests operators {depth} deep (e.g. 'not not not ...'); the limit is "
            f"{MAX_TREE_DEPTH}. Simplify it."
        )
    _Checker(source, columns or {}).visit(tree)
    return tree


_WORDS = re.compile(r"\"[^\"]*\"|'[^']*'|\b[A-Za-z_]\w*\b")


def _names_lowered(source: str) -> str:
    """Names are case-insensitive: RSI(14), Close, AND, PE_Ratio read as rsi(14), close, and, pe_ratio (every
    name of the language and every own column is lower case; text in quotes is kept)."""

    def lower(m: re.Match) -> str:
        word = m.group(0)
        return word.lower() if word[0] not in "\"'" and word.isascii() else word

    return _WORDS.sub(lower, source)


def _hint(source: str) -> str:
    """What the commonest slips mean, for a syntax error's message."""
    if re.search(r"\bcross(es)?\s+(above|below)\b", source, re.IGNORECASE):
        return (
            " Crossings are functions: crosses_above(a, b) or crosses_below(a, b), "
            "e.g. crosses_above(sma(50), sma(200))."
        )
    if re.search(r"(?<![<>=!])=(?!=)", source):
        return " To compare, write == (e.g. close == high); = alone is not a comparison."
    if "&&" in source or "||" in source:
        return " Combine conditions with and, or, not (e.g. rsi(14) < 30 and close > sma(200)), not && or ||."
    return ""


def _tree_depth(tree: ast.AST) -> int:
    """How deep the syntax tree goes, counted without recursion (a hostile rule cannot overflow the stack)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def indicator_calls(tree: ast.AST) -> set[str]:
    """The distinct indicator calls in a checked tree, e.g. {'sma(50)', 'rsi(14)'}."""
    return {
        ast.dump(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in CATALOGUE
    }


def indicator_names(rule: str, columns: Mapping[str, str] | None = None) -> list[str]:
    """The indicator of each distinct call in a rule and its ranking (e.g. ['rsi', 'sma', 'sma'] for
    'rsi(14) < 30 and sma(50) > sma(200)'), for memory estimates; RuleError for a bad rule."""
    rule_text, rank_by, _ = split_rank(rule)
    trees = [parse_rule(rule_text, columns), *([parse_rule(rank_by, columns)] if rank_by else [])]
    return _names_of(set().union(*(indicator_calls(t) for t in trees)))


def _names_of(calls: set[str]) -> list[str]:
    return sorted(re.search(r"id='(\w+)'", c).group(1) for c in calls)  # type: ignore[union-attr]


def check_budget(market: Market, *trees: ast.AST) -> None:
    """Refuse a rule whose distinct indicators would need more memory than the limit, before computing any."""
    calls = set().union(*(indicator_calls(t) for t in trees))
    need = scan_bytes(market.close.nbytes, _names_of(calls))
    if len(calls) > MAX_INDICATORS or need > rule_memory_limit():
        limit_mb = rule_memory_limit() / 2**20
        source = "SCANNER_RULE_MB" if os.environ.get("SCANNER_RULE_MB") else "half the memory available now"
        raise RuleError(
            f"The rule uses {len(calls)} different indicators, which need about {need / 2**20:,.0f} MB on "
            f"this dataset; the limits are {MAX_INDICATORS} indicators and {limit_mb:,.0f} MB "
            f"({source}). Use fewer different windows."
        )


def _caret(source: str, col: int) -> str:
    return f"  {source}\n  {' ' * max(col, 0)}^"


class _Checker(ast.NodeVisitor):
    """Reject every node that is not on the whitelist, before any evaluation."""

    def __init__(self, source: str, columns: Mapping[str, str]) -> None:
        self.source = source
        self.columns = columns

    def fail(self, node: ast.AST, what: str) -> NoReturn:
        col = getattr(node, "col_offset", 0)
        where = f"{what} (column {col + 1}).\n{_caret(self.source, col)}"
        raise RuleError(f"{where}\nAvailable: {available(self.columns)}.")

    def generic_visit(self, node: ast.AST) -> None:
        allowed = (
            ast.Expression,
            ast.BoolOp,
            ast.And,
            ast.Or,
            ast.UnaryOp,
            ast.Not,
            ast.USub,
            ast.UAdd,
            ast.BinOp,
            ast.Compare,
            ast.Load,
            *_COMPARE,
            *_ARITH,
        )
        if isinstance(node, ast.BinOp | ast.UnaryOp) and isinstance(node.op, ast.BitAnd | ast.BitOr | ast.Invert):
            self.fail(node, "&, | and ~ are not allowed: combine conditions with and, or, not")
        if not isinstance(node, allowed):
            token = ast.get_source_segment(self.source, node) or type(node).__name__
            self.fail(node, f"{token!r} is not allowed in a rule")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exp = node.right
            power = _literal(exp)
            if power is None or not abs(power) <= MAX_EXPONENT:
                self.fail(node, f"Exponents must be a number between -{MAX_EXPONENT} and {MAX_EXPONENT}")
        super().generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        """Text compares by equality with a text column: sector == "Energy", sector in ("Energy", "Utilities")."""
        sides = [node.left, *node.comparators]
        if not any(_is_text(n) or self.columns.get(getattr(n, "id", "")) == "text" for n in sides):
            return self.generic_visit(node)
        example = 'sector == "Energy" or sector in ("Energy", "Utilities")'
        if len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn):
            named = next((n.id for n in sides if isinstance(n, ast.Name) and self.columns.get(n.id) == "text"), None)
            what = f"{named} is text: compare it with" if named else "Text compares with"
            self.fail(node, f"{what} ==, !=, in or not in, one comparison at a time, e.g. {example}")
        column, value = node.left, node.comparators[0]
        if not (isinstance(column, ast.Name) and self.columns.get(column.id) == "text"):
            texts = [n for n, k in self.columns.items() if k == "text"]
            which = f"its text columns are {', '.join(sorted(texts))}" if texts else "the data has no text column"
            self.fail(column, f"Text in quotes compares with a text column ({which}), e.g. {example}")
        listed = isinstance(node.ops[0], ast.In | ast.NotIn)
        items = value.elts if listed and isinstance(value, ast.Tuple | ast.List) else [value]
        if not all(_is_text(v) for v in items) or (not listed and not _is_text(value)) or len(items) > 100:
            self.fail(value, f"{column.id} compares with text in quotes (up to 100 in a list), e.g. {example}")
        return None

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.fail(node, 'Text in quotes only compares with a text column, e.g. sector == "Energy"')
        value = _literal(node)
        if value is None or not abs(value) <= 1e15:  # NaN, inf and huge ints fail
            self.fail(node, f"{node.value!r} is not allowed: only ordinary numbers")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in SERIES or self.columns.get(node.id) == "number":
            return
        if node.id in CATALOGUE or node.id in FUNCTIONS:
            self.fail(node, f"{node.id} is a function: write {node.id}(...)")
        if node.id in self.columns:
            self.fail(node, f'{node.id} is text: compare it with == or in, e.g. {node.id} == "{node.id.title()}"')
        self.fail(node, f"Unknown name {node.id!r}")

    def visit_Call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name):
            self.fail(node, "Only plain function calls like sma(50) are allowed")
        name = node.func.id
        if name in CROSS_SECTION:
            return self._cross_section(node, name)
        if node.keywords:
            self.fail(node.keywords[0].value, f"{name}() takes positional arguments only")
        if name in CATALOGUE:
            params = CATALOGUE[name].params
            if len(node.args) > len(params):
                sig = ", ".join(p.name for p in params)
                self.fail(node, f"{name}({sig}) takes at most {len(params)} arguments, got {len(node.args)}")
            for p, arg in zip(params, node.args, strict=False):
                if p.kind == "series":
                    if not (isinstance(arg, ast.Name) and arg.id in SERIES):
                        self.fail(arg, f"{name}'s {p.name} must be one of {', '.join(SERIES)}")
                else:
                    value = _literal(arg)
                    ok = value is not None and (p.kind == "float" or float(value).is_integer())
                    if not ok or value is None or not 0 < value <= 5000:
                        self.fail(
                            arg,
                            f"{name}'s {p.name} must be a positive {_KIND_WORD[p.kind]} up to 5000",
                        )
        elif name in FUNCTIONS:
            want = {
                "crosses_above": (2, 2),
                "crosses_below": (2, 2),
                "between": (3, 3),
                "prev": (1, 2),
                "abs": (1, 1),
                "min": (2, 2),
                "max": (2, 2),
                "weekly": (1, 1),
                "monthly": (1, 1),
            }[name]
            if not want[0] <= len(node.args) <= want[1]:
                self.fail(node, f"{FUNCTIONS[name]} takes {_count(*want)} arguments, got {len(node.args)}")
            if name == "prev" and len(node.args) == 2:
                lag = _literal(node.args[1])
                if lag is None or not float(lag).is_integer() or not 1 <= lag <= 5000:
                    self.fail(node.args[1], "prev's n must be a whole number from 1 to 5000")
            if name in PERIODS:
                for inner in ast.walk(node.args[0]) if node.args else ():
                    if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in PERIODS:
                        self.fail(inner, f"{inner.func.id}() cannot sit inside {name}(): use one period per value")
            for arg in node.args:
                self.visit(arg)
        else:
            self.fail(node.func, f"Unknown function {name!r}")

    def _cross_section(self, node: ast.Call, name: str) -> None:
        """rank/percentile/zscore(x) with an optional by=<text column>."""
        if len(node.args) != 1:
            self.fail(node, f"{FUNCTIONS[name]} takes 1 argument, got {len(node.args)}")
        texts = sorted(n for n, kind in self.columns.items() if kind == "text")
        for kw in node.keywords:
            if kw.arg != "by":
                self.fail(kw.value, f"{name}() takes one keyword, by=<a text column>, e.g. {name}(roc(126), by=sector)")
            if not (isinstance(kw.value, ast.Name) and self.columns.get(kw.value.id) == "text"):
                which = f"its text columns are {', '.join(texts)}" if texts else "the data has no text column"
                self.fail(kw.value, f"{name}'s by= names a text column ({which})")
        self.visit(node.args[0])


_KIND_WORD = {"int": "whole number", "float": "number"}


def _count(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _literal(node: ast.AST) -> float | None:
    """A plain number written in the rule (not a bool, text or anything else), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    return None


class _Evaluator:
    """Evaluate a checked tree to arrays; records the indicator values it used for display."""

    def __init__(self, memo: Indicators, source: str) -> None:
        self.memo = memo
        self.source = source
        self.used: dict[str, np.ndarray] = {}

    def eval(self, node: ast.AST):
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _Expression(self, node):
        return self.eval(node.body)

    def _Constant(self, node):
        return float(node.value)

    def _Name(self, node):
        if node.id in SERIES:
            return self.memo.series(node.id)
        value = self.memo.market.own_column(node.id)[0]
        self.used[node.id] = value
        return value

    def _BoolOp(self, node):
        values = [_as_bool(self.eval(v)) for v in node.values]
        op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = op(out, v)
        return out

    def _UnaryOp(self, node):
        v = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return ~_as_bool(v)
        return -v if isinstance(node.op, ast.USub) else v

    def _BinOp(self, node):
        with np.errstate(all="ignore"):
            return _ARITH[type(node.op)](self.eval(node.left), self.eval(node.right))

    def _Compare(self, node):
        if any(_is_text(n) or isinstance(n, ast.Tuple | ast.List) for n in node.comparators):
            return self._text_compare(node)  # the checker let only `text column == text` through
        left = self.eval(node.left)
        out = None
        with np.errstate(invalid="ignore"):
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self.eval(right_node)
                part = _COMPARE[type(op)](left, right)
                out = part if out is None else out & part
                left = right
        return out

    def _Call(self, node):
        name = node.func.id
        if name in CATALOGUE:
            spec = CATALOGUE[name]
            args = [self._param(p, a) for p, a in zip(spec.params, node.args, strict=False)]
            args += [p.default for p in spec.params[len(args) :]]
            value = self.memo.get(name, *args)
            self.used[ast.get_source_segment(self.source, node) or name] = value
            return value
        if name in PERIODS:
            return self._period(name, node)
        if name in CROSS_SECTION:
            return self._cross_section(name, node)
        args = [self.eval(a) for a in node.args]
        if name in ("crosses_above", "crosses_below"):
            a, b = (np.broadcast_to(x, self.memo.market.shape).astype(float) for x in args)
            pa, pb = k.shift_valid(np.ascontiguousarray(a), 1), k.shift_valid(np.ascontiguousarray(b), 1)
            with np.errstate(invalid="ignore"):
                if name == "crosses_above":
                    return (a > b) & (pa <= pb)
                return (a < b) & (pa >= pb)
        if name == "between":
            with np.errstate(invalid="ignore"):
                return (args[0] >= args[1]) & (args[0] <= args[2])
        if name == "prev":
            lag = int(args[1]) if len(args) > 1 else 1
            x = np.broadcast_to(args[0], self.memo.market.shape).astype(float)
            return k.shift_valid(np.ascontiguousarray(x), lag)
        if name == "abs":
            return np.abs(args[0])
        return (np.fmin if name == "min" else np.fmax)(args[0], args[1])

    def _cross_section(self, name: str, node: ast.Call) -> np.ndarray:
        """rank/percentile/zscore of x across the symbols on each bar, within each group of `by` if given."""
        market = self.memo.market
        x = np.ascontiguousarray(np.broadcast_to(self.eval(node.args[0]), market.shape), dtype=np.float64)
        groups = np.zeros((1, market.shape[1]))
        by = node.keywords[0].value if node.keywords else None  # the checker let only by=<text column> through
        if isinstance(by, ast.Name):
            groups = np.ascontiguousarray(market.own_column(by.id)[0], dtype=np.float64)
        value = k.cross_section(x, groups, CROSS_SECTION[name])
        self.used[ast.get_source_segment(self.source, node) or name] = value
        return value

    def _text_compare(self, node: ast.Compare) -> np.ndarray:
        """A text column against text: codes compared with the labels' codes; a bar without a value is false."""
        name = node.left.id  # type: ignore[attr-defined]
        codes, labels = self.memo.market.own_column(name)
        assert labels is not None
        value, op = node.comparators[0], node.ops[0]
        items = value.elts if isinstance(value, ast.Tuple | ast.List) else [value]
        wanted = [str(v.value) for v in items if isinstance(v, ast.Constant)]  # the checker let only text through
        missing = [w for w in wanted if w not in labels]
        if missing:
            close = [lab for lab in labels if lab.lower() == missing[0].lower()]
            hint = f"did you mean {close[0]!r}? " if close else ""
            shown = ", ".join(repr(lab) for lab in labels[:20]) + (" ..." if len(labels) > 20 else "")
            raise RuleError(f"{name} has no value {missing[0]!r}: {hint}its values are {shown}.")
        hit = np.isin(codes, [labels.index(w) for w in wanted])
        return hit if isinstance(op, ast.Eq | ast.In) else ~hit & ~np.isnan(codes)

    def _period(self, function: str, node: ast.Call) -> np.ndarray:
        """weekly(x) / monthly(x): x evaluated on the period bars (their indicators memoised on them), handed
        to the daily bars after each period ends (engine/periods.py); memoised per dataset and expression."""
        view = period_view(self.memo.market, function)
        inner = node.args[0]

        def compute() -> np.ndarray:
            value = _Evaluator(indicators_for(view.market), self.source).eval(inner)
            if isinstance(value, np.ndarray) and value.dtype == bool:
                raise RuleError(
                    f"{function}() takes a number (an indicator, a price or arithmetic of them), not a condition: "
                    f"e.g. {function}(close) > {function}(sma(10))."
                )
            return view.to_daily(value)

        daily = self.memo.memo(("period", function, ast.dump(inner)), compute)
        self.used[ast.get_source_segment(self.source, node) or function] = daily
        return daily

    def _param(self, p, node):
        if p.kind == "series":
            return node.id
        return int(node.value) if p.kind == "int" else float(node.value)


def _as_bool(v) -> np.ndarray:
    if isinstance(v, np.ndarray) and v.dtype == bool:
        return v
    raise RuleError("'and', 'or' and 'not' combine conditions (comparisons), not numbers: e.g. rsi(14) < 30.")


def evaluate(market: Market, text: str, memo: Indicators | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(bool matrix, indicator values used) for a condition; only for bars where the symbol traded."""
    tree = parse_rule(text, market.column_kinds())
    check_budget(market, tree)
    memo = memo or indicators_for(market)
    ev = _Evaluator(memo, " ".join(text.strip().splitlines()))
    result = ev.eval(tree)
    if not (isinstance(result, np.ndarray) and result.dtype == bool):
        raise RuleError("The rule must be a condition (true or false), e.g. close > sma(50), not a number.")
    result = np.broadcast_to(result, market.shape) & ~np.isnan(market.close)
    return np.ascontiguousarray(result), ev.used


def expression_values(market: Market, text: str) -> np.ndarray:
    """A number expression's (bars x symbols) values (a factor such as roc(20) - roc(60), or a ranking)."""
    check_length(text)
    tree = parse_rule(text, market.column_kinds())
    check_budget(market, tree)
    value = _Evaluator(indicators_for(market), text).eval(tree)
    if isinstance(value, np.ndarray) and value.dtype == bool:
        raise RuleError(f"{text!r} is a condition; give a number such as roc(20) or pe_ratio.")
    return np.ascontiguousarray(np.broadcast_to(value, market.shape), dtype=np.float64)


def scan(market: Market, rule: str, rank_by: str | None = None, descending: bool = True) -> Signals:
    """Evaluate a rule on every symbol and bar. `rank_by` (an expression) orders competing signals; it
    can also be written in the rule: '... rank by relative_volume(20) desc'."""
    check_length(rule)
    rule_text, inline_rank, inline_desc = split_rank(rule)
    if rank_by is None and inline_rank:
        rank_by, descending = inline_rank, inline_desc
    columns = market.column_kinds()
    check_budget(market, parse_rule(rule_text, columns), *([parse_rule(rank_by, columns)] if rank_by else []))
    memo = indicators_for(market)
    matrix, _ = evaluate(market, rule_text, memo)
    priority = None
    if rank_by:
        tree = parse_rule(rank_by, columns)
        ev = _Evaluator(memo, rank_by)
        value = np.broadcast_to(ev.eval(tree), market.shape)[matrix].astype(float)  # at the hits, row by row
        priority = value if descending else -value
    signals = Signals(matrix=matrix, rule=rule.strip(), priority=priority)
    signals.__dict__["_market"] = market  # for .on(date); not a field, so never stored (the server drops it)
    return signals


def indicator_series(market: Market, rule: str) -> dict[str, np.ndarray]:
    """Each indicator the rule uses, as a (bars x symbols) array (for charts: a scan keeps values at hits only);
    computed through the dataset's memo, so a rule just scanned costs nothing more."""
    rule_text = split_rank(rule)[0]
    tree = parse_rule(rule_text, market.column_kinds())
    check_budget(market, tree)
    ev = _Evaluator(indicators_for(market), " ".join(rule_text.strip().splitlines()))
    queue: deque[ast.AST] = deque([tree])  # breadth first, as ast.walk, but a period's call is one value: not entered
    while queue:
        node = queue.popleft()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (*CATALOGUE, *PERIODS):
            ev.eval(node)
            continue
        if isinstance(node, ast.Name) and node.id in market.extra and node.id not in market.categories:
            ev.eval(node)  # an own number column is shown beside the indicators
        queue.extend(ast.iter_child_nodes(node))
    return ev.used


@dataclass(frozen=True)
class RuleNumber:
    """A number written in a rule, which a grid search can vary (`rule.<index>` in a grid)."""

    index: int
    text: str
    start: int
    end: int
    context: str


def rule_numbers(rule: str) -> list[RuleNumber]:
    """Every numeric literal in the rule, in order, with a little text around it: 'rsi(⟨14⟩) < 30'."""
    if not isinstance(rule, str) or len(rule) > MAX_RULE_CHARS:
        return []
    line_starts = [0]
    for line in rule.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    found: list[RuleNumber] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(rule).readline))
    except (tokenize.TokenError, SyntaxError):
        return found
    for tok in tokens:
        if tok.type != tokenize.NUMBER:
            continue
        start = line_starts[tok.start[0] - 1] + tok.start[1]
        end = start + len(tok.string)
        context = f"{rule[max(0, start - 12) : start]}⟨{tok.string}⟩{rule[end : end + 12]}".replace("\n", " ")
        found.append(RuleNumber(len(found), tok.string, start, end, context.strip()))
    return found


_PARAM_WORDS = {"n": "period", "k": "width in std devs", "fast": "fast period", "slow": "slow period"}
_PARAM_WORDS |= {"signal": "signal period", "d": "%D period", "smooth": "smoothing", "source": "source"}


def number_titles(rule: str) -> dict[int, str]:
    """Each number of the rule named as an analyst reads it, with where it stands: 'RSI period (14 in
    rsi(14))', 'threshold of rsi(14) (30 in rsi(14) < 30)'; the text around it when the rule does not parse."""
    numbers = rule_numbers(rule)
    titles = {n.index: f"number {n.text} in {n.context.replace('⟨', '').replace('⟩', '')}" for n in numbers}
    try:
        tree = parse_expression(rule.replace("\n", " "))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return titles
    by_start = {n.start: n for n in numbers}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            number = child.operand if isinstance(child, ast.UnaryOp) else child
            if not isinstance(number, ast.Constant) or number.col_offset not in by_start:
                continue
            n = by_start[number.col_offset]
            where = ast.get_source_segment(rule.replace("\n", " "), node) or n.context
            titles[n.index] = f"{_number_role(node, child, rule)} ({n.text} in {where})"
    return titles


def _number_role(parent: ast.AST, child: ast.AST, rule: str) -> str:
    source = rule.replace("\n", " ")
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and child in parent.args:
        name, i = parent.func.id.lower(), parent.args.index(child)  # type: ignore[arg-type]
        spec = CATALOGUE.get(name)
        if spec is not None and i < len(spec.params):
            param = spec.params[i].name
            return f"{name.upper() if len(name) <= 4 else name} {_PARAM_WORDS.get(param, param)}"
        if name == "prev":
            return "bars back"
        return f"{name} argument {i + 1}"
    if isinstance(parent, ast.Compare):
        others = [parent.left, *parent.comparators]
        other = next((o for o in others if o is not child), None)
        text = ast.get_source_segment(source, other) if other is not None else None
        return f"threshold of {text}" if text else "threshold"
    return "number"


def substitute_numbers(rule: str, values: dict[int, float]) -> str:
    """The rule with number #i replaced by values[i] (ints stay ints, so sma(200) -> sma(150))."""
    numbers = rule_numbers(rule)
    for i in sorted(values, reverse=True):
        if not 0 <= i < len(numbers):
            raise RuleError(f"The rule has {len(numbers)} numbers; there is no number #{i}.")
        n, value = numbers[i], float(values[i])
        integral = value.is_integer() and not any(c in n.text for c in ".eE")
        text = str(int(value)) if integral else repr(value)
        rule = rule[: n.start] + text + rule[n.end :]
    return rule
