"""Portfolio risk limits, checked inside the kernel at each entry.

Limits apply when a position is opened (cut to fit, or skipped); later price moves are not trimmed.
Every cut or skip is returned as an event: (date, symbol, rule, value, limit, action).
Order at each entry: max positions, sizing, max position, max sector, cash/leverage, max volume (a share of
the signal bar's volume; an order cut below 10% of its size is skipped), then correlation
(the costliest check, so it runs last; a correlation skip replaces the cuts recorded before it). The
correlation is Pearson over the trailing window of 1-bar returns ending at the signal bar, on the bars
where both symbols have a return; with fewer than 3 such bars it is unknown and does not skip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import params as table
from .data import Market

_D = table.defaults("limits")


@dataclass(frozen=True)
class RiskLimits:
    """None switches a limit off (all are off by default). Percent units: 10.0 means 10% of equity."""

    max_position_pct: float | None = _D["max_position_pct"]
    max_sector_pct: float | None = _D["max_sector_pct"]
    max_correlation: float | None = _D["max_correlation"]
    correlation_lookback: int = _D["correlation_lookback"]
    max_volume_pct: float | None = _D["max_volume_pct"]

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
        if self.max_volume_pct is not None:
            out.append(f"volume <= {self.max_volume_pct:g}% of the bar's")
        if self.max_correlation is not None:
            out.append(f"correlation <= {self.max_correlation:g} over {self.correlation_lookback} bars")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


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
