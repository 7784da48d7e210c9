"""Position-sizing methods: names, parameters and the per-bar inputs they need.

The arithmetic runs inside the Numba kernel (`_kernels._target_value`); this module turns the user's
choice into the kernel's integer code and parameter vector, and computes the trailing volatility or
ATR the method reads at bar t-1 (never later).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import _records as rec
from . import params as table
from .data import Market
from .indicators import Derived, indicators_for

METHODS = {name: code for code, name in enumerate(rec.SIZING_NAMES)}  # the kernel's codes

DESCRIPTIONS = {
    "equal_weight": "equity / max positions",
    "fixed_fractional": "risk r% of equity between entry and stop-loss",
    "kelly": "Kelly fraction of equity from closed trades (x multiplier, capped)",
    "volatility_target": "position value x annualised vol = target % of equity",
    "atr_risk": "risk r% of equity per k x ATR(n) of adverse move",
    "fixed_amount": "a fixed currency amount per trade",
}


_D = table.defaults("sizing")


@dataclass(frozen=True)
class Sizing:
    """Sizing method and its parameters (percent units: 1.0 means 1%); defaults and ranges: engine/params.py."""

    method: str = _D["method"]
    risk_pct: float = _D["risk_pct"]
    kelly_multiplier: float = _D["kelly_multiplier"]
    kelly_cap_pct: float = _D["kelly_cap_pct"]
    kelly_min_trades: int = _D["kelly_min_trades"]
    vol_target_pct: float = _D["vol_target_pct"]
    vol_lookback: int = _D["vol_lookback"]
    atr_period: int = _D["atr_period"]
    atr_multiplier: float = _D["atr_multiplier"]
    atr_stop: bool = _D["atr_stop"]
    fixed_amount: float = _D["fixed_amount"]

    def __post_init__(self) -> None:
        table.normalise("sizing", self)

    def as_dict(self) -> dict:
        return asdict(self)

    def inputs(self, market: Market, need_atr: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(annualised trailing vol as a fraction, ATR) arrays, memoised per dataset; empty (0 x 0) when
        nothing reads them (ATR: ATR sizing, or an ATR trailing stop when `need_atr`)."""
        memo = indicators_for(market)
        empty = np.empty((0, 0))
        vol = empty
        if self.method == "volatility_target":
            n = self.vol_lookback
            vol = memo.derived(Derived.VOL_FRACTION, n, compute=lambda: memo.get("volatility", n) / 100)
        rng = memo.get("atr", self.atr_period) if self.method == "atr_risk" or need_atr else empty
        return vol, rng
