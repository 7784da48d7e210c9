"""Rotation: the second strategy shape beside "enter on signals". At each rebalance bar's close the rule's
hits are ranked by its `rank by` score and the top `hold_top` become the target, weighted equally, by score
or by inverse volatility; at the next open the kernel (`_kernels._rebalance`) sells what dropped out, trims
and tops up to the weights (skipping changes under the band) and buys the new names, through every limit.

This module only decides the targets, from data up to each rebalance bar's close (no look-ahead): which
bars rebalance, and each one's symbols in rank order with their weights.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Targets(NamedTuple):
    """A rotation's targets per rebalance row: `symbols` in rank order (-1 where fewer), their `weights` (a
    share of the portfolio; what they leave is held in cash), and the `unscored` hits skipped because their
    `rank by` score was undefined there (-1 where fewer)."""

    symbols: np.ndarray
    weights: np.ndarray
    unscored: np.ndarray


def rotation_targets(
    hits: np.ndarray, score: np.ndarray, hold_top: int, weighting: str, volatility: np.ndarray | None = None
) -> Targets:
    """Per rebalance row of `hits` (the rule's bool hits at that close) and `score` (its `rank by` value,
    higher first), the top `hold_top` hits with a score, in rank order (ties in symbol order).

    A hit whose score is undefined (NaN: a `roc(60)` in its first 60 bars) cannot be ranked: it is skipped and
    its share held in cash, as bt's selection does. The slots are min(hold_top, hits), the skipped hits among
    them included, so each target's weight is a share of the slots it fills:
    equal: 1 / slots each. score: the positive scores' shares (a target with a score <= 0 gets none; no
    positive score: all in cash). inverse_vol: shares of 1/volatility (a symbol whose volatility is unknown
    gets 0; equal when none is known). Weights sum to (targets / slots), 0 when nothing passed."""
    n_rows, n_sym = hits.shape
    k = min(hold_top, n_sym)
    scored = hits & np.isfinite(score)
    key = np.where(scored, -np.where(scored, score, 0.0), np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    slots = np.minimum(hits.sum(axis=1), k)[:, None]
    held = np.arange(k)[None, :] < np.minimum(scored.sum(axis=1)[:, None], slots)
    symbols = np.where(held, order, -1).astype(np.int64)
    if weighting == "score":
        raw = np.clip(np.take_along_axis(np.where(scored, score, 0.0), order, axis=1), 0.0, None)
        fallback = np.zeros((n_rows, k))  # no positive score: cash
    elif weighting == "inverse_vol":
        assert volatility is not None
        vol = np.take_along_axis(volatility, order, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.where(np.isfinite(vol) & (vol > 0), 1.0 / vol, 0.0)
        fallback = held.astype(float)
    else:
        raw = np.ones((n_rows, k))
        fallback = held.astype(float)
    raw = np.where(held, raw, 0.0)
    total = raw.sum(axis=1, keepdims=True)
    shares = np.where(total > 0, raw / np.where(total > 0, total, 1.0), fallback / np.maximum(held.sum(1), 1)[:, None])
    invested = held.sum(axis=1, keepdims=True) / np.maximum(slots, 1)
    unscored_key = np.where(hits & ~scored, np.arange(n_sym)[None, :], n_sym)
    unscored = np.sort(unscored_key, axis=1)[:, :k]
    return Targets(symbols, np.ascontiguousarray(shares * invested), np.where(unscored < n_sym, unscored, -1))


def rotation_arrays(
    market: Market,
    entries: np.ndarray,
    priority: np.ndarray,
    rebalance: str,
    every: int,
    hold_top: int,
    weighting: str,
    vol_lookback: int,
) -> tuple[np.ndarray, Targets]:
    """The kernel's rotation inputs: (per bar the row of its rebalance, -1: none; each rebalance's targets).
    `entries` and `priority` are the scan's (bars x symbols) hits and scores
    (priority 0 x 0: no `rank by`, so hits rank in symbol order)."""
    rows = rebalance_rows(market.dates, rebalance, every)
    score = priority[rows] if priority.size else np.zeros((len(rows), market.shape[1]))
    volatility = None
    if weighting == "inverse_vol":
        volatility = np.asarray(indicators_for(market).get("volatility", vol_lookback))[rows]
    targets = rotation_targets(entries[rows], score, hold_top, weighting, volatility)
    target_row = np.full(market.shape[0], -1, np.int64)
    target_row[rows] = np.arange(len(rows))
    return target_row, targets


def weights_pct(holdings: pd.DataFrame, close: np.ndarray, equity: np.ndarray) -> pd.DataFrame:
    """Each symbol's share of equity at each close, in % (shares held x close / equity; the last close where
    a symbol has no bar): what the holdings chart stacks."""
    marked = pd.DataFrame(close, index=holdings.index, columns=holdings.columns).ffill().fillna(0.0)
    return holdings * marked / equity[:, None] * 100.0
