"""Position-sizing methods: names, parameters and the per-bar inputs they need.

The arithmetic runs inside the Numba kernel (`_kernels._target_value`); this module turns the user's
choice into the kernel's integer code and parameter vector, and computes the trailing volatility or
ATR the method reads at bar t-1 (never later).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import _kernels as k
from . import params as table
from .data import Market

METHODS = {  # the order of params.SIZING_METHODS
    "equal_weight": k.SIZE_EQUAL,
    "fixed_fractional": k.SIZE_FIXED_FRACTIONAL,
    "kelly": k.SIZE_KELLY,
    "volatility_target": k.SIZE_VOL_TARGET,
    "atr_risk": k.SIZE_ATR,
    "fixed_amount": k.SIZE_FIXED_AMOUNT,
}

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

    def kernel_params(self) -> np.ndarray:
        p = np.zeros(k.N_SIZING_PARAMS)
        p[k.P_RISK] = self.risk_pct / 100.0
        p[k.P_KELLY_MULT] = self.kelly_multiplier
        p[k.P_KELLY_CAP] = self.kelly_cap_pct / 100.0
        p[k.P_KELLY_MIN_TRADES] = self.kelly_min_trades
        p[k.P_VOL_TARGET] = self.vol_target_pct / 100.0
        p[k.P_ATR_MULT] = self.atr_multiplier
        p[k.P_AMOUNT] = self.fixed_amount
        p[k.P_ATR_STOP] = 1.0 if self.atr_stop else 0.0
        return p

    def inputs(self, market: Market) -> tuple[np.ndarray, np.ndarray]:
        """(annualised trailing vol as a fraction, ATR) arrays, memoised per dataset; empty (0 x 0) when the
        method does not read them."""
        from .indicators import indicators_for

        memo = indicators_for(market)
        empty = np.empty((0, 0))
        vol = empty
        if self.method == "volatility_target":
            n = self.vol_lookback
            vol = memo.memo(("vol_fraction", n), lambda: memo.get("volatility", n) / 100)
        rng = memo.get("atr", self.atr_period) if self.method == "atr_risk" else empty
        return vol, rng
