"""Rotation: every rebalance bar, hold the top-ranked hits at their weights.

The oracle (`rotation_oracle`) is a plain Python loop written from the issue's text: at each rebalance bar's
close the rule's hits ranked by score, the top K weighted; at the next open sells first (dropped out, or above
the target by more than the band), then buys in rank order, each weight a share of the portfolio's value at
that open; commission a percent of value, slippage against the trader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import BacktestParams, RiskLimits, backtest, optimize
from engine.data import Market
from engine.errors import ParamError
from engine.rotation import rebalance_rows, rotation_targets
from engine.rules import scan

RULE = "close > sma(10) rank by roc(20)"
OFF = {"stop_loss": None, "take_profit": None, "holding_period": None, "max_positions": 50}


def walk_market(n_sym: int = 20, n_bars: int = 260, seed: int = 3) -> Market:
    """Random walks with every bar present (business days from 2021-01-01)."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0004, 0.02, (n_bars, n_sym)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    dates = pd.bdate_range("2021-01-01", periods=n_bars)
    symbols = tuple(f"S{i:02d}" for i in range(n_sym))
    return Market(symbols, dates, open_, high, low, close, np.full(close.shape, 1e6))


def rotation_oracle(m: Market, hits, score, k, weighting, vol, band_pct, comm_pct, slip_bps, capital, every="M"):
    """(trades [(bar, symbol, shares, price, fee, weight, portfolio)], equity per bar) by a plain loop."""
    comm, slip, band = comm_pct / 100, slip_bps / 1e4, max(band_pct / 100, 1e-9)  # 1e-9: float noise
    period = m.dates.to_period({"M": "M", "W": "W-FRI", "Q": "Q"}[every])
    last_of_period = [i for i in range(len(m.dates)) if i == len(m.dates) - 1 or period[i] != period[i + 1]]
    cash, shares, trades, equity = capital, {}, [], []
    held = {}  # shares held after each rebalance, by its bar
    for t in range(len(m.dates)):
        if t - 1 in last_of_period:
            r = t - 1
            slots = min(k, int(hits[r].sum()))  # a hit without a score keeps its slot, in cash
            ranked = sorted(
                (s for s in range(len(m.symbols)) if hits[r, s] and np.isfinite(score[r, s])),
                key=lambda s: (-score[r, s], s),
            )[:slots]
            if weighting == "equal":
                raw = [1.0] * len(ranked)
            elif weighting == "score":
                raw = [max(score[r, s], 0.0) for s in ranked]  # no positive score: all in cash
            else:
                raw = [1 / vol[r, s] if vol[r, s] > 0 else 0.0 for s in ranked]  # NaN: unknown, 0
                if sum(raw) <= 0:
                    raw = [1.0] * len(ranked)
            total = sum(raw) or 1.0
            weight = {s: w / total * len(ranked) / slots for s, w in zip(ranked, raw, strict=True)}
            worth = cash + sum(q * m.open[t, s] for s, q in shares.items())
            want = {s: weight.get(s, 0.0) * worth for s in range(len(m.symbols))}
            for s in sorted(shares):
                o = m.open[t, s]
                excess = shares[s] * o - want[s]
                if excess <= 0 or (want[s] > 0 and excess <= band * worth):
                    continue
                qty = shares[s] if want[s] == 0 else excess / o
                fill = o * (1 - slip)
                fee = qty * fill * comm
                cash += qty * fill - fee
                shares[s] -= qty
                if want[s] == 0:
                    del shares[s]
                trades.append((t, s, -qty, fill, fee, want[s] / worth, worth))
            for s in ranked:
                o = m.open[t, s]
                need = want[s] - shares.get(s, 0.0) * o
                if need <= 1e-9 * worth or (s in shares and need <= band * worth):
                    continue
                value = min(need, cash)
                fill = o * (1 + slip)
                qty = value / (fill * (1 + comm))
                fee = qty * fill * comm
                cash -= qty * fill + fee
                shares[s] = shares.get(s, 0.0) + qty
                trades.append((t, s, qty, fill, fee, want[s] / worth, worth))
            held[t] = dict(shares)
        equity.append(cash + sum(q * m.close[t, s] for s, q in shares.items()))
    return trades, np.array(equity), held


@pytest.mark.parametrize(
    ("weighting", "band", "every"), [("equal", 0.0, "M"), ("score", 2.0, "W"), ("inverse_vol", 0.0, "Q")]
)
def test_a_20_symbol_rotation_equals_a_plain_loop_to_1e_9(weighting, band, every):
    m = walk_market()
    signals = scan(m, RULE)
    params = dict(OFF, rebalance=every, hold_top=5, weighting=weighting, rebalance_band=band)
    costs = {"commission": 0.1, "slippage_bps": 5.0, "fractional_shares": True}
    result = backtest(m, signals, **params, **costs)
    hits = signals.matrix
    score = np.full(m.shape, np.nan)
    score[hits] = signals.priority
    vol = np.asarray(pd.DataFrame(m.close).pct_change().rolling(20).std(ddof=1))  # sizing's volatility lookback
    trades, equity, held = rotation_oracle(m, hits, score, 5, weighting, vol, band, 0.1, 5.0, 100_000.0, every)
    got = result.rebalance_log
    assert len(got) == len(trades) > 20
    expected = np.array(trades, dtype=float)
    for i, name in enumerate(("bar", "symbol", "shares", "price", "fee", "weight", "portfolio")):
        np.testing.assert_allclose(got[name], expected[:, i], rtol=1e-9, atol=1e-9, err_msg=name)
    # Equity to the bar before the last (the last closes every position, as any run's end of data).
    np.testing.assert_allclose(result.equity.equity.to_numpy()[:-1], equity[:-1], rtol=1e-9)
    turnover = result.turnover
    by_date = pd.DataFrame(trades, columns=["bar", "s", "q", "p", "fee", "w", "worth"]).assign(v=lambda f: f.q * f.p)
    for bar, group in by_date.groupby("bar"):
        row = turnover.loc[m.dates[int(bar)]]
        traded = group.v.abs().sum()
        assert row.turnover_pct == pytest.approx(traded / (2 * group.worth.iloc[0]) * 100, rel=1e-9)
        assert row.fees == pytest.approx(group.fee.sum(), rel=1e-9)
    assert result.rebalances.fee.sum() == pytest.approx(sum(t[4] for t in trades), rel=1e-9)
    holdings = result.holdings.to_numpy()
    for bar, shares in held.items():  # the holdings chart's shares after each rebalance
        expected_row = np.zeros(len(m.symbols))
        expected_row[list(shares)] = list(shares.values())
        np.testing.assert_allclose(holdings[bar], expected_row, rtol=1e-9, atol=1e-9)


def test_rebalance_bars_are_each_periods_last_bar_or_every_nth():
    dates = pd.DatetimeIndex(["2024-03-25", "2024-03-27", "2024-03-28", "2024-04-01", "2024-04-05", "2024-04-08"])
    # Good Friday 2024-03-29 has no bar: Thursday closes that week (and March).
    assert rebalance_rows(dates, "W").tolist() == [2, 4, 5]
    assert rebalance_rows(dates, "M").tolist() == [2, 5]
    assert rebalance_rows(dates, "Q").tolist() == [2, 5]
    assert rebalance_rows(dates, "N", 2).tolist() == [1, 3, 5]


def test_targets_rank_hits_by_score_and_weigh_them():
    hits = np.array([[True, True, False, True, True], [False, False, False, False, False]])
    score = np.array([[1.0, np.nan, 9.0, 3.0, 3.0], [0, 0, 0, 0, 0]])
    symbols, weights, unscored = rotation_targets(hits, score, 3, "equal")
    assert symbols.tolist() == [[3, 4, 0], [-1, -1, -1]]  # a tie in symbol order; NaN skipped; not a non-hit
    assert weights.tolist() == [[1 / 3] * 3, [0.0] * 3]
    assert unscored.tolist() == [[1, -1, -1], [-1, -1, -1]]
    by_score = rotation_targets(hits, score, 3, "score").weights
    np.testing.assert_allclose(by_score[0], [3 / 7, 3 / 7, 1 / 7])
    vol = np.array([[10.0, 20.0, 30.0, 40.0, np.nan], [1.0] * 5])
    inverse = rotation_targets(hits, score, 3, "inverse_vol", vol).weights
    np.testing.assert_allclose(inverse[0], [(1 / 40) / (1 / 40 + 1 / 10), 0.0, (1 / 10) / (1 / 40 + 1 / 10)])
    top_four = rotation_targets(hits, score, 9, "equal")  # 4 hits, one without a score: its quarter is cash
    assert top_four.symbols[0].tolist() == [3, 4, 0, -1, -1] and top_four.weights[0].tolist()[:3] == [0.25] * 3


def test_score_weights_follow_positive_scores_only_and_hold_cash_when_none_is_positive():
    hits = np.array([[True, True, True], [True, True, False]])
    score = np.array([[2.0, -1.0, 0.0], [-3.0, -1.0, 5.0]])
    symbols, weights, _ = rotation_targets(hits, score, 3, "score")
    assert symbols.tolist() == [[0, 2, 1], [1, 0, -1]]
    assert weights.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # no positive score: all in cash


def test_a_rotation_with_an_undefined_ranking_stays_in_cash_and_logs_each_skipped_hit():
    """roc(60) is NaN for 60 bars: the first monthly rebalances buy nothing (bt stays in cash too), where the
    kernel used to buy the hits in symbol order; each skipped hit is an event."""
    m = walk_market(n_sym=6, n_bars=120, seed=2)
    r = backtest(m, scan(m, "close > 0 rank by roc(60)"), rebalance="M", hold_top=3, **OFF)
    first_buy = r.rebalances.query("action == 'buy'").date.min()
    assert first_buy > m.dates[60]
    skipped = r.events.query("rule == 'no_score'")
    assert len(skipped) == 3 * (m.dates[:61].to_period("M").nunique() - 1) and (skipped.action == "skip").all()
    assert (r.equity.equity.loc[: first_buy - pd.Timedelta(days=1)] == 100_000.0).all()


def test_stops_and_the_holding_period_still_apply_and_a_stopped_name_waits_for_the_next_rebalance():
    m = walk_market(seed=5)
    signals = scan(m, RULE)
    result = backtest(m, signals, rebalance="M", hold_top=5, stop_loss=3.0, holding_period=None, max_positions=50)
    positions = result.positions
    stopped = positions[positions.exit_reason == "stop_loss"]
    assert len(stopped) > 0
    buys = result.rebalances[result.rebalances.action == "buy"]
    rebalance_dates = set(buys.date)
    assert set(positions.entry_date) <= rebalance_dates  # nothing is bought between rebalances
    held = backtest(m, signals, rebalance="M", hold_top=5, holding_period=5, stop_loss=None, max_positions=50)
    assert (held.positions.bars_held <= 5).all() and (held.positions.exit_reason == "holding_period").any()


def test_a_limit_cuts_a_rotations_buy_and_says_so():
    m = walk_market(seed=7)
    result = backtest(m, scan(m, RULE), rebalance="M", hold_top=2, **OFF, limits=RiskLimits(max_position_pct=20.0))
    assert (result.rebalances.query("action == 'buy'").weight_pct == 50).all()
    assert (result.events.rule == "max_position_pct").any()
    buys = result.rebalances.query("action == 'buy'")
    assert (buys.value <= 0.2 * buys.portfolio * 1.05).all()  # 20% of equity at the last close, at most


def test_rotation_refuses_shorts_and_orders_with_a_reason():
    with pytest.raises(ParamError, match="Rotation holds the top-ranked symbols long"):
        BacktestParams(rebalance="M", signal_type="short")
    with pytest.raises(ParamError, match="choose Entry order market"):
        BacktestParams(rebalance="W", entry_order="limit")


def test_the_grid_runs_rotations_as_the_backtest_does():
    m = walk_market(seed=9)
    base = BacktestParams(rebalance="M", hold_top=4, **OFF)
    grid = optimize(m, RULE, base, {"stop_loss": [0, 4.0]}, min_trades=0)
    table = grid.table.set_index("stop_loss")
    for stop in (0, 4.0):
        one = backtest(m, scan(m, RULE), rebalance="M", hold_top=4, **{**OFF, "stop_loss": stop or None})
        assert table.loc[stop, "total_return_pct"] == pytest.approx(one.metrics["total_return_pct"], rel=1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(60, 240), noise=st.floats(0.5, 2.0))
def test_bars_after_t_never_change_a_rotation_up_to_t(cut, noise):
    m = walk_market(8, 260, seed=11)
    moved = Market(
        m.symbols,
        m.dates,
        *(np.vstack([a[: cut + 1], a[cut + 1 :] * noise]) for a in (m.open, m.high, m.low, m.close)),
        m.volume,
    )
    runs = [backtest(x, scan(x, RULE), rebalance="W", hold_top=3, **OFF) for x in (m, moved)]
    logs = [r.rebalance_log[r.rebalance_log["bar"] <= cut] for r in runs]
    np.testing.assert_array_equal(logs[0], logs[1])
    np.testing.assert_array_equal(runs[0].curve["equity"][: cut + 1], runs[1].curve["equity"][: cut + 1])


def test_the_cli_the_api_and_the_tear_sheet_carry_a_rotation(tmp_path, capsys, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from engine import load_sample
    from engine.__main__ import main
    from engine.plots.report import tear_sheet

    rule = "close > sma(50) rank by roc(126)"
    sample = load_sample()
    settings = {"rebalance": "M", "hold_top": 3, "holding_period": None, "stop_loss": None, "take_profit": None}
    library = backtest(sample, scan(sample, rule), **settings)
    argv = ["backtest", "--rule", rule, "--rebalance", "M", "--hold-top", "3", "--json"]
    assert main([*argv, "--holding-period", "0", "--stop-loss", "0", "--take-profit", "0"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["total_return_pct"] == pytest.approx(library.metrics["total_return_pct"], rel=1e-12)
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    with TestClient(create_app()) as client:
        params = {"rebalance": "M", "hold_top": 3, "holding_period": 0, "stop_loss": 0, "take_profit": 0}
        body = client.post("/api/backtest/run", json={"data": "sample", "rule": rule, "params": params}).json()
    assert body["metrics"]["total_return_pct"] == pytest.approx(library.metrics["total_return_pct"], rel=1e-12)
    assert "reb=M" in body["link"] and "top=3" in body["link"]
    sheet = tear_sheet(sample, rule, library)
    assert f"Rebalances ({len(library.turnover):,})" in sheet and "Holdings over time" in sheet
