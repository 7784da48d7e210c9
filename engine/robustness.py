"""How much of a backtest's Sharpe ratio survives the search that found it.

- `probabilistic_sharpe`: Bailey and Lopez de Prado (2012), "The Sharpe ratio efficient frontier",
  J. of Risk 15(2): the probability that the true Sharpe exceeds a benchmark, given the sample's length,
  skewness and kurtosis.
- `deflated_sharpe`: Bailey and Lopez de Prado (2014), "The deflated Sharpe ratio", J. of Portfolio
  Management 40(5): the PSR of the best of N trials against the Sharpe the best of N trials of a skill-free
  strategy is expected to reach, from the variance of the trials' Sharpe ratios.
- `pbo_cscv`: Bailey, Borwein, Lopez de Prado and Zhu (2015), "The probability of backtest overfitting",
  J. of Computational Finance 20(4): combinatorially symmetric cross-validation over S blocks of time.

Sharpe ratios here are per bar (not annualised), as in the papers. Moments come from block sums
(`_kernels.block_stats`): per block of bars, the count and the sums of r, r^2, r^3, r^4 of a strategy's bar
returns, so the Sharpe ratio, skewness and kurtosis of any union of blocks are exact without keeping the returns.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .metrics import sharpe_ratio
from .stats import norm_ppf, probabilistic_sharpe

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """The Sharpe the best of n_trials skill-free trials is expected to reach:
    sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))."""
    if n_trials < 2 or not variance > 0:
        return 0.0
    return math.sqrt(variance) * (
        (1 - EULER_GAMMA) * norm_ppf(1 - 1 / n_trials) + EULER_GAMMA * norm_ppf(1 - 1 / (n_trials * math.e))
    )


def deflated_sharpe(sharpe: float, skew: float, kurt: float, n: int, n_trials: int, variance: float) -> float:
    """DSR: the PSR of the best trial against expected_max_sharpe(n_trials, variance of the trials' SR)."""
    return probabilistic_sharpe(sharpe, skew, kurt, n, expected_max_sharpe(n_trials, variance))


def block_sharpe(blocks: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe of each strategy over the chosen blocks: blocks is (strategies x S x 5) of
    (count, sum r, sum r^2, sum r^3, sum r^4); chosen a bool mask over S."""
    s = blocks[:, chosen, :].sum(axis=1)
    n, s1, s2 = s[:, 0], s[:, 1], s[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        var = s2 / n - mean**2
        return np.where(var > 1e-300, mean / np.sqrt(np.maximum(var, 1e-300)), np.nan)


def pbo_cscv(blocks: np.ndarray, max_splits: int = 5000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Probability of backtest overfitting by CSCV: for each way of choosing half of the S blocks as
    in-sample (at most max_splits of them, drawn at random when there are more), take the strategy best
    in-sample and its relative rank w out of sample; lambda = ln(w / (1 - w)); PBO = share of lambda <= 0.
    Returns (PBO, the lambdas)."""
    n_strategies, n_blocks, _ = blocks.shape
    if n_strategies < 2 or n_blocks < 2 or n_blocks % 2:
        return math.nan, np.empty(0)
    splits = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    if len(splits) > max_splits:
        pick = np.random.default_rng(seed).choice(len(splits), max_splits, replace=False)
        splits = [splits[i] for i in pick]
    lambdas = []
    for ins in splits:
        mask = np.zeros(n_blocks, bool)
        mask[list(ins)] = True
        is_sr, oos_sr = block_sharpe(blocks, mask), block_sharpe(blocks, ~mask)
        if np.isnan(is_sr).all():
            continue
        best = int(np.nanargmax(is_sr))
        valid = ~np.isnan(oos_sr)
        if not valid[best]:
            continue
        rank = (oos_sr[valid] < oos_sr[best]).sum() + 0.5 * ((oos_sr[valid] == oos_sr[best]).sum() - 1) + 1
        w = rank / (valid.sum() + 1)
        lambdas.append(math.log(w / (1 - w)))
    lam = np.array(lambdas)
    return (float((lam <= 0).mean()) if len(lam) else math.nan), lam


def verdict(deflated: float, pbo: float) -> str:
    """The figures in one plain sentence for the Optimize page."""
    parts = []
    if math.isfinite(deflated):
        if deflated >= 0.95:
            parts.append(
                "the best Sharpe is very likely real skill after correcting for the search "
                f"(deflated Sharpe {deflated:.0%})"
            )
        elif deflated >= 0.5:
            parts.append(f"the best Sharpe may be partly luck of the search (deflated Sharpe {deflated:.0%})")
        else:
            parts.append(f"the best Sharpe is likely luck of the search (deflated Sharpe {deflated:.0%})")
    if math.isfinite(pbo):
        if pbo >= 0.5:
            parts.append(
                f"the in-sample winner usually does worse than the median out of sample (PBO {pbo:.0%}): "
                "treat it as overfit"
            )
        elif pbo >= 0.2:
            parts.append(f"the in-sample winner often loses its edge out of sample (PBO {pbo:.0%})")
        else:
            parts.append(f"the in-sample winner mostly keeps its rank out of sample (PBO {pbo:.0%})")
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:] if parts else "Not enough data to judge overfitting."


def trade_day_returns(
    close: np.ndarray,
    open_: np.ndarray,
    symbols: np.ndarray,
    entries: np.ndarray,
    holds: np.ndarray,
    n_bars: int,
    direction: int | np.ndarray = 1,
) -> np.ndarray:
    """Per-bar returns of an equal-weight book of trades: trade i holds symbol symbols[i] from the open of bar
    entries[i] for holds[i] bars (close to close after the first bar); a bar's return is the mean over the
    trades open on it (0 when none); `direction`: +1 long or -1 short, for all trades or per trade. The same
    yardstick for the strategy's trades and random ones."""
    holds = np.maximum(holds.astype(np.int64), 1)
    ends = np.minimum(entries + holds, n_bars)
    lengths = ends - entries
    trade = np.repeat(np.arange(len(entries)), lengths)
    day = entries[trade] + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    sym = symbols[trade]
    first = day == entries[trade]
    prev = np.where(first, open_[day, sym], close[np.maximum(day - 1, 0), sym])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = close[day, sym] / prev - 1.0
    r = np.where(np.isfinite(r), r * np.broadcast_to(direction, entries.shape)[trade], 0.0)
    total = np.bincount(day, weights=r, minlength=n_bars)
    count = np.bincount(day, minlength=n_bars)
    return np.divide(total, count, out=np.zeros(n_bars), where=count > 0)


def random_entry_null(
    close: np.ndarray,
    open_: np.ndarray,
    symbols: np.ndarray,
    entries: np.ndarray,
    holds: np.ndarray,
    periods_per_year: float,
    n_draws: int = 500,
    seed: int = 0,
    direction: int | np.ndarray = 1,
) -> tuple[float, np.ndarray, float]:
    """The random-entry benchmark: n_draws strategies with the same number of trades and the same holding
    times as the strategy's, on random symbols and entry bars. Returns (the strategy's Sharpe on this
    yardstick, the random strategies' Sharpes, p-value = share of them at least as good)."""
    n_bars, n_sym = close.shape
    filled_close = _ffill(close)
    filled_open = np.where(np.isnan(open_), filled_close, open_)

    own = sharpe_ratio(
        trade_day_returns(filled_close, filled_open, symbols, entries, holds, n_bars, direction), 0.0, periods_per_year
    )
    rng = np.random.default_rng(seed)
    draws = np.empty(n_draws)
    for i in range(n_draws):
        order = rng.permutation(len(holds))  # each random trade keeps a trade's holding time and side
        h, sides = holds[order], np.broadcast_to(direction, holds.shape)[order]
        start = (rng.random(len(h)) * np.maximum(n_bars - h, 1)).astype(np.int64)
        r = trade_day_returns(filled_close, filled_open, rng.integers(0, n_sym, len(h)), start, h, n_bars, sides)
        draws[i] = sharpe_ratio(r, 0.0, periods_per_year)
    valid = draws[np.isfinite(draws)]
    p_value = float((valid >= own).mean()) if len(valid) and math.isfinite(own) else math.nan
    return own, draws, p_value


def _ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down each column (a symbol's last close carries over days it has no bar)."""
    idx = np.where(np.isnan(x), 0, np.arange(len(x))[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return x[idx, np.arange(x.shape[1])]
