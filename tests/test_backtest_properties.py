"""Property tests: no look-ahead, accounting identity, determinism, limits never broken at entry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine import RiskLimits, Sizing, backtest
from engine.data import Market
from engine.synthetic import synthetic_market

BASE = synthetic_market(12, 160, seed=11)


def perturbed_after(m: Market, bar: int, seed: int) -> Market:
    rng = np.random.default_rng(seed)
    arrays = {a: getattr(m, a).copy() for a in ("open", "high", "low", "close", "volume")}
    scale = rng.uniform(0.7, 1.3, (m.shape[0] - bar - 1, m.shape[1]))
    for a in arrays:
        arrays[a][bar + 1 :] *= scale
    return Market(m.symbols, m.dates, sectors=m.sectors, **arrays)


params = st.fixed_dictionaries(
    {
        "stop_loss": st.sampled_from([None, 2.0, 5.0]),
        "take_profit": st.sampled_from([None, 3.0, 10.0]),
        "holding_period": st.sampled_from([None, 1, 5, 30]),
        "signal_type": st.sampled_from(["long", "short"]),
        "commission": st.sampled_from([0.0, 0.1]),
        "slippage_bps": st.sampled_from([0.0, 5.0]),
        "max_positions": st.integers(1, 6),
        "entry_order": st.sampled_from(["market", "limit", "stop"]),
        "entry_offset_pct": st.sampled_from([0.0, 1.0, 3.0]),
        "entry_valid_bars": st.integers(1, 4),
        "borrow_pct": st.sampled_from([0.0, 5.0]),
        "margin_interest_pct": st.sampled_from([0.0, 8.0]),
        "cash_interest_pct": st.sampled_from([0.0, 3.0]),
        "allow_leverage": st.booleans(),
        "max_adds": st.sampled_from([None, 2]),
        "add_rule": st.just("close > sma(5)"),
        "add_min_bars": st.integers(1, 3),
        "partial_exits": st.sampled_from(["", "50@3", "30@2,30@5"]),
        "breakeven_after_partial": st.booleans(),
    }
)


@settings(max_examples=40, deadline=None)
@given(p=params, density=st.floats(0.01, 0.2), seed=st.integers(0, 1000))
def test_bars_after_a_trades_exit_never_change_it(p, density, seed):
    sig = np.random.default_rng(seed).random(BASE.shape) < density
    base = backtest(BASE, sig, **p).trades
    assume(not base.empty)  # a run without trades says nothing here: hypothesis draws another
    cut = int(base.exit_bar.min())
    later = backtest(perturbed_after(BASE, cut, seed), sig, **p).trades
    closed = base[base.exit_bar <= cut]
    again = later[later.exit_bar <= cut]
    assert len(closed) and closed.reset_index(drop=True).equals(again.reset_index(drop=True))


@settings(max_examples=40, deadline=None)
@given(p=params, density=st.floats(0.01, 0.3), seed=st.integers(0, 1000))
def test_equity_is_cash_plus_marked_positions_and_runs_repeat_exactly(p, density, seed):
    sig = np.random.default_rng(seed).random(BASE.shape) < density
    r = backtest(BASE, sig, **p)
    eq = r.equity
    np.testing.assert_allclose(eq.equity, eq.cash + eq.long_value - eq.short_value, rtol=1e-9, atol=1e-6)
    earned = eq.interest.clip(lower=0).sum()  # interest on idle cash: the one accrual no trade carries
    final = p.get("initial_capital", 100_000.0) + r.trades.pnl.sum() + earned
    # Ruin too: the loss is booked as it is (below zero after a gap), so the trades and the curve agree.
    assert eq.equity.iloc[-1] == pytest.approx(final, rel=1e-9, abs=1e-6)
    if r.ruined_on is not None:
        assert eq.equity.iloc[-1] <= 0.0 and (eq.equity.loc[r.ruined_on :] == eq.equity.iloc[-1]).all()
    again = backtest(BASE, sig, **p)
    assert again.trades.equals(r.trades) and again.equity.equals(r.equity)


@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(["equal_weight", "volatility_target", "fixed_amount", "kelly", "atr_risk"]),
    density=st.floats(0.05, 0.4),
    seed=st.integers(0, 1000),
    signal_type=st.sampled_from(["long", "short"]),
)
def test_with_limits_on_no_entry_breaks_a_limit(method, density, seed, signal_type):
    """At every entry bar the book (held positions at the previous close, new ones at their fill) keeps
    each new position <= 10% of equity, each sector that took a new position <= 30%, gross <= 100%,
    and no new position correlates above 0.7 with one held before it (checked with pandas)."""
    sig = np.random.default_rng(seed).random(BASE.shape) < density
    limits = RiskLimits(max_position_pct=10.0, max_sector_pct=30.0, max_correlation=0.7, correlation_lookback=20)
    r = backtest(
        BASE,
        sig,
        sizing=Sizing(method, fixed_amount=40_000, kelly_min_trades=5),
        limits=limits,
        max_positions=20,
        signal_type=signal_type,
        stop_loss=3.0,
    )
    trades = r.trades.assign(col=[BASE.column(s) for s in r.trades.symbol])
    eq = r.equity.equity.to_numpy()
    sectors = np.array(BASE.sectors)
    close = pd.DataFrame(BASE.close).ffill().to_numpy()
    returns = pd.DataFrame(BASE.close).pct_change(fill_method=None)
    tol = 1 + 1e-9
    for bar in np.unique(trades.entry_bar):
        budget = eq[bar - 1]
        book = trades[(trades.entry_bar <= bar) & (trades.exit_bar >= bar)]
        new = book[book.entry_bar == bar]
        held = book[book.entry_bar < bar]
        value = np.where(book.entry_bar == bar, book.shares * book.entry_price, book.shares * close[bar - 1, book.col])
        assert (new.shares * new.entry_price <= 0.10 * budget * tol).all()
        for sector in np.unique(sectors[new.col]):
            assert value[sectors[book.col] == sector].sum() <= 0.30 * budget * tol
        assert value.sum() <= budget * tol
        window = returns.iloc[max(0, bar - 20) : bar]
        for row in new.itertuples():
            earlier = list(held.col) + list(new[new.index < row.Index].col)
            for other in earlier:
                assert not window[row.col].corr(window[other], min_periods=3) > 0.7 + 1e-9  # < 3 returns: unknown


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 1000),
    density=st.floats(0.01, 0.2),
    on_opposite=st.sampled_from(["ignore", "close", "reverse"]),
    entry_order=st.sampled_from(["market", "limit", "stop"]),
    borrow=st.sampled_from([0.0, 10.0]),
)
def test_a_book_of_longs_and_shorts_never_looks_ahead_and_adds_up(seed, density, on_opposite, entry_order, borrow):
    sig = np.random.default_rng(seed).random(BASE.shape) < density
    p = dict(
        signal_type="both",
        short_rule="rsi(3) > 80",
        on_opposite=on_opposite,
        entry_order=entry_order,
        entry_offset_pct=1.0,
        borrow_pct=borrow,
        stop_loss=5.0,
        max_positions=5,
    )
    r = backtest(BASE, sig, **p)
    eq = r.equity
    np.testing.assert_allclose(eq.equity, eq.cash + eq.long_value - eq.short_value, rtol=1e-9, atol=1e-6)
    assert eq.equity.iloc[-1] == pytest.approx(100_000.0 + r.trades.pnl.sum(), rel=1e-9)
    assert set(r.trades.direction) <= {"long", "short"}
    assume(not r.trades.empty)
    cut = int(r.trades.exit_bar.min())
    later = backtest(perturbed_after(BASE, cut, seed), sig, **p).trades
    closed, again = r.trades[r.trades.exit_bar <= cut], later[later.exit_bar <= cut]
    assert closed.reset_index(drop=True).equals(again.reset_index(drop=True))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    side=st.sampled_from(["long", "short"]),
    leverage=st.floats(1.5, 5.0),
    gap=st.floats(0.2, 0.9),
)
def test_ruin_books_every_loss_the_trades_and_the_curve_agree(seed, side, leverage, gap):
    """Leveraged books through gaps of up to 90% against them: when equity reaches zero every position closes
    at that close, the loss is booked as it is (below zero after a gap), and the fills' pnl equal the curve's
    change; nothing trades after the ruin bar."""
    rng = np.random.default_rng(seed)
    n, k = 40, 4
    step = rng.normal(0.0, 0.03, (n, k))
    shock_bar = rng.integers(5, n - 5)
    step[shock_bar] += np.log(1 - gap) if side == "long" else np.log(1 + 3 * gap)  # the gap against the book
    close = 100 * np.exp(np.cumsum(step, axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.005, (n, k)))
    open_[shock_bar] = close[shock_bar]  # the whole move at the open: a gap
    high, low = np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99
    dates = pd.bdate_range("2024-01-01", periods=n)
    m = Market(tuple(f"S{i}" for i in range(k)), dates, open_, high, low, close, np.full((n, k), 1e6))
    sig = rng.random((n, k)) < 0.4
    r = backtest(
        m,
        sig,
        signal_type=side,
        allow_leverage=True,
        max_leverage=leverage,
        sizing=Sizing("fixed_amount", fixed_amount=100_000.0 * leverage / k),
        max_positions=k,
        stop_loss=None,
        take_profit=None,
        holding_period=None,
        commission=0.1,
    )
    eq = r.equity.equity
    assert eq.iloc[-1] == pytest.approx(100_000.0 + r.trades.pnl.sum(), rel=1e-9, abs=1e-6)
    if r.ruined_on is not None:
        after = eq.loc[r.ruined_on :]
        assert (after == after.iloc[0]).all() and after.iloc[0] <= 0.0
        assert (r.trades.entry_date <= r.ruined_on).all() and (r.trades.exit_date <= r.ruined_on).all()
        assert r.warnings[0].startswith(f"Ruined on {r.ruined_on.date()}")
