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

EULER_GAMMA = 0.5772156649015329


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _norm_ppf(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, refined by one Newton step)."""
    if not 0.0 < p < 1.0:
        return math.copysign(math.inf, p - 0.5) if p in (0.0, 1.0) else math.nan
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690, -30.66479806614716,
         2.506628277459239)  # fmt: skip
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
         2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    elif p > 1 - 0.02425:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    e = _norm_cdf(x) - p  # one Newton step on the CDF
    return x - e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)


def moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """(per-bar Sharpe, skewness, kurtosis (normal = 3), n) of bar returns; population moments."""
    r = np.asarray(returns, float)
    n = len(r)
    if n < 2:
        return math.nan, math.nan, math.nan, n
    sd = r.std()
    if sd == 0:
        return math.nan, math.nan, math.nan, n
    z = (r - r.mean()) / sd
    z2 = z * z  # products, not z**3 and z**4: numpy's pow is ten times slower
    return float(r.mean() / sd), float((z2 * z).mean()), float((z2 * z2).mean()), n


def moments_from_sums(blocks: np.ndarray) -> tuple[float, float, float, int]:
    """`moments` from block sums (rows of count, sum r, r^2, r^3, r^4): the central moments from the raw ones."""
    n, s1, s2, s3, s4 = blocks.sum(axis=0)
    if n < 2:
        return math.nan, math.nan, math.nan, int(n)
    mu = s1 / n
    m2 = s2 / n - mu**2
    if m2 <= 1e-300:
        return math.nan, math.nan, math.nan, int(n)
    m3 = s3 / n - 3 * mu * s2 / n + 2 * mu**3
    m4 = s4 / n - 4 * mu * s3 / n + 6 * mu**2 * s2 / n - 3 * mu**4
    return mu / math.sqrt(m2), m3 / m2**1.5, m4 / m2**2, int(n)


def probabilistic_sharpe(sharpe: float, skew: float, kurt: float, n: int, benchmark: float = 0.0) -> float:
    """PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)), SR per bar."""
    if not all(map(math.isfinite, (sharpe, skew, kurt))) or n < 2:
        return math.nan
    denom = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        return math.nan
    return _norm_cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(denom))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """The Sharpe the best of n_trials skill-free trials is expected to reach:
    sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))."""
    if n_trials < 2 or not variance > 0:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _norm_ppf(1 - 1 / n_trials)
                                  + EULER_GAMMA * _norm_ppf(1 - 1 / (n_trials * math.e)))  # fmt: skip


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


def trade_day_returns(close: np.ndarray, open_: np.ndarray, symbols: np.ndarray, entries: np.ndarray,
                      holds: np.ndarray, n_bars: int, direction: int = 1) -> np.ndarray:  # fmt: skip
    """Per-bar returns of an equal-weight book of trades: trade i holds symbol symbols[i] from the open of bar
    entries[i] for holds[i] bars (close to close after the first bar); a bar's return is the mean over the
    trades open on it (0 when none). The same yardstick for the strategy's trades and random ones."""
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
    r = np.where(np.isfinite(r), r * direction, 0.0)
    total = np.bincount(day, weights=r, minlength=n_bars)
    count = np.bincount(day, minlength=n_bars)
    return np.divide(total, count, out=np.zeros(n_bars), where=count > 0)


def random_entry_null(close: np.ndarray, open_: np.ndarray, symbols: np.ndarray, entries: np.ndarray,
                      holds: np.ndarray, periods_per_year: float, n_draws: int = 500, seed: int = 0,
                      direction: int = 1) -> tuple[float, np.ndarray, float]:  # fmt: skip
    """The random-entry benchmark: n_draws strategies with the same number of trades and the same holding
    times as the strategy's, on random symbols and entry bars. Returns (the strategy's Sharpe on this
    yardstick, the random strategies' Sharpes, p-value = share of them at least as good)."""
    n_bars, n_sym = close.shape
    filled_close = _ffill(close)
    filled_open = np.where(np.isnan(open_), filled_close, open_)

    own = sharpe_ratio(trade_day_returns(filled_close, filled_open, symbols, entries, holds, n_bars, direction),
                       0.0, periods_per_year)  # fmt: skip
    rng = np.random.default_rng(seed)
    draws = np.empty(n_draws)
    for i in range(n_draws):
        h = rng.permutation(holds)
        start = (rng.random(len(h)) * np.maximum(n_bars - h, 1)).astype(np.int64)
        r = trade_day_returns(filled_close, filled_open, rng.integers(0, n_sym, len(h)), start, h, n_bars, direction)
        draws[i] = sharpe_ratio(r, 0.0, periods_per_year)
    valid = draws[np.isfinite(draws)]
    p_value = float((valid >= own).mean()) if len(valid) and math.isfinite(own) else math.nan
    return own, draws, p_value


def _ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN down each column (a symbol's last close carries over days it has no bar)."""
    idx = np.where(np.isnan(x), 0, np.arange(len(x))[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return x[idx, np.arange(x.shape[1])]
