"""Portfolio risk limits, checked inside the kernel at each entry.

Limits apply when a position is opened (cut to fit, or skipped); later price moves are not trimmed.
Every cut or skip is returned as an event: (date, symbol, rule, value, limit, action).
Order at each entry: max positions, sizing, max position, max sector, cash/leverage, then correlation
(the costliest check, so it runs last; a correlation skip replaces the cuts recorded before it). The
correlation is Pearson over the trailing window of 1-bar returns ending at the signal bar, on the bars
where both symbols have a return; with fewer than 3 such bars it is unknown and does not skip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import _kernels as k
from . import params as table
from .data import Market

RULE_NAMES = {
    k.RULE_MAX_POSITIONS: "max_positions",
    k.RULE_CASH: "cash",
    k.RULE_MAX_POSITION: "max_position_pct",
    k.RULE_MAX_SECTOR: "max_sector_pct",
    k.RULE_MAX_CORR: "max_correlation",
    k.RULE_SIZE: "size_zero",
    k.RULE_NO_BAR: "no_bar",
}
ACTION_NAMES = {k.ACTION_SKIP: "skip", k.ACTION_CUT: "cut"}


_D = table.defaults("limits")


@dataclass(frozen=True)
class RiskLimits:
    """None switches a limit off (all are off by default). Percent units: 10.0 means 10% of equity."""

    max_position_pct: float | None = _D["max_position_pct"]
    max_sector_pct: float | None = _D["max_sector_pct"]
    max_correlation: float | None = _D["max_correlation"]
    correlation_lookback: int = _D["correlation_lookback"]

    def __post_init__(self) -> None:
        table.normalise("limits", self)

    @classmethod
    def defaults(cls) -> RiskLimits:
        """The limits a cautious desk starts from: 10% per position, 30% per sector, 0.70 correlation."""
        return cls(max_position_pct=10.0, max_sector_pct=30.0, max_correlation=0.70)

    def active(self) -> list[str]:
        """The limits in force, in words, e.g. ['position <= 10%', 'correlation <= 0.7 over 60 bars']."""
        out = []
        if self.max_position_pct is not None:
            out.append(f"position <= {self.max_position_pct:g}%")
        if self.max_sector_pct is not None:
            out.append(f"sector <= {self.max_sector_pct:g}%")
        if self.max_correlation is not None:
            out.append(f"correlation <= {self.max_correlation:g} over {self.correlation_lookback} bars")
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def kernel_args(self, market: Market) -> tuple:
        sector_id = sector_ids(market)
        corr_inputs = (np.empty((0, 0)),) * 2
        if self.max_correlation is not None:
            from .indicators import indicators_for

            corr_inputs = indicators_for(market).memo(("correlation_inputs",), lambda: correlation_inputs(market.close))
        return (
            *corr_inputs,
            sector_id,
            (self.max_position_pct or 0.0) / 100.0,
            # Without a sector column there is nothing to group by: the sector limit is off.
            (self.max_sector_pct or 0.0) / 100.0 if market.sectors is not None else 0.0,
            2.0 if self.max_correlation is None else float(self.max_correlation),
            int(self.correlation_lookback),
        )


def correlation_inputs(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the kernel's correlation check reads: 1-bar returns as (symbols x bars), so a window is
    contiguous, with 0 where there is no return, and a 1/0 validity mask of the same shape."""
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.full_like(close, np.nan)
        returns[1:] = close[1:] / close[:-1] - 1.0
    ret_t = np.ascontiguousarray(returns.T)
    valid = ~np.isnan(ret_t)
    return np.where(valid, ret_t, 0.0), valid.astype(np.float64)


def sector_ids(market: Market) -> np.ndarray:
    """Integer sector per symbol; symbols without a sector column form one 'Unknown' sector."""
    if market.sectors is None:
        return np.zeros(len(market.symbols), np.int64)
    codes, _ = pd.factorize(pd.Series(market.sectors))
    return codes.astype(np.int64)
