"""Public backtest API: a Market and entry signals in, trades, equity and metrics out.

Conversions to and from arrays happen here, once; the simulation itself is `_kernels.simulate`.
Rules (see `_kernels` for the order of events inside a bar):
- a signal at bar t enters at the open of bar t+1; one position per symbol; signals while in a position
  are ignored; signals competing for cash are taken by priority (highest first), then symbol order;
- stop-loss and take-profit are percentages of the entry fill; a bar that opens beyond either fills at
  the open; if one bar touches both, the stop is assumed hit first (conservative);
- `holding_period` N exits at the close of the N-th bar held (the entry bar counts as 1);
- a position still open on a symbol's last bar exits at that close ("end_of_data");
- commission is a percent of traded value, slippage moves every fill against the trader by `slippage_bps`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from . import _kernels as k
from . import params as table
from .data import DataError, Market
from .metrics import buy_hold_equity, compute_metrics, drawdown_pct
from .risk import ACTION_NAMES, RULE_NAMES, RiskLimits
from .sizing import METHODS, Sizing

EXIT_NAMES = {
    k.EXIT_STOP: "stop_loss",
    k.EXIT_TARGET: "take_profit",
    k.EXIT_HOLDING: "holding_period",
    k.EXIT_END: "end_of_data",
    k.EXIT_RUIN: "ruin",
}


_D = table.defaults("")


@dataclass(frozen=True)
class BacktestParams:
    """Everything that decides a backtest's outcome besides data and signals (percent units; None = off).

    Defaults, units and allowed ranges come from the one parameter table, engine/params.py."""

    initial_capital: float = _D["initial_capital"]
    stop_loss: float | None = _D["stop_loss"]
    take_profit: float | None = _D["take_profit"]
    holding_period: int | None = _D["holding_period"]
    signal_type: str = _D["signal_type"]
    commission: float = _D["commission"]
    slippage_bps: float = _D["slippage_bps"]
    max_positions: int = _D["max_positions"]
    fractional_shares: bool = _D["fractional_shares"]
    allow_leverage: bool = _D["allow_leverage"]
    max_leverage: float = _D["max_leverage"]
    shrink_unfunded: bool = _D["shrink_unfunded"]
    risk_free_pct: float = _D["risk_free_pct"]
    sizing: Sizing = field(default_factory=Sizing)
    limits: RiskLimits = field(default_factory=RiskLimits)

    def __post_init__(self) -> None:
        table.normalise("", self)

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


@dataclass
class BacktestResult:
    """Trades, equity and metrics of one run, with the parameters that produced it."""

    trades: pd.DataFrame
    equity: pd.DataFrame
    metrics: dict[str, float]
    params: BacktestParams
    events: pd.DataFrame
    ruined_on: pd.Timestamp | None = None

    def skipped(self) -> dict[str, int]:
        """How many signals each rule skipped or cut, e.g. {'max_positions skip': 12}."""
        if self.events.empty:
            return {}
        counts = self.events.groupby(["rule", "action"], observed=True).size().sort_values(ascending=False)
        return {f"{rule} {action}": int(n) for (rule, action), n in counts.items()}


def signal_matrix(market: Market, signals) -> tuple[np.ndarray, np.ndarray]:
    """(bool entry matrix, float priority matrix) from a Signals object, bool array/DataFrame or a
    (symbol, date) table. Unknown symbols or dates are an error, not silently dropped."""
    shape = market.shape
    priority = getattr(signals, "priority", None)
    if hasattr(signals, "matrix"):
        signals = signals.matrix
    if isinstance(signals, pd.DataFrame) and {"symbol", "date"} <= {str(c).lower() for c in signals.columns}:
        table = signals.rename(columns=str.lower)
        cols = pd.Index(market.symbols).get_indexer(table["symbol"].astype(str).str.upper())
        rows = market.dates.get_indexer(pd.to_datetime(table["date"], errors="coerce"))
        bad = (cols < 0) | (rows < 0)
        if bad.any():
            sample = table.loc[bad, ["symbol", "date"]].head(5).astype(str).agg(" ".join, axis=1)
            raise DataError(
                f"{int(bad.sum())} signals name a symbol or date not in the data, e.g. {', '.join(sample)}."
            )
        matrix = np.zeros(shape, bool)
        matrix[rows, cols] = True
    else:
        matrix = np.asarray(signals.to_numpy() if isinstance(signals, pd.DataFrame) else signals)
        if matrix.shape != shape:
            raise DataError(f"Signal matrix is {matrix.shape}, the data is {shape} (bars x symbols).")
        matrix = matrix.astype(bool)
    prio = np.zeros(shape) if priority is None else np.nan_to_num(np.asarray(priority, float), nan=-np.inf)
    return np.ascontiguousarray(matrix), np.ascontiguousarray(prio)


def backtest(market: Market, signals, params: BacktestParams | None = None, **kwargs) -> BacktestResult:
    """Run one backtest. Pass a BacktestParams or its fields as keywords, e.g. stop_loss=5.0.

    `position_sizing="kelly"` (a method name) or `sizing=Sizing(...)`; `limits=RiskLimits(...)`.
    """
    if "position_sizing" in kwargs:
        kwargs["sizing"] = Sizing(method=kwargs.pop("position_sizing"))
    params = params or BacktestParams(**kwargs)
    entries, priority = signal_matrix(market, signals)
    out = _simulate(market, entries, priority, params)
    return _result(market, params, out)


def exit_args(p: BacktestParams) -> tuple[float, float, int, int]:
    """What a grid may vary per combination, as the kernel reads it: stop and target as fractions
    (0 = off), holding bars (0 = off), max positions."""
    stop, target = (p.stop_loss or 0.0) / 100.0, (p.take_profit or 0.0) / 100.0
    return stop, target, int(p.holding_period or 0), int(p.max_positions)


def portfolio_args(market: Market, p: BacktestParams) -> tuple:
    """What every simulation of these settings on this market shares, in the kernels' order: direction,
    costs, capital, share rounding, leverage, shrink, sizing method and inputs, risk limits."""
    vol, atr = p.sizing.inputs(market)
    return (
        1 if p.signal_type == "long" else -1,
        p.commission / 100.0,
        p.slippage_bps / 10_000.0,
        float(p.initial_capital),
        bool(p.fractional_shares),
        float(p.max_leverage) if p.allow_leverage else 1.0,
        bool(p.shrink_unfunded),
        METHODS[p.sizing.method],
        vol,
        atr,
        *p.limits.kernel_args(market),
    )


def _simulate(market: Market, entries: np.ndarray, priority: np.ndarray, p: BacktestParams) -> tuple:
    return k.simulate(
        market.open, market.high, market.low, market.close, entries, priority,
        *exit_args(p), p.sizing.kernel_params(), *portfolio_args(market, p),
    )  # fmt: skip


_BUY_HOLD: dict[str, np.ndarray] = {}


def _buy_hold_per_unit(market: Market) -> np.ndarray:
    """Equal-weight buy-and-hold curve for 1 unit of capital; depends only on the data, so kept per dataset."""
    curve = _BUY_HOLD.get(market.fingerprint)
    if curve is None:
        if len(_BUY_HOLD) > 8:
            _BUY_HOLD.clear()
        curve = _BUY_HOLD[market.fingerprint] = buy_hold_equity(market.close, 1.0)
    return curve


def _result(market: Market, params: BacktestParams, out: tuple) -> BacktestResult:
    (sym, e_bar, x_bar, e_px, x_px, qty, pnl, fees, reason, equity, cash, long_v, short_v, n_open,
     ev_bar, ev_sym, ev_rule, ev_value, ev_limit, ev_action, ruin_bar) = out  # fmt: skip
    order = np.lexsort((sym, e_bar))
    trades = (
        pd.DataFrame(
            {
                "symbol": pd.Categorical.from_codes(sym, market.symbols),
                "direction": params.signal_type,
                "entry_date": market.dates[e_bar],
                "entry_price": e_px,
                "exit_date": market.dates[x_bar],
                "exit_price": x_px,
                "shares": qty,
                "pnl": pnl,
                "return_pct": pnl / (qty * e_px) * 100.0 if len(qty) else np.empty(0),
                "fees": fees,
                "bars_held": x_bar - e_bar + 1,
                "exit_reason": pd.Categorical.from_codes(reason, list(EXIT_NAMES.values())),
                "entry_bar": e_bar,
                "exit_bar": x_bar,
            }
        )
        .iloc[order]
        .reset_index(drop=True)
    )
    bh = _buy_hold_per_unit(market) * params.initial_capital
    equity_df = pd.DataFrame(
        {
            "equity": equity,
            "cash": cash,
            "long_value": long_v,
            "short_value": short_v,
            "gross_exposure_pct": np.divide(long_v + short_v, equity, out=np.zeros_like(equity), where=equity > 0)
            * 100,
            "open_positions": n_open,
            "drawdown_pct": drawdown_pct(equity),
            "buy_hold_equity": bh,
        },
        index=pd.Index(market.dates, name="date"),
    )
    events = pd.DataFrame(
        {
            "date": market.dates[ev_bar],
            "symbol": pd.Categorical.from_codes(ev_sym, market.symbols),
            "rule": pd.Categorical.from_codes(ev_rule, list(RULE_NAMES.values())),
            "value": ev_value,
            "limit": ev_limit,
            "action": pd.Categorical.from_codes(ev_action, list(ACTION_NAMES.values())),
        }
    )
    metrics = compute_metrics(equity, market.dates, trades, n_open, market.close, params.risk_free_pct)
    metrics["signals_skipped"] = int((events["action"] == "skip").sum()) if len(events) else 0
    return BacktestResult(
        trades=trades,
        equity=equity_df,
        metrics=metrics,
        params=params,
        events=events,
        ruined_on=market.dates[ruin_bar] if ruin_bar >= 0 else None,
    )
