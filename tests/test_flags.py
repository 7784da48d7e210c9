"""Data warnings in the results: trades that held through flagged split or outlier bars are named, and the
equal-weight benchmark leaves those bars' moves out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import backtest
from engine.data import market_from_frame
from engine.data.quality import flagged_bars, trades_on_flagged
from engine.plots.format import flag_banner, metric_text
from engine.plots.report import tear_sheet
from engine.server.datasets import to_frame


def split_market():
    """Two symbols over 40 business days; SPL halves overnight on bar 20 (an unadjusted 2:1 split)."""
    dates = pd.bdate_range("2024-01-01", periods=40)
    rows = []
    for i, d in enumerate(dates):
        for sym, price in (("SPL", 100.0 + i if i < 20 else (100.0 + i) / 2), ("FLAT", 50.0)):
            rows.append(
                {"symbol": sym, "date": d, "open": price, "high": price, "low": price, "close": price, "volume": 1e5}
            )
    return market_from_frame(pd.DataFrame(rows))


def test_a_trade_through_a_flagged_split_is_named_and_the_benchmark_skips_the_split():
    m = split_market()
    assert (m.issues.kind == "split").sum() == 1
    flags = flagged_bars(m)
    assert flags.sum() == 1 and flags[20, m.column("SPL")]
    entries = np.zeros(m.shape, bool)
    entries[10, m.column("SPL")] = True  # holds bars 11..30: through the split
    entries[25, m.column("FLAT")] = True
    result = backtest(m, entries, holding_period=20, stop_loss=None)
    crossed = trades_on_flagged(m, result.positions)
    assert crossed.symbol.astype(str).tolist() == ["SPL"] and crossed.flagged.iloc[0] == "split 2024-01-29"
    banner = flag_banner(m, result.positions)
    assert banner is not None and banner.startswith("1 of the top 2 trades cross flagged split or outlier bars")
    assert "SPL 2024-01-16 to 2024-02-12 (-41" in banner and "(1 of 2 trades in all)" in banner
    bench = result.equity.buy_hold_equity.to_numpy()
    spl = m.close[:, m.column("SPL")]
    assert bench[20] == pytest.approx(100_000 / 2 * (spl[19] / spl[0] + 1.0))  # the split day's move left out
    assert bench[21] == pytest.approx(100_000 / 2 * (spl[19] / spl[0] * spl[21] / spl[20] + 1.0))
    assert flag_banner(m, result.positions.iloc[0:0]) is None
    # one benchmark: the metric is the return of the curve the charts and the tear sheet draw (split left out)
    assert result.metrics["buy_hold_return_pct"] == pytest.approx((bench[-1] / bench[0] - 1) * 100)
    sheet = tear_sheet(m, "close > 0", result)
    figure = metric_text("buy_hold_return_pct", result.metrics["buy_hold_return_pct"])
    assert sheet.count(figure) >= 2 and "signals_skipped" not in sheet  # side by side and in the metrics, in words


def test_one_flagged_bar_is_fixed_at_a_time_into_a_new_dataset():
    from engine.data import DataError, LoadOptions
    from engine.data.quality import fix_flag

    m = split_market()
    day = m.issues.date.iloc[0]
    adjusted = fix_flag(m, "adjust", "SPL", day)
    j, bar = m.column("SPL"), m.dates.get_loc(day)
    assert adjusted.close[bar - 1, j] == pytest.approx(m.close[bar - 1, j] / 2)  # before the split: halved
    assert adjusted.close[bar, j] == m.close[bar, j] and adjusted.volume[bar - 1, j] == 2 * m.volume[bar - 1, j]
    assert adjusted.issues.empty and adjusted.fingerprint != m.fingerprint
    assert any("Back-adjusted the SPL split" in w for w in adjusted.warnings)
    assert not any(w.startswith("Likely splits") for w in adjusted.warnings)
    whole = market_from_frame(to_frame(m), options=LoadOptions(prices="split_adjusted"))  # the loader's own way
    np.testing.assert_allclose(adjusted.close, whole.close)

    dropped = fix_flag(m, "drop", "SPL", day)
    assert np.isnan(dropped.close[bar, j]) and dropped.close[bar + 1, j] == m.close[bar + 1, j]
    assert dropped.issues.empty and dropped.close[bar, m.column("FLAT")] == 50.0
    with pytest.raises(DataError, match="No flagged bar of FLAT"):
        fix_flag(m, "drop", "FLAT", day)
