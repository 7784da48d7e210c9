"""Limit and stop entries, carry costs and the audit's trust fixes: hand-computed bars for each rule, and an
independent oracle (a plain loop written from the issue's text) that must agree trade for trade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import backtest
from engine.data import DataError, LoadOptions, market_from_frame
from engine.errors import ParamError
from engine.metrics import periods_per_year
from engine.risk import RiskLimits
from engine.rules import scan
from engine.server.datasets import to_frame
from engine.sizing import Sizing
from tests.conftest import bars_market, flat
from tests.test_backtest_rules import ONE, only_trade, run

LIMIT = dict(entry_order="limit", entry_offset_pct=2.0)  # a long limit 2% below the signal's close
STOP = dict(entry_order="stop", entry_offset_pct=2.0)  # a long stop 2% above it


# --- limit and stop entries by hand ------------------------------------------------------------------------


def test_a_limit_fills_at_the_open_after_a_gap_below_it():
    t = only_trade(run([(100,) * 4, (97, 99, 96, 98), (98,) * 4], [0], **LIMIT))
    assert (t.order_price, t.entry_price, t.entry_bar) == (98.0, 97.0, 1)


def test_a_limit_fills_at_its_level_when_the_low_reaches_it():
    t = only_trade(run([(100,) * 4, (100, 101, 97, 99), (99,) * 4], [0], **LIMIT))
    assert (t.entry_price, t.entry_bar) == (98.0, 1)


def test_an_unfilled_limit_expires_after_its_bars_and_is_logged():
    bars = [(100,) * 4, (100, 101, 99, 100), (100, 101, 99, 100), (99, 99, 97, 98), (98,) * 4]
    r = run(bars, [0], entry_valid_bars=2, **LIMIT)  # live on bars 1 and 2; bar 3 would have filled it
    assert r.trades.empty
    ev = r.events.iloc[0]
    assert (ev.rule, ev.action, ev.date, ev.value) == ("order_expired", "skip", r.equity.index[2], 98.0)
    # a signal at the close of the order's last live bar places a new one: 100 x 0.98, filled on bar 3's low
    again = only_trade(run(bars, [0, 2], entry_valid_bars=2, **LIMIT))
    assert (again.entry_bar, again.entry_price) == (3, 98.0)


def test_signals_while_an_order_is_live_are_ignored():
    bars = [(100,) * 4, (100, 101, 99, 100), (100, 101, 90, 95), (95,) * 4]
    t = only_trade(run(bars, [0, 1], entry_valid_bars=3, **LIMIT))  # bar 1's signal would place a limit at 98
    assert (t.entry_bar, t.order_price, t.entry_price) == (2, 98.0, 98.0)


def test_a_stop_entry_fills_at_the_open_through_a_gap_and_pays_slippage():
    t = only_trade(run([(100,) * 4, (105, 106, 104, 105), (105,) * 4], [0], slippage_bps=10.0, **STOP))
    assert (t.order_price, t.entry_price) == (102.0, pytest.approx(105 * 1.001))
    inside = only_trade(run([(100,) * 4, (100, 103, 99, 102), (102,) * 4], [0], slippage_bps=10.0, **STOP))
    assert inside.entry_price == pytest.approx(102 * 1.001)
    limit = only_trade(run([(100,) * 4, (100, 101, 97, 99), (99,) * 4], [0], slippage_bps=10.0, **LIMIT))
    assert limit.entry_price == 98.0  # a limit never fills worse than its level


def test_a_short_limit_and_stop_mirror_the_long_ones():
    up = [(100,) * 4, (100, 103, 99, 101), (101,) * 4]
    assert only_trade(run(up, [0], signal_type="short", **LIMIT)).entry_price == 102.0  # above the close
    down = [(100,) * 4, (100, 101, 97, 99), (99,) * 4]
    assert only_trade(run(down, [0], signal_type="short", **STOP)).entry_price == 98.0  # below it
    assert run(down, [0], signal_type="short", **LIMIT).trades.empty


def test_a_fill_inside_the_bar_checks_the_stop_on_that_bar_and_the_target_from_the_next():
    stopped = only_trade(run([(100,) * 4, (100, 101, 93, 95), (95,) * 4], [0], stop_loss=5.0, **LIMIT))
    assert (stopped.exit_reason, stopped.exit_bar, stopped.exit_price) == ("stop_loss", 1, pytest.approx(93.1))
    bars = [(100,) * 4, (100, 101, 97, 99), (99, 101, 98, 100), (100,) * 4]
    t = only_trade(run(bars, [0], take_profit=2.0, **LIMIT))  # target 99.96: bar 1's high 101 does not count
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("take_profit", 2, pytest.approx(99.96))
    at_open = only_trade(run([(100,) * 4, (97, 100, 96.5, 99), (99,) * 4], [0], take_profit=2.0, **LIMIT))
    assert (at_open.exit_bar, at_open.exit_price) == (1, pytest.approx(98.94))  # a fill at the open: as a market entry


def test_the_holding_period_counts_the_fill_bar_as_one():
    bars = [(100,) * 4, (100, 101, 99, 100), (100, 101, 97, 99), (99, 100, 98, 99.5), (99,) * 4]
    t = only_trade(run(bars, [0], entry_valid_bars=2, holding_period=2, **LIMIT))
    assert (t.entry_bar, t.exit_bar, t.bars_held, t.exit_reason) == (2, 3, 2, "holding_period")


def test_an_atr_offset_places_the_order_k_atr_from_the_close():
    bars = [(100, 101, 99, 100)] * 3 + [(100, 100, 96, 97), (97,) * 4]  # ATR(2) = 2 at bar 2 -> limit 97
    p = dict(entry_order="limit", entry_offset_atr=1.5, sizing=Sizing(atr_period=2))
    t = only_trade(run(bars, [2], **p))
    assert (t.order_price, t.entry_price) == (97.0, 97.0)


def test_signals_in_the_atr_warm_up_are_skipped_and_logged():
    bars = [(100, 101, 99, 100)] * 5
    for p in (dict(entry_order="limit", entry_offset_atr=1.0), dict(trailing_atr=2.0)):
        r = run(bars, [0], sizing=Sizing(atr_period=3), **p)
        assert r.trades.empty and list(r.events.rule) == ["atr_warmup"], p
    assert len(run(bars, [3], trailing_atr=2.0, sizing=Sizing(atr_period=3)).trades) == 1  # ATR is ready there


def test_the_table_checks_the_new_settings():
    with pytest.raises(ParamError, match="Entry order"):
        backtest(bars_market({"AAA": flat(3)}), np.zeros((3, 1), bool), entry_order="iceberg")
    with pytest.raises(ParamError, match="Order valid for"):
        backtest(bars_market({"AAA": flat(3)}), np.zeros((3, 1), bool), entry_valid_bars=0)


# --- excursions (the audit's finding) ------------------------------------------------------------------------


def test_a_doji_exit_bar_counts_its_whole_range_in_mae_and_mfe():
    t = only_trade(run([(100,) * 4, (100,) * 4, (100, 120, 80, 100)], [0], holding_period=2))
    assert (t.mae_pct, t.mfe_pct) == (pytest.approx(-20.0), pytest.approx(20.0))


# --- carry costs by hand -------------------------------------------------------------------------------------


def _per_bar(r) -> float:
    return 1.0 / periods_per_year(r.equity.index)


def test_borrow_is_value_times_rate_per_bar_at_each_close_a_short_is_held_through():
    # 10 shares short at 100, flat prices; exits at the close of its 4th bar: held through 3 closes
    r = run(flat(6), [0], signal_type="short", holding_period=4, borrow_pct=36.5)
    t = only_trade(r)
    fee = 1_000.0 * 0.365 * _per_bar(r)
    assert t.financing == pytest.approx(3 * fee)
    assert t.pnl == pytest.approx(-3 * fee)
    assert r.metrics["total_borrow"] == pytest.approx(3 * fee)
    assert r.equity.equity.iloc[-1] == pytest.approx(1_000.0 - 3 * fee)
    assert run(flat(6), [0], holding_period=4, borrow_pct=36.5).trades.financing.iloc[0] == 0.0  # longs: none


def test_margin_interest_is_paid_on_negative_cash_and_charged_to_the_position():
    kw = dict(allow_leverage=True, max_leverage=2.0, sizing=Sizing("fixed_amount", fixed_amount=1_500.0))
    r = run(flat(6), [0], holding_period=3, margin_interest_pct=10.0, **kw)  # cash -500 through 2 closes
    t = only_trade(r)
    rate = 0.10 * _per_bar(r)
    paid = 500.0 * rate + (500.0 + 500.0 * rate) * rate  # the loan grows by the interest it was charged
    assert t.financing == pytest.approx(paid)
    assert r.metrics["interest_paid"] == pytest.approx(paid)
    assert r.metrics["interest_earned"] == 0.0
    assert r.equity.equity.iloc[-1] == pytest.approx(1_000.0 - paid)


def test_interest_on_cash_compounds_per_bar():
    m = bars_market({"AAA": flat(6)})
    r = backtest(m, np.zeros(m.shape, bool), **{**ONE, "cash_interest_pct": 5.0})
    per_bar = 0.05 * _per_bar(r)
    np.testing.assert_allclose(r.equity.equity, 1_000.0 * (1 + per_bar) ** np.arange(6))
    assert r.metrics["interest_earned"] == pytest.approx(r.equity.equity.iloc[-1] - 1_000.0)
    assert r.metrics["interest_paid"] == 0.0


def test_cost_totals_add_up_the_trades():
    r = run([(100,) * 4, (100, 101, 99, 100), (110,) * 4], [0], holding_period=2, commission=0.1, slippage_bps=20)
    t = only_trade(r)
    assert r.metrics["total_commission"] == pytest.approx(t.fees)
    assert t.slippage == pytest.approx(t.shares * (100 * 0.002 + 110 * 0.002))


# --- the oracle --------------------------------------------------------------------------------------------------


def oracle(
    bars: np.ndarray,
    sig: np.ndarray,
    kind: str,
    offset: float,
    valid: int,
    d: int,
    sl,
    tp,
    hold,
    partials: tuple = (),
    breakeven: bool = False,
) -> list:
    """(entry bar, entry price, exit bar, exit price, reason, share of the position) of each exit fill of one
    symbol, written from the issue's text: a signal at the close of bar t on a flat symbol with no live order
    places an order live on bars t+1 .. t+valid (a market order: at the next open); exits as the backtest
    module documents them; `partials` ((share %, distance %), ...) sell their share of the position at
    their level above a long's fill (at the open when the bar opens beyond it), before the rest's exit, but
    not after a stop touched inside the bar, not beyond a take-profit reached, not on an inside fill's bar."""
    o, h, lo, c = bars.T
    n = len(c)
    out: list = []
    order = pos = None
    for t in range(n):
        if order is not None and kind == "market":
            stop = o[t] * (1 - d * sl / 100) if sl else None
            target = o[t] * (1 + d * tp / 100) if tp else None
            pos = {"bar": t, "price": o[t], "inside": False, "stop": stop, "target": target, "held": 0}
            pos |= {"left": 1.0, "done": 0}
            order = None
        if order is not None:
            level, until = order
            adverse, favourable = (lo[t], h[t]) if d > 0 else (h[t], lo[t])
            fill = inside = None
            if kind == "limit":
                if (o[t] <= level) if d > 0 else (o[t] >= level):
                    fill, inside = o[t], False
                elif (adverse <= level) if d > 0 else (adverse >= level):
                    fill, inside = level, True
            else:
                if (o[t] >= level) if d > 0 else (o[t] <= level):
                    fill, inside = o[t], False
                elif (favourable >= level) if d > 0 else (favourable <= level):
                    fill, inside = level, True
            if fill is not None:
                stop = fill * (1 - d * sl / 100) if sl else None
                target = fill * (1 + d * tp / 100) if tp else None
                pos = {"bar": t, "price": fill, "inside": inside, "stop": stop, "target": target, "held": 0}
                pos |= {"left": 1.0, "done": 0}
                order = None
            elif t == until:
                order = None
        if pos is not None:
            pos["held"] += 1
            after = t > pos["bar"]
            stop, target = pos["stop"], pos["target"]
            adverse, favourable = (lo[t], h[t]) if d > 0 else (h[t], lo[t])

            def beyond(price, level, sign):  # sign +1: at or past a target, -1: at or past a stop
                return level is not None and sign * d * (price - level) >= 0

            exit_ = None
            if after and beyond(o[t], stop, -1):
                exit_ = (o[t], "stop_loss")
            elif after and beyond(o[t], target, 1):
                exit_ = (o[t], "take_profit")
            elif beyond(adverse, stop, -1):
                exit_ = (stop, "stop_loss")
            elif (after or not pos["inside"]) and beyond(favourable, target, 1):
                exit_ = (target, "take_profit")
            elif hold and pos["held"] >= hold:
                exit_ = (c[t], "holding_period")
            elif t == n - 1:
                exit_ = (c[t], "end_of_data")
            at_open = exit_ is not None and exit_[0] == o[t] and exit_[1] in ("stop_loss", "take_profit") and after
            stopped_inside = exit_ is not None and exit_[1] == "stop_loss" and not at_open
            first = pos["done"]
            while pos["done"] < len(partials) and not at_open:
                share, dist = partials[pos["done"]]
                level = pos["price"] * (1 + d * dist / 100)
                if exit_ is not None and exit_[1] == "take_profit" and d * (level - target) > 0:
                    break
                if after and d * (o[t] - level) >= 0:
                    price = o[t]
                elif not stopped_inside and (after or not pos["inside"]) and d * (favourable - level) >= 0:
                    price = level
                else:
                    break
                pos["done"] += 1
                sold = min(share / 100, pos["left"])
                pos["left"] -= sold
                out.append((pos["bar"], pos["price"], t, price, "partial_exit", sold))
                if pos["left"] <= 1e-12:
                    break
            if pos["left"] <= 1e-12:
                pos = None
            elif exit_ is not None:
                out.append((pos["bar"], pos["price"], t, exit_[0], exit_[1], pos["left"]))
                pos = None
            elif breakeven and first == 0 and pos["done"] > 0:
                pos["stop"] = pos["price"]
        if sig[t] and pos is None and order is None:
            level = c[t] * (1 + (-d if kind == "limit" else d) * offset / 100)
            order = (level, t + valid if kind != "market" else t + 1)
    return out


def random_bars(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return np.column_stack([open_, high, low, close]).round(2)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["limit", "stop"]),
    side=st.sampled_from(["long", "short"]),
    offset=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    valid=st.integers(1, 4),
    sl=st.sampled_from([None, 2.0, 5.0]),
    tp=st.sampled_from([None, 3.0, 8.0]),
    hold=st.sampled_from([None, 1, 3, 10]),
    density=st.floats(0.05, 0.5),
)
def test_limit_and_stop_entries_match_the_oracle_trade_for_trade(
    seed, kind, side, offset, valid, sl, tp, hold, density
):
    bars = random_bars(seed, 80)
    sig = np.random.default_rng(seed + 1).random(80) < density
    m = bars_market({"AAA": [tuple(b) for b in bars]})
    r = backtest(
        m,
        sig[:, None],
        **{**ONE, "stop_loss": sl, "take_profit": tp, "holding_period": hold},
        signal_type=side,
        entry_order=kind,
        entry_offset_pct=offset,
        entry_valid_bars=valid,
    )
    got = [
        (t.entry_bar, pytest.approx(t.entry_price), t.exit_bar, pytest.approx(t.exit_price), t.exit_reason)
        for t in r.trades.itertuples()
    ]
    want = oracle(bars, sig, kind, offset, valid, 1 if side == "long" else -1, sl, tp, hold)
    assert got == [w[:5] for w in want]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["market", "limit", "stop"]),
    side=st.sampled_from(["long", "short"]),
    partials=st.sampled_from([((50.0, 2.0),), ((50.0, 3.0), (25.0, 6.0)), ((30.0, 1.0), (30.0, 2.0), (40.0, 4.0))]),
    breakeven=st.booleans(),
    sl=st.sampled_from([None, 3.0]),
    tp=st.sampled_from([None, 5.0]),
    hold=st.sampled_from([None, 4, 12]),
)
def test_partial_exits_match_the_oracle_fill_for_fill(seed, kind, side, partials, breakeven, sl, tp, hold):
    bars = random_bars(seed, 80)
    sig = np.random.default_rng(seed + 1).random(80) < 0.2
    m = bars_market({"AAA": [tuple(b) for b in bars]})
    text = ",".join(f"{a:g}@{b:g}" for a, b in partials)
    r = backtest(
        m,
        sig[:, None],
        **{**ONE, "stop_loss": sl, "take_profit": tp, "holding_period": hold},
        signal_type=side,
        entry_order=kind,
        entry_offset_pct=1.0,
        partial_exits=text,
        breakeven_after_partial=breakeven,
    )
    full = r.trades.groupby("position_id").shares.transform("sum")
    got = [
        (t.entry_bar, pytest.approx(t.entry_price), t.exit_bar, pytest.approx(t.exit_price), t.exit_reason, share)
        for t, share in zip(r.trades.itertuples(), r.trades.shares / full, strict=True)
    ]
    want = oracle(bars, sig, kind, 1.0, 1, 1 if side == "long" else -1, sl, tp, hold, partials, breakeven)
    assert [g[:5] for g in got] == [w[:5] for w in want]
    assert [g[5] for g in got] == pytest.approx([w[5] for w in want])
    assert len(r.positions) == r.metrics["n_trades"] == len({w[:2] for w in want})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.05, 0.5), carry=st.floats(0.0, 40.0))
def test_equity_is_initial_plus_trade_pnl_plus_interest_earned(seed, density, carry):
    """Every cost and accrual lands in a trade's pnl, except interest earned on idle cash."""
    m = bars_market(
        {"AAA": [tuple(b) for b in random_bars(seed, 60)], "BBB": [tuple(b) for b in random_bars(seed + 7, 60)]}
    )
    sig = np.random.default_rng(seed).random(m.shape) < density
    for side in ("long", "short"):
        r = backtest(
            m,
            sig,
            signal_type=side,
            holding_period=5,
            allow_leverage=True,
            max_leverage=1.5,
            sizing=Sizing("fixed_amount", fixed_amount=70_000.0),
            borrow_pct=carry,
            margin_interest_pct=carry,
            cash_interest_pct=carry / 4,
            commission=0.05,
        )
        earned = r.equity.interest.clip(lower=0).sum()
        assert r.equity.equity.iloc[-1] == pytest.approx(100_000.0 + r.trades.pnl.sum() + earned, rel=1e-9)
        assert r.trades.financing.sum() == pytest.approx(
            r.metrics["total_borrow"] - r.equity.interest.clip(upper=0).sum()
        )
        assert isinstance(r.equity.index, pd.DatetimeIndex)


# --- dividends ---------------------------------------------------------------------------------------------------


def dividend_market(side_bars: int = 6, ex_bar: int = 3, amount: float = 2.0):
    rows = [
        {"symbol": "AAA", "date": d, "open": 100, "high": 100, "low": 100, "close": 100, "volume": 1e4}
        for d in pd.bdate_range("2024-01-01", periods=side_bars)
    ]
    frame = pd.DataFrame(rows)
    frame["Dividends"] = ""  # an alias, blank on days without one
    frame.loc[ex_bar, "Dividends"] = str(amount)
    return market_from_frame(frame)


def test_a_dividend_column_is_read_under_its_aliases_and_kept_in_the_dataset():
    m = dividend_market()
    assert m.dividend is not None and m.dividend[:, 0].tolist() == [0, 0, 0, 2.0, 0, 0]
    assert m.summary()["dividends"] == 1
    again = market_from_frame(to_frame(m))  # what the dataset store writes and reads back
    assert again.fingerprint == m.fingerprint and again.dividend[3, 0] == 2.0
    plain = bars_market({"AAA": flat(6)})
    assert plain.dividend is None and "dividend" not in to_frame(plain)


def test_dividends_credit_longs_and_debit_shorts_held_at_the_previous_close():
    m = dividend_market()  # ex-date bar 3: 2.0 a share
    sig = np.zeros(m.shape, bool)
    sig[0] = True
    long_ = only_trade(backtest(m, sig, **{**ONE, "holding_period": 4}))  # 10 shares held bars 1-4
    assert (long_.dividends, long_.pnl) == (20.0, 20.0)
    short = only_trade(backtest(m, sig, **{**ONE, "holding_period": 4, "signal_type": "short"}))
    assert (short.dividends, short.pnl) == (-20.0, -20.0)
    late = np.zeros(m.shape, bool)
    late[2] = True  # enters at the ex-date's open: not a holder at the close before it
    assert only_trade(backtest(m, late, **{**ONE, "holding_period": 2})).dividends == 0.0
    r = backtest(m, sig, **{**ONE, "holding_period": 4})
    assert r.metrics["total_dividends"] == 20.0 and r.equity.equity.iloc[-1] == 1_020.0


def test_a_negative_dividend_is_a_bad_row_and_adjusted_prices_warn_of_counting_twice():
    frame = to_frame(dividend_market())
    frame.loc[1, "dividend"] = -1.0
    with pytest.raises(DataError, match="a negative dividend"):
        market_from_frame(frame)
    frame.loc[1, "dividend"] = 0.0
    frame["adj_close"] = frame["close"]
    m = market_from_frame(frame, options=LoadOptions(prices="adjusted"))
    assert any("count them twice" in w for w in m.warnings)


# --- long and short in one book ------------------------------------------------------------------------------

BOTH = dict(signal_type="both", short_rule="close < 95")  # the short rule: true at a close below 95


def both_run(bars, long_bars, **kw):
    m = bars_market({"AAA": bars})
    sig = np.zeros(m.shape, bool)
    sig[long_bars] = True
    return backtest(m, sig, **{**ONE, **BOTH, **kw})


OPPOSITE = [(100,) * 4, (100, 101, 99, 100), (96, 97, 93, 94), (92, 97, 92, 96), (96,) * 4]  # only bar 2 closes < 95


def test_an_opposite_signal_is_ignored_by_default():
    t = only_trade(both_run(OPPOSITE, [0]))
    assert (t.direction, t.exit_reason) == ("long", "end_of_data")


def test_on_opposite_close_exits_at_the_next_open_and_opens_nothing():
    t = only_trade(both_run(OPPOSITE, [0], on_opposite="close"))
    assert (t.direction, t.exit_reason, t.exit_bar, t.exit_price) == ("long", "opposite_signal", 3, 92.0)


def test_on_opposite_reverse_closes_and_opens_the_other_side_at_the_same_open():
    r = both_run(OPPOSITE, [0], on_opposite="reverse")
    long_, short = r.trades.iloc[0], r.trades.iloc[1]
    assert (long_.direction, long_.exit_bar, long_.exit_price) == ("long", 3, 92.0)
    assert (short.direction, short.entry_bar, short.entry_price) == ("short", 3, 92.0)
    assert short.shares == pytest.approx((1_000 - 80) / 92)  # sized from the equity after the long's loss
    assert (short.exit_reason, short.pnl) == ("end_of_data", pytest.approx(short.shares * (92 - 96)))
    eq = r.equity
    assert (eq.net_exposure_pct.iloc[2] > 0, eq.net_exposure_pct.iloc[3] < 0) == (True, True)


def test_a_flat_symbol_with_both_signals_on_one_bar_takes_neither():
    bars = [(94,) * 4, (96,) * 4, (96,) * 4]
    assert both_run(bars, [0]).trades.empty  # a long signal and a close below 95 on bar 0
    assert only_trade(both_run(bars, [])).direction == "short"


def flag_market(lflag: list[int], sflag: list[int], prices: list[float] | None = None):
    """One symbol with own columns lflag and sflag (the issue's repro), flat at 100 unless priced."""
    n = len(lflag)
    px = prices or [100.0] * n
    frame = pd.DataFrame(
        {
            "symbol": "AAA",
            "date": pd.bdate_range("2024-01-01", periods=n),
            "open": px,
            "high": px,
            "low": px,
            "close": px,
            "volume": 1000.0,
            "lflag": lflag,
            "sflag": sflag,
        }
    )
    return market_from_frame(frame)


def test_a_held_long_follows_on_opposite_when_both_rules_fire_on_one_bar():
    """The issue's repro: the long opens at bar 1; at bar 2 both rules fire; on_opposite=close exits at bar 3's
    open (its own signal has nothing to add), where the kernel used to ignore a bar with both signals."""
    m = flag_market([1, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0])
    kw = {**ONE, "signal_type": "both", "short_rule": "sflag > 0"}
    closed = only_trade(backtest(m, scan(m, "lflag > 0"), **kw, on_opposite="close"))
    assert (closed.direction, closed.exit_reason, closed.exit_bar) == ("long", "opposite_signal", 3)
    reversed_ = backtest(m, scan(m, "lflag > 0"), **kw, on_opposite="reverse").trades
    assert reversed_.direction.tolist() == ["long", "short"]
    assert (reversed_.exit_bar.iloc[0], reversed_.entry_bar.iloc[1]) == (3, 3)
    ignored = only_trade(backtest(m, scan(m, "lflag > 0"), **kw))
    assert ignored.exit_reason == "end_of_data"


def test_a_held_short_follows_on_opposite_when_both_rules_fire_and_a_flat_symbol_takes_neither():
    m = flag_market([0, 0, 1, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0, 0])
    kw = {**ONE, "signal_type": "both", "short_rule": "sflag > 0", "on_opposite": "close"}
    t = backtest(m, scan(m, "lflag > 0"), **kw).trades
    # bar 0: short only -> short at bar 1; bar 2: both fire, the short closes at bar 3; bar 4: both, flat: none
    assert t.direction.tolist() == ["short"] and (t.exit_reason.iloc[0], t.exit_bar.iloc[0]) == ("opposite_signal", 3)
    limit = backtest(m, scan(m, "lflag > 0"), **kw, entry_order="limit", entry_offset_pct=0.0).trades
    assert limit.direction.tolist() == ["short"] and limit.exit_bar.iloc[0] == 3


def test_both_needs_a_short_rule():
    with pytest.raises(ParamError, match="short rule"):
        backtest(bars_market({"AAA": flat(3)}), np.zeros((3, 1), bool), signal_type="both")


# --- scaling in and out by hand ------------------------------------------------------------------------------

ADD = dict(max_adds=1, add_rule="close > 104", sizing=Sizing("fixed_amount", fixed_amount=400.0))


def test_an_add_fills_at_the_next_open_and_moves_the_stop_to_the_new_average():
    bars = [(100,) * 4, (100, 106, 100, 105), (106, 107, 105, 106), (106, 106, 97, 98), (98,) * 4]
    t = only_trade(run(bars, [0], stop_loss=5.0, **ADD))  # 4 shares at 100, then 400 / 106 at bar 2's open
    added = 400 / 106
    avg = (400 + 400) / (4 + added)
    assert (t.adds, t.shares, t.entry_price, t.entry_bar) == (1, pytest.approx(4 + added), pytest.approx(avg), 1)
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("stop_loss", 3, pytest.approx(avg * 0.95))


def test_adds_respect_max_adds_the_bars_between_them_and_the_holding_period_from_the_first_fill():
    rising = [(100,) * 4] + [(100 + 5 * i, 106 + 5 * i, 100 + 5 * i, 105 + 5 * i) for i in range(6)]
    sizing = Sizing("fixed_amount", fixed_amount=300.0)  # three fills fit in the cash
    t = only_trade(run(rising, [0], holding_period=5, **{**ADD, "max_adds": 2, "add_min_bars": 2, "sizing": sizing}))
    assert (t.adds, t.entry_bar, t.exit_bar, t.bars_held) == (2, 1, 5, 5)  # adds at bars 3 and 5, exit at 5


def test_an_add_is_limited_on_the_whole_position():
    bars = [(100,) * 4, (100, 106, 100, 105), (105, 106, 104, 105), (105,) * 4]
    r = run(bars, [0], limits=RiskLimits(max_position_pct=60.0), **ADD)
    t = only_trade(r)  # equity 1,020 with 4 shares marked at 420: room 612 - 420 = 192 of the 400 asked
    assert t.shares == pytest.approx(4 + 192 / 105)
    assert list(r.events.rule) == ["max_position_pct"] and r.events.action.iloc[0] == "cut"


PARTIAL = [(100,) * 4, (100, 111, 99, 110), (121, 122, 120, 121), (121,) * 4]


def test_partial_exits_are_rows_of_one_position_that_add_up_to_it():
    r = run(PARTIAL, [0], partial_exits="50@10,25@20")  # 10 shares at 100
    t = r.trades
    assert list(t.position_id) == [0, 0, 0]
    assert list(t.exit_reason) == ["partial_exit", "partial_exit", "end_of_data"]
    assert list(t.shares) == [5.0, 2.5, 2.5]
    assert list(t.exit_price) == pytest.approx([110.0, 121.0, 121.0])  # +10% inside bar 1; bar 2 opens beyond +20%
    p = r.positions.iloc[0]
    assert (p.shares, p.exits, p.exit_reason) == (10.0, 3, "end_of_data")
    assert p.pnl == pytest.approx(5 * 10 + 2.5 * 21 + 2.5 * 21)
    assert p.exit_price == pytest.approx((5 * 110 + 5 * 121) / 10) and p.return_pct == pytest.approx(15.5)
    assert r.metrics["n_trades"] == 1 and r.metrics["win_rate_pct"] == 100.0


def test_a_positions_entry_price_is_the_cost_of_every_share_bought_over_their_number():
    """The issue's repro: 100 shares at 100, 50 sold at 111 (partial exit at +10%), 83.33 added at 120. The
    shares still held average 112.5; the position's entry is 20,000 / 183.33 = 109.09."""
    bars = [(100,) * 4, (100,) * 4, (111,) * 4, (120,) * 4, (120,) * 4]
    kw = dict(partial_exits="50@10", max_adds=1, add_rule="close > 110", fractional_shares=True)
    r = run(bars, [0], initial_capital=20_000.0, sizing=Sizing("fixed_amount", fixed_amount=10_000.0), **kw)
    t = r.trades
    assert list(t.shares) == pytest.approx([50.0, 50.0 + 10_000 / 120])
    assert t.entry_price.iloc[1] == pytest.approx((50 * 100 + 10_000) / (50 + 10_000 / 120))  # 112.5: the rest
    p = r.positions.iloc[0]
    assert p.entry_price == pytest.approx(20_000 / (100 + 10_000 / 120))  # 109.09
    assert p.pnl == pytest.approx(50 * 11 + (50 + 10_000 / 120) * 120 - 15_000)


def test_breakeven_after_a_partial_exit_stops_the_rest_at_the_average_fill():
    bars = [(100,) * 4, (100, 111, 99, 110), (105, 106, 99, 100), (100,) * 4]
    r = run(bars, [0], partial_exits="50@10", breakeven_after_partial=True, stop_loss=5.0)
    assert list(r.trades.exit_reason) == ["partial_exit", "stop_loss"]
    assert list(r.trades.exit_price) == pytest.approx([110.0, 100.0])
    assert r.positions.pnl.iloc[0] == pytest.approx(50.0)


def test_a_short_scales_out_below_its_fill():
    bars = [(100,) * 4, (100, 101, 89, 90), (90,) * 4]
    r = run(bars, [0], signal_type="short", partial_exits="50@10")
    assert list(r.trades.exit_price) == pytest.approx([90.0, 90.0]) and r.positions.pnl.iloc[0] == pytest.approx(100.0)


def test_a_winning_partial_and_a_losing_rest_count_as_one_position():
    bars = [(100,) * 4, (100, 111, 99, 110), (100, 101, 80, 85)]
    r = run(bars, [0], partial_exits="20@10", stop_loss=10.0)  # +2 x 10 on 2 shares, -10 x 8 on the rest
    assert r.metrics["n_trades"] == 1 and r.metrics["win_rate_pct"] == 0.0
    assert r.metrics["expectancy"] == pytest.approx(20 - 80)


@pytest.mark.parametrize(
    "text", ["50", "50@", "abc@10", "60@10,50@20", "50@20,25@10", "0@10", "1@1,1@2,1@3,1@4,1@5,1@6"]
)
def test_partial_exits_that_do_not_parse_say_what_is_expected(text):
    with pytest.raises(ParamError, match="share@percent"):
        backtest(bars_market({"AAA": flat(3)}), np.zeros((3, 1), bool), partial_exits=text)


def test_max_adds_needs_an_add_rule():
    with pytest.raises(ParamError, match="add rule"):
        backtest(bars_market({"AAA": flat(3)}), np.zeros((3, 1), bool), max_adds=2)


# --- combinations the audit did not reach, by hand ----------------------------------------------------------


def test_a_limit_entry_filled_inside_its_bar_scales_out_from_the_next_bar():
    """Limit 2% below 100 fills at 98 inside bar 1, whose high (104) passes the +5% level (102.9): no partial
    exit on the fill's own bar (its target waits too); bar 2 reaches the level inside and sells half."""
    bars = [(100,) * 4, (100, 104, 97, 100), (100, 104, 99, 103), (103,) * 4]
    r = run(bars, [0], **LIMIT, partial_exits="50@5")
    t = r.trades
    assert list(t.exit_reason) == ["partial_exit", "end_of_data"] and list(t.exit_bar) == [2, 3]
    assert t.exit_price.iloc[0] == pytest.approx(98 * 1.05)
    assert list(t.shares) == pytest.approx([1_000 / 98 / 2] * 2)  # fractional shares: 1,000 / 98 bought
    assert (t.entry_bar.iloc[0], t.entry_price.iloc[0], t.order_price.iloc[0]) == (1, 98.0, 98.0)


def test_a_stop_entry_scales_out_at_the_open_when_the_next_bar_gaps_beyond_the_level():
    bars = [(100,) * 4, (101, 103, 100, 102), (110, 111, 109, 110), (110,) * 4]  # stop 102 touched inside bar 1
    r = run(bars, [0], **STOP, partial_exits="50@5")
    t = r.trades
    fill = 102 * 1.0  # no slippage in ONE
    assert (t.entry_price.iloc[0], list(t.exit_reason)) == (fill, ["partial_exit", "end_of_data"])
    assert t.exit_price.iloc[0] == 110.0 and t.exit_bar.iloc[0] == 2  # opens beyond 107.1: at the open


def _one_add(method: str, with_add: bool):
    """AAA enters at bar 41's open and adds at bar 43's; BBB (the same bars) enters at bar 43's open. Both are
    sized from the equity at bar 42's close with the same inputs, so the add must equal BBB's entry."""
    rng = np.random.default_rng(4)
    warm = [(c, c + 1.0, c - 1.0, c) for c in 96 + rng.random(40) * 3]  # closes below 100: no add yet
    tail = [(98, 99, 97, 98), (98, 99, 97, 99), (99, 103, 98, 102), (102, 104, 101, 103), (103,) * 4]
    m = bars_market({"AAA": warm + tail, "BBB": warm + tail})
    sig = np.zeros(m.shape, bool)
    sig[40, 0] = sig[42, 1] = True
    sizing = {
        "equal_weight": Sizing("equal_weight"),
        "fixed_fractional": Sizing("fixed_fractional", risk_pct=1.0),
        "volatility_target": Sizing("volatility_target", vol_target_pct=10.0),
        "atr_risk": Sizing("atr_risk", risk_pct=1.0),
        "fixed_amount": Sizing("fixed_amount", fixed_amount=5_000.0),
        "kelly": Sizing("kelly"),
    }[method]
    kw = dict(stop_loss=5.0, take_profit=None, holding_period=None, max_positions=10, fractional_shares=True)
    add = dict(max_adds=1, add_rule="close > 100") if with_add else {}
    return backtest(m, sig, **kw, allow_leverage=True, max_leverage=5.0, sizing=sizing, **add).trades


@pytest.mark.parametrize(
    "method", ["equal_weight", "fixed_fractional", "volatility_target", "atr_risk", "fixed_amount", "kelly"]
)
def test_an_add_is_sized_by_each_method_as_a_new_entry_on_that_bar(method):
    with_add, without = _one_add(method, True), _one_add(method, False)
    aaa = with_add[with_add.symbol == "AAA"].iloc[0]
    added = aaa.shares - without[without.symbol == "AAA"].shares.iloc[0]
    entered = without[without.symbol == "BBB"].shares.iloc[0]  # BBB without adds of its own
    assert aaa.adds == 1 and added > 0
    assert added == pytest.approx(entered, rel=1e-9)


def test_an_add_under_the_position_limit_is_cut_to_the_room_left_and_logged():
    bars = [(100,) * 4, (100,) * 4, (100, 106, 100, 105), (105,) * 4, (105,) * 4]
    limits = RiskLimits(max_position_pct=50.0)  # half the equity: 4 shares held, 420 at bar 2's close
    r = run(
        bars,
        [0],
        limits=limits,
        max_adds=1,
        add_rule="close > 104",
        **{"sizing": Sizing("fixed_amount", fixed_amount=400.0)},
    )
    t, ev = only_trade(r), r.events
    assert t.adds == 1 and t.shares == pytest.approx(4 + (0.5 * 1_020 - 4 * 105) / 105)  # equity 1,020 at 105
    assert list(ev.rule) == ["max_position_pct"] and ev.action.iloc[0] == "cut"


def test_the_trailing_stop_after_an_add_trails_from_the_new_average_fill():
    """10 shares at 100; highs reach 103; 1,000 more bought at bar 3's open of 110: average 104.76. On that bar
    the trail (5%) measures from max(103, 104.76): 99.52, which the low of 99 crosses. From the highs alone
    (97.85) it would hold."""
    bars = [(100,) * 4, (100, 101, 99, 100), (101, 103, 100, 102), (110, 110, 99, 100), (100,) * 4]
    kw = dict(trailing_stop=5.0, max_adds=1, add_rule="close > 101", fractional_shares=True)
    r = run(bars, [0], initial_capital=5_000.0, sizing=Sizing("fixed_amount", fixed_amount=1_000.0), **kw)
    t = only_trade(r)
    avg = 2_000.0 / (10 + 1_000 / 110)
    assert (t.adds, t.exit_reason, t.exit_bar) == (1, "trailing_stop", 3)
    assert t.exit_price == pytest.approx(avg * 0.95)


def test_long_and_short_signals_compete_for_the_same_slots_in_symbol_order():
    """Three flat symbols signal on bar 0: AAA and CCC long, BBB short. Two slots: AAA long and BBB short take
    them (symbol order, whichever side), CCC is skipped for max positions; each gets half the equity."""
    frame = pd.DataFrame(
        [
            {"symbol": sym, "date": d, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1e6,
             "lflag": int(i == 0 and sym != "BBB"), "sflag": int(i == 0 and sym == "BBB")}
            for sym in ("AAA", "BBB", "CCC")
            for i, d in enumerate(pd.bdate_range("2024-01-01", periods=4))
        ]
    )  # fmt: skip
    m = market_from_frame(frame)
    r = backtest(m, scan(m, "lflag > 0"), **{**ONE, "max_positions": 2}, signal_type="both", short_rule="sflag > 0")
    t = r.trades
    assert list(zip(t.symbol, t.direction, strict=True)) == [("AAA", "long"), ("BBB", "short")]
    assert list(t.shares) == [5.0, 5.0]
    skipped = r.events
    assert list(zip(skipped.symbol, skipped.rule, strict=True)) == [("CCC", "max_positions")]
