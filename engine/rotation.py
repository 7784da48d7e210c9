"""Rotation: the second strategy shape beside "enter on signals". At each rebalance bar's close the rule's
hits are ranked by its `rank by` score and the top `hold_top` become the target, weighted equally, by score
or by inverse volatility; at the next open the kernel (`_kernels._rebalance`) sells what dropped out, trims
and tops up to the weights (skipping changes under the band) and buys the new names, through every limit.

This module only decides the targets, from data up to each rebalance bar's close (no look-ahead): which
bars rebalance, and each one's symbols in rank order with their weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import Market
from .indicators import indicators_for

PERIOD_OF = {"W": "W-FRI", "M": "M", "Q": "Q"}  # weeks end on Friday, as weekly(x) in rules


def rebalance_rows(dates: pd.DatetimeIndex, rebalance: str, every: int = 21) -> np.ndarray:
    """The rebalance bars: the last bar of each calendar week, month or quarter (its calendar, known ahead),
    or every `every`-th bar (rebalance 'N'); the data's last bar closes its period but has no next open."""
    if rebalance == "N":
        return np.arange(every - 1, len(dates), every, dtype=np.int64)
    period = np.asarray(dates.to_period(PERIOD_OF[rebalance]).asi8)
    return np.flatnonzero(np.r_[period[1:] != period[:-1], True]).astype(np.int64)


def rotation_targets(
    hits: np.ndarray, score: np.ndarray, hold_top: int, weighting: str, volatility: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(symbols, weights): per rebalance row of `hits` (the rule's bool hits at that close) and `score` (its
    `rank by` value, higher first; NaN ranks last), the top `hold_top` hits in rank order (ties in symbol
    order), -1 where fewer passed, and their weights summing to 1 (0 when none passed).

    equal: 1/n each. score: proportional to the positive scores (equal when none is positive).
    inverse_vol: proportional to 1/volatility (a symbol whose volatility is unknown gets 0; equal when none
    is known)."""
    n_rows, n_sym = hits.shape
    k = min(hold_top, n_sym)
    finite = np.where(np.isfinite(score), score, -np.finfo(float).max)
    key = np.where(hits, -finite, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    held = np.arange(k)[None, :] < np.minimum(hits.sum(axis=1), k)[:, None]
    symbols = np.where(held, order, -1).astype(np.int64)
    rows = np.arange(n_rows)[:, None]
    if weighting == "score":
        raw = np.clip(np.nan_to_num(np.take_along_axis(score, order, axis=1), nan=0.0, neginf=0.0), 0.0, None)
    elif weighting == "inverse_vol":
        assert volatility is not None
        vol = volatility[rows, order]
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.where(np.isfinite(vol) & (vol > 0), 1.0 / vol, 0.0)
    else:
        raw = np.ones((n_rows, k))
    raw = np.where(held, raw, 0.0)
    total = raw.sum(axis=1, keepdims=True)
    equal = held / np.maximum(held.sum(axis=1, keepdims=True), 1)
    weights = np.where(total > 0, raw / np.where(total > 0, total, 1.0), equal)
    return symbols, np.ascontiguousarray(weights)


def rotation_arrays(
    market: Market,
    entries: np.ndarray,
    priority: np.ndarray,
    rebalance: str,
    every: int,
    hold_top: int,
    weighting: str,
    vol_lookback: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's rotation inputs: (per bar the row of its rebalance, -1: none; symbols per rebalance in
    rank order; their weights). `entries` and `priority` are the scan's (bars x symbols) hits and scores
    (priority 0 x 0: no `rank by`, so hits rank in symbol order)."""
    rows = rebalance_rows(market.dates, rebalance, every)
    score = priority[rows] if priority.size else np.zeros((len(rows), market.shape[1]))
    volatility = None
    if weighting == "inverse_vol":
        volatility = np.asarray(indicators_for(market).get("volatility", vol_lookback))[rows]
    symbols, weights = rotation_targets(entries[rows], score, hold_top, weighting, volatility)
    target_row = np.full(market.shape[0], -1, np.int64)
    target_row[rows] = np.arange(len(rows))
    return target_row, symbols, weights


def weights_pct(holdings: pd.DataFrame, close: np.ndarray, equity: np.ndarray) -> pd.DataFrame:
    """Each symbol's share of equity at each close, in % (shares held x close / equity; the last close where
    a symbol has no bar): what the holdings chart stacks."""
    marked = pd.DataFrame(close, index=holdings.index, columns=holdings.columns).ffill().fillna(0.0)
    return holdings * marked / equity[:, None] * 100.0
