"""Public backtest API: a Market and entry signals in, trades, equity and metrics out.

Conversions to and from arrays happen here, once; the simulation itself is `_kernels.simulate`.
Rules (see `_kernels` for the order of events inside a bar):
- a signal at bar t enters at the open of bar t+1 (`entry_order="market"`), or places a limit or stop order
  live on bars t+1 .. t+`entry_valid_bars` that enters where it fills (README: Backtest rules); one position
  per symbol; signals while in a position or with an order live are ignored; signals competing for cash
  are taken by priority (highest first), then symbol order;
- stop-loss and take-profit are percentages of the entry fill; a bar that opens beyond either fills at
  the open; if one bar touches both, the stop is assumed hit first (conservative);
- `trailing_stop` (percent) or `trailing_atr` (k x ATR at the signal bar) trails the best price since entry
  (a long's level on bar j: max(entry fill, highest high of bars e..j-1) x (1 - trail)); with a stop-loss
  too, the tighter level applies; stops are checked before targets;
- `exit_rule` (a scanner rule) true at the close of bar t >= the entry bar exits at the open of bar t+1,
  before that bar's stops and targets;
- `holding_period` N exits at the close of the N-th bar held (the entry bar counts as 1);
- a position still open on a symbol's last bar exits at that close ("end_of_data"), or, when the data has a
  `delisting_return` column with a value on that bar, at the close x (1 + it) ("delisted");
- `rebalance` W, M, Q or N switches to rotation (engine/rotation.py): at each rebalance bar's close the
  rule's hits ranked by its `rank by` become the target (`hold_top`, `weighting`), traded at the next open;
  stops, the holding period and the limits apply to its positions as to any;
- commission is a percent of traded value plus `commission_fixed` per order, at least `commission_min`;
  slippage moves every fill against the trader by `slippage_bps` (not a limit order's);
- carry accrues per night held: borrow on shorts, margin interest on negative cash (charged to the longs),
  interest earned on positive cash; a trade's pnl is net of its fees, financing and dividends;
- trades carry `mae_pct` / `mfe_pct`: the worst and best excursion from the entry fill on the highs and lows
  of the bars held (an exit at the open counts only that open), and each entry-rule indicator's value at the
  signal bar;
- Kelly sizing learns from every closed trade and, while its fraction is <= 0, from shadow trades: the
  signals it skips, followed at a unit stake with the same exits, so it can start trading again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from . import _kernels as k
from . import _records as rec
from . import params as table
from ._records import COMBO
from .data import DataError, Market
from .data.quality import flagged_bars
from .errors import ParamError
from .indicators import Derived, indicators_for
from .metrics import KEY_METRICS, buy_hold_equity, compute_metrics, drawdown_pct, periods_per_year
from .risk import RiskLimits, correlation_inputs, sector_ids
from .robustness import random_entry_null
from .rotation import rotation_arrays
from .rules import RuleError, Signals, scan
from .sizing import METHODS, Sizing

EXIT_NAMES = rec.EXIT_NAMES


_D = table.defaults("")


@dataclass(frozen=True)
class BacktestParams:
    """Everything that decides a backtest's outcome besides data and signals (percent units; None = off).

    Defaults, units and allowed ranges come from the one parameter table, engine/params.py."""

    initial_capital: float = _D["initial_capital"]
    stop_loss: float | None = _D["stop_loss"]
    take_profit: float | None = _D["take_profit"]
    trailing_stop: float | None = _D["trailing_stop"]
    trailing_atr: float | None = _D["trailing_atr"]
    exit_rule: str = _D["exit_rule"]
    entry_order: str = _D["entry_order"]
    entry_offset_pct: float = _D["entry_offset_pct"]
    entry_offset_atr: float | None = _D["entry_offset_atr"]
    entry_valid_bars: int = _D["entry_valid_bars"]
    max_adds: int | None = _D["max_adds"]
    add_rule: str = _D["add_rule"]
    add_min_bars: int = _D["add_min_bars"]
    partial_exits: str = _D["partial_exits"]
    breakeven_after_partial: bool = _D["breakeven_after_partial"]
    holding_period: int | None = _D["holding_period"]
    signal_type: str = _D["signal_type"]
    short_rule: str = _D["short_rule"]
    on_opposite: str = _D["on_opposite"]
    rebalance: str = _D["rebalance"]
    rebalance_bars: int = _D["rebalance_bars"]
    hold_top: int = _D["hold_top"]
    weighting: str = _D["weighting"]
    rebalance_band: float = _D["rebalance_band"]
    commission: float = _D["commission"]
    commission_fixed: float = _D["commission_fixed"]
    commission_min: float = _D["commission_min"]
    slippage_bps: float = _D["slippage_bps"]
    borrow_pct: float = _D["borrow_pct"]
    margin_interest_pct: float = _D["margin_interest_pct"]
    cash_interest_pct: float = _D["cash_interest_pct"]
    max_positions: int = _D["max_positions"]
    fractional_shares: bool = _D["fractional_shares"]
    allow_leverage: bool = _D["allow_leverage"]
    max_leverage: float = _D["max_leverage"]
    shrink_unfunded: bool = _D["shrink_unfunded"]
    risk_free_pct: float = _D["risk_free_pct"]
    benchmark: str = _D["benchmark"]
    sizing: Sizing = field(default_factory=Sizing)
    limits: RiskLimits = field(default_factory=RiskLimits)

    def __post_init__(self) -> None:
        table.normalise("", self)
        if self.signal_type == "both" and not self.short_rule.strip():
            raise ParamError(
                "Direction both needs a short rule: the entry rule opens longs and the short rule opens "
                "shorts. Write one, or choose long or short."
            )
        if self.max_adds and not self.add_rule.strip():
            raise ParamError("Max adds needs an add rule: the rule that, true at a close, adds at the next open.")
        table.partial_exit_levels(self.partial_exits)
        if self.rebalance != "off" and self.signal_type != "long":
            raise ParamError(
                "Rotation holds the top-ranked symbols long: choose Direction long, or Rebalance off to trade "
                "signals on both sides."
            )
        if self.rebalance != "off" and self.entry_order != "market":
            raise ParamError("Rotation trades at the open after each rebalance bar: choose Entry order market.")

    def as_dict(self) -> dict:
        return asdict(self)


def params_from_values(values: dict[str, object]) -> BacktestParams:
    """BacktestParams from user values keyed by table path ('stop_loss', 'sizing.method', ...; 0 = off),
    as the pages, links and the CLI hold them; missing paths take the table's default."""
    groups: dict[str, dict] = {name: {} for name in table.BACKTEST_GROUPS}
    for p in table.backtest_params():
        value = p.check(values.get(p.path, p.default))
        groups[p.group][p.name] = p.to_library(value)
    return BacktestParams(**groups[""], sizing=Sizing(**groups["sizing"]), limits=RiskLimits(**groups["limits"]))


_EXIT_DTYPE = pd.CategoricalDtype(rec.EXIT_NAMES)
_RULE_DTYPE = pd.CategoricalDtype(rec.RULE_NAMES)
_ACTION_DTYPE = pd.CategoricalDtype(rec.ACTION_NAMES)
_DIRECTION_DTYPE = pd.CategoricalDtype(("long", "short"))  # a trade's side


@lru_cache(maxsize=16)
def _symbol_dtype(symbols: tuple[str, ...]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(symbols)


def _codes(codes: np.ndarray, dtype: pd.CategoricalDtype, validate: bool = True) -> pd.Categorical:
    """Labels from integer codes; `validate=False` only for codes the kernel just wrote (not read from disk)."""
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=validate)


@dataclass(eq=False)
class BacktestResult:
    """Trades, equity and metrics of one run, with the parameters that produced it.

    The run keeps the kernel's records (`fills`, `curve`, `event_log`); `trades`, `equity` and `events` are
    built from them on first use. Metrics come straight from the records, so a caller that reads only
    metrics (the what-if loop, an optimiser window) never pays for the tables, and the disk cache stores
    records, not frames."""

    metrics: dict[str, float]
    params: BacktestParams
    fills: np.ndarray = field(repr=False)  # TRADE records: one per exit fill, in entry order
    curve: np.ndarray = field(repr=False)  # CURVE records: one per bar
    event_log: np.ndarray = field(repr=False)  # EVENT records: each signal a limit skipped or cut
    dates: np.ndarray = field(repr=False)  # the bars' dates (datetime64)
    symbols: np.ndarray = field(repr=False)  # the columns' symbols (text)
    benchmark_equity: np.ndarray = field(repr=False)  # buy and hold of the benchmark, per bar
    at_signal: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # indicator -> value per fill
    ruined_on: pd.Timestamp | None = None
    warnings: list[str] = field(default_factory=list)
    rebalance_log: np.ndarray = field(default_factory=lambda: np.zeros(0, rec.REBALANCE), repr=False)

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per exit fill (a position with partial exits has several, sharing its `position_id`), in
        the order the positions were entered (bar, then priority, then symbol)."""
        t, dates = self.fills, self.dates
        e_bar = t["entry_bar"]
        trades = pd.DataFrame(
            {
                "position_id": t["position_id"],
                "symbol": _codes(t["symbol"], _symbol_dtype(tuple(self.symbols)), validate=False),
                "direction": _codes((t["side"] < 0).astype(np.int8), _DIRECTION_DTYPE, validate=False),
                "entry_date": dates[e_bar],
                "entry_price": t["entry_price"],
                "exit_date": dates[t["exit_bar"]],
                "exit_price": t["exit_price"],
                "shares": t["shares"],
                "pnl": t["pnl"],
                "return_pct": t["pnl"] / (t["shares"] * t["entry_price"]) * 100.0,
                "fees": t["fees"],
                "slippage": t["slippage"],
                "financing": t["financing"],
                "dividends": t["dividends"],
                "bars_held": t["exit_bar"] - e_bar + 1,
                "exit_reason": _codes(t["reason"], _EXIT_DTYPE, validate=False),
                "mae_pct": t["mae_pct"],
                "mfe_pct": t["mfe_pct"],
                "entry_bar": e_bar,
                "exit_bar": t["exit_bar"],
            },
            copy=False,  # new arrays or views of the records: no consolidating copy of the float columns
        )
        if self.params.entry_order != "market":
            trades.insert(trades.columns.get_loc("entry_price"), "order_price", t["order_price"])
        if self.params.max_adds:
            trades.insert(trades.columns.get_loc("exit_date"), "adds", t["adds"])
        for name, values in self.at_signal.items():  # each entry-rule indicator at the signal bar
            trades[f"at_signal: {name}"] = values
        return trades

    @cached_property
    def equity(self) -> pd.DataFrame:
        """Per bar: equity, cash, long and short value, gross and net exposure, open positions, carry, the
        drawdown and the benchmark's buy and hold."""
        c = self.curve
        equity, long_v, short_v = c["equity"], c["long_value"], c["short_value"]
        return pd.DataFrame(
            {
                "equity": equity,
                "cash": c["cash"],
                "long_value": long_v,
                "short_value": short_v,
                "gross_exposure_pct": _share_pct(long_v + short_v, equity),
                "net_exposure_pct": _share_pct(long_v - short_v, equity),
                "open_positions": c["open_positions"],
                "borrow": c["borrow"],
                "interest": c["interest"],
                "drawdown_pct": drawdown_pct(equity),
                "buy_hold_equity": self.benchmark_equity,
            },
            index=pd.DatetimeIndex(self.dates, name="date"),
        )

    @cached_property
    def rebalances(self) -> pd.DataFrame:
        """A rotation's trades, one row per symbol bought (shares > 0) or sold at a rebalance's open: price
        after slippage, value, fee, the symbol's target weight and the portfolio's value it applies to."""
        r = self.rebalance_log
        return pd.DataFrame(
            {
                "date": self.dates[r["bar"]],
                "symbol": _codes(r["symbol"], _symbol_dtype(tuple(self.symbols))),
                "action": np.where(r["shares"] > 0, "buy", "sell"),
                "shares": r["shares"],
                "price": r["price"],
                "value": r["value"],
                "fee": r["fee"],
                "weight_pct": r["weight"] * 100.0,
                "portfolio": r["portfolio"],
            }
        )

    @cached_property
    def turnover(self) -> pd.DataFrame:
        """Per rebalance (its trading date): the portfolio's value, bought and sold, turnover (half the value
        traded over the portfolio's value: replacing every holding is 100%), fees, and the holdings after it."""
        r = self.rebalances
        if r.empty:
            columns = ["portfolio", "bought", "sold", "turnover_pct", "fees", "holdings", "symbols"]
            return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], name="date"))
        held = self.holdings
        per = r.groupby("date").agg(
            portfolio=("portfolio", "first"),
            bought=("value", lambda v: v[v > 0].sum()),
            sold=("value", lambda v: -v[v < 0].sum()),
            fees=("fee", "sum"),
        )
        per.insert(3, "turnover_pct", (per.bought + per.sold) / (2.0 * per.portfolio) * 100.0)
        after = held.loc[per.index]
        per["holdings"] = (after > 0).sum(axis=1).to_numpy()
        per["symbols"] = [" ".join(after.columns[row > 0]) for row in after.to_numpy()]
        return per

    @cached_property
    def holdings(self) -> pd.DataFrame:
        """Shares held of each symbol at each bar's close (dates x symbols), from the fills: what the
        holdings-over-time chart draws."""
        n_bars = len(self.dates)
        held = np.zeros((n_bars + 1, len(self.symbols)))
        t, r = self.fills, self.rebalance_log
        np.add.at(held, (t["exit_bar"], t["symbol"]), -t["shares"])  # each fill sold its shares on its bar
        if self.params.rebalance != "off":  # a rotation buys (and tops up) only at its rebalances
            buys = r[r["shares"] > 0]
            np.add.at(held, (buys["bar"], buys["symbol"]), buys["shares"])
        else:  # a position bought its shares at its entry bar
            np.add.at(held, (t["entry_bar"], t["symbol"]), t["shares"])
        return pd.DataFrame(
            np.cumsum(held, axis=0)[:n_bars], index=pd.DatetimeIndex(self.dates, name="date"), columns=self.symbols
        )

    @cached_property
    def events(self) -> pd.DataFrame:
        """Every signal a limit skipped or cut: date, symbol, rule, value, limit, action."""
        return self.events_rows()

    def events_rows(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Rows start:stop of `events`, built from those records only (a page of a million events is cheap)."""
        records = self.event_log[start:stop]
        return pd.DataFrame(
            {
                "date": self.dates[records["bar"]],
                "symbol": _codes(records["symbol"], _symbol_dtype(tuple(self.symbols))),
                "rule": _codes(records["rule"], _RULE_DTYPE),
                "value": records["value"],
                "limit": records["limit"],
                "action": _codes(records["action"], _ACTION_DTYPE),
            }
        )

    @cached_property
    def positions(self) -> pd.DataFrame:
        """One row per position, its exit fills in `trades` summed: average entry and exit (share-weighted),
        shares, pnl, return (pnl / cost), costs, bars held, the final exit reason, its number of exits. The
        trade metrics (win rate, profit factor, expectancy, counts) are per position."""
        t = self.trades
        by = t.position_id
        out = t.groupby(by, sort=True, observed=True).agg(
            symbol=("symbol", "first"),
            direction=("direction", "first"),
            entry_date=("entry_date", "first"),
            exit_date=("exit_date", "last"),
            shares=("shares", "sum"),
            pnl=("pnl", "sum"),
            fees=("fees", "sum"),
            slippage=("slippage", "sum"),
            financing=("financing", "sum"),
            dividends=("dividends", "sum"),
            exit_reason=("exit_reason", "last"),
            exits=("shares", "size"),
            mae_pct=("mae_pct", "last"),
            mfe_pct=("mfe_pct", "last"),
            entry_bar=("entry_bar", "first"),
            exit_bar=("exit_bar", "last"),
        )
        pnl, cost, bars_held, _, _ = _position_totals(self.fills)  # as the metrics count them
        ids = out.index.to_numpy()
        # Each fill sells shares at the average cost of those held, so the fills' costs add up to the cost of
        # every share bought: over their number, that is the position's average entry (adds and partial
        # exits in any order), where the last fill's average covers only the shares it sold.
        out.insert(3, "entry_price", cost[ids] / out.shares.to_numpy())
        out.insert(5, "exit_price", (t.shares * t.exit_price).groupby(by).sum() / out.shares)
        out.insert(8, "return_pct", pnl[ids] / cost[ids] * 100.0)
        out.insert(13, "bars_held", bars_held[ids])
        return out.reset_index()

    def same_trades(self, other: BacktestResult) -> bool:
        """Whether another run made exactly these fills (field by field: the records' padding is not data)."""
        a, b = self.fills, other.fills
        if a.shape != b.shape:
            return False
        return all(np.array_equal(a[n], b[n], equal_nan=a[n].dtype.kind == "f") for n in a.dtype.names or ())

    def key_metrics(self) -> dict[str, float]:
        """The metrics run lists show (KEY_METRICS): what the run history records of a backtest."""
        return {k: self.metrics[k] for k in KEY_METRICS}

    def skipped(self) -> dict[str, int]:
        """How many signals each rule skipped or cut, e.g. {'max_positions skip': 12}."""
        log, counts = self.event_log, dict[str, int]()
        for code, action in enumerate(rec.ACTION_NAMES):  # small counts per action: no copy of a million events
            by_rule = np.bincount(log["rule"][log["action"] == code], minlength=len(rec.RULE_NAMES))
            counts |= {f"{rec.RULE_NAMES[r]} {action}": int(by_rule[r]) for r in np.flatnonzero(by_rule)}
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def signal_matrix(market: Market, signals) -> tuple[np.ndarray, np.ndarray]:
    """(bool entry matrix, float priority matrix) from a Signals object, bool array/DataFrame or a
    (symbol, date) table. Unknown symbols or dates are an error, not silently dropped."""
    shape = market.shape
    priority = getattr(signals, "priority", None)
    if hasattr(signals, "matrix"):
        signals = signals.matrix
        if priority is not None and np.ndim(priority) == 1:  # a scan's priority: one number per hit
            dense = np.full(shape, np.nan)
            dense[signals] = priority  # a boolean mask assigns in row order, as the scan took them
            priority = dense
    if isinstance(signals, pd.DataFrame) and {"symbol", "date"} <= {str(c).lower() for c in signals.columns}:
        table = signals.rename(columns=str.lower)
        cols = pd.Index(market.symbols).get_indexer(table["symbol"].astype(str).str.upper())
        rows = market.dates.get_indexer(pd.to_datetime(table["date"], errors="coerce"))
        bad = (cols < 0) | (rows < 0)
        if bad.any():
            sample = table.loc[bad, ["symbol", "date"]].head(5).astype(str).agg(" ".join, axis=1)
            raise DataError(
                f"{int(bad.sum()):,} signals name a symbol or date not in the data, e.g. {', '.join(sample)}."
            )
        matrix = np.zeros(shape, bool)
        matrix[rows, cols] = True
    else:
        matrix = np.asarray(signals.to_numpy() if isinstance(signals, pd.DataFrame) else signals)
        if matrix.shape != shape:
            raise DataError(f"Signal matrix is {matrix.shape}, the data is {shape} (bars x symbols).")
        matrix = matrix.astype(bool, copy=False)  # read only: the kernel never writes it
    prio = np.zeros((0, 0)) if priority is None else np.nan_to_num(np.asarray(priority, float), nan=-np.inf)
    return np.ascontiguousarray(matrix), np.ascontiguousarray(prio)


def backtest(market: Market, signals, params: BacktestParams | None = None, **kwargs) -> BacktestResult:
    """Run one backtest. Pass a BacktestParams or its fields as keywords, e.g. stop_loss=5.0.

    `position_sizing="kelly"` (a method name) or `sizing=Sizing(...)`; `limits=RiskLimits(...)`.
    """
    if "position_sizing" in kwargs:
        kwargs["sizing"] = Sizing(method=kwargs.pop("position_sizing"))
    params = params or BacktestParams(**kwargs)
    entries, priority = signal_matrix(market, signals)
    bars, combo, shared = kernel_inputs(market, params)
    entries, shared = with_rotation(market, entries, priority, params, shared)
    out = k.simulate(*map(read_only, (bars, entries, priority, combo, shared)))
    return _result(market, params, out, signals)


def exit_rule_matrix(market: Market, rule: str) -> np.ndarray:
    """The exit rule's (bars x symbols) bool matrix; 0 x 0 when there is none."""
    if not rule.strip():
        return np.zeros((0, 0), bool)
    return rule_signals(market, rule, "Exit rule")[0]


def rule_signals(market: Market, rule: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(signal matrix, priority) of a rule a setting names (exit, short or add rule), evaluated once per
    dataset and rule text: a what-if edit or an optimiser chunk reuses it. A rule error names the setting."""
    try:
        return _per_dataset(market, Derived.RULE_SIGNALS, lambda: signal_matrix(market, scan(market, rule)), rule)
    except RuleError as exc:
        raise RuleError(f"{label}: {exc}") from None


def kernel_bars(market: Market) -> k.Bars:
    last_valid = _per_dataset(
        market,
        Derived.LAST_VALID,
        lambda: (market.shape[0] - 1 - np.argmax(~np.isnan(market.close[::-1]), axis=0)).astype(np.int64),
    )
    delisting = _per_dataset(market, Derived.DELISTING, lambda: _delisting(market, last_valid))
    return k.Bars(market.open, market.high, market.low, market.close, market.volume, last_valid, delisting)


DELISTING_COLUMN = "delisting_return"


def _delisting(market: Market, last_valid: np.ndarray) -> np.ndarray:
    """Per symbol, the `delisting_return` own column on its last bar (a fraction: -0.3 is a 30% loss, at
    least -1), 0 where there is none: a position held into a delisting exits at the close x (1 + it)."""
    values = market.extra.get(DELISTING_COLUMN)
    if values is None:
        return np.zeros(market.shape[1])
    last = values[last_valid, np.arange(market.shape[1])]
    return np.where(np.isfinite(last), np.maximum(last, -1.0), 0.0)


def combo_fields(p: BacktestParams) -> dict[str, float]:
    """One combination's COMBO fields by name: percent into fractions, "off" into 0."""
    s = p.sizing
    return {
        "stop": (p.stop_loss or 0.0) / 100.0,
        "target": (p.take_profit or 0.0) / 100.0,
        "trail": (p.trailing_stop or 0.0) / 100.0,
        "trail_atr": float(p.trailing_atr or 0.0),
        "holding": int(p.holding_period or 0),
        "max_positions": int(p.max_positions),
        "risk": s.risk_pct / 100.0,
        "kelly_multiplier": s.kelly_multiplier,
        "kelly_cap": s.kelly_cap_pct / 100.0,
        "kelly_min_trades": s.kelly_min_trades,
        "vol_target": s.vol_target_pct / 100.0,
        "atr_multiplier": s.atr_multiplier,
        "fixed_amount": s.fixed_amount,
        "atr_stop": bool(s.atr_stop),
        "entry_offset": p.entry_offset_pct / 100.0,
        "entry_offset_atr": float(p.entry_offset_atr or 0.0) if p.entry_order != "market" else 0.0,
        "entry_valid": int(p.entry_valid_bars),
        "max_adds": int(p.max_adds or 0),
        "add_min_bars": int(p.add_min_bars),
    }


def combo_records(params: Sequence[BacktestParams]) -> np.ndarray:
    """One COMBO record per combination, written column by column by field name."""
    rows = [combo_fields(p) for p in params]
    out = np.zeros(len(rows), COMBO)
    for name in COMBO.names or ():
        out[name] = [row[name] for row in rows]
    return out


def needs_atr(p: BacktestParams) -> bool:
    """Whether a run reads ATR besides ATR sizing: an ATR trailing stop or an ATR entry offset."""
    return bool(p.trailing_atr) or (p.entry_order != "market" and bool(p.entry_offset_atr))


def kernel_inputs(market: Market, p: BacktestParams) -> tuple[k.Bars, np.void, k.Shared]:
    """The only place that turns settings into what the kernel reads: percent into fractions, "off" into
    the kernel's sentinels (0, or an empty array), names into codes, and the per-bar inputs (volatility,
    ATR, exit-rule signals, correlation windows) computed on the whole market."""
    vol, atr = p.sizing.inputs(market, need_atr=needs_atr(p))
    per_bar = 0.01 / periods_per_year(market.dates)  # an annual percent -> a fraction per bar
    lim = p.limits
    corr = (np.empty((0, 0)),) * 2
    if lim.max_correlation is not None:
        corr = _per_dataset(market, Derived.CORRELATION_INPUTS, lambda: correlation_inputs(market.close))
    short_signal, short_priority = (np.zeros((0, 0), bool), np.zeros((0, 0)))
    if p.signal_type == "both":
        short_signal, short_priority = rule_signals(market, p.short_rule, "Short rule")
    add_signal = rule_signals(market, p.add_rule, "Add rule")[0] if p.max_adds else np.zeros((0, 0), bool)
    partials = np.array(table.partial_exit_levels(p.partial_exits), float).reshape(-1, 2) / 100.0
    shared = k.Shared(
        direction={"long": 1, "short": -1, "both": 0}[p.signal_type],
        commission=p.commission / 100.0,
        commission_fixed=float(p.commission_fixed),
        commission_min=float(p.commission_min),
        slippage=p.slippage_bps / 10_000.0,
        initial_capital=float(p.initial_capital),
        fractional_shares=bool(p.fractional_shares),
        max_leverage=float(p.max_leverage) if p.allow_leverage else 1.0,
        shrink_unfunded=bool(p.shrink_unfunded),
        sizing_method=METHODS[p.sizing.method],
        vol=vol,
        atr=atr,
        exit_signal=exit_rule_matrix(market, p.exit_rule),
        ret_t=corr[0],
        valid_t=corr[1],
        sector_id=_per_dataset(market, Derived.SECTOR_IDS, lambda: sector_ids(market)),
        max_position=(lim.max_position_pct or 0.0) / 100.0,
        # Without a sector column there is nothing to group by: the sector limit is off.
        max_sector=(lim.max_sector_pct or 0.0) / 100.0 if market.sectors is not None else 0.0,
        max_corr=2.0 if lim.max_correlation is None else float(lim.max_correlation),
        corr_window=int(lim.correlation_lookback),
        max_volume=(lim.max_volume_pct or 0.0) / 100.0,
        entry_order=rec.ORDER_NAMES.index(p.entry_order),
        borrow=p.borrow_pct * per_bar,
        margin_rate=p.margin_interest_pct * per_bar,
        cash_rate=p.cash_interest_pct * per_bar,
        dividend=np.empty((0, 0)) if market.dividend is None else market.dividend,
        short_signal=short_signal,
        short_priority=short_priority,
        on_opposite=rec.OPPOSITE_NAMES.index(p.on_opposite),
        add_signal=add_signal,
        partial_frac=np.ascontiguousarray(partials[:, 0]),
        partial_pct=np.ascontiguousarray(partials[:, 1]),
        breakeven=bool(p.breakeven_after_partial),
        target_row=np.zeros(0, np.int64),
        target_symbol=np.zeros((0, 0), np.int64),
        target_weight=np.zeros((0, 0)),
        target_unscored=np.zeros((0, 0), np.int64),
        rebalance_band=p.rebalance_band / 100.0,
    )
    return kernel_bars(market), combo_records([p])[0], shared


def with_rotation(
    market: Market, entries: np.ndarray, priority: np.ndarray, p: BacktestParams, shared: k.Shared
) -> tuple[np.ndarray, k.Shared]:
    """(entries, shared) for the kernel: as they are when positions open on signals; with a rotation, no
    signal entries and the rebalance targets the rule's ranked hits make (engine/rotation.py)."""
    if p.rebalance == "off":
        return entries, shared
    target_row, targets = rotation_arrays(
        market, entries, priority, p.rebalance, p.rebalance_bars, p.hold_top, p.weighting, p.sizing.vol_lookback
    )
    shared = shared._replace(
        target_row=target_row,
        target_symbol=targets.symbols,
        target_weight=targets.weights,
        target_unscored=targets.unscored,
    )
    return np.zeros_like(entries), shared


def window_inputs(market: Market, shared: k.Shared, start: int, stop: int) -> tuple[Market, k.Bars, k.Shared]:
    """Bars [start, stop) of the inputs, for an optimiser window: the per-bar inputs were computed on the
    whole history (as the signals are), so volatility, ATR and correlations do not restart at the window."""
    window = market.window(start, stop)
    shared = shared._replace(
        vol=_bars_of(shared.vol, start, stop),
        atr=_bars_of(shared.atr, start, stop),
        exit_signal=_bars_of(shared.exit_signal, start, stop),
        dividend=_bars_of(shared.dividend, start, stop),
        short_signal=_bars_of(shared.short_signal, start, stop),
        short_priority=_bars_of(shared.short_priority, start, stop),
        add_signal=_bars_of(shared.add_signal, start, stop),
        target_row=_bars_of(shared.target_row, start, stop),
        ret_t=_bars_of(shared.ret_t, start, stop, axis=1),  # (symbols x bars)
        valid_t=_bars_of(shared.valid_t, start, stop, axis=1),
    )
    return window, kernel_bars(window), shared


def read_only(value: Any) -> Any:
    """An array as a read-only view, or a kernel record with every array in it read-only. Every kernel call
    passes its arrays this way, so Numba compiles one specialisation per kernel: writable and read-only
    arrays (memoised indicators are read-only) are different types to it, and each mix compiled anew (a
    third more compile time after an install, for no speed)."""
    if isinstance(value, np.ndarray):
        if not value.flags.writeable:
            return value
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(read_only(v) for v in value))
    return value


def _bars_of(a: np.ndarray, start: int, stop: int, axis: int = 0) -> np.ndarray:
    """Bars [start, stop) of a per-bar kernel input, contiguous; an empty one (a feature that is off) as is."""
    if not a.size:
        return a
    return np.ascontiguousarray(a[start:stop] if axis == 0 else a[:, start:stop])


def benchmark_per_unit(market: Market, symbol: str = "") -> np.ndarray:
    """Buy and hold of one unit of capital: of the benchmark symbol (from its first close; flat before it and
    carried over days without a bar), or of every symbol at equal weight when none is named, leaving out the
    moves of bars flagged as likely splits or outliers (engine/data/quality.py)."""
    if not symbol:
        compute = lambda: buy_hold_equity(market.close, 1.0, flagged_bars(market))  # noqa: E731
        return _per_dataset(market, Derived.BUY_HOLD_PER_UNIT, compute)
    try:
        j = market.column(symbol.strip().upper())
    except DataError as exc:
        raise DataError(f"Benchmark: {exc}") from None
    return _per_dataset(market, Derived.BUY_HOLD_PER_UNIT, lambda: buy_hold_equity(market.close[:, j : j + 1], 1.0), j)


def _per_dataset(market: Market, entry: Derived, compute: Callable[[], Any], *args: int | str) -> Any:
    """A value that depends only on the data, computed once per dataset (in its indicator memo)."""
    return indicators_for(market).derived(entry, *args, compute=compute)


def _result(market: Market, params: BacktestParams, out: tuple, signals: Any = None) -> BacktestResult:
    """The kernel's records and the metrics computed from them (per position); the tables wait for a reader."""
    fills, closing, event_records, curve, ruin_bar, rebalance_log = out
    at_signal = signals.values(market, fills["signal_bar"], fills["symbol"]) if isinstance(signals, Signals) else {}
    bh = benchmark_per_unit(market, params.benchmark) * params.initial_capital
    # One benchmark everywhere: the return of the curve the charts and the tear sheet show (the named symbol,
    # or every symbol at equal weight with the moves of flagged bars left out).
    buy_hold = float((bh[-1] / bh[0] - 1.0) * 100.0) if len(bh) and bh[0] > 0 else float("nan")
    equity, n_open = curve["equity"].copy(), curve["open_positions"].copy()  # contiguous for the kernels
    pnl, cost, bars_held, closed, fill_costs = _position_totals(fills)
    per_position = {  # closed positions: pnl in the order they closed (for the streaks), the rest in entry order
        "pnl": pnl[closing],
        "return_pct": pnl[closed] / cost[closed] * 100.0,
        "bars_held": bars_held[closed],
    }
    metrics = compute_metrics(
        equity, market.dates, per_position, n_open, market.close, params.risk_free_pct, buy_hold, bh
    )
    skipped = event_records["action"] == rec.ACTION_SKIP
    metrics["signals_skipped"] = int(np.count_nonzero(skipped))
    metrics |= _cost_totals(fill_costs, curve, params)
    sized_out = int(np.count_nonzero(skipped & (event_records["rule"] == rec.RULE_SIZE)))
    return BacktestResult(
        metrics=metrics,
        params=params,
        fills=fills,
        curve=curve,
        event_log=event_records,
        dates=market.dates.to_numpy(),
        symbols=np.array(market.symbols),
        benchmark_equity=bh,
        at_signal=at_signal,
        ruined_on=market.dates[ruin_bar] if ruin_bar >= 0 else None,
        warnings=_ruin_note(market, ruin_bar, curve) + _warnings(params, sized_out, len(fills)),
        rebalance_log=rebalance_log,
    )


def _share_pct(part: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """part / equity in percent, 0 where equity is not positive."""
    return np.divide(part, equity, out=np.zeros_like(equity), where=equity > 0) * 100.0


def _position_totals(fills: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_kernels.position_totals` per position id (pnl, cost of the shares sold, bars held, closed) and the
    run's commission, slippage and dividends. The fills are in entry order: the last has the largest id."""
    return k.position_totals(fills, int(fills["position_id"][-1]) + 1 if len(fills) else 0)


def _cost_totals(fill_costs: np.ndarray, curve: np.ndarray, p: BacktestParams) -> dict[str, float]:
    """What the run paid and earned besides prices: commission, slippage and dividends (summed over the fills
    by `position_totals`), borrow and interest (from the curve, only where something can be paid: most runs
    pay no carry)."""

    def total(values: np.ndarray, on: bool) -> float:
        return float(values.sum()) if on else 0.0

    commission, slippage, dividends = fill_costs.tolist()
    return {
        "total_commission": commission,
        "total_slippage": slippage,
        "total_borrow": total(curve["borrow"], p.borrow_pct > 0),
        "interest_earned": total(np.maximum(curve["interest"], 0.0), p.cash_interest_pct > 0),
        "interest_paid": total(-np.minimum(curve["interest"], 0.0), p.margin_interest_pct > 0),
        "total_dividends": dividends,
    }


def _ruin_note(market: Market, ruin_bar: int, curve: np.ndarray) -> list[str]:
    """What a ruined run must say first: when, and what the equity ended at (below zero after a gap)."""
    if ruin_bar < 0:
        return []
    return [
        f"Ruined on {market.dates[ruin_bar].date()}: equity reached {curve['equity'][ruin_bar]:,.2f}. Every "
        "position was closed at that bar's close and nothing traded after it."
    ]


def _warnings(params: BacktestParams, sized_out: int, n_trades: int) -> list[str]:
    """What a reader of the numbers must know: sizing that skipped most signals (sized_out: signals skipped
    because sizing gave no position)."""
    if sized_out <= n_trades:
        return []
    reasons = {
        "kelly": " (Kelly's fraction was <= 0: the trades so far had no edge)",
        "fixed_fractional": " (fixed-fractional sizing needs a stop-loss)",
    }
    why = reasons.get(params.sizing.method, "")
    return [
        f"Sizing skipped {sized_out:,} signals{why}, more than the {n_trades:,} it traded: the result "
        "reflects the sizing rule more than the entry rule."
    ]


NULL_CELLS = 20_000_000


def random_entry_test(market: Market, result: BacktestResult, n_draws: int = 500, seed: int = 0) -> dict:
    """Does the rule beat chance? Its trades against n_draws random strategies with as many trades and the
    same holding times on random symbols and dates (engine/robustness.py): {'sharpe', 'random', 'p_value'}."""
    t = result.trades
    if len(t) < 2:
        return {"sharpe": float("nan"), "random": np.empty(0), "p_value": float("nan")}
    cells = len(t) * max(float(t["bars_held"].mean()), 1.0)
    n_draws = int(max(50, min(n_draws, NULL_CELLS // cells)))  # bounded work: at most ~NULL_CELLS trade-bars
    symbols = t["symbol"].cat.codes.to_numpy().astype(np.int64)
    own, draws, p = random_entry_null(
        market.close,
        market.open,
        symbols,
        t["entry_bar"].to_numpy(np.int64),
        t["bars_held"].to_numpy(np.int64),
        periods_per_year(market.dates),
        n_draws,
        seed,
        np.where(t["direction"] == "short", -1, 1),
    )
    return {"sharpe": own, "random": draws, "p_value": p}


def window_backtest(market: Market, signals, params: BacktestParams, start: int, stop: int) -> BacktestResult:
    """A backtest trading only bars [start, stop) with fresh capital, its signals and sizing inputs computed
    on the whole history (as the optimiser's windows do), so nothing restarts at the window's edge."""
    entries, priority = signal_matrix(market, signals)
    _, combo, shared = kernel_inputs(market, params)
    entries, shared = with_rotation(market, entries, priority, params, shared)
    window, bars, shared = window_inputs(market, shared, start, stop)
    inputs = (bars, _bars_of(entries, start, stop), _bars_of(priority, start, stop), combo, shared)
    out = k.simulate(*map(read_only, inputs))
    return _result(window, params, out, None)
