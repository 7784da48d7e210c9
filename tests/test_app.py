"""Each page run headless through Streamlit's AppTest, on the real engine."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import app_state

APP = "../app.py"


def fresh(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_data_page_loads_the_sample():
    at = fresh()
    assert not at.exception
    assert metrics(at)["Symbols"] == "6"
    assert "Sample" in at.subheader[0].value


def test_scanner_preset_finds_signals():
    at = fresh()
    at.switch_page("app_pages/scanner.py").run()
    at.selectbox(key="preset").set_value("Golden cross").run()
    assert not at.exception
    assert at.text_area(key="rule_text").value == "crosses_above(sma(50), sma(200))"
    assert int(metrics(at)["Signals"].replace(",", "")) > 0
    assert len(at.dataframe) == 1


def test_scanner_shows_a_clear_error_for_a_bad_rule():
    at = fresh()
    at.switch_page("app_pages/scanner.py").run()
    at.text_area(key="rule_text").set_value("__import__('os')").run()
    assert not at.exception
    assert "Unknown function '__import__'" in at.error[0].value


def test_backtest_runs_and_shows_metrics():
    at = fresh()
    at.switch_page("app_pages/backtest.py").run()
    assert "press **Run backtest**" in at.info[0].value
    at.get("form_submit_button")[0].click().run()
    assert not at.exception
    shown = metrics(at)
    assert int(shown["# Trades"]) > 0 and "Sharpe ratio" in shown
    assert at.query_params["sl"] in ("5.0", ["5.0"]) and at.query_params["rule"]


def test_malformed_upload_shows_an_error_and_keeps_the_data():
    at = fresh()
    at.file_uploader(key="upload").upload("bad.csv", b"symbol,date,open\nA,2024-01-01,1\n", "text/csv").run()
    assert not at.exception
    assert "Missing required column(s): high, low, close" in at.error[0].value
    assert "previous dataset is still loaded" in at.error[0].value
    assert metrics(at)["Symbols"] == "6"


def test_good_upload_replaces_the_dataset():
    csv = b"symbol,date,open,high,low,close,volume\nZZZ,2024-01-02,1,2,0.5,1.5,10\nZZZ,2024-01-03,1.5,2,1,1.8,12\n"
    at = fresh()
    at.file_uploader(key="upload").upload("mine.csv", csv, "text/csv").run()
    assert not at.error and metrics(at)["Symbols"] == "1"


def test_query_params_restore_the_scan_and_backtest():
    at = fresh({"rule": "gap_pct() > 4", "sl": "3.0", "tp": "0.0", "hold": "7", "side": "short", "maxpos": "3"})
    at.switch_page("app_pages/backtest.py").run()
    assert not at.exception
    result = at.session_state["result"]
    assert result.params.stop_loss == 3.0 and result.params.take_profit is None
    assert result.params.holding_period == 7 and result.params.signal_type == "short"
    assert result.trades.bars_held.max() <= 7
    assert any("gap_pct() > 4" in c.value for c in at.caption)


@pytest.mark.parametrize("bad", [{"sl": "abc"}, {"size": "martingale"}, {"lev": "maybe"}])
def test_bad_query_params_are_ignored_with_a_notice(bad):
    at = fresh(bad)
    assert not at.exception
    assert at.session_state["bt"] == app_state.BT_DEFAULTS


def test_sizing_and_limits_come_from_the_link_and_the_form():
    at = fresh({"rule": "rsi(14) < 40", "size": "volatility_target", "vt": "15.0", "lpos": "0", "lcorr": "0.5",
                "lev": "true", "maxlev": "1.5"})  # fmt: skip
    at.switch_page("app_pages/backtest.py").run()
    assert not at.exception
    p = at.session_state["result"].params
    assert (p.sizing.method, p.sizing.vol_target_pct) == ("volatility_target", 15.0)
    assert p.limits.max_position_pct is None and p.limits.max_correlation == 0.5
    assert p.allow_leverage and p.max_leverage == 1.5
    assert any("Target volatility" in n.label for n in at.number_input)
    at.selectbox[0].set_value("fixed_amount").run()
    assert any(n.label == "Amount per trade" for n in at.number_input)
    at.get("form_submit_button")[0].click().run()
    assert at.session_state["result"].params.sizing.method == "fixed_amount"
    assert at.query_params["size"] in ("fixed_amount", ["fixed_amount"])
