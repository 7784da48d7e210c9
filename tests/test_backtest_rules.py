"""Hand-computed cases for every exit rule, gaps, the short side, costs and cash limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import DataError, backtest
from engine.errors import ParamError
from tests.conftest import bars_market, flat, signal_at

ONE = dict(initial_capital=1000.0, max_positions=1, stop_loss=None, take_profit=None, holding_period=None)


def run(bars, sig_bars, **kw):
    m = bars_market({"AAA": bars})
    return backtest(m, signal_at(m, AAA=sig_bars), **{**ONE, **kw})


def only_trade(result):
    assert len(result.trades) == 1
    return result.trades.iloc[0]


def test_entry_is_next_open_and_holding_period_exits_at_close_of_nth_bar():
    bars = [(100, 100, 100, 100), (100, 104, 99, 102), (103, 106, 101, 105), (106, 108, 104, 107)]
    t = only_trade(run(bars, [0], holding_period=2))
    assert (t.entry_price, t.exit_price, t.shares) == (100.0, 105.0, 10.0)
    assert t.entry_bar == 1 and t.exit_bar == 2 and t.bars_held == 2
    assert t.exit_reason == "holding_period"
    assert t.pnl == pytest.approx(50.0)
    assert t.return_pct == pytest.approx(5.0)


def test_stop_loss_inside_the_bar_fills_at_the_stop():
    bars = [(100,) * 4, (100, 101, 94, 96), (96, 97, 95, 96)]
    t = only_trade(run(bars, [0], stop_loss=5.0))
    assert (t.exit_reason, t.exit_price, t.exit_bar) == ("stop_loss", pytest.approx(95.0), 1)
    assert t.pnl == pytest.approx(-50.0)


def test_gap_below_the_stop_fills_at_the_open():
    bars = [(100,) * 4, (100, 101, 99, 100), (90, 92, 88, 91)]
    t = only_trade(run(bars, [0], stop_loss=5.0))
    assert (t.exit_reason, t.exit_price) == ("stop_loss", 90.0)
    assert t.pnl == pytest.approx(-100.0)


def test_take_profit_inside_the_bar_and_through_a_gap():
    inside = only_trade(run([(100,) * 4, (100, 112, 99, 111)], [0], take_profit=10.0))
    assert (inside.exit_reason, inside.exit_price) == ("take_profit", pytest.approx(110.0))
    gap = only_trade(run([(100,) * 4, (100, 101, 99, 100), (115, 116, 114, 115)], [0], take_profit=10.0))
    assert (gap.exit_reason, gap.exit_price) == ("take_profit", 115.0)


def test_a_position_held_into_a_delisting_gets_the_delisting_return_on_the_last_bar():
    """AAA stops trading after bar 2 with delisting_return -0.4 on it (a fraction, as CRSP's DLRET): the long
    bought at 100 exits at 102 x 0.6 = 61.2, "delisted". BBB trades on with no value: its own last close."""
    rows = []
    for i, (sym, close) in enumerate([("AAA", 100.0), ("AAA", 101.0), ("AAA", 102.0)]):
        rows.append({"symbol": sym, "date": pd.Timestamp("2024-01-01") + pd.offsets.BDay(i), "close": close})
    for i in range(5):
        rows.append({"symbol": "BBB", "date": pd.Timestamp("2024-01-01") + pd.offsets.BDay(i), "close": 50.0 + i})
    frame = pd.DataFrame(rows).assign(volume=1.0)
    frame = frame.assign(open=frame.close, high=frame.close, low=frame.close)
    frame["delisting_return"] = np.where((frame.symbol == "AAA") & (frame.close == 102.0), -0.4, np.nan)
    from engine.data import market_from_frame

    m = market_from_frame(frame)
    both = {**ONE, "max_positions": 2}
    result = backtest(m, signal_at(m, AAA=[0], BBB=[0]), **both)
    by_symbol = result.trades.set_index("symbol")
    assert by_symbol.loc["AAA", "exit_reason"] == "delisted" and by_symbol.loc["AAA", "exit_bar"] == 2
    assert by_symbol.loc["AAA", "exit_price"] == pytest.approx(102.0 * 0.6)
    assert by_symbol.loc["AAA", "return_pct"] == pytest.approx((61.2 / 101.0 - 1) * 100)
    assert (by_symbol.loc["BBB", "exit_reason"], by_symbol.loc["BBB", "exit_price"]) == ("end_of_data", 54.0)
    wiped = frame.assign(delisting_return=np.where(frame.delisting_return.notna(), -3.0, np.nan))
    gone = backtest(market_from_frame(wiped), signal_at(m, AAA=[0]), **ONE)
    assert only_trade(gone).exit_price == 0.0  # a loss is at most everything


def test_stop_and_target_in_one_bar_assumes_the_stop_first():
    t = only_trade(run([(100,) * 4, (100, 112, 94, 105)], [0], stop_loss=5.0, take_profit=10.0))
    assert (t.exit_reason, t.exit_price) == ("stop_loss", pytest.approx(95.0))


def test_open_position_exits_at_the_last_close():
    t = only_trade(run([(100,) * 4, (100, 101, 99, 100), (100, 103, 99, 102)], [0]))
    assert (t.exit_reason, t.exit_price, t.exit_bar) == ("end_of_data", 102.0, 2)


def test_signal_on_the_last_bar_never_trades():
    assert run(flat(3), [2]).trades.empty


def test_short_side_stop_target_and_pnl():
    stop = only_trade(run([(100,) * 4, (100, 106, 99, 104)], [0], signal_type="short", stop_loss=5.0))
    assert (stop.exit_reason, stop.exit_price) == ("stop_loss", pytest.approx(105.0))
    assert stop.pnl == pytest.approx(-50.0)
    target = only_trade(run([(100,) * 4, (100, 101, 89, 95)], [0], signal_type="short", take_profit=10.0))
    assert (target.exit_reason, target.exit_price) == ("take_profit", pytest.approx(90.0))
    assert target.pnl == pytest.approx(100.0)
    gap = only_trade(run([(100,) * 4, (100,) * 4, (107, 108, 106, 107)], [0], signal_type="short", stop_loss=5.0))
    assert gap.exit_price == 107.0


def test_commission_and_slippage_move_fills_against_the_trader():
    # 1% commission, 100 bps slippage: entry fill 101, budget 1000 incl. fee -> shares = 1000 / (101 x 1.01).
    bars = [(100,) * 4, (100, 100, 100, 100), (110, 110, 110, 110)]
    t = only_trade(run(bars, [0], holding_period=2, commission=1.0, slippage_bps=100.0))
    shares = 1000.0 / (101.0 * 1.01)
    assert t.entry_price == pytest.approx(101.0)
    assert t.exit_price == pytest.approx(110.0 * 0.99)
    fees = shares * 101.0 * 0.01 + shares * 108.9 * 0.01
    assert t.fees == pytest.approx(fees)
    assert t.pnl == pytest.approx(shares * (108.9 - 101.0) - fees)
    final = run(bars, [0], holding_period=2, commission=1.0, slippage_bps=100.0).equity["equity"].iloc[-1]
    assert final == pytest.approx(1000.0 + t.pnl)


def test_short_slippage_sells_lower_and_buys_back_higher():
    t = only_trade(run([(100,) * 4, (100,) * 4, (100,) * 4], [0], signal_type="short", slippage_bps=50.0))
    assert t.entry_price == pytest.approx(99.5) and t.exit_price == pytest.approx(100.5)


def test_max_positions_and_cash_skip_are_counted():
    m = bars_market({s: flat(4) for s in ("AAA", "BBB", "CCC")})
    r = backtest(m, signal_at(m, AAA=[0], BBB=[0], CCC=[0]), **{**ONE, "max_positions": 2})
    assert sorted(r.trades.symbol) == ["AAA", "BBB"]  # symbol order decides ties
    assert r.skipped() == {"max_positions skip": 1}
    assert r.metrics["signals_skipped"] == 1


def test_priority_decides_which_signal_gets_the_cash():
    from engine.rules import Signals

    m = bars_market({s: flat(4) for s in ("AAA", "BBB")})
    prio = np.zeros(m.shape)
    prio[0, m.column("BBB")] = 5.0
    sig = Signals(matrix=signal_at(m, AAA=[0], BBB=[0]), priority=prio, rule="test")
    r = backtest(m, sig, **ONE)
    assert list(r.trades.symbol) == ["BBB"]


def test_unfunded_signal_is_skipped_or_shrunk():
    m = bars_market({"AAA": flat(4), "BBB": flat(4)})
    sig = signal_at(m, AAA=[0], BBB=[0])
    kw = {**ONE, "max_positions": 2, "position_sizing": "fixed_amount"}
    from engine import Sizing

    kw.pop("position_sizing")
    skip = backtest(m, sig, sizing=Sizing("fixed_amount", fixed_amount=700.0), **kw)
    assert list(skip.trades.symbol) == ["AAA"] and skip.skipped() == {"cash skip": 1}
    shrink = backtest(m, sig, sizing=Sizing("fixed_amount", fixed_amount=700.0), shrink_unfunded=True, **kw)
    assert shrink.trades.shares.tolist() == pytest.approx([7.0, 3.0])


def test_whole_shares_round_down():
    r = run([(30,) * 4, (30,) * 4, (30,) * 4], [0], fractional_shares=False)
    assert only_trade(r).shares == 33.0
    assert r.equity["cash"].iloc[1] == pytest.approx(1000.0 - 990.0)


def test_new_signal_while_in_position_is_ignored_and_reentry_after_exit_works():
    bars = flat(6)
    r = run(bars, [0, 1, 3], holding_period=2)
    assert r.trades.entry_bar.tolist() == [1, 4]


def test_missing_bar_delays_nothing_and_is_not_marked():
    m = bars_market({"AAA": [(100,) * 4, (100,) * 4, (None,) * 4, (110,) * 4], "BBB": flat(4)})
    r = backtest(m, signal_at(m, AAA=[0]), **ONE)
    t = only_trade(r)
    assert (t.exit_reason, t.exit_price) == ("end_of_data", 110.0)
    assert r.equity["equity"].tolist() == pytest.approx([1000, 1000, 1000, 1100])


def test_signals_as_symbol_date_table_match_the_matrix():
    m = bars_market({"AAA": flat(5), "BBB": flat(5)})
    table = pd.DataFrame({"symbol": ["bbb", "AAA"], "date": [m.dates[1], m.dates[0]]})
    a = backtest(m, table, **ONE).trades
    b = backtest(m, signal_at(m, AAA=[0], BBB=[1]), **ONE).trades
    pd.testing.assert_frame_equal(a, b)


def test_bad_signals_and_params_are_clear_errors():
    m = bars_market({"AAA": flat(3)})
    with pytest.raises(DataError, match="not in the data"):
        backtest(m, pd.DataFrame({"symbol": ["ZZZ"], "date": [m.dates[0]]}))
    with pytest.raises(DataError, match=r"\(3, 1\)"):
        backtest(m, np.zeros((2, 1), bool))
    with pytest.raises(ParamError, match=r"stop_loss: Stop-loss must be 0 \(off\) or 0.1 to 99%, not 150"):
        backtest(m, np.zeros((3, 1), bool), stop_loss=150)
    with pytest.raises(ParamError, match="signal_type"):
        backtest(m, np.zeros((3, 1), bool), signal_type="sideways")
