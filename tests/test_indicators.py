"""Indicators vs TA-Lib (independent C implementation) on real data, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import indicators as ind
from engine.indicators import CATALOGUE, Indicators


def same(ours, ref):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), (np.isnan(ours).sum(), np.isnan(ref).sum())
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=1e-9 * np.abs(ref[ok]).max())


@pytest.fixture(scope="module")
def cols(sample):
    j = sample.column("NVDA")
    return sample, j, sample.high[:, j], sample.low[:, j], sample.close[:, j], sample.volume[:, j]


def test_moving_averages_match_talib(cols):
    m, j, h, lo, c, v = cols
    for n in (5, 20, 200):
        same(ind.sma(m.close, n)[:, j], talib.SMA(c, n))
        same(ind.ema(m.close, n)[:, j], talib.EMA(c, n))
        same(ind.wma(m.close, n)[:, j], talib.WMA(c, n))


def test_oscillators_match_talib(cols):
    m, j, h, lo, c, v = cols
    same(ind.rsi(m.close, 14)[:, j], talib.RSI(c, 14))
    for ours, ref in zip(ind.macd(m.close, 12, 26, 9), talib.MACD(c, 12, 26, 9), strict=True):
        same(ours[:, j], ref)
    for ours, ref in zip(
        ind.stochastic(m.high, m.low, m.close, 14, 3, 3), talib.STOCH(h, lo, c, 14, 3, 0, 3, 0), strict=True
    ):
        same(ours[:, j], ref)
    same(ind.roc(m.close, 10)[:, j], talib.ROC(c, 10))


def test_range_and_volume_indicators_match_talib(cols):
    m, j, h, lo, c, v = cols
    same(ind.atr(m.high, m.low, m.close, 14)[:, j], talib.ATR(h, lo, c, 14))
    same(CATALOGUE["adx"].compute(m, 14)[:, j], talib.ADX(h, lo, c, 14))
    same(CATALOGUE["obv"].compute(m)[:, j], talib.OBV(c, v))
    for ours, ref in zip(ind.bollinger(m.close, 20, 2.0), talib.BBANDS(c, 20, 2.0, 2.0), strict=True):
        same(ours[:, j], ref)
    same(CATALOGUE["high_n"].compute(m, 252)[:, j], talib.MAX(h, 252))
    same(CATALOGUE["low_n"].compute(m, 252)[:, j], talib.MIN(lo, 252))


def test_volume_and_volatility_match_pandas(cols):
    import pandas as pd

    m, j, h, lo, c, v = cols
    ret = pd.Series(c).pct_change()
    same(ind.rolling_volatility(m.close, 20)[:, j], ret.rolling(20).std() * np.sqrt(252) * 100)
    same(ind.relative_volume(m.volume, 20)[:, j], pd.Series(v) / pd.Series(v).rolling(20).mean().shift(1))
    same(ind.gap_pct(m.open, m.close)[:, j], (pd.Series(m.open[:, j]) / pd.Series(c).shift(1) - 1) * 100)


def test_missing_bars_are_skipped_not_poisoning_other_symbols(sample):
    close = sample.close.copy()
    close[100:110, 0] = np.nan
    sma = ind.sma(close, 20)
    assert np.isnan(sma[100:110, 0]).all()
    compact = close[~np.isnan(close[:, 0]), 0]
    same(sma[~np.isnan(close[:, 0]), 0], talib.SMA(compact, 20))
    np.testing.assert_array_equal(sma[:, 1:], ind.sma(sample.close, 20)[:, 1:])


@settings(max_examples=25, deadline=None)
@given(t=st.integers(30, 250), seed=st.integers(0, 10_000), name=st.sampled_from(sorted(CATALOGUE)))
def test_no_lookahead_value_at_t_ignores_later_bars(sample, t, seed, name):
    from engine.data import Market

    rng = np.random.default_rng(seed)
    m = Market(
        sample.symbols,
        sample.dates[:300],
        *(getattr(sample, a)[:300].copy() for a in ("open", "high", "low", "close", "volume")),
    )
    scale = rng.uniform(0.5, 2.0, (300 - t - 1, m.shape[1]))
    arrays = {a: getattr(m, a).copy() for a in ("open", "high", "low", "close", "volume")}
    for a in arrays:
        arrays[a][t + 1 :] *= scale
    m2 = Market(m.symbols, m.dates, **arrays)
    spec = CATALOGUE[name]
    args = [p.default for p in spec.params]
    a = Indicators(m).get(name, *args)[: t + 1]
    b = Indicators(m2).get(name, *args)[: t + 1]
    np.testing.assert_array_equal(a, b)


def test_memo_computes_each_indicator_once(sample):
    memo = Indicators(sample)
    first = memo.get("rsi", 14)
    assert memo.get("rsi", 14) is first and memo.computed == 1
    memo.get("rsi", 7)
    assert memo.computed == 2
