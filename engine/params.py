"""The one parameter table: every setting's name, unit, default, range, "off" value, label, URL key and grid key.

The library (`BacktestParams`, `Sizing`, `RiskLimits` take their defaults and validation from here), the
pages' widgets, links, the optimiser's grid keys, the CLI flags and the README's table all read this table,
so a parameter is added in one place and has one default everywhere.

Values are in user units (percent as 5.0 for 5%). A parameter with `off=True` is switched off by 0 in the UI,
a link or the CLI, and by None in the library; `to_library` is the one place that converts.

    TABLE["stop_loss"].parse("4.5")     -> 4.5
    TABLE["stop_loss"].parse("1e308")   -> ParamError("Stop-loss must be 0 (off) or 0.1 to 99 %, not 1e308.")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from . import _records as rec
from .errors import ParamError

SIZING_METHODS = rec.SIZING_NAMES
OBJECTIVE_METRICS = tuple(m for m in rec.GRID_METRICS if m not in ("n_trades", "final_equity"))
OPTIMIZE_MODES = ("split", "walk_forward", "all")
MAX_RULE_CHARS = 2_000  # the longest rule (entry or exit) accepted anywhere


@dataclass(frozen=True)
class Param:
    """One setting. `path` is its name in the library (`sizing.risk_pct`), in grids and on the CLI
    (`--sizing.risk-pct`); `url` its short key in links."""

    path: str
    url: str
    label: str
    kind: type  # float, int, bool or str
    default: Any  # in user units; 0 where `off` and off by default
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    unit: str = ""
    off: bool = False  # 0 switches it off (None in the library)
    choices: tuple[str, ...] = ()
    help: str = ""
    grid: tuple[float, float, float] | None = None  # default (from, to, step) when varied in a grid; None: no grid key
    methods: tuple[str, ...] = ()  # sizing methods that read it (empty: always used)
    off_word: str = "off"  # what 0 means where `off`, in labels and messages ("all" for trades per path)
    text: str = "rule"  # what free text (a str without choices) holds, for messages

    @cached_property  # read for every field of every backtest's settings
    def group(self) -> str:
        return self.path.rpartition(".")[0]

    @cached_property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def cli(self) -> str:
        return "--" + self.path.replace("_", "-")

    @property
    def library_default(self) -> Any:
        return self.to_library(self.default)

    def to_library(self, value: Any) -> Any:
        """User value -> library value: 0 -> None where 0 means off."""
        return None if self.off and not value else value

    def to_user(self, value: Any) -> Any:
        """Library value -> user value: None -> 0 where 0 means off."""
        return self.kind() if value is None and self.off else value

    def allowed(self) -> str:
        """The allowed values in words, for messages and help."""
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is str:
            return (
                f"a {self.text} of at most {_num(self.hi)} characters (empty: {self.off_word if self.off else 'none'})"
            )
        unit = {"%": "%", "x": "x", "currency": "", "": ""}.get(self.unit, f" {self.unit}")
        span = f"{_num(self.lo)} to {_num(self.hi)}{unit}"
        return f"0 ({self.off_word}) or {span}" if self.off else span

    def check(self, value: Any) -> Any:
        """The value, converted to `kind`, or ParamError naming the parameter, the value and the range."""
        try:
            out = _convert(self.kind, value)
        except (TypeError, ValueError, OverflowError):
            raise self._error(value) from None
        if self.choices and out not in self.choices:
            raise self._error(value)
        if self.kind is str and not self.choices and self.hi is not None and len(out) > self.hi:
            raise ParamError(f"{self.label} must be {self.allowed()}, not {len(out):,} characters.")
        if self.kind in (int, float):
            if not math.isfinite(out):
                raise self._error(value)
            if self.off and out == 0:
                return out
            if (self.lo is not None and out < self.lo) or (self.hi is not None and out > self.hi):
                raise self._error(value)
        return out

    def parse(self, text: str) -> Any:
        """A link or CLI value (text) -> checked user value."""
        if self.kind is bool:
            low = str(text).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise self._error(text)
        return self.check(str(text).strip())

    def format(self, value: Any) -> str:
        """The value as a link writes it (short, exact)."""
        if self.kind is bool:
            return "1" if value else "0"
        if self.kind is float:
            return repr(float(value)).removesuffix(".0")
        return str(value)

    def shown(self, value: Any) -> str:
        """The value in words for messages: 0 (off), false, 100,000."""
        if self.kind is bool:
            return "true" if value else "false"
        if self.off and not value:
            return f"{'empty' if self.kind is str else 0} ({self.off_word})"
        if self.kind in (int, float):
            return _num(value)
        return str(value)

    def _error(self, value: Any) -> ParamError:
        shown = value if isinstance(value, str) else repr(value)
        return ParamError(f"{self.label} must be {self.allowed()}, not {shown}.")


MAX_PARTIAL_EXITS = 5


@lru_cache(maxsize=256)
def partial_exit_levels(text: str) -> tuple[tuple[float, float], ...]:
    """`partial_exits` text -> ((share of the position %, distance from the average fill %), ...):
    "50@10,25@20" -> ((50.0, 10.0), (25.0, 20.0)). ParamError says what is wrong and what is expected.
    Memoised: the parameters check the text and the kernel's inputs read the levels."""
    expected = (
        "Partial exits must be share@percent pairs with rising percents and shares adding up to at most 100, "
        f"at most {MAX_PARTIAL_EXITS} of them, e.g. 50@10,25@20"
    )
    levels = []
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        share, at, pct = part.partition("@")
        try:
            pair = (float(share.strip().rstrip("%")), float(pct.strip().rstrip("%")))
        except ValueError:
            raise ParamError(f"{expected}; not {part!r}.") from None
        if not at or not all(math.isfinite(x) and x > 0 for x in pair) or pair[0] > 100:
            raise ParamError(f"{expected}; not {part!r}.")
        levels.append(pair)
    if len(levels) > MAX_PARTIAL_EXITS or sum(s for s, _ in levels) > 100 + 1e-9:
        raise ParamError(f"{expected}; not {text[:100]!r}.")
    if any(b[1] <= a[1] for a, b in zip(levels, levels[1:], strict=False)):
        raise ParamError(f"{expected}; the percents of {text[:100]!r} do not rise.")
    return tuple(levels)


def _convert(kind: type, value: Any) -> Any:
    if kind is int:
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind is float:
        return float(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(value)
    return str(value)


def _num(x: float | None) -> str:
    if x is None:
        return "any"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


SEARCHES = ("grid", "random", "tpe")  # engine/search.py
REBALANCE_CHOICES = ("off", "W", "M", "Q", "N")  # signals, or rotation weekly, monthly, quarterly, every N bars
WEIGHTINGS = ("equal", "score", "inverse_vol")
_SIZE = "Sizing"
PARAMS: tuple[Param, ...] = (
    # Backtest: BacktestParams fields.
    Param("initial_capital", "capital", "Initial capital", float, 100_000.0, 1_000.0, 1e12, 10_000.0, "currency"),
    Param(
        "signal_type",
        "side",
        "Direction",
        str,
        "long",
        choices=("long", "short", "both"),
        help="both: the entry rule opens longs and the short rule opens shorts, one position per symbol.",
    ),
    Param(
        "short_rule",
        "short",
        "Short rule",
        str,
        "",
        hi=MAX_RULE_CHARS,
        help="With Direction both: a scanner rule whose signals open shorts (the entry rule's open longs).",
    ),
    Param(
        "on_opposite",
        "opp",
        "On an opposite signal",
        str,
        "ignore",
        choices=rec.OPPOSITE_NAMES,
        help="With Direction both, a held position on the other side's signal: ignore it; close at the next "
        "open; or reverse (close and open the other side at that same open).",
    ),
    Param(
        "rebalance",
        "reb",
        "Rebalance",
        str,
        "off",
        choices=REBALANCE_CHOICES,
        help="off: positions open on signals. W, M, Q: rotation at each week's, month's or quarter's last bar; "
        "N: every N bars. At that close the rule's hits are ranked by its `rank by`, the top ones are the "
        "target, and at the next open the others are sold and the target bought at its weights.",
    ),
    Param(
        "rebalance_bars",
        "rebn",
        "Rebalance every",
        int,
        21,
        1,
        2_520,
        1,
        "bars",
        help="With Rebalance N: the rebalance bars are the N-th, 2N-th, ... bar of the data.",
    ),
    Param(
        "hold_top",
        "top",
        "Hold the top",
        int,
        10,
        1,
        1_000,
        1,
        "symbols",
        help="Rotation: how many of the ranked hits to hold (fewer when fewer pass the rule).",
    ),
    Param(
        "weighting",
        "wt",
        "Weighting",
        str,
        "equal",
        choices=WEIGHTINGS,
        help="Rotation: equal weights; by the `rank by` score (positive scores only); or by the inverse of "
        "each symbol's volatility (sizing's volatility lookback).",
    ),
    Param(
        "rebalance_band",
        "band",
        "Rebalance band",
        float,
        0.0,
        0.0,
        50.0,
        0.5,
        "%",
        help="Rotation: a holding's trim or top-up smaller than this share of the portfolio is skipped.",
    ),
    Param(
        "max_positions",
        "maxpos",
        "Max positions",
        int,
        10,
        1,
        1_000,
        1,
        "positions",
        help="Open positions at once; equal weight sizes each at equity / this.",
        grid=(5, 20, 5),
    ),
    Param(
        "holding_period",
        "hold",
        "Holding period",
        int,
        20,
        1,
        10_000,
        1,
        "bars",
        off=True,
        help="Exit at the close of the N-th bar held (the entry bar counts as 1).",
        grid=(5, 40, 5),
    ),
    Param(
        "stop_loss",
        "sl",
        "Stop-loss",
        float,
        5.0,
        0.1,
        99.0,
        0.5,
        "%",
        off=True,
        help="Percent below (long) or above (short) the entry fill.",
        grid=(2.0, 10.0, 2.0),
    ),
    Param(
        "take_profit",
        "tp",
        "Take-profit",
        float,
        0.0,
        0.1,
        99.0,
        0.5,
        "%",
        off=True,
        help="Percent above (long) or below (short) the entry fill.",
        grid=(5.0, 25.0, 5.0),
    ),
    Param(
        "trailing_stop",
        "trail",
        "Trailing stop",
        float,
        0.0,
        0.1,
        99.0,
        0.5,
        "%",
        off=True,
        help="Starts this percent below the entry fill (long; above it, short) and only moves up, trailing "
        "the highest high since entry (a short's: down, the lowest low); the tighter of this and the "
        "stop-loss applies.",
        grid=(2.0, 10.0, 2.0),
    ),
    Param(
        "trailing_atr",
        "tratr",
        "ATR trailing stop",
        float,
        0.0,
        0.5,
        20.0,
        0.5,
        "x ATR",
        off=True,
        help="Trail k x ATR (sizing's ATR period, at the signal bar) behind the best price since entry.",
        grid=(1.0, 4.0, 1.0),
    ),
    Param(
        "exit_rule",
        "exit",
        "Exit rule",
        str,
        "",
        hi=MAX_RULE_CHARS,
        help="A scanner rule; true at a close (from the entry bar on) exits at the next open, before stops.",
    ),
    Param(
        "entry_order",
        "order",
        "Entry order",
        str,
        "market",
        choices=rec.ORDER_NAMES,
        help="market: at the next open; limit: a better price (a long's below the signal's close); stop: a "
        "breakout (a long's above it). An order lives for 'Order valid for' bars, then expires.",
    ),
    Param(
        "entry_offset_pct",
        "eoff",
        "Entry offset",
        float,
        0.0,
        0.0,
        50.0,
        0.25,
        "%",
        help="A limit or stop order's distance from the signal bar's close (0: at the close).",
        grid=(0.5, 3.0, 0.5),
    ),
    Param(
        "entry_offset_atr",
        "eoatr",
        "Entry offset in ATR",
        float,
        0.0,
        0.1,
        20.0,
        0.25,
        "x ATR",
        off=True,
        help="Instead of the percent offset: k x ATR (sizing's ATR period) at the signal bar.",
        grid=(0.5, 2.0, 0.5),
    ),
    Param(
        "entry_valid_bars",
        "evalid",
        "Order valid for",
        int,
        1,
        1,
        1_000,
        1,
        "bars",
        help="Bars a limit or stop order stays live after its signal; unfilled by then, it expires.",
        grid=(1, 5, 1),
    ),
    Param(
        "max_adds",
        "adds",
        "Max adds",
        int,
        0,
        1,
        20,
        1,
        "",
        off=True,
        help="Scaling in: how many times a position may add when the add rule is true (at the next open).",
        grid=(1, 3, 1),
    ),
    Param(
        "add_rule",
        "add",
        "Add rule",
        str,
        "",
        hi=MAX_RULE_CHARS,
        help="A scanner rule; true at a close while a position is open, it adds at the next open (sized and "
        "limited as an entry, on the whole position); stops then measure from the average fill.",
    ),
    Param(
        "add_min_bars",
        "addgap",
        "Bars between adds",
        int,
        1,
        1,
        1_000,
        1,
        "bars",
        help="At least this many bars from a position's last fill to its next add.",
        grid=(1, 10, 3),
    ),
    Param(
        "partial_exits",
        "pexit",
        "Partial exits",
        str,
        "",
        hi=100,
        text="list of share@percent pairs",
        help="Scaling out, e.g. 50@10,25@20: sell 50% of the position at +10% from its average fill and 25% "
        "more at +20% (a short's below it).",
    ),
    Param(
        "breakeven_after_partial",
        "breakeven",
        "Breakeven after partial",
        bool,
        False,
        help="On: after the first partial exit the stop moves to the average fill (from the next bar).",
    ),
    Param("commission", "comm", "Commission", float, 0.0, 0.0, 5.0, 0.01, "%", help="Percent of traded value."),
    Param(
        "commission_fixed",
        "commfix",
        "Commission per order",
        float,
        0.0,
        0.0,
        10_000.0,
        1.0,
        "currency",
        help="A fixed amount per order, added to the percent commission.",
    ),
    Param(
        "commission_min",
        "commmin",
        "Minimum commission",
        float,
        0.0,
        0.0,
        10_000.0,
        1.0,
        "currency",
        help="Each order pays at least this much commission.",
    ),
    Param(
        "slippage_bps",
        "slip",
        "Slippage",
        float,
        0.0,
        0.0,
        500.0,
        1.0,
        "bps",
        help="Moves every fill against the trader.",
    ),
    Param(
        "borrow_pct",
        "borrow",
        "Borrow fee",
        float,
        0.0,
        0.0,
        100.0,
        0.25,
        "% a year",
        help="Charged on a short's value at each close it is held through, per bar: rate / bars per year.",
    ),
    Param(
        "margin_interest_pct",
        "margin",
        "Margin interest",
        float,
        0.0,
        0.0,
        100.0,
        0.25,
        "% a year",
        help="Charged on negative cash (a margin loan) at each close, per bar: rate / bars per year.",
    ),
    Param(
        "cash_interest_pct",
        "cashint",
        "Interest on cash",
        float,
        0.0,
        0.0,
        50.0,
        0.25,
        "% a year",
        help="Earned on positive cash at each close, per bar: rate / bars per year.",
    ),
    Param(
        "fractional_shares",
        "frac",
        "Fractional shares",
        bool,
        True,
        help="Off: share counts are rounded down to whole shares.",
    ),
    Param("allow_leverage", "lev", "Allow leverage", bool, False, help="Off: gross exposure never exceeds equity."),
    Param(
        "max_leverage",
        "maxlev",
        "Max leverage",
        float,
        2.0,
        1.0,
        10.0,
        0.5,
        "x",
        help="Gross exposure cap as a multiple of equity, when leverage is allowed.",
    ),
    Param(
        "shrink_unfunded",
        "shrink",
        "Shrink unfunded trades",
        bool,
        False,
        help="On: a trade that does not fit is cut to what fits; off: skipped.",
    ),
    Param(
        "benchmark",
        "bench",
        "Benchmark",
        str,
        "",
        hi=40,
        text="symbol of the dataset",
        help="The symbol alpha, beta and the buy-and-hold curve compare with; empty: equal weight of all.",
    ),
    Param(
        "risk_free_pct",
        "rf",
        "Risk-free rate",
        float,
        0.0,
        0.0,
        20.0,
        0.25,
        "%",
        help="Annual rate subtracted in the Sharpe and Sortino ratios.",
    ),
    # Sizing: Sizing fields.
    Param("sizing.method", "size", "Position sizing", str, "equal_weight", choices=SIZING_METHODS),
    Param(
        "sizing.risk_pct",
        "risk",
        "Risk per trade",
        float,
        1.0,
        0.05,
        20.0,
        0.25,
        "%",
        grid=(0.5, 2.0, 0.5),
        methods=("fixed_fractional", "atr_risk"),
    ),
    Param(
        "sizing.kelly_multiplier",
        "kmult",
        "Kelly multiplier",
        float,
        0.5,
        0.05,
        1.0,
        0.05,
        grid=(0.25, 1.0, 0.25),
        methods=("kelly",),
    ),
    Param(
        "sizing.kelly_cap_pct",
        "kcap",
        "Kelly cap",
        float,
        25.0,
        1.0,
        100.0,
        5.0,
        "%",
        grid=(10.0, 40.0, 10.0),
        methods=("kelly",),
    ),
    Param(
        "sizing.kelly_min_trades",
        "kmin",
        "Kelly min closed trades",
        int,
        20,
        1,
        1_000,
        5,
        "trades",
        grid=(10, 40, 10),
        methods=("kelly",),
    ),
    Param(
        "sizing.vol_target_pct",
        "vt",
        "Target volatility",
        float,
        10.0,
        0.5,
        100.0,
        0.5,
        "%",
        grid=(5.0, 20.0, 5.0),
        methods=("volatility_target",),
    ),
    Param(
        "sizing.vol_lookback", "vlb", "Volatility lookback", int, 20, 2, 504, 5, "bars", methods=("volatility_target",)
    ),
    Param("sizing.atr_period", "atrn", "ATR period", int, 14, 2, 200, 1, "bars", methods=("atr_risk",)),
    Param(
        "sizing.atr_multiplier",
        "atrk",
        "ATR multiple",
        float,
        2.0,
        0.5,
        10.0,
        0.5,
        "x",
        grid=(1.0, 4.0, 1.0),
        methods=("atr_risk",),
    ),
    Param("sizing.atr_stop", "atrstop", "Stop at k x ATR", bool, False, methods=("atr_risk",)),
    Param(
        "sizing.fixed_amount",
        "amt",
        "Amount per trade",
        float,
        10_000.0,
        100.0,
        1e9,
        1_000.0,
        "currency",
        grid=(5_000.0, 20_000.0, 5_000.0),
        methods=("fixed_amount",),
    ),
    # Risk limits: RiskLimits fields; all off by default, in the library and the UI alike.
    Param(
        "limits.max_position_pct",
        "lpos",
        "Max single position",
        float,
        0.0,
        0.1,
        100.0,
        1.0,
        "%",
        off=True,
        help="Cap on one new position's value as a percent of equity.",
    ),
    Param(
        "limits.max_sector_pct",
        "lsec",
        "Max sector exposure",
        float,
        0.0,
        0.1,
        1_000.0,
        5.0,
        "%",
        off=True,
        help="Cap on one sector's open value as a percent of equity (needs a sector column).",
    ),
    Param(
        "limits.max_volume_pct",
        "lvol",
        "Max volume share",
        float,
        0.0,
        0.01,
        100.0,
        1.0,
        "%",
        off=True,
        help="An order may take at most this percent of the signal bar's volume; larger ones are cut (below "
        "10% of their size: skipped).",
    ),
    Param(
        "limits.max_correlation",
        "lcorr",
        "Max correlation",
        float,
        0.0,
        0.01,
        1.0,
        0.05,
        off=True,
        help="Skip a signal whose returns correlate above this with an open position's.",
    ),
    Param("limits.correlation_lookback", "clb", "Correlation lookback", int, 60, 3, 504, 5, "bars"),
    # Optimize page.
    Param("optimize.objective", "obj", "Objective", str, "sharpe", choices=OBJECTIVE_METRICS),
    Param(
        "optimize.min_trades",
        "mint",
        "Min trades",
        int,
        20,
        0,
        100_000,
        1,
        "trades",
        help="Combinations with fewer trades are not ranked.",
    ),
    Param("optimize.mode", "mode", "Overfitting check", str, "split", choices=OPTIMIZE_MODES),
    Param("optimize.split", "split", "In-sample share", float, 0.7, 0.5, 0.9, 0.05),
    Param("optimize.train_bars", "train", "Train bars", int, 504, 60, 5_000, 21, "bars"),
    Param("optimize.test_bars", "test", "Test bars", int, 126, 20, 2_000, 21, "bars"),
    Param(
        "optimize.anchored",
        "anch",
        "Anchored windows",
        bool,
        False,
        help="On: every training window starts at the first bar (expanding); off: rolling windows.",
    ),
    Param(
        "optimize.search",
        "search",
        "Search",
        str,
        "grid",
        choices=SEARCHES,
        help="grid: every combination; random: a seeded sample of Trials distinct ones; tpe: Optuna's TPE "
        "model, asked in batches (the optional extra `search`). Every trial counts in the overfitting figures.",
    ),
    Param(
        "optimize.n_trials",
        "trials",
        "Trials",
        int,
        200,
        1,
        100_000,
        10,
        help="random and tpe: how many combinations to evaluate (at most the space's size).",
    ),
    Param("optimize.seed", "seed", "Search seed", int, 0, 0, 2**31 - 1, 1, help="The same seed, the same trials."),
    Param(
        "optimize.time_budget_s",
        "budget",
        "Time budget",
        float,
        0.0,
        1.0,
        86_400.0,
        10.0,
        "s",
        off=True,
        help="Stop evaluating new trials after this long (the ones done are kept and ranked). 0: no limit.",
    ),
    Param(
        "optimize.constraint",
        "cons",
        "Constraint",
        str,
        "",
        hi=300,
        text="constraint",
        help="Only combinations where this holds, e.g. take_profit > stop_loss (a rule number: rule_1).",
    ),
    # Monte Carlo page.
    Param(
        "montecarlo.method",
        "mcm",
        "Method",
        str,
        "bootstrap",
        choices=("bootstrap", "shuffle", "daily_blocks"),
        help="bootstrap: draw trades with replacement; shuffle: same trades, random order; daily_blocks: "
        "resample the daily portfolio returns in blocks (keeps overlapping positions together).",
    ),
    Param("montecarlo.n_simulations", "mcn", "Simulations", int, 10_000, 100, 100_000, 1_000),
    Param(
        "montecarlo.n_trades",
        "mct",
        "Trades per path",
        int,
        0,
        2,
        100_000,
        10,
        "trades",
        off=True,
        help="0: as many as the backtest had (bootstrap only).",
        off_word="all",
    ),
    Param(
        "montecarlo.block_bars",
        "mcb",
        "Block length",
        int,
        20,
        1,
        250,
        5,
        "bars",
        help="Consecutive bars per block, for daily_blocks.",
    ),
    Param("montecarlo.seed", "mcs", "Seed", int, 0, 0, 2**31 - 1, 1),
    Param("montecarlo.drawdown_pct", "mcdd", "Drawdown threshold", float, 20.0, 1.0, 100.0, 1.0, "%"),
    # Scanner page: what happened after a hit (engine.forward_returns).
    Param(
        "events.horizons",
        "evh",
        "Horizons",
        str,
        "1,5,10,20,60",
        hi=60,
        text="list of bar counts",
        help="Bars after the signal at which its return is measured, comma-separated (1 to 2,520).",
    ),
    Param(
        "events.entry",
        "eve",
        "Entry",
        str,
        "next_open",
        choices=("next_open", "close"),
        help="next_open: in at the open after the signal (what a trader can do); close: at the signal's close.",
    ),
    Param(
        "events.cooldown",
        "evc",
        "Cooldown",
        int,
        0,
        0,
        2_520,
        1,
        "bars",
        help="A signal within this many bars of the previous counted one on the same symbol is dropped, so the "
        "hits of one move count once (0: every signal counts).",
    ),
    Param(
        "events.benchmark",
        "evb",
        "Benchmark",
        str,
        "universe",
        hi=40,
        text="benchmark",
        help="universe: the equal-weight return of every symbol over the same span; a symbol; or none.",
    ),
    # Data page and upload: how a file is read (`LoadOptions`). Not in links: a link names the dataset the
    # reading made.
    Param(
        "load.on_bad_rows",
        "badrows",
        "Bad rows",
        str,
        "raise",
        choices=("raise", "drop"),
        help="raise: name every bad row and load nothing; drop: load the rest and list what was left out.",
    ),
    Param(
        "load.prices",
        "prices",
        "Prices",
        str,
        "raw",
        choices=("raw", "adjusted", "split_adjusted"),
        help="adjusted: scale open, high and low by adj_close / close; split_adjusted: back-adjust the "
        "detected splits.",
    ),
    Param(
        "load.date_format",
        "datefmt",
        "Date format",
        str,
        "",
        hi=40,
        off=True,
        off_word="detect",
        text="date format",
        help="Empty: detect (and ask when the dates allow both orders); dayfirst, monthfirst or a strftime "
        "format such as %d.%m.%Y.",
    ),
    Param(
        "load.intraday",
        "intraday",
        "Intraday bars",
        str,
        "refuse",
        choices=("refuse", "daily"),
        help="refuse: daily bars only; daily: resample intraday bars to daily ones (first open, highest high, "
        "lowest low, last close, summed volume).",
    ),
    Param(
        "load.outlier_pct",
        "outlier",
        "Outlier threshold",
        float,
        50.0,
        1.0,
        10_000.0,
        10.0,
        "%",
        help="One-day moves beyond this are flagged.",
    ),
)

TABLE: dict[str, Param] = {p.path: p for p in PARAMS}
BY_URL: dict[str, Param] = {p.url: p for p in PARAMS}
BACKTEST_GROUPS = ("", "sizing", "limits")
UNLINKED_GROUPS = ("load",)  # settings a link does not carry


def group(name: str) -> list[Param]:
    """The parameters of one group: '' (BacktestParams' own), 'sizing', 'limits', 'optimize', 'montecarlo',
    'events', 'load'."""
    return list(_GROUPS.get(name, ()))


_GROUPS: dict[str, tuple[Param, ...]] = {  # every backtest checks its settings: the groups are built once
    g: tuple(p for p in PARAMS if p.group == g) for g in dict.fromkeys(p.group for p in PARAMS)
}


def backtest_params() -> list[Param]:
    return [p for p in PARAMS if p.group in BACKTEST_GROUPS]


def linked_params() -> list[Param]:
    """The settings a link carries: all but how a file is read."""
    return [p for p in PARAMS if p.group not in UNLINKED_GROUPS]


def grid_keys() -> dict[str, Param]:
    """Grid keys (besides `rule.<i>`): the parameters a grid may vary, by path (built once: read-only)."""
    return _GRID_KEYS


_GRID_KEYS: dict[str, Param] = {p.path: p for p in PARAMS if p.grid is not None}


def defaults(group_name: str) -> dict[str, Any]:
    """Library defaults of one group, by field name: what the dataclasses use."""
    return {p.name: p.library_default for p in group(group_name)}


def normalise(group_name: str, obj: Any) -> None:
    """Check a frozen dataclass's fields against the table, in place: 0 -> None where 0 means off, whole
    numbers to int. Raises ParamError naming every field at fault."""
    problems = []
    for p in group(group_name):
        value = getattr(obj, p.name)
        try:
            checked = p.check(p.to_user(value))
        except ParamError as exc:
            problems.append(f"{p.path}: {exc}")
            continue
        object.__setattr__(obj, p.name, p.to_library(checked))
    if problems:
        raise ParamError(" ".join(problems))


def library_fields(values: dict[str, Any]) -> dict[str, Any]:
    """User values by table path -> the library's keyword arguments by field name (0 or empty -> None where
    that means off)."""
    return {TABLE[path].name: TABLE[path].to_library(v) for path, v in values.items()}


def link_query(data_id: str | None, rule: str, values: dict[str, Any]) -> dict[str, str]:
    """The dashboard's query string for a dataset, a rule and settings (user values by path; a missing one is
    its default): what the pages write to the URL and the HTTP API returns, so both open the same run."""
    query = {"data": data_id} if data_id else {}
    query["rule"] = rule
    for p in linked_params():
        v = values.get(p.path, p.default)
        if v != p.default:
            query[p.url] = p.format(v)
    return query


def linked_values(query: dict[str, str]) -> tuple[dict[str, Any], list[tuple[Param, str, ParamError]]]:
    """The settings a link carries, by path (the default where it names none), and each value it gave that
    was refused (the parameter, the text, why): the reverse of `link_query`."""
    values, refused = {}, []
    for p in linked_params():
        values[p.path] = p.default
        if p.url in query:
            try:
                values[p.path] = p.parse(query[p.url])
            except ParamError as exc:
                refused.append((p, query[p.url], exc))
    return values, refused


def markdown_table() -> str:
    """The README's parameter table, generated (a test checks the README holds it)."""
    rows = ["| parameter (grid key, CLI flag) | URL | default | allowed | meaning |", "|---|---|---|---|---|"]
    for p in PARAMS:
        default = p.shown(p.default)
        meaning = p.label + (f": {p.help}" if p.help else "")
        grid = " (grid)" if p.grid else ""
        rows.append(f"| `{p.path}`{grid} | `{p.url}` | {default} | {p.allowed()} | {meaning} |")
    return "\n".join(rows)


assert len(BY_URL) == len(PARAMS), "URL keys must be unique"
