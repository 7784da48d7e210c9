"""Small statistics with no other engine import, so that metrics and robustness can both use them (a leaf:
it ends the cycle the two once had): the normal CDF and its inverse, moments of bar returns, and the
probabilistic Sharpe ratio of Bailey and Lopez de Prado (2012), "The Sharpe ratio efficient frontier",
J. of Risk 15(2)."""

from __future__ import annotations

import math

import numpy as np


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_ppf(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, refined by one Newton step)."""
    if not 0.0 < p < 1.0:
        return math.copysign(math.inf, p - 0.5) if p in (0.0, 1.0) else math.nan
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.3577518672690,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
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
    e = norm_cdf(x) - p  # one Newton step on the CDF
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
    return norm_cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(denom))
