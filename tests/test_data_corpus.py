"""A corpus of malformed and awkward files, each with its exact outcome, plus real sets with known quirks."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import DataError, load_market
from engine.data import BadRowsError, detect_splits
from engine.safe_csv import to_safe_csv

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "long"
HEAD = "symbol,date,open,high,low,close,volume\n"
OK = "A,2024-01-02,10,11,9,10.5,100\nA,2024-01-03,10.5,11,10,10.8,120\n"


def load_bytes(data: bytes, name: str = "prices.csv", **kw):
    f = io.BytesIO(data)
    f.name = name
    return load_market(f, **kw)


def load_text(text: str, name: str = "prices.csv", **kw):
    return load_bytes(text.encode(), name, **kw)


ERRORS = {
    "empty": ("", "is empty"),
    "header only": (HEAD, "no rows"),
    "binary": ("\x00\x01\x02\x03" * 200, "is binary"),
    "missing columns": ("symbol,date,open,high\nA,2024-01-02,1,2\n", r"Missing required column\(s\): low, close"),
    "duplicate column": (
        "symbol,date,open,high,low,close,Close\nA,2024-01-02,1,2,0.5,1,1\n",
        "Column 'Close' appears twice",
    ),
    "unparseable date": (
        HEAD + "A,not-a-date,1,2,0.5,1,1\n",
        r"a date that could not be parsed \(or is outside 1677-2262\), e.g. line 2 \(A not-a-date\)",
    ),
    "date before 1677": (HEAD + "A,1500-01-02,1,2,0.5,1,1\n", "a date that could not be parsed"),
    "date after 2262": (HEAD + "A,2300-01-02,1,2,0.5,1,1\n", "a date that could not be parsed"),
    "non-numeric": (HEAD + "A,2024-01-02,1,2,abc,1,1\n", r"a non-numeric low, e.g. line 2 \(A 2024-01-02 'abc'\)"),
    "some prices empty": (HEAD + "A,2024-01-02,1,,0.5,1,1\n", "some but not all of open/high/low/close empty"),
    "infinite price": (HEAD + "A,2024-01-02,1,inf,0.5,1,1\n", r"an infinite price or volume, e.g. line 2"),
    "zero price": (HEAD + "A,2024-01-02,0,2,0,1,1\n", "a zero or negative price"),
    "negative price": (HEAD + "A,2024-01-02,-1,2,0.5,1,1\n", "a zero or negative price"),
    "high below low": (HEAD + "A,2024-01-02,1,1,2,1,1\n", "high < low"),
    "close outside range": (HEAD + "A,2024-01-02,1,2,0.5,3,1\n", r"open or close outside \[low, high\]"),
    "negative volume": (HEAD + "A,2024-01-02,1,2,0.5,1,-5\n", "a negative volume"),
    "duplicate row": (HEAD + OK + "A,2024-01-02,10,11,9,10.5,100\n", r"a duplicate \(symbol, date\), e.g. line 4"),
    "no symbol": (HEAD + ",2024-01-02,1,2,0.5,1,1\n", "no symbol, e.g. line 2"),
    "symbol with newline": (HEAD + '"A\nB",2024-01-02,1,2,0.5,1,1\n', "a symbol with characters other than"),
    "symbol with NUL": (HEAD + OK * 60 + "A\x00B,2024-01-02,1,2,0.5,1,1\n", "a symbol with characters other than"),
    "zero-width symbol": (HEAD + "A\u200bB,2024-01-02,1,2,0.5,1,1\n", "look-alike letter"),
    "right-to-left symbol": (HEAD + "\u202eAB,2024-01-02,1,2,0.5,1,1\n", "invisible"),
    "cyrillic look-alike": (HEAD + "\u0410APL,2024-01-02,1,2,0.5,1,1\n", r"line 2 \('АAPL' 2024-01-02\)"),
    "formula symbol": (HEAD + "=CMD|' /C CALC'!A0,2024-01-02,1,2,0.5,1,1\n", "a symbol with characters other than"),
    "ragged rows": (
        HEAD + "A,2024-01-02,1,2,0.5,1,1\nA,2024-01-03,1,2\n",
        "1 row does not have the header's 7 fields, e.g. line 3",
    ),
    "not a bars file, ragged": (
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon,,,:/usr/sbin\n",
        r"Missing required column\(s\): date, open, high, low, close\. Found: root:x:0:0",
    ),  # fmt: skip  # the header is the news, not its ragged rows
    "ambiguous dates": (
        HEAD + "A,03/04/2020,1,2,0.5,1,1\nA,05/06/2020,1,2,0.5,1,1\n",
        r"Dates such as '03/04/2020' can be read two ways \(2020-04-03 or 2020-03-04\)",
    ),
    "hourly bars": (
        HEAD + "A,2024-01-02 09:30,1,2,0.5,1,1\nA,2024-01-02 10:30,1,2,0.5,1,1\n",
        "This looks like intraday data: A has 2 bars on 2024-01-02",
    ),
    "every row bad, dropped": (HEAD + "A,2024-01-02,0,2,0,1,1\n", "No valid rows are left"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_malformed_file_gets_its_exact_message(case):
    text, message = ERRORS[case]
    with pytest.raises(DataError, match=message):
        load_text(text, on_bad_rows="drop" if case == "every row bad, dropped" else "raise")


def test_a_truncated_gzip_and_a_truncated_parquet_are_named(tmp_path):
    whole = gzip.compress((HEAD + OK * 200).encode())
    with pytest.raises(DataError, match="is not a complete gzip file"):
        load_bytes(whole[: len(whole) // 2], "prices.csv.gz")
    buf = io.BytesIO()
    pd.read_csv(io.StringIO(HEAD + OK)).to_parquet(buf)
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        load_bytes(buf.getvalue()[:-40], "prices.parquet")


def test_a_gzip_bomb_is_refused_quickly_without_decompressing_it_all():
    bomb = gzip.compress(HEAD.encode() + b"0" * 400_000_000, compresslevel=9)
    assert len(bomb) < 1_000_000
    start = time.perf_counter()
    with pytest.raises(DataError, match="more than 100:1"):
        load_bytes(bomb, "bomb.csv.gz")
    assert time.perf_counter() - start < 10  # ~0.2 s here; generous for a loaded CI machine


def test_the_decompressed_limit_is_a_setting(monkeypatch):
    monkeypatch.setenv("SCANNER_MAX_DECOMPRESSED_MB", "0.001")
    with pytest.raises(DataError, match="SCANNER_MAX_DECOMPRESSED_MB"):
        load_bytes(gzip.compress((HEAD + OK * 40).encode()), "p.csv.gz")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters_and_decimal_commas_are_detected(delimiter):
    text = (HEAD + OK).replace(",", delimiter)
    assert load_text(text).close[:, 0].tolist() == [10.5, 10.8]
    if delimiter != "|":
        decimal = (HEAD + OK).replace(",", delimiter).replace("10.5", "10,5").replace("10.8", "10,8")
        assert load_text(decimal).close[:, 0].tolist() == [10.5, 10.8]


def test_bom_crlf_blank_lines_and_messy_symbols_are_normalised():
    text = "\ufeff" + (HEAD + " aapl ,2024-01-02,1,2,0.5,1,1\n\nＡＡＰＬ,2024-01-03,1,2,0.5,1,1\n").replace(
        "\n", "\r\n"
    )
    m = load_text(text)
    assert m.symbols == ("AAPL",) and len(m.dates) == 2  # trimmed, upper-cased, NFKC (full-width letters)
    with pytest.raises(BadRowsError, match="line 5"):  # line numbers count the blank line
        load_text(HEAD + OK + "\nA,2024-01-05,1,2,0.5,9,1\n")


def test_timezone_aware_and_mixed_offset_timestamps_become_exchange_dates():
    text = HEAD + "A,2013-03-08 00:00:00-05:00,1,2,0.5,1,1\nA,2013-03-11 00:00:00-04:00,1,2,0.5,1,1\n"
    assert list(load_text(text).dates.strftime("%Y-%m-%d")) == ["2013-03-08", "2013-03-11"]
    manila = pd.to_datetime(["2024-01-02", "2024-01-03"]).tz_localize("Asia/Manila")
    frame = pd.DataFrame(
        {"symbol": "A", "date": manila, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0, "volume": 1.0}
    )
    buf = io.BytesIO()
    frame.to_parquet(buf)
    assert list(load_bytes(buf.getvalue(), "p.parquet").dates.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]


def test_day_month_order_is_detected_from_all_values_or_chosen():
    mixed = HEAD + "A,03/04/2020,1,2,0.5,1,1\nA,13/04/2020,1,2,0.5,1,1\n"
    assert load_text(mixed).dates[0] == pd.Timestamp("2020-04-03")  # 13/04 can only be day first
    ambiguous = HEAD + "A,03/04/2020,1,2,0.5,1,1\nA,05/06/2020,1,2,0.5,1,1\n"
    assert load_text(ambiguous, date_format="monthfirst").dates[0] == pd.Timestamp("2020-03-04")
    assert load_text(ambiguous, date_format="dayfirst").dates[0] == pd.Timestamp("2020-04-03")
    assert load_text(ambiguous, date_format="%d/%m/%Y").dates[1] == pd.Timestamp("2020-06-05")


def test_intraday_bars_can_be_resampled_to_daily():
    text = HEAD + (
        "A,2024-01-02 09:30,10,12,9,11,100\nA,2024-01-02 10:30,11,13,10,12,50\nA,2024-01-03 09:30,12,12,8,9,70\n"
    )
    m = load_text(text, intraday="daily")
    assert [m.open[0, 0], m.high[0, 0], m.low[0, 0], m.close[0, 0], m.volume[0, 0]] == [10, 13, 9, 12, 150]
    assert m.close[1, 0] == 9 and len(m.dates) == 2


def test_dropping_bad_rows_loads_the_rest_and_reports_each_one():
    text = HEAD + OK + "B,2024-01-02,0,0,0,0,0\nB,2024-01-03,1,2,0.5,1,1\nC,2024-01-02,1,2\n"
    with pytest.raises(BadRowsError) as err:
        load_text(text)
    assert len(err.value.rows) == 1  # the ragged line is reported before anything else is read
    m = load_text(text, on_bad_rows="drop")
    assert m.symbols == ("A", "B") and m.summary()["bars"] == 3
    report = m.dropped_rows.sort_values("line").reset_index(drop=True)
    assert report.to_dict("records") == [
        {"line": 4, "symbol": "B", "date": "2024-01-02", "reason": "a zero or negative price"},
        {"line": 6, "symbol": "", "date": "", "reason": "field count is not the header's 7"},
    ]
    assert any("Left out 2 bad rows" in w for w in m.warnings)


def test_parquet_and_frame_messages_say_row_not_line():
    frame = pd.read_csv(io.StringIO(HEAD + OK + "A,2024-01-04,1,1,2,1,1\n"))
    buf = io.BytesIO()
    frame.to_parquet(buf)
    with pytest.raises(BadRowsError, match=r"high < low, e.g. row 3 \(A 2024-01-04\)"):
        load_bytes(buf.getvalue(), "p.parquet")
    with pytest.raises(BadRowsError, match="row 3"):
        load_market(frame)


def test_one_row_per_symbol_and_an_all_empty_symbol():
    text = HEAD + "A,2024-01-02,1,2,0.5,1,1\nB,2024-01-03,1,2,0.5,1,1\nC,2024-01-02,,,,,\n"
    m = load_text(text)
    assert m.symbols == ("A", "B") and any("1 rows have no prices" in w for w in m.warnings)


def test_adjusted_prices_use_adj_close_and_are_a_different_dataset():
    text = (
        "symbol,date,open,high,low,close,volume,adj_close\nA,2024-01-02,10,12,8,10,5,5\nA,2024-01-03,10,12,8,11,5,5.5\n"
    )
    raw, adjusted = load_text(text), load_text(text, prices="adjusted")
    assert adjusted.close[:, 0].tolist() == [5.0, 5.5] and adjusted.high[0, 0] == 6.0
    assert raw.fingerprint != adjusted.fingerprint
    assert any("adj_close" in w for w in raw.warnings)  # never silently dropped
    with pytest.raises(DataError, match="need an adj_close column"):
        load_text(HEAD + OK, prices="adjusted")


def test_csv_cells_that_look_like_formulas_are_escaped():
    frame = pd.DataFrame({"symbol": ["=A1", "+B", "-C", "@D", "E"], "pnl": [-1.0, 2.0, 3.0, 4.0, 5.0]})
    out = to_safe_csv(frame, index=False)
    assert "'=A1" in out and "'+B" in out and "'-C" in out and "'@D" in out and ",-1.0\n" in out  # numbers kept


def test_splits_and_outliers_in_unadjusted_real_data():
    path = REAL / "us5_quandl_wiki_2000_2013.csv.gz"
    if not path.exists():
        pytest.skip(f"shared real data not present ({path})")
    m = load_market(path)
    splits = m.issues[m.issues.kind == "split"]
    assert [(r.symbol, str(r.date.date()), r.value) for r in splits.itertuples()] == [
        ("AAPL", "2000-06-21", 2.0),
        ("AAPL", "2005-02-28", 2.0),
        ("MSFT", "2003-02-18", 2.0),
    ]
    outliers = m.issues[m.issues.kind == "outlier"]
    assert [(r.symbol, str(r.date.date())) for r in outliers.itertuples()] == [("AAPL", "2000-09-29")]  # a crash
    assert any(w.startswith("Likely splits (3)") for w in m.warnings)
    adjusted = load_market(path, prices="split_adjusted")
    assert detect_splits(adjusted).empty and adjusted.fingerprint != m.fingerprint
    j = adjusted.column("AAPL")
    i = adjusted.dates.get_loc(pd.Timestamp("2000-06-21"))
    assert adjusted.close[i - 1, j] == pytest.approx(101.25 / 4)  # AAPL split 2:1 twice after this bar
    by_adj = load_market(path, prices="adjusted")
    assert detect_splits(by_adj).empty


def test_pse_loads_without_its_bad_rows_counted_by_reason():
    path = REAL / "pse257_fastquant_2010_2021.csv.gz"
    if not path.exists():
        pytest.skip(f"shared real data not present ({path})")
    with pytest.raises(BadRowsError) as err:
        load_market(path)
    assert len(err.value.rows) == 72
    m = load_market(path, on_bad_rows="drop")
    assert m.dropped_rows.reason.value_counts().to_dict() == {
        "a zero or negative price": 37,
        "open or close outside [low, high]": 35,
    }
    assert len(m.symbols) == 257
    cosco = m.issues[m.issues.symbol == "COSCO"]
    # the +10,000% day (0.175 -> 17.60) is a 1:100 consolidation, flagged as a split that one click back-adjusts
    assert cosco.query("kind == 'split'").value.tolist() == [0.01]
    dito = m.issues[m.issues.symbol == "DITO"]  # 0.040, two months without bars, then 4.75: 1:100 as well
    assert dito.kind.tolist() == ["split"] and dito.value.tolist() == [0.01]
    flagged = sorted(set(m.issues[m.issues.kind == "outlier"].symbol))
    clean = m.without(flagged)
    assert "COSCO" not in clean.symbols and clean.issues.query("kind == 'outlier'").empty
    assert np.isfinite(clean.close).any()
