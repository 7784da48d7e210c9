"""The kernel's named steps called directly, and hand-computed backtests of the exits and costs built on
them: trailing stops (percent and ATR), the exit rule, fixed and minimum commission, the volume cap,
excursions (MAE/MFE), Kelly's shadow trades. CI also runs this file with NUMBA_DISABLE_JIT=1, so coverage
counts the kernel's lines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import _kernels as k
from engine import backtest
from engine._records import COMBO
from engine.backtest import BacktestParams, kernel_inputs
from engine.data import market_from_frame
from engine.risk import RiskLimits
from engine.rules import Signals
from engine.sizing import Sizing
from tests.conftest import bars_market, flat, signal_at
from tests.test_backtest_rules import ONE, only_trade, run


def position(entry=100.0, bar=0, stop=np.nan, target=np.nan, trail=0.0, dist=0.0, extreme=None):
    pos = np.zeros(1, k.POSITION)[0]
    pos["shares"], pos["entry_price"], pos["entry_bar"], pos["stop"], pos["target"] = 1.0, entry, bar, stop, target
    pos["trail_frac"], pos["trail_dist"] = trail, dist
    pos["extreme"] = pos["worst"] = pos["best"] = entry if extreme is None else extreme
    return pos


# --- steps ------------------------------------------------------------------------------------------------


def test_the_exit_price_step_prices_long_and_short_alike():
    # long, stop 95, target 110, after the entry bar
    long_ = position(stop=95.0, target=110.0)
    assert k._exit_price(long_, 100, 101, 94, 96, 1, 1.0, False, 0, 9)[:2] == (95.0, k.EXIT_STOP)
    assert k._exit_price(long_, 90, 91, 88, 90, 1, 1.0, False, 0, 9)[:2] == (90.0, k.EXIT_STOP)  # gap through
    assert k._exit_price(long_, 100, 111, 99, 105, 1, 1.0, False, 0, 9)[:2] == (110.0, k.EXIT_TARGET)
    assert k._exit_price(long_, 100, 112, 94, 105, 1, 1.0, False, 0, 9)[:2] == (95.0, k.EXIT_STOP)  # stop first
    # the same trade mirrored: short, stop 105, target 90
    short = position(stop=105.0, target=90.0)
    assert k._exit_price(short, 100, 106, 99, 104, 1, -1.0, False, 0, 9)[:2] == (105.0, k.EXIT_STOP)
    assert k._exit_price(short, 110, 111, 108, 110, 1, -1.0, False, 0, 9)[:2] == (110.0, k.EXIT_STOP)
    assert k._exit_price(short, 100, 101, 89, 95, 1, -1.0, False, 0, 9)[:2] == (90.0, k.EXIT_TARGET)
    # the exit rule goes first, at the open; holding period and end of data at the close
    assert k._exit_price(long_, 100, 111, 94, 96, 1, 1.0, True, 0, 9)[:2] == (100.0, k.EXIT_RULE)
    held = position()
    held["bars_held"] = 3
    assert k._exit_price(held, 100, 101, 99, 100.5, 1, 1.0, False, 3, 9)[:2] == (100.5, k.EXIT_HOLDING)
    assert k._exit_price(position(), 100, 101, 99, 100.5, 9, 1.0, False, 0, 9)[:2] == (100.5, k.EXIT_END)
    assert math.isnan(k._exit_price(position(), 100, 101, 99, 100.5, 1, 1.0, False, 0, 9)[0])


def test_no_gap_exit_on_the_entry_bar():
    pos = position(stop=95.0, bar=1)
    assert k._exit_price(pos, 94, 96, 93, 95, 1, 1.0, True, 0, 9)[:2] == (95.0, k.EXIT_STOP)  # touched, not gapped


def test_the_tighter_of_the_fixed_and_the_trailing_stop_applies():
    pos = position(stop=95.0, trail=0.04, extreme=110.0)  # trailing level 105.6 is tighter than 95
    assert k._stop_level(pos, 1.0) == (pytest.approx(105.6), k.EXIT_TRAIL)
    pos = position(stop=95.0, trail=0.10)  # trailing level 90 is looser
    assert k._stop_level(pos, 1.0) == (95.0, k.EXIT_STOP)
    atr = position(dist=3.0, trail=0.10, extreme=110.0)  # 110 - 3 = 107 is tighter than 99
    assert k._stop_level(atr, 1.0) == (107.0, k.EXIT_TRAIL)
    short = position(trail=0.05, extreme=90.0)
    assert k._stop_level(short, -1.0) == (pytest.approx(94.5), k.EXIT_TRAIL)


def test_the_tracking_step_moves_the_excursions_and_the_extreme_by_hand():
    long_ = position(entry=100.0)
    k._track(long_, 101.0, 104.0, 97.0, 1.0, False, True)  # held through the bar: its high and low count
    assert (long_["best"], long_["worst"], long_["extreme"]) == (104.0, 97.0, 104.0)
    k._track(long_, 102.0, 103.0, 98.0, 1.0, False, True)  # inside the range: nothing moves
    assert (long_["best"], long_["worst"], long_["extreme"]) == (104.0, 97.0, 104.0)
    k._track(long_, 95.0, 110.0, 90.0, 1.0, True, False)  # exit at the open: only the open counts
    assert (long_["best"], long_["worst"], long_["extreme"]) == (104.0, 95.0, 104.0)
    short = position(entry=100.0)
    k._track(short, 99.0, 103.0, 96.0, -1.0, False, True)  # a short's best is the low, its worst the high
    assert (short["best"], short["worst"], short["extreme"]) == (96.0, 103.0, 96.0)


def test_an_exit_at_the_close_of_a_bar_that_closes_at_its_open_sees_the_whole_bar():
    # An audit found MAE/MFE leaving out the exit bar's range when its close equals its open (the exit was
    # taken for one at the open): holding period 2, the exit bar opens and closes at 100, low 90, high 112.
    bars = [(100,) * 4, (100, 101, 99, 100), (100, 112, 90, 100)]
    t = only_trade(run(bars, [0], holding_period=2, stop_loss=0))
    assert (t.exit_reason, t.exit_price) == ("holding_period", 100.0)
    assert (t.mae_pct, t.mfe_pct) == (pytest.approx(-10.0), pytest.approx(12.0))
    end = only_trade(run(bars, [0], stop_loss=0, holding_period=0))  # end of data at the close: the same
    assert (end.exit_reason, end.mae_pct, end.mfe_pct) == ("end_of_data", pytest.approx(-10.0), pytest.approx(12.0))
    pos = position(entry=100.0)
    px, reason, at_open = k._exit_price(pos, 100.0, 112.0, 90.0, 100.0, 2, 1.0, False, 0, 2)
    assert (px, reason, at_open) == (100.0, k.EXIT_END, False)  # the exit step says where, not the price
    k._track(pos, 100.0, 112.0, 90.0, 1.0, at_open, False)
    assert (pos["best"], pos["worst"]) == (112.0, 90.0)


def test_the_mark_step_values_a_held_position_at_the_close_or_its_last_close():
    limits = RiskLimits(max_sector_pct=50.0)
    sh = kernel_inputs(bars_market({"AAA": flat(3)}, sectors={"AAA": "Tech"}), BacktestParams(limits=limits))[2]
    pos, sectors = position(entry=100.0), np.zeros(1)
    pos["shares"], pos["mark"] = 10.0, 100.0
    assert k._mark(pos, 0, 103.0, sh, sectors) == 1030.0 and pos["mark"] == 103.0
    assert k._mark(pos, 0, np.nan, sh, sectors) == 1030.0  # no bar today: the last close
    assert sectors[0] == 2060.0
    off = kernel_inputs(bars_market({"AAA": flat(3)}), BacktestParams())[2]
    assert k._mark(pos, 0, 103.0, off, sectors) == 1030.0 and sectors[0] == 2060.0  # no sector limit: not kept


def test_fees_and_quantities_with_fixed_and_minimum_commission():
    sh = kernel_inputs(
        bars_market({"AAA": flat(3)}), BacktestParams(commission=0.1, commission_fixed=2.0, commission_min=5.0)
    )[2]
    assert k._fee(10_000.0, sh) == pytest.approx(12.0)  # 0.1% of 10,000 + 2
    assert k._fee(1_000.0, sh) == pytest.approx(5.0)  # 1 + 2 < 5: the minimum
    assert k._fee(0.0, sh) == 0.0
    for value in (10_000.0, 1_000.0, 50.0):
        qty = k._quantity(value, 100.0, sh)
        assert qty * 100.0 + k._fee(qty * 100.0, sh) == pytest.approx(value)


def test_kelly_fraction_from_hand_counts():
    params = np.zeros(1, COMBO)[0]
    params["kelly_multiplier"], params["kelly_cap"], params["kelly_min_trades"] = 1.0, 1.0, 4
    # 3 wins of +10%, 1 loss of -10%: w = 0.75, R = 1 -> f = 0.75 - 0.25 = 0.5
    assert k._kelly_fraction(params, np.array([4.0, 3.0, 0.3, 0.1])) == pytest.approx(0.5)
    assert math.isnan(k._kelly_fraction(params, np.array([3.0, 3.0, 0.3, 0.0])))  # too few trades yet
    assert k._kelly_fraction(params, np.array([4.0, 1.0, 0.1, 0.3])) == 0.0  # no edge: never negative


# --- trailing stops -----------------------------------------------------------------------------------


def test_a_trailing_stop_follows_the_highest_high_and_fills_at_its_level():
    # entry 100 at bar 1; highs 104 (bar 1), 110 (bar 2) -> level on bar 3 = 110 x 0.95 = 104.5
    bars = [(100,) * 4, (100, 104, 99, 103), (103, 110, 102, 108), (108, 108, 104, 105)]
    t = only_trade(run(bars, [0], trailing_stop=5.0))
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("trailing_stop", 3, pytest.approx(104.5))
    assert t.pnl == pytest.approx(10 * 4.5)


def test_a_bar_opening_through_the_trailing_level_fills_at_the_open():
    bars = [(100,) * 4, (100, 110, 99, 109), (101, 102, 100, 101)]  # level 104.5 on bar 2; opens at 101
    t = only_trade(run(bars, [0], trailing_stop=5.0))
    assert (t.exit_reason, t.exit_price) == ("trailing_stop", 101.0)


def test_the_trailing_level_never_starts_below_the_entry_fills():
    bars = [(100,) * 4, (100, 100, 96, 97)]  # on the entry bar the level is 100 x 0.97 = 97
    t = only_trade(run(bars, [0], trailing_stop=3.0))
    assert (t.exit_reason, t.exit_price) == ("trailing_stop", pytest.approx(97.0))


def test_a_short_trailing_stop_mirrors_with_the_lowest_low():
    bars = [(100,) * 4, (100, 101, 96, 97), (97, 98, 90, 91), (91, 95, 90, 94)]  # level 90 x 1.04 = 93.6
    t = only_trade(run(bars, [0], trailing_stop=4.0, signal_type="short"))
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("trailing_stop", 3, pytest.approx(93.6))
    assert t.pnl == pytest.approx(10 * (100 - 93.6))


def test_with_a_fixed_stop_too_the_tighter_level_applies_and_names_the_exit():
    bars = [(100,) * 4, (100, 120, 99, 118), (118, 119, 97, 98)]  # trail 120 x 0.9 = 108 beats stop 95
    t = only_trade(run(bars, [0], trailing_stop=10.0, stop_loss=5.0))
    assert (t.exit_reason, t.exit_price) == ("trailing_stop", pytest.approx(108.0))
    loose = only_trade(run([(100,) * 4, (100, 101, 94, 95)], [0], trailing_stop=10.0, stop_loss=5.0))
    assert (loose.exit_reason, loose.exit_price) == ("stop_loss", pytest.approx(95.0))


def test_an_atr_trailing_stop_trails_k_atr_at_the_signal_bar():
    # true ranges of 2 on every bar before the signal: ATR(2) = 2 at bar 2; k = 1.5 -> distance 3
    bars = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 100, 105), (105, 105, 102, 103)]
    t = only_trade(run(bars, [2], trailing_atr=1.5, sizing=Sizing(atr_period=2)))
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("trailing_stop", 4, pytest.approx(103.0))


# --- exit rule, costs, volume -----------------------------------------------------------------------------


def test_an_exit_rule_true_at_a_close_exits_at_the_next_open_before_stops():
    bars = [(100,) * 4, (100, 101, 99, 100), (100, 106, 100, 105), (104, 104, 90, 95)]
    m = bars_market({"AAA": bars})
    rule = "close > 104"  # true at bar 2's close -> exit at bar 3's open (104), before the 5% stop at 95
    t = only_trade(backtest(m, signal_at(m, AAA=[0]), **{**ONE, "exit_rule": rule, "stop_loss": 5.0}))
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("exit_rule", 3, 104.0)


def test_an_exit_rule_true_on_the_signal_bar_does_not_exit_before_entry():
    bars = [(100,) * 4, (100, 101, 99, 100), (101, 102, 100, 101)]
    m = bars_market({"AAA": bars})
    t = only_trade(backtest(m, signal_at(m, AAA=[0]), **{**ONE, "exit_rule": "close >= 100"}))
    assert (t.exit_reason, t.entry_bar, t.exit_bar, t.exit_price) == ("exit_rule", 1, 2, 101.0)


def test_fixed_and_minimum_commission_are_paid_on_each_order():
    bars = [(100,) * 4, (100, 100, 100, 100), (110, 110, 110, 110)]
    t = only_trade(run(bars, [0], holding_period=2, commission_fixed=5.0, fractional_shares=False))
    # 1,000 buys floor((1000 - 5) / 100) = 9 shares; fees 5 + 5; pnl 9 x 10 - 10
    assert (t.shares, t.fees, t.pnl) == (9.0, 10.0, pytest.approx(80.0))
    t = only_trade(run(bars, [0], holding_period=2, commission=0.1, commission_min=3.0))
    assert t.fees == pytest.approx(6.0)  # 0.1% of ~1,000 is ~1: the minimum, twice


def test_the_volume_cap_by_the_signal_bars_volume():
    def market(volume):
        frame = pd.DataFrame(
            {
                "symbol": "AAA",
                "date": pd.bdate_range("2024-01-01", periods=3),
                "open": 100.0,
                "high": 100.0,
                "low": 100.0,
                "close": 100.0,
                "volume": volume,
            }
        )
        return market_from_frame(frame)

    from engine.risk import RiskLimits

    m = market([10.0, 10.0, 10.0])
    r = backtest(m, signal_at(m, AAA=[0]), **ONE, limits=RiskLimits(max_volume_pct=40.0))
    assert only_trade(r).shares == pytest.approx(4.0)  # 40% of the signal bar's 10: cut from 10 to 4
    assert list(r.events[["rule", "action"]].astype(str).itertuples(index=False, name=None)) == [
        ("max_volume_pct", "cut")
    ]
    m = market([5.0, 10.0, 10.0])
    r = backtest(m, signal_at(m, AAA=[0]), **ONE, limits=RiskLimits(max_volume_pct=10.0))
    assert r.trades.empty and r.events.action.astype(str).tolist() == ["skip"]  # 0.5 of 10 shares: skipped


# --- excursions, indicator values, Kelly --------------------------------------------------------------------


def test_mae_and_mfe_are_the_worst_and_best_excursions_while_held():
    bars = [(100,) * 4, (100, 104, 97, 103), (103, 108, 101, 107), (107, 109, 106, 108)]
    t = only_trade(run(bars, [0], holding_period=3))
    assert (t.mae_pct, t.mfe_pct) == (pytest.approx(-3.0), pytest.approx(9.0))
    short = only_trade(run(bars, [0], holding_period=3, signal_type="short"))
    assert (short.mae_pct, short.mfe_pct) == (pytest.approx(-9.0), pytest.approx(3.0))


def test_an_exit_at_the_open_counts_only_that_open_in_the_excursions():
    bars = [(100,) * 4, (100, 102, 99, 101), (95, 120, 80, 100)]  # stop 96 gapped: exit at 95, not the 80 low
    t = only_trade(run(bars, [0], stop_loss=4.0))
    assert (t.exit_price, t.mae_pct, t.mfe_pct) == (95.0, pytest.approx(-5.0), pytest.approx(2.0))


def test_trades_carry_each_entry_rule_indicator_at_the_signal_bar(sample):
    from engine.rules import scan

    signals = scan(sample, "rsi(14) < 30")
    r = backtest(sample, signals)
    col = "at_signal: rsi(14)"
    assert col in r.trades and (r.trades[col] < 30).all()


def test_kelly_keeps_learning_from_shadow_trades_and_trades_again():
    # 4 losing trades make Kelly's fraction 0; later signals win, and the shadow trades bring it back.
    losing = [(100,) * 4, (100, 100, 90, 90)]
    winning = [(100,) * 4, (100, 120, 100, 120)]
    bars = []
    for i in range(12):
        bars += losing if i < 4 else winning
    m = bars_market({"AAA": bars})
    sig = signal_at(m, AAA=list(range(0, 24, 2)))
    sizing = Sizing(method="kelly", kelly_min_trades=4, kelly_multiplier=1.0, kelly_cap_pct=50.0)
    r = backtest(m, sig, **{**ONE, "holding_period": 1, "sizing": sizing})
    assert r.trades.entry_bar.tolist()[:4] == [1, 3, 5, 7]  # four real losers, then skips
    assert (r.trades.entry_bar > 9).any(), "Kelly never traded again"
    skipped = int(((r.events.rule == "size_zero") & (r.events.action == "skip")).sum())
    assert 0 < skipped < 8


def test_a_result_warns_when_sizing_skipped_most_signals():
    bars = [(100,) * 4, (100, 100, 100, 100)] * 6
    m = bars_market({"AAA": bars})
    sizing = Sizing(method="fixed_fractional")
    r = backtest(m, signal_at(m, AAA=list(range(0, 12, 2))), **{**ONE, "holding_period": 1, "sizing": sizing})
    assert r.trades.empty and r.warnings and "needs a stop-loss" in r.warnings[0]


# --- properties -----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(moves=st.lists(st.floats(-0.08, 0.08), min_size=5, max_size=30), trail=st.floats(0.5, 20))
def test_a_trailing_exit_is_never_below_the_level_it_promised(moves, trail):
    closes = 100 * np.cumprod(1 + np.array(moves))
    bars = [(100.0,) * 4] + [(c, c * 1.01, c * 0.99, c) for c in closes]
    r = run(bars, [0], trailing_stop=trail)
    t = only_trade(r)
    if t.exit_reason == "trailing_stop" and t.exit_price != bars[t.exit_bar][0]:  # filled at the level
        best = max([t.entry_price] + [b[1] for b in bars[t.entry_bar : t.exit_bar]])
        assert t.exit_price == pytest.approx(best * (1 - trail / 100))
    assert t.mae_pct <= 0 <= t.mfe_pct


def test_signals_object_without_values_still_backtests():
    m = bars_market({"AAA": flat(4)})
    signals = Signals(matrix=signal_at(m, AAA=[0]), rule="by hand")
    assert len(backtest(m, signals, **ONE).trades) == 1


def test_the_grid_kernel_reduces_each_combination_to_the_single_backtests_metrics():
    from engine.optimize import optimize

    bars = [(100,) * 4, (100, 104, 97, 103), (103, 108, 101, 107), (107, 109, 96, 98), (98, 99, 95, 97)] * 3
    m = bars_market({"AAA": bars, "BBB": [(o * 2, h * 2, lo * 2, c * 2) for o, h, lo, c in bars]})
    grid = {"stop_loss": [0.0, 3.0], "trailing_stop": [0.0, 5.0]}
    result = optimize(m, "close > open", BacktestParams(max_positions=2), grid, min_trades=0)
    from engine.rules import scan

    for row in result.table.itertuples(index=False):
        params = BacktestParams(max_positions=2, stop_loss=row.stop_loss, trailing_stop=row.trailing_stop)
        single = backtest(m, scan(m, "close > open"), params).metrics
        assert row.n_trades == single["n_trades"]
        assert row.total_return_pct == pytest.approx(single["total_return_pct"])
        assert row.sharpe == pytest.approx(single["sharpe"], nan_ok=True)


def test_fills_come_out_in_entry_order_with_the_order_positions_closed_in():
    # AAA enters on bar 1 and exits by holding period at the close of bar 3; BBB enters on bar 2 and its
    # stop is touched on that bar, so it closes first.
    m = bars_market({"AAA": flat(6), "BBB": [*flat(2), (100.0, 100.0, 90.0, 92.0), *flat(3, 92.0)]})
    bars, combo, shared = kernel_inputs(m, BacktestParams(holding_period=3, stop_loss=5.0))
    fills, closing, *_ = k.simulate(bars, signal_at(m, AAA=[0], BBB=[1]), np.zeros((0, 0)), combo, shared)
    assert list(fills["symbol"]) == [0, 1] and list(fills["position_id"]) == [0, 1]
    assert list(fills["exit_bar"]) == [3, 2] and list(fills["reason"]) == [k.EXIT_HOLDING, k.EXIT_STOP]
    assert list(closing) == [1, 0]


def test_a_positions_fills_stay_together_in_the_order_they_happened():
    fills = np.zeros(5, k.TRADE)
    fills["position_id"] = [1, 0, 1, 2, 0]  # written as they happened
    fills["exit_bar"] = [3, 4, 5, 6, 7]
    fills["closes"] = [False, False, True, True, True]
    out = k._entry_order(fills, 3)
    assert list(out["position_id"]) == [0, 0, 1, 1, 2] and list(out["exit_bar"]) == [4, 7, 3, 5, 6]


def test_a_position_that_never_closes_writes_no_fill():
    # BBB has an open but no close after bar 0 (the kernel is handed it raw): its position never closes.
    m = bars_market({"AAA": flat(4), "BBB": flat(4)})
    bars, combo, shared = kernel_inputs(m, BacktestParams(holding_period=1))
    close = bars.close.copy()
    close[1:, 1] = np.nan
    bars = bars._replace(close=close, last_valid=np.array([3, 0]))
    sig = signal_at(m, AAA=[0, 2], BBB=[0])
    fills, *_ = k.simulate(bars, sig, np.zeros((0, 0)), combo, shared)
    assert list(fills["symbol"]) == [0, 0] and list(fills["entry_bar"]) == [1, 3]
    assert list(fills["position_id"]) == [0, 2]  # BBB's position (1) has no fill
