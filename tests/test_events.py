"""The event study: forward returns of every signal, checked by hand, against pandas and against statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import InputError, scan, synthetic_market
from engine.events import forward_returns
from tests.conftest import bars_market, signal_at


def closes(*prices: float | None) -> list[tuple[float, float, float, float]]:
    """Bars whose open is the previous close plus 1 (so next-open entries differ from closes); None: no bar."""
    out, prev = [], None
    for c in prices:
        if c is None:
            out.append((None, None, None, None))
            continue
        o = (prev + 1.0) if prev is not None else c
        out.append((o, max(o, c), min(o, c), c))
        prev = c
    return out


def test_returns_excess_and_excursions_by_hand():
    m = bars_market({"A": closes(10, 10, 10, 12, 9, 15, 11), "B": closes(20, 20, 20, 22, 24, 26, 28)})
    study = forward_returns(m, signal_at(m, A=[1]), horizons=(1, 3), benchmark="universe")
    e = study.events.iloc[0]
    entry = 11.0  # the open of bar 2: the close of bar 1 plus 1
    assert e.entry_price == entry and e.entry_date == m.dates[2]
    assert e.ret_1 == pytest.approx(10 / entry - 1)  # the close of bar 2
    assert e.ret_3 == pytest.approx(9 / entry - 1)  # the close of bar 4
    assert e.mfe_3 == pytest.approx(12 / entry - 1) and e.mae_3 == pytest.approx(9 / entry - 1)  # closes 2..4
    universe_3 = ((9 / 11 - 1) + (24 / 21 - 1)) / 2  # both symbols entered at bar 2's open, out at bar 4's close
    assert e.excess_3 == pytest.approx(e.ret_3 - universe_3)
    at_close = forward_returns(m, signal_at(m, A=[1]), horizons=(3,), entry="close", benchmark="B").events.iloc[0]
    assert at_close.entry_price == 10.0 and at_close.ret_3 == pytest.approx(9 / 10 - 1)
    assert at_close.excess_3 == pytest.approx((9 / 10 - 1) - (24 / 20 - 1))  # B from its own close of bar 1


def test_a_horizon_past_the_data_is_nan_and_a_last_bar_signal_is_listed_open():
    m = bars_market({"A": closes(10, 11, 12, 13, 14)})
    study = forward_returns(m, signal_at(m, A=[2, 4]), horizons=(1, 3), benchmark=None)
    first, last = study.events.iloc[0], study.events.iloc[1]
    assert first.entry_price == 13.0 and first.ret_1 == pytest.approx(0.0)  # in at 13 (bar 3 open), out at 13
    assert np.isnan(first.ret_3)  # bar 5 does not exist: NaN, never the shorter return
    assert bool(last.open) and np.isnan(last.entry_price) and study.open_events == 1
    assert study.summary.loc[3, "open"] == 2 and study.summary.loc[1, "events"] == 1


def test_a_gap_inside_a_horizon_is_skipped_by_the_excursions_and_a_missing_end_is_counted():
    m = bars_market({"A": closes(10, 10, 12, None, 8, 11), "B": closes(5, 5, 5, 5, 5, 5)})
    study = forward_returns(m, signal_at(m, A=[1]), horizons=(2, 3), entry="close", benchmark=None)
    e = study.events.iloc[0]
    assert np.isnan(e.ret_2) and study.summary.loc[2, "missing"] == 1  # no close at t+2
    assert e.ret_3 == pytest.approx(8 / 10 - 1)
    assert e.mfe_3 == pytest.approx(12 / 10 - 1) and e.mae_3 == pytest.approx(8 / 10 - 1)


def test_cooldown_counts_the_hits_of_one_move_once():
    m = bars_market({"A": closes(*range(10, 30)), "B": closes(*range(40, 60))})
    signals = signal_at(m, A=[1, 2, 3, 8, 9], B=[2])
    every = forward_returns(m, signals, horizons=(1,), cooldown=0)
    assert len(every.events) == 6
    cooled = forward_returns(m, signals, horizons=(1,), cooldown=3)
    assert [(str(s), d) for s, d in zip(cooled.events.symbol, cooled.events.date, strict=True)] == [
        ("A", m.dates[1]),
        ("B", m.dates[2]),
        ("A", m.dates[8]),
    ]  # A at 2 and 3 are within 3 bars of 1; at 9 within 3 of 8
    assert every.summary.loc[1, "independent"] == 6  # one-bar windows never overlap


def test_ret_h_equals_pandas_shift_on_the_sample(sample):
    signals = scan(sample, "rsi(14) < 35")
    study = forward_returns(sample, signals, horizons=(1, 5, 20), benchmark=None, random_draws=0)
    close = pd.DataFrame(sample.close, index=sample.dates, columns=sample.symbols)
    opened = pd.DataFrame(sample.open, index=sample.dates, columns=sample.symbols)
    for h in (1, 5, 20):
        expected = close.shift(-h) / opened.shift(-1) - 1
        got = [expected.at[d, str(s)] for s, d in zip(study.events.symbol, study.events.date, strict=True)]
        np.testing.assert_allclose(study.events[f"ret_{h}"], got, rtol=1e-12, equal_nan=True)


def test_the_clustered_interval_is_statsmodels_ols_with_errors_clustered_by_date(sample):
    sm = pytest.importorskip("statsmodels.api")
    study = forward_returns(sample, scan(sample, "rsi(14) < 40"), horizons=(5,), random_draws=0)
    e = study.events.dropna(subset=["excess_5"])
    fit = sm.OLS(e["excess_5"].to_numpy(), np.ones(len(e))).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(e["date"])[0]}
    )
    row = study.summary.loc[5]
    assert row.mean_excess == pytest.approx(fit.params[0], rel=1e-10)
    assert row.se == pytest.approx(fit.bse[0], rel=1e-10)
    low, high = fit.conf_int(alpha=0.05)[0]
    assert (row.ci_low, row.ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert row.dates == e["date"].nunique() < row.events  # many stocks on one day: fewer clusters than events


def test_the_random_percentile_is_reproducible_by_seed_and_moves_with_it(sample):
    signals = scan(sample, "rsi(14) < 30")

    def pctile(seed: int) -> float:
        study = forward_returns(sample, signals, horizons=(10,), random_draws=200, seed=seed)
        return study.summary.loc[10, "random_pctile"]

    a, b, c = pctile(3), pctile(3), pctile(4)
    assert a == b and 0 <= a <= 100 and not np.isnan(c)


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=80, max_value=290), seed=st.integers(0, 50))
def test_no_look_ahead_data_cut_at_t_gives_the_same_returns_for_every_horizon_ended_before_t(cut, seed):
    m = synthetic_market(4, 300, seed=seed)
    signals = np.random.default_rng(seed).random(m.shape) < 0.05
    full = forward_returns(m, signals, horizons=(1, 5), benchmark="universe", random_draws=0).events
    part = forward_returns(m.window(0, cut), signals[:cut], horizons=(1, 5), benchmark="universe", random_draws=0)
    bars = {d: i for i, d in enumerate(m.dates)}
    for h in (1, 5):
        ended = [bars[d] + h < cut for d in full.date]
        within = [bars[d] + h < cut for d in part.events.date]
        for column in (f"ret_{h}", f"excess_{h}", f"mfe_{h}", f"mae_{h}"):
            np.testing.assert_allclose(full[column][ended], part.events[column][within], rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"horizons": (0, 5)}, "Horizons are whole numbers"),
        ({"entry": "open"}, "entry must be one of"),
        ({"cooldown": -1}, "cooldown is a whole number"),
        ({"benchmark": "ZZZZ"}, "not a symbol of this dataset"),
    ],
)
def test_bad_settings_say_what_is_allowed(sample, kwargs, words):
    with pytest.raises(InputError, match=words):
        forward_returns(sample, scan(sample, "rsi(14) < 30"), random_draws=0, **kwargs)


def test_past_the_draw_budget_the_random_percentile_comes_from_the_normal_the_draws_tend_to(sample, monkeypatch):
    import engine.events as events

    signals = scan(sample, "rsi(14) < 40")
    drawn = forward_returns(sample, signals, horizons=(5, 20), random_draws=400, seed=1).summary.random_pctile
    monkeypatch.setattr(events, "RANDOM_CELLS", 0)  # every study is past the budget: the moments' normal
    normal = forward_returns(sample, signals, horizons=(5, 20), random_draws=400, seed=1).summary.random_pctile
    np.testing.assert_allclose(normal, drawn, atol=6.0)  # percentiles agree within the draws' own noise


def test_the_drift_curve_meets_the_summary_at_each_horizon_and_the_tables_add_up(sample):
    study = forward_returns(sample, scan(sample, "rsi(14) < 35"), horizons=(5, 20), random_draws=0)
    for h in (5, 20):
        assert study.path.loc[h, "mean"] == pytest.approx(study.summary.loc[h, "mean_excess"], rel=1e-12)
        assert study.path.loc[h, "low"] == pytest.approx(study.summary.loc[h, "ci_low"], rel=1e-12)
    assert study.path.index.tolist() == list(range(21)) and study.path.loc[0, "mean"] == 0.0
    assert study.by_year["events"].sum() == len(study.events)
    best = study.by_symbol(20, top=2)
    assert best["mean"].is_monotonic_decreasing and len(best) <= 4


def test_the_random_band_holds_random_entries_drift_and_its_normal_form_agrees_with_the_draws(sample, monkeypatch):
    import engine.events as events

    rng = np.random.default_rng(3)
    signals = rng.random(sample.shape) < 0.004  # random entries: their drift should stay inside the band
    study = forward_returns(sample, signals, horizons=(20,), random_draws=400, seed=2)
    path = study.path.loc[1:]
    inside = (path["mean"] >= path["random_low"]) & (path["mean"] <= path["random_high"])
    assert inside.mean() >= 0.8 and (path["random_high"] > path["random_low"]).all()
    again = forward_returns(sample, signals, horizons=(20,), random_draws=400, seed=2).path
    pd.testing.assert_frame_equal(again, study.path)  # reproducible by seed
    monkeypatch.setattr(events, "RANDOM_CELLS", 0)  # past the budget: the normal from single random entries
    normal = forward_returns(sample, signals, horizons=(20,), random_draws=400, seed=2).path.loc[1:]
    width = (path["random_high"] - path["random_low"]).to_numpy()
    assert np.all(np.abs(normal["random_low"] - path["random_low"]) < 0.25 * width)
    assert np.all(np.abs(normal["random_high"] - path["random_high"]) < 0.25 * width)
    assert forward_returns(sample, signals, horizons=(5,), random_draws=0).path["random_low"].loc[1:].isna().all()


def test_signals_whose_next_bars_cross_a_flagged_bar_are_named():
    from engine import load_market
    from engine.events import flagged_events

    rows = []
    for symbol, spike in (("A", True), ("B", False)):
        for i in range(60):
            c = 100.0 if spike and i == 30 else 10.0 + i * 0.01  # one bad print on A: an outlier up and back
            day = pd.Timestamp("2024-01-01") + pd.offsets.BDay(i)
            rows.append({"symbol": symbol, "date": day, "open": c, "high": c, "low": c, "close": c, "volume": 1e3})
    market = load_market(pd.DataFrame(rows))
    signals = np.zeros(market.shape, bool)
    signals[25, :] = True  # both symbols, 5 bars before the spike
    signals[40, 0] = True  # A, after it
    crossed = flagged_events(market, forward_returns(market, signals, horizons=(1, 10), random_draws=0))
    assert crossed["symbol"].tolist() == ["A"] and crossed["entry_date"].tolist() == [market.dates[25]]
    assert "outlier 2024-02-12" in crossed["flagged"].iloc[0]


def test_a_sweep_of_a_rule_number_runs_the_study_per_value_and_deflates_the_best_for_the_tries(sample):
    from engine.events import sweep

    table, best = sweep(sample, "rsi(14) < 30", 1, [20, 25, 30, 35], horizon=10)
    assert table.index.tolist() == [20.0, 25.0, 30.0, 35.0] and table["rule"].iloc[0] == "rsi(14) < 20"
    one = forward_returns(sample, scan(sample, "rsi(14) < 25"), horizons=(10,), random_draws=0).summary.loc[10]
    assert table.loc[25.0, "mean"] == pytest.approx(one["mean_excess"]) and table.loc[25.0, "events"] == one["events"]
    assert best["best"] == table["t_stat"].idxmax() and best["tried"] == 4
    assert best["p_deflated"] == pytest.approx(1 - (1 - best["p"]) ** 4) and best["p_deflated"] >= best["p"]
    with pytest.raises(InputError, match="A sweep tries 2 to 50 values"):
        sweep(sample, "rsi(14) < 30", 1, [30])
