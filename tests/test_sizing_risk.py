"""Hand-computed cases for each sizing method, leverage, ruin and each risk limit (capital 1,000 throughout)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RiskLimits, Sizing, backtest
from engine.errors import ParamError
from tests.conftest import bars_market, flat, signal_at

BASE = dict(initial_capital=1000.0, stop_loss=None, take_profit=None, holding_period=None)


def entry(result, symbol="AAA"):
    return result.trades[result.trades.symbol == symbol].iloc[0]


def one(bars, sig_bars, **kw):
    m = bars_market({"AAA": bars})
    return backtest(m, signal_at(m, AAA=sig_bars), **{**BASE, "max_positions": 1, **kw})


# ---- sizing methods ----------------------------------------------------------------------------------


def test_equal_weight_is_equity_over_max_positions():
    r = one(flat(4), [0], max_positions=4)
    assert entry(r).shares == pytest.approx(1000 / 4 / 100)


def test_fixed_fractional_risks_r_percent_between_entry_and_stop():
    r = one(flat(4), [0], stop_loss=5.0, sizing=Sizing("fixed_fractional", risk_pct=1.0))
    assert entry(r).shares == pytest.approx(0.01 * 1000 / 0.05 / 100)  # 200 of value = 10 lost at the stop
    no_stop = one(flat(4), [0], sizing=Sizing("fixed_fractional"))
    assert no_stop.trades.empty and no_stop.skipped() == {"size_zero skip": 1}


# Trade 1: 100 -> 110 (+10%), trade 2: 110 -> 104.5 (-5%); equity 1,045 before the third entry at 104.5.
KELLY_BARS = [(100,) * 4, (100, 110, 100, 110), (110, 110, 104.5, 104.5), (104.5,) * 4, (104.5,) * 4]


def kelly_run(**sizing):
    return one(KELLY_BARS, [0, 1, 2], holding_period=1, sizing=Sizing("kelly", **sizing))


def test_kelly_uses_the_fallback_until_min_trades_have_closed():
    r = kelly_run(kelly_min_trades=3, kelly_multiplier=1.0, kelly_cap_pct=100.0)
    assert r.trades.shares.tolist() == pytest.approx([10.0, 10.0, 10.0])  # equity / max_positions each time


def test_kelly_fraction_from_closed_trades_after_min_trades():
    # W = 0.5, R = 10 / 5 = 2, f = W - (1 - W) / R = 0.25 of equity 1,045.
    full = kelly_run(kelly_min_trades=2, kelly_multiplier=1.0, kelly_cap_pct=100.0)
    assert full.trades.shares.iloc[2] == pytest.approx(0.25 * 1045 / 104.5)
    half = kelly_run(kelly_min_trades=2, kelly_multiplier=0.5, kelly_cap_pct=100.0)
    assert half.trades.shares.iloc[2] == pytest.approx(0.125 * 1045 / 104.5)
    capped = kelly_run(kelly_min_trades=2, kelly_multiplier=1.0, kelly_cap_pct=10.0)
    assert capped.trades.shares.iloc[2] == pytest.approx(0.10 * 1045 / 104.5)


def test_kelly_never_counts_a_trade_that_has_not_closed():
    # AAA is held bars 1-2 and exits at bar 2's close, after bar 2's entries: BBB (bar 2) gets the
    # fallback, CCC (bar 3) sees one closed win: f = 1 x 0.5 multiplier, capped at 25%.
    m = bars_market({"AAA": [(100,) * 4, (105,) * 4] + [(110,) * 4] * 3, "BBB": flat(5), "CCC": flat(5)})
    sig = signal_at(m, AAA=[0], BBB=[1], CCC=[2])
    r = backtest(m, sig, **{**BASE, "holding_period": 2}, max_positions=3, sizing=Sizing("kelly", kelly_min_trades=1))
    value = dict(zip(r.trades.symbol, r.trades.shares * r.trades.entry_price, strict=True))
    equity = r.equity.equity
    assert value["BBB"] == pytest.approx(equity.iloc[1] / 3)
    assert value["CCC"] == pytest.approx(0.25 * equity.iloc[2])


def test_volatility_target_sizes_to_target_over_trailing_vol():
    closes = [100, 110, 99, 108.9, 98.01, 98.01]
    r = one([(c,) * 4 for c in closes], [4], sizing=Sizing("volatility_target", vol_target_pct=10, vol_lookback=4))
    rets = np.diff(closes[:5]) / closes[:4]
    vol = np.std(rets, ddof=1) * np.sqrt(252)  # read at the signal bar, never the entry bar
    assert entry(r).shares == pytest.approx(1000 * 0.10 / vol / 98.01)


def test_atr_risk_sizes_by_atr_and_can_place_the_stop():
    bars = [(100, 102, 98, 100)] * 4 + [(100, 101, 91, 95), (95,) * 4]  # true range 4 -> ATR(3) = 4
    sizing = Sizing("atr_risk", risk_pct=1.0, atr_period=3, atr_multiplier=2.0)
    r = one(bars, [3], sizing=sizing)
    assert entry(r).shares == pytest.approx(0.01 * 1000 / (2 * 4))  # 1.25 shares lose 10 over 8 points
    stopped = one(bars, [3], sizing=Sizing(**{**sizing.as_dict(), "atr_stop": True}))
    t = entry(stopped)
    assert (t.exit_reason, t.exit_price) == ("stop_loss", pytest.approx(92.0))
    assert t.pnl == pytest.approx(-10.0)


def test_fixed_amount_is_a_currency_amount():
    r = one(flat(4), [0], sizing=Sizing("fixed_amount", fixed_amount=250.0))
    assert entry(r).shares == pytest.approx(2.5)


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ParamError, match="must be one of equal_weight"):
        Sizing("martingale")


# ---- leverage, short margin, ruin ---------------------------------------------------------------------


def two(sizing_amount, signal_type="long", **kw):
    m = bars_market({"AAA": flat(4), "BBB": flat(4)})
    sizing = Sizing("fixed_amount", fixed_amount=sizing_amount)
    return backtest(
        m,
        signal_at(m, AAA=[0], BBB=[0]),
        **{**BASE, "max_positions": 2, "sizing": sizing, "signal_type": signal_type, **kw},
    )


@pytest.mark.parametrize("side", ["long", "short"])
def test_without_leverage_gross_exposure_stays_within_equity(side):
    r = two(600.0, side)
    assert r.trades.symbol.tolist() == ["AAA"] and r.skipped() == {"cash skip": 1}
    shrunk = two(600.0, side, shrink_unfunded=True)
    assert shrunk.trades.shares.tolist() == pytest.approx([6.0, 4.0])
    assert shrunk.equity.gross_exposure_pct.max() == pytest.approx(100.0)


@pytest.mark.parametrize("side", ["long", "short"])
def test_leverage_caps_gross_exposure_at_max_leverage(side):
    r = two(1500.0, side, allow_leverage=True, max_leverage=2.0, shrink_unfunded=True)
    assert r.trades.shares.tolist() == pytest.approx([15.0, 5.0])  # 1,500 + 500 = 2 x equity
    assert r.equity.gross_exposure_pct.iloc[1] == pytest.approx(200.0)
    cash = r.equity.cash.iloc[1]
    assert cash == pytest.approx(-1000.0 if side == "long" else 3000.0)  # borrowed cash / short proceeds


def test_ruin_liquidates_at_zero_equity_and_stops_trading():
    bars = [(100,) * 4, (100,) * 4, (75,) * 4, (50,) * 4, (40,) * 4, (100,) * 4]
    r = one(bars, [0, 4], allow_leverage=True, max_leverage=2.0, sizing=Sizing("fixed_amount", fixed_amount=2000))
    assert r.ruined_on == r.equity.index[3]  # 20 shares x 50 = the 1,000 borrowed
    assert r.equity.equity.tolist() == pytest.approx([1000, 1000, 500, 0, 0, 0])
    assert r.trades.exit_reason.tolist() == ["ruin"] and r.trades.pnl.iloc[0] == pytest.approx(-1000.0)
    assert any("Ruined on 2024-01-04" in w for w in r.warnings)


def test_ruin_books_a_gap_past_zero_as_it_is():
    """A leveraged short gaps from 100 to 160: 20 shares short on 1,000 lose 1,200. The curve shows -200 from
    that bar on (it used to stop at 0 while the trade booked the whole loss), and nothing trades after it."""
    bars = [(100,) * 4, (100,) * 4, (160,) * 4, (90,) * 4, (80,) * 4]
    kw = dict(allow_leverage=True, max_leverage=2.0, sizing=Sizing("fixed_amount", fixed_amount=2000))
    r = one(bars, [0, 3], signal_type="short", **kw)
    assert r.ruined_on == r.equity.index[2]
    assert r.equity.equity.tolist() == pytest.approx([1000, 1000, -200, -200, -200])
    assert r.trades.exit_reason.tolist() == ["ruin"] and r.trades.pnl.sum() == pytest.approx(-1200.0)
    assert r.metrics["final_equity"] == pytest.approx(-200.0) and r.metrics["total_return_pct"] == pytest.approx(-120)


# ---- risk limits ----------------------------------------------------------------------------------------


def test_max_position_cuts_the_size_and_records_the_cut():
    r = one(flat(4), [0], limits=RiskLimits(max_position_pct=10.0))
    assert entry(r).shares == pytest.approx(1.0)
    ev = r.events.iloc[0]
    assert (ev.rule, ev.action, ev.value, ev.limit) == ("max_position_pct", "cut", 100.0, 10.0)


def test_max_sector_cuts_then_skips_and_spares_other_sectors():
    syms = ("AAA", "BBB", "CCC", "DDD")
    m = bars_market({s: flat(4) for s in syms}, sectors={"AAA": "Tech", "BBB": "Tech", "CCC": "Tech", "DDD": "Oil"})
    r = backtest(
        m, signal_at(m, **{s: [0] for s in syms}), **BASE, max_positions=5, limits=RiskLimits(max_sector_pct=30.0)
    )
    value = dict(zip(r.trades.symbol, r.trades.shares * r.trades.entry_price, strict=True))
    assert value == pytest.approx({"AAA": 200.0, "BBB": 100.0, "DDD": 200.0})
    assert r.events[["symbol", "rule", "action"]].astype(str).values.tolist() == [
        ["BBB", "max_sector_pct", "cut"],
        ["CCC", "max_sector_pct", "skip"],
    ]


def test_sector_limit_is_off_without_a_sector_column():
    m = bars_market({s: flat(4) for s in ("AAA", "BBB")})
    r = backtest(m, signal_at(m, AAA=[0], BBB=[0]), **BASE, max_positions=2, limits=RiskLimits(max_sector_pct=30))
    assert len(r.trades) == 2 and r.events.empty


def test_max_correlation_skips_a_twin_and_keeps_a_hedge():
    path = [100, 103, 99, 104, 101, 106, 102, 102, 102]
    twin = [2 * p for p in path]
    mirror = [100.0]
    for a, b in zip(path, path[1:], strict=False):
        mirror.append(mirror[-1] * (1 - (b / a - 1)))
    m = bars_market(
        {"AAA": [(p,) * 4 for p in path], "BBB": [(p,) * 4 for p in twin], "CCC": [(p,) * 4 for p in mirror]}
    )
    sig = signal_at(m, AAA=[5], BBB=[5], CCC=[5])
    r = backtest(m, sig, **BASE, max_positions=3, limits=RiskLimits(max_correlation=0.7, correlation_lookback=5))
    assert sorted(r.trades.symbol) == ["AAA", "CCC"]
    ev = r.events.iloc[0]
    assert (ev.symbol, ev.rule, ev.action, ev.limit) == ("BBB", "max_correlation", "skip", 0.7)
    assert ev.value == pytest.approx(1.0)
