"""Own columns in rules: a file's extra number and text columns, and a second file joined as of each date.

The oracle is pandas' `merge_asof` (the latest row dated on or before each bar, per symbol), written from the
issue's text and independent of the engine's placement."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from conftest import bars_market, flat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import attach_columns
from engine.data import describe_columns, load_market, market_from_frame
from engine.errors import DataError, RuleError
from engine.rules import evaluate, indicator_series, parse_rule, scan
from engine.server.datasets import DatasetStore


def two_symbols(n: int = 15):
    return bars_market({"AAA": flat(n, 100.0), "BBB": flat(n, 50.0)})  # 2024-01-01 (a Monday) on


def asof_oracle(market, rows: pd.DataFrame, column: str) -> np.ndarray:
    """Each bar's latest value dated on or before it, per symbol (NaN before the first), with pandas."""
    out = np.full(market.shape, np.nan)
    for j, symbol in enumerate(market.symbols):
        mine = rows[rows.symbol == symbol].assign(date=lambda f: pd.to_datetime(f.date).astype("datetime64[ns]"))
        mine = mine.sort_values("date")
        mine = mine.dropna(subset=[column])
        bars = pd.DataFrame({"date": market.dates.astype("datetime64[ns]")})
        if len(mine):
            joined = pd.merge_asof(bars, mine[["date", column]], on="date")
            out[:, j] = joined[column].to_numpy(float)
    return np.where(np.isnan(market.close), np.nan, out)


def test_a_quarterly_file_is_joined_as_of_each_bars_date():
    m = two_symbols()
    rows = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "AAA", "BBB", "ZZZ"],
            "date": ["2024-01-03", "2024-01-06", "2024-01-12", "2023-12-29", "2024-01-02"],  # 01-06: a Saturday
            "eps": [1.0, 2.0, 3.0, 7.0, 9.0],
        }
    )
    joined = attach_columns(m, rows)
    eps = joined.extra["eps"]
    aaa = eps[:, 0].tolist()
    assert np.isnan(aaa[:2]).all()  # never before its date
    assert aaa[2:5] == [1.0] * 3  # from 01-03 on, carried forward
    assert aaa[5:9] == [2.0] * 4  # Saturday's value from Monday 01-08
    assert aaa[9:] == [3.0] * 6  # 01-12 (a Friday) on, to the end
    assert eps[:, 1].tolist() == [7.0] * 15  # dated before the first bar: known from the first bar
    np.testing.assert_array_equal(eps, asof_oracle(m, rows, "eps"))
    assert joined.fingerprint != m.fingerprint  # a new dataset id
    assert any("1 row of the table for symbols the data does not have" in w for w in joined.warnings)
    matrix, _ = evaluate(joined, "eps >= 2")
    assert matrix[:, 0].tolist() == [False] * 5 + [True] * 10


def test_the_later_dated_row_wins_a_bar_and_a_blank_keeps_the_last_value():
    m = two_symbols()
    rows = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA", "AAA"],
            "date": ["2024-01-07", "2024-01-06", "2024-01-10"],  # Sunday then Saturday: both land on Monday
            "eps": [5.0, 4.0, np.nan],
        }
    )
    eps = attach_columns(m, rows).extra["eps"][:, 0]
    assert np.isnan(eps[:5]).all() and (eps[5:] == 5.0).all()  # Sunday's is the later value; a blank is none


def test_a_files_own_columns_are_rule_names_carried_forward_per_symbol():
    m = two_symbols(6)
    frame = pd.DataFrame(
        {
            "symbol": ["AAA"] * 6 + ["BBB"] * 6,
            "date": list(m.dates) * 2,
            "open": 10.0,
            "high": 10.0,
            "low": 10.0,
            "close": 10.0,
            "volume": 1000.0,
            "P/E Ratio": [20, None, None, 12, None, 30, None, 8, None, None, None, None],
            "Sector": ["Tech"] * 6 + ["Energy"] * 6,
            "rating": ["buy", None, "hold", "hold", "sell", None] * 2,
        }
    )
    market = market_from_frame(frame)
    assert market.column_kinds() == {"p_e_ratio": "number", "rating": "text", "sector": "text"}
    assert np.isnan(market.extra["p_e_ratio"][0, 1])
    assert market.extra["p_e_ratio"][:, 0].tolist() == [20, 20, 20, 12, 12, 30]
    cheap, _ = evaluate(market, "p_e_ratio < 15")
    assert cheap[:, 0].tolist() == [False, False, False, True, True, False]
    assert cheap[:, 1].tolist() == [False] + [True] * 5
    tech, _ = evaluate(market, 'sector == "Tech" and P_E_Ratio >= 20')
    assert tech[:, 0].tolist() == [True, True, True, False, False, True] and not tech[:, 1].any()
    held, _ = evaluate(market, 'rating in ("hold", "sell")')
    assert held[:, 0].tolist() == [False, False, True, True, True, True]  # carried forward: sell on the last bar
    assert evaluate(market, 'rating != "buy"')[0][:, 0].tolist() == [False, False, True, True, True, True]
    assert evaluate(market, 'rating not in ("buy",)')[0][:, 1].tolist() == [False, False, True, True, True, True]
    table = describe_columns(market).set_index("column")
    assert table.loc["p_e_ratio", "bars without a value"] == 1 and table.loc["rating", "kind"] == "text"


def test_text_compares_by_equality_only_and_says_what_to_write():
    frame = pd.DataFrame(
        {
            "symbol": ["A", "A"],
            "date": ["2024-01-01", "2024-01-02"],
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "industry_group": ["Banks", "Banks"],
            "notes": ["x", "y"],
            "pe": [1.0, 2.0],
        }
    )
    market = market_from_frame(frame)
    kinds = market.column_kinds()
    with pytest.raises(RuleError, match="notes is text: compare it with ==, !=, in or not in"):
        parse_rule("notes > 3", kinds)
    with pytest.raises(RuleError, match="notes is text: compare it with ==, !=, in or not in"):
        parse_rule('notes < "x"', kinds)
    with pytest.raises(RuleError, match="Text in quotes compares with a text column"):
        parse_rule('pe == "x"', kinds)
    with pytest.raises(RuleError, match="notes has no value 'X': did you mean 'x'"):
        scan(market, 'notes == "X"')
    with pytest.raises(RuleError, match="Unknown name 'pe'"):
        parse_rule("pe > 1")  # a rule checked without the dataset knows no own columns
    with pytest.raises(RuleError, match="the data's own columns: industry_group, notes, pe"):
        parse_rule("pe_ratio > 1", kinds)


def test_a_column_named_like_a_built_in_is_renamed_and_said():
    frame = pd.DataFrame(
        {"symbol": "A", "date": ["2024-01-01", "2024-01-02"], "close": 1.0, "open": 1.0, "high": 1.0, "low": 1.0}
    ).assign(rsi=[50.0, 60.0], **{"2y growth": [1.0, 2.0]})
    market = market_from_frame(frame)
    assert set(market.extra) == {"col_rsi", "col_2y_growth"}
    assert any("write col_rsi in rules" in w for w in market.warnings)
    assert evaluate(market, "col_rsi > 55")[0][:, 0].tolist() == [False, True]


def test_own_columns_survive_the_dataset_store_and_a_csv(tmp_path):
    m = two_symbols()
    rows = pd.DataFrame({"symbol": ["AAA", "BBB"], "date": ["2024-01-05", "2024-01-09"], "sector_rank": [1.5, 2.5]})
    labels = pd.DataFrame(
        {"symbol": ["AAA", "BBB"], "date": ["2024-01-01", "2024-01-01"], "style": ["value", "growth"]}
    )
    joined = attach_columns(attach_columns(m, rows), labels)
    store = DatasetStore(tmp_path)
    info = store.put(joined, owner="user:alice")
    store._memo.clear()  # read from disk, not from memory
    back = store.get(info.id, viewer="user:alice")
    assert back is not None and back.fingerprint == joined.fingerprint
    assert back.categories == {"style": ("growth", "value")}
    csv = io.BytesIO(rows.to_csv(index=False).encode())
    csv.name = "fundamentals.csv"
    assert attach_columns(m, csv).fingerprint == attach_columns(m, rows).fingerprint


def test_weekly_and_rank_by_and_charts_see_own_columns():
    m = two_symbols()
    rows = pd.DataFrame({"symbol": ["AAA", "BBB"] * 2, "date": ["2024-01-01"] * 2 + ["2024-01-09"] * 2,
                         "score": [1.0, 2.0, 4.0, 3.0]})  # fmt: skip
    joined = attach_columns(m, rows)
    weekly = evaluate(joined, "weekly(score) > 0")[1]["weekly(score)"]
    assert np.isnan(weekly[:5, 0]).all() and weekly[5:10, 0].tolist() == [1.0] * 5 and weekly[10, 0] == 4.0
    signals = scan(joined, "score > 0 rank by score")
    assert signals.priority is not None and signals.priority[:2].tolist() == [1.0, 2.0]
    assert "score" in indicator_series(joined, "score > 1 and close > sma(3)")
    assert "score" in signals.table(joined).columns


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    days=st.lists(st.integers(-3, 25), min_size=12, max_size=12, unique=True),  # one row per (symbol, date)
    values=st.lists(st.floats(0, 100, allow_nan=False), min_size=12, max_size=12),
    cut=st.integers(0, 14),
    noise=st.floats(0, 100, allow_nan=False),
)
def test_rows_dated_after_a_bar_never_change_its_signal(days, values, cut, noise):
    m = two_symbols()
    day0 = pd.Timestamp("2024-01-01")
    rows = pd.DataFrame(
        {"symbol": ["AAA", "BBB"] * 6, "date": [day0 + pd.Timedelta(days=d) for d in (days * 12)[:12]], "x": values}
    )
    base, _ = evaluate(attach_columns(m, rows), "x > 50 and crosses_above(x, 20)")
    later = rows.date > m.dates[cut]
    moved = rows.assign(x=np.where(later, noise, rows.x))
    again, _ = evaluate(attach_columns(m, moved), "x > 50 and crosses_above(x, 20)")
    np.testing.assert_array_equal(base[: cut + 1], again[: cut + 1])
    np.testing.assert_array_equal(attach_columns(m, rows).extra["x"], asof_oracle(m, rows, "x"))


def test_a_file_without_a_symbol_or_date_column_is_refused_with_what_it_needs():
    m = two_symbols()
    with pytest.raises(Exception, match="needs a symbol column and a date column"):
        attach_columns(m, pd.DataFrame({"ticker_name": ["AAA"], "eps": [1.0]}))
    with pytest.raises(Exception, match="nothing to attach"):
        attach_columns(m, pd.DataFrame({"symbol": ["AAA"], "date": ["2024-01-01"]}))


def test_an_attached_file_passes_the_loaders_date_order_and_duplicate_checks():
    m = two_symbols()
    mixed = io.BytesIO(b"symbol,date,eps\nAAA,13/01/2024,1\nAAA,01/02/2024,2\nBBB,20/01/2024,3\nAAA,2/14/2024,4\n")
    with pytest.raises(DataError, match=r"1 row of .* other day/month order .*'2/14/2024' \(data row 4\)"):
        attach_columns(m, mixed)
    twice = pd.DataFrame({"symbol": ["AAA", "BBB", "AAA"], "date": ["2024-01-03"] * 3, "eps": [1.0, 2.0, 9.0]})
    with pytest.raises(DataError, match=r"1 row of .* repeat a \(symbol, date\).*AAA 2024-01-03 \(data row 3\)"):
        attach_columns(m, twice)
    once = twice.iloc[:2]  # one row per (symbol, date): joined
    assert attach_columns(m, once).extra["eps"][2].tolist() == [1.0, 2.0]


def test_the_loader_reads_own_columns_of_a_csv(tmp_path):
    header = "symbol,date,open,high,low,close,volume,market_cap,pe,grade\n"
    rows = ['A,2024-01-02,1,1,1,1,10,"1,200",n/a,x', "A,2024-01-03,1,1,1,1,10,1300,abc,y"]
    rows += [f"A,2024-01-{d:02d},1,1,1,1,10,1400,12,{d}" for d in range(4, 31)]
    path = tmp_path / "caps.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    market = load_market(path)
    assert market.extra["market_cap"][:3, 0].tolist() == [1200.0, 1300.0, 1400.0]  # thousands separators read
    assert market.column_kinds()["pe"] == "number" and np.isnan(market.extra["pe"][:2, 0]).all()
    assert any("pe: 1 cells are not numbers" in w for w in market.warnings)  # 'abc'; 'n/a' is a blank
    assert market.column_kinds()["grade"] == "text"  # 2 of 29 are not numbers: text


def test_presets_and_rules_name_the_columns_the_data_lacks():
    from engine.rules import COLUMN_PRESETS, PRESETS, missing_columns

    assert missing_columns(COLUMN_PRESETS["Cheap and oversold (pe_ratio)"], {}) == ["pe_ratio"]
    assert missing_columns(COLUMN_PRESETS["Cheap and oversold (pe_ratio)"], {"pe_ratio": "number"}) == []
    assert missing_columns(PRESETS["Volume surge"], {}, has_volume=False) == ["volume"]
    assert missing_columns(PRESETS["Volume surge"], {}, has_volume=True) == []
    assert missing_columns("close > 1 rank by PE desc", {}) == ["pe"]
