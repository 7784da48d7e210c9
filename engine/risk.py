"""Portfolio risk limits, checked inside the kernel at each entry.

Limits apply when a position is opened (cut to fit, or skipped); later price moves are not trimmed.
Every cut or skip is returned as an event: (date, symbol, rule, value, limit, action).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import _kernels as k
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


@dataclass(frozen=True)
class RiskLimits:
    """None switches a limit off. Percent units: 10.0 means 10% of equity."""

    max_position_pct: float | None = None
    max_sector_pct: float | None = None
    max_correlation: float | None = None
    correlation_lookback: int = 60

    @classmethod
    def defaults(cls) -> RiskLimits:
        """The limits a cautious desk starts from: 10% per position, 30% per sector, 0.70 correlation."""
        return cls(max_position_pct=10.0, max_sector_pct=30.0, max_correlation=0.70)

    def as_dict(self) -> dict:
        return asdict(self)

    def kernel_args(self, market: Market) -> tuple:
        sector_id = sector_ids(market)
        returns = np.empty((0, 0))
        if self.max_correlation is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                returns = np.full_like(market.close, np.nan)
                returns[1:] = market.close[1:] / market.close[:-1] - 1.0
        return (
            returns,
            sector_id,
            (self.max_position_pct or 0.0) / 100.0,
            # Without a sector column there is nothing to group by: the sector limit is off.
            (self.max_sector_pct or 0.0) / 100.0 if market.sectors is not None else 0.0,
            2.0 if self.max_correlation is None else float(self.max_correlation),
            int(self.correlation_lookback),
        )


def sector_ids(market: Market) -> np.ndarray:
    """Integer sector per symbol; symbols without a sector column form one 'Unknown' sector."""
    if market.sectors is None:
        return np.zeros(len(market.symbols), np.int64)
    codes, _ = pd.factorize(pd.Series(market.sectors))
    return codes.astype(np.int64)
