"""Loader: normalisation, formats, and a clear message for every kind of bad input."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from engine import DataError, load_market
from engine.data import BadRowsError, market_from_frame
from engine.synthetic import synthetic_frame, synthetic_market

GOOD = (
    "Ticker,DATE,Open,High,Low,Close,Volume\nbbb,2024-01-02,10,11,9,10.5,100\naaa,2024-01-02,5,6,4,5.5,50\n"
    "aaa,2024-01-03,5.5,6,5,5.8,60\n"
)


def load_text(text: str, name: str = "prices.csv", **kw):
    f = io.BytesIO(text.encode())
    f.name = name
    return load_market(f, **kw)


def test_columns_are_normalised_and_pivoted_on_the_union_calendar():
    m = load_text(GOOD)
    assert m.symbols == ("AAA", "BBB")
    assert list(m.dates.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]
    assert m.close[:, 0].tolist() == [5.5, 5.8]
    assert m.close[0, 1] == 10.5 and np.isnan(m.close[1, 1])
    assert m.summary()["bars"] == 3


def test_single_symbol_file_takes_the_file_stem(tmp_path):
    p = tmp_path / "msft.csv"
    p.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,1,2,0.5,1.5,1.4,10\n")
    assert load_market(p).symbols == ("MSFT",)


def test_parquet_and_dataframe_and_gzip_give_the_same_market(tmp_path):
    frame = synthetic_frame(5, 50, seed=1)
    frame.to_parquet(tmp_path / "u.parquet")
    frame.to_csv(tmp_path / "u.csv.gz", index=False)
    a, b, c = load_market(tmp_path / "u.parquet"), load_market(tmp_path / "u.csv.gz"), load_market(frame)
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert a.sectors is not None and len(a.sectors) == 5


def test_fingerprint_changes_with_one_byte_of_content():
    a = load_text(GOOD)
    b = load_text(GOOD.replace("5.8", "5.9"))
    assert a.fingerprint != b.fingerprint
    assert load_text(GOOD, name="other.csv").fingerprint == a.fingerprint


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("symbol,date,open,high,low\nA,2024-01-02,1,2,0.5\n", r"Missing required column\(s\): close"),
        ("symbol,date,open,high,low,close\nA,not-a-date,1,2,0.5,1\n", "date that could not be parsed .*, e.g. line 2"),
        (
            "symbol,date,open,high,low,close\nA,2024-01-02,1,2,abc,1\n",
            r"non-numeric low, e.g. line 2 \(A 2024-01-02 'abc'\)",
        ),
        (
            "symbol,date,open,high,low,close\nA,2024-01-02,1,2,0.5,1\nA,2024-01-02,1,2,0.5,1\n",
            r"duplicate \(symbol, date\), e.g. line 3 \(A 2024-01-02\)",
        ),
        ("symbol,date,open,high,low,close\nA,2024-01-02,1,1,2,1\n", "high < low"),
        ("symbol,date,open,high,low,close\nA,2024-01-02,1,2,0.5,3\n", r"open or close outside \[low, high\]"),
        ("symbol,date,open,high,low,close\nA,2024-01-02,0,2,0,1\n", "zero or negative price"),
        ("symbol,date,open,high,low,close\nA,2024-01-02,-1,2,0.5,1\n", "zero or negative price"),
        ("symbol,date,open,high,low,close\nA,2024-01-02,1,,0.5,1\n", "some but not all"),
        ("symbol,date,open,high,low,close,volume\nA,2024-01-02,1,2,0.5,1,-5\n", "negative volume"),
        ("symbol,date,open,high,low,close\n,2024-01-02,1,2,0.5,1\n", "no symbol"),
        ("\x00\x01\x02garbage", "is binary, not a CSV"),
        (
            "symbol,date,open,high,low,close," + "x" * 140_000 + "\nA,2024-01-02,1,2,0.5,1,2\n",
            "140,032 characters long: the header",
        ),
    ],
)
def test_bad_input_gets_a_specific_message(text, message):
    with pytest.raises(DataError, match=message):
        load_text(text)


def test_many_bad_rows_are_counted_with_examples():
    rows = "".join(f"A,2024-01-{d:02d},1,1,2,1\n" for d in range(1, 21))
    with pytest.raises(DataError, match=r"^20 rows have high < low, e.g. line 2 \(A 2024-01-01\), line 3"):
        load_text("symbol,date,open,high,low,close\n" + rows)


def test_file_over_the_size_limit_is_refused(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text(GOOD * 50)
    with pytest.raises(DataError, match="over the .* limit"):
        load_market(p, max_bytes=1000)
    with pytest.raises(DataError, match="over the .* limit"):
        load_text(GOOD * 50, max_bytes=1000)


def test_missing_file_and_empty_frame():
    with pytest.raises(DataError, match="File not found"):
        load_market("/nonexistent/prices.csv")
    with pytest.raises(DataError, match="no rows"):
        market_from_frame(pd.DataFrame())


def test_nan_bars_and_gaps_are_warnings_not_errors():
    text = (
        "symbol,date,open,high,low,close\nA,2024-01-02,1,2,0.5,1\nA,2024-01-03,,,,\nB,2024-01-02,1,2,0.5,1\n"
        "B,2024-01-03,1,2,0.5,1\nA,2024-01-04,1,2,0.5,1\nB,2024-01-04,1,2,0.5,1\n"
    )
    m = load_text(text)
    joined = " ".join(m.warnings)
    assert "1 rows have no prices" in joined and "1 symbols have 1 missing bars" in joined
    assert "No volume column" in joined


def test_conflicting_sectors_are_an_error():
    frame = synthetic_frame(2, 5, seed=3)
    frame.loc[0, "sector"] = "Nonsense"
    with pytest.raises(DataError, match="more than one sector"):
        market_from_frame(frame)


def test_real_messy_data_names_its_problems():
    """The PSE set (257 real stocks): zero rows are dropped as missing, closes outside the range are named."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/real/long/pse257_fastquant_2010_2021.csv.gz"
    if not path.exists():
        pytest.skip("shared real data not present")
    frame = pd.read_csv(path)
    with pytest.raises(DataError, match="zero or negative price") as err:
        market_from_frame(frame)
    assert "open or close outside [low, high]" in str(err.value)
    clean = frame[(frame[["open", "high", "low", "close"]] > 0).all(axis=1)]
    clean = clean[
        (clean.close <= clean.high)
        & (clean.close >= clean.low)
        & (clean.open <= clean.high)
        & (clean.open >= clean.low)
    ]
    m = market_from_frame(clean)
    assert len(m.symbols) == 257 and any("missing bars" in w for w in m.warnings)


def test_synthetic_market_is_deterministic_and_realistic():
    a, b = synthetic_market(20, 300, seed=5), synthetic_market(20, 300, seed=5)
    assert a.fingerprint == b.fingerprint
    assert synthetic_market(20, 300, seed=6).fingerprint != a.fingerprint
    assert (a.high >= a.low)[~np.isnan(a.close)].all()
    assert len(set(a.sectors)) > 1


TWO_BARS = b"symbol,date,open,high,low,close,volume\nA,2020-01-02,1,2,0.5,1.5,10\nA,2020-01-03,1.5,2,1,1.8,12\n"


def test_old_mac_line_endings_are_read():
    market = load_market(io.BytesIO(TWO_BARS.replace(b"\n", b"\r")), name="oldmac.csv")
    assert market.symbols == ("A",) and len(market.dates) == 2 and market.close[-1, 0] == 1.8


def test_a_zip_with_one_csv_is_read_and_any_other_zip_says_to_unzip_it():
    import zipfile

    def archive(**members: bytes) -> io.BytesIO:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name.replace("_", "."), data)
        buf.seek(0)
        buf.name = "prices.zip"
        return buf

    assert load_market(archive(prices_csv=TWO_BARS)).close[-1, 0] == 1.8
    with pytest.raises(DataError, match=r"zip archive of 2 files .*unzip it"):
        load_market(archive(a_csv=TWO_BARS, b_csv=TWO_BARS))
    with pytest.raises(DataError, match="unzip it"):
        load_market(archive(notes_pdf=b"%PDF"))
    bomb = archive(big_csv=TWO_BARS + b"A,2020-01-06,1,2,0.5,1.5,10\n" * 2_000_000)  # 56 MB of rows in ~100 KB
    with pytest.raises(DataError, match="when unzipped"):
        load_market(bomb)


def test_a_file_with_both_day_month_orders_is_refused_with_the_rows_named_never_read_mixed():
    csv = (
        TWO_BARS.split(b"\n")[0]
        + b"\n"
        + b"".join(b"A,%s,1,2,0.5,1.5,10\n" % d for d in (b"03/04/2020", b"04/03/2020", b"13/03/2020", b"03/25/2020"))
    )
    with pytest.raises(BadRowsError, match=r"other day/month order .* line 5 \(A 03/25/2020\)"):
        load_market(io.BytesIO(csv), name="mixed.csv")
    dayfirst = load_market(io.BytesIO(csv), name="mixed.csv", date_format="dayfirst", on_bad_rows="drop")
    assert [str(d.date()) for d in dayfirst.dates] == ["2020-03-04", "2020-03-13", "2020-04-03"]  # one order
    assert dayfirst.dropped_rows.line.tolist() == [5]


def test_columns_the_loader_cannot_use_are_named_not_dropped_silently():
    frame = synthetic_frame(2, 30, seed=1).assign(pe_ratio=12.5, note="x", filed=pd.Timestamp("2020-01-01"))
    m = market_from_frame(frame)
    assert m.column_kinds() == {"pe_ratio": "number", "note": "text", "sector": "text"}  # usable in rules
    (warning,) = [w for w in m.warnings if w.startswith("Columns not loaded")]
    assert "filed (timestamp" in warning
    assert not any("not loaded" in w for w in market_from_frame(synthetic_frame(2, 30, seed=1)).warnings)


def _one_symbol(prices: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"symbol": "X", "date": d, "open": p, "high": p, "low": p, "close": p, "volume": 1e5} for d, p in prices]
    )


@pytest.mark.parametrize(
    ("after_gap", "drift", "ratio"),
    [(40, 1.1875, 0.01), (40, 0.9, 0.05), (0, 1.0, 0.05), (25, 1.2, 0.1)],
)
def test_a_consolidation_of_any_whole_ratio_is_a_split_even_after_a_gap_with_drift(after_gap, drift, ratio):
    """PSE's DITO: 0.040, no bars for two months, then 4.75 (a 1:100 consolidation and an 18.75% drift)."""
    from engine.data import detect_splits

    days = pd.bdate_range("2010-01-04", periods=60 + after_gap)
    before = [(d, 0.04 + 0.0001 * (i % 3)) for i, d in enumerate(days[:30])]
    after = [(d, 0.04 / ratio * drift * (1 + 0.001 * (i % 3))) for i, d in enumerate(days[30 + after_gap :])]
    m = market_from_frame(_one_symbol(before + after))
    found = detect_splits(m)
    assert found.ratio.tolist() == [pytest.approx(ratio)] and found.date.tolist() == [days[30 + after_gap]]
    assert (m.issues.kind == "split").sum() == 1 and not (m.issues.kind == "outlier").any()


def test_a_halted_stock_that_returns_at_a_new_price_is_not_a_split():
    from engine.data import detect_splits

    days = pd.bdate_range("2010-01-04", periods=100)
    prices = [(d, 10.0) for d in days[:30]] + [(d, 34.0) for d in days[70:]]  # 3.4x after a halt: no round ratio
    assert detect_splits(market_from_frame(_one_symbol(prices))).empty
