"""Each page run headless through Streamlit's AppTest, on the real engine."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import widgets
from engine import params as table

APP = "../app/main.py"


def fresh(query: dict | None = None, page: str | None = None, user: str | None = None) -> AppTest:
    """A new session; with `page`, the session opens on that page (as a link to it does); with `user`, signed in
    as that e-mail address (st.login), a real identity."""
    at = AppTest.from_file(APP, default_timeout=120)
    if user:
        at.user = {"is_logged_in": True, "email": user}
    for key, value in (query or {}).items():
        at.query_params[key] = value
    if page:
        at.switch_page(f"../pages/{page}.py")
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
    at.switch_page("../pages/scanner.py").run()
    at.selectbox(key="w.scanner.preset").set_value("Golden cross").run()
    assert not at.exception
    assert at.text_area(key="rule_text").value == "crosses_above(sma(50), sma(200))"
    assert int(metrics(at)["Signals"].replace(",", "")) > 0
    assert [t.label.split(" (")[0] for t in at.tabs][:4] == ["Matches", "Entered", "Left", "Every hit"]


def test_the_scanner_opens_on_the_latest_bars_screen_and_a_date_picks_another(sample):
    from engine import scan

    rule = "rsi(14) < 45 rank by roc(20) desc"
    at = fresh()
    at.switch_page("../pages/scanner.py").run()
    at.text_area(key="rule_text").set_value(rule).run()
    latest = scan(sample, rule).on()
    assert at.tabs[0].label == f"Matches ({len(latest.matches):,})"
    assert f"On **{latest.date:%Y-%m-%d}**" in " ".join(c.value for c in at.caption)
    at.date_input(key="w.scanner.on.sample").set_value(pd.Timestamp("2023-08-21").date()).run()
    picked = scan(sample, rule).on("2023-08-21")
    assert not at.exception and at.tabs[0].label == f"Matches ({len(picked.matches):,})"
    assert (
        at.tabs[1].label == f"Entered ({len(picked.entered):,})" and at.tabs[2].label == f"Left ({len(picked.left):,})"
    )
    shown = at.tabs[0].dataframe[0].value
    assert shown.symbol.tolist() == picked.matches.symbol.tolist() and shown["rank"].tolist() == [1, 2, 3]


def test_scanner_hits_show_prices_and_indicators_with_two_decimals():
    import pandas as pd

    from app import formatting as app_format

    hits = pd.DataFrame(
        {
            "date": pd.to_datetime(["2023-08-18"]),
            "symbol": ["AAPL"],
            "close": [174.0],
            "rsi(14)": [28.7886],
            "volume": [1_000],
        }
    )
    config = app_format.two_decimal_columns(hits)
    assert config["date"]["type_config"]["format"] == "YYYY-MM-DD"
    assert config["close"]["type_config"]["format"] == config["rsi(14)"]["type_config"]["format"] == "%,.2f"
    assert "volume" not in config and "symbol" not in config  # integers and text keep their own look


def test_the_trade_list_shows_exact_share_counts():
    from app import formatting as app_format

    # "%,.4g" showed 123,456 shares as 123,500: a misstated position
    assert app_format.trade_columns(False)["shares"]["type_config"]["format"] == "%,d"
    assert app_format.trade_columns(True)["shares"]["type_config"]["format"] == "%,.4f"


def test_a_link_carries_the_scanners_screen_date_and_a_bad_one_is_named(sample):
    from engine import scan

    rule = "rsi(14) < 45 rank by roc(20) desc"
    at = fresh({"rule": rule, "on": "2023-08-21"}, page="scanner")
    picked = scan(sample, rule).on("2023-08-21")
    assert not at.exception and at.tabs[0].label == f"Matches ({len(picked.matches):,})"
    assert at.query_params["on"] in ("2023-08-21", ["2023-08-21"])  # the link keeps the sender's bar
    bad = fresh({"rule": rule, "on": "someday"}, page="scanner")
    assert not bad.exception and "on" not in bad.query_params
    assert any("`on=someday` is not a date" in w.value for w in bad.warning)


def test_scanner_shows_a_clear_error_for_a_bad_rule():
    at = fresh()
    at.switch_page("../pages/scanner.py").run()
    at.text_area(key="rule_text").set_value("__import__('os')").run()
    assert not at.exception
    assert "Unknown function '__import__'" in at.error[0].value


def test_backtest_runs_at_once_and_follows_every_edit():
    at = fresh()
    at.switch_page("../pages/backtest.py").run()  # no button: the sample's results are there at once
    assert not at.exception
    shown = metrics(at)
    assert int(shown["# Trades"]) > 0 and "Sharpe ratio" in shown
    assert at.query_params["data"] in ("sample", ["sample"]) and at.query_params["rule"]
    assert "sl" not in at.query_params  # a default value stays out of the link
    trades = shown["# Trades"]
    at.number_input(key="p.hold").set_value(3).run()  # an edit, no button: the results follow it
    assert not at.exception and metrics(at)["# Trades"] != trades


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
    at = fresh(
        {"rule": "gap_pct() > 4", "sl": "3.0", "tp": "0.0", "hold": "7", "side": "short", "maxpos": "3"},
        page="backtest",
    )
    assert not at.exception
    result = at.session_state["session"].result
    assert result.params.stop_loss == 3.0 and result.params.take_profit is None
    assert result.params.holding_period == 7 and result.params.signal_type == "short"
    assert result.trades.bars_held.max() <= 7
    assert any("gap_pct() > 4" in c.value for c in at.caption)


@pytest.mark.parametrize("bad", [{"sl": "abc"}, {"size": "martingale"}, {"lev": "maybe"}])
def test_bad_query_params_are_ignored_with_a_notice(bad):
    at = fresh(bad)
    assert not at.exception
    for p in table.backtest_params():
        held = at.session_state[widgets.key(p.path)]
        assert held == p.default or (held is None and p.off and not p.default)  # an empty box reads "Off"
    assert any("was ignored" in w.value for w in at.warning)


def test_sizing_and_limits_come_from_the_link_and_the_form():
    at = fresh(
        {
            "rule": "rsi(14) < 40",
            "size": "volatility_target",
            "vt": "15.0",
            "lpos": "0",
            "lcorr": "0.5",
            "lev": "true",
            "maxlev": "1.5",
        },
        page="backtest",
    )
    assert not at.exception
    p = at.session_state["session"].result.params
    assert (p.sizing.method, p.sizing.vol_target_pct) == ("volatility_target", 15.0)
    assert p.limits.max_position_pct is None and p.limits.max_correlation == 0.5
    assert p.allow_leverage and p.max_leverage == 1.5
    assert any("Target volatility" in n.label for n in at.number_input)
    at.selectbox(key="p.size").set_value("fixed_amount").run()
    assert any(n.label == "Amount per trade" for n in at.number_input)  # and the edit ran at once:
    assert at.session_state["session"].result.params.sizing.method == "fixed_amount"
    assert at.query_params["size"] in ("fixed_amount", ["fixed_amount"])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_repeat_backtest_is_a_cache_hit_and_the_run_is_listed(cache_dir):
    at = fresh()
    at.switch_page("../pages/backtest.py").run()  # runs at once
    assert at.session_state["session"].cache_hits["backtest"] is False
    assert not any(b.key == "w.backtest.run" for b in at.button)  # results follow edits: no Run button
    at.number_input(key="p.sl").set_value(3.0).run()
    assert at.session_state["session"].cache_hits["backtest"] is False
    at.number_input(key="p.sl").set_value(5.0).run()  # the first settings (the default) again
    assert at.session_state["session"].cache_hits["backtest"] is True
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert runs["kind"].tolist() == ["backtest"] * 3 and runs["cache"].tolist() == ["hit", "miss", "miss"]
    assert "Sharpe ratio" in metrics(at)
    assert (cache_dir / "runs.log").read_text().count('"event": "finish", "kind": "backtest"') == 3


def test_runs_are_labelled_by_their_settings_and_compared_setting_by_setting(cache_dir):
    at = fresh()
    at.switch_page("../pages/backtest.py").run()
    at.number_input(key="p.sl").set_value(3.0)
    at.run()
    at.number_input(key="p.sl").set_value(7.0)
    at.number_input(key="p.tp").set_value(12.0)
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert runs["settings"].tolist() == ["sl 7, tp 12", "sl 3", "defaults"]  # the page ran the defaults at once
    settings = at.dataframe[1].value  # the comparison: settings first
    assert settings.loc["Stop-loss (%)"].tolist() == ["7", "3"]
    assert settings.loc["Take-profit (%)"].tolist() == ["12", "off"]


def test_sessions_do_not_see_each_others_data_or_runs(cache_dir):
    csv = b"symbol,date,open,high,low,close,volume\nZZZ,2024-01-02,1,2,0.5,1.5,10\nZZZ,2024-01-03,1.5,2,1,1.8,12\n"
    alice, bob = fresh(), fresh()
    alice.file_uploader(key="upload").upload("mine.csv", csv, "text/csv").run()
    alice.switch_page("../pages/backtest.py").run()
    bob.run()
    assert bob.session_state["session"].market.symbols != alice.session_state["session"].market.symbols
    assert metrics(bob)["Symbols"] == "6"
    bob.switch_page("../pages/backtest.py").run()  # runs at once
    alice.switch_page("../pages/runs.py").run()
    assert not alice.exception and "No runs yet" in alice.info[0].value
    alice.toggle(key="w.runs.everyone").set_value(True).run()
    assert len(alice.dataframe[0].value) == 1  # the team view lists Bob's run, never his data


def test_a_rule_on_volume_over_a_file_without_volume_says_why_it_has_no_signals():
    rows = "".join(f"AAA,2024-01-{d:02d},10,13,8,{10 + d % 3}\n" for d in range(1, 29))
    at = fresh()
    at.file_uploader(key="upload").upload("novol.csv", b"symbol,date,open,high,low,close\n" + rows.encode(), "text/csv")
    at.run()
    at.switch_page("../pages/scanner.py").run()
    at.text_area(key="rule_text").set_value("relative_volume(20) > 2 and close > open").run()
    assert not at.exception
    assert any("it needs a volume column" in i.value for i in at.info)


def test_an_oversized_upload_is_refused_clearly(monkeypatch):
    monkeypatch.setenv("SCANNER_MAX_UPLOAD_MB", "0.01")  # 10 KB
    at = fresh()
    at.file_uploader(key="upload").upload("big.csv", b"symbol,date,open,high,low,close,volume\n" * 500, "text/csv")
    at.run()
    assert not at.exception
    assert "The file is 19.0 KB, over the 10.2 KB limit" in at.error[0].value
    assert "SCANNER_MAX_UPLOAD_MB" in at.error[0].value
    assert metrics(at)["Symbols"] == "6"


def test_optimize_runs_a_grid_and_hands_the_best_to_the_backtest():
    at = fresh({"rule": "rsi(14) < 35"})
    at.switch_page("../pages/optimize.py").run()
    assert not at.exception
    assert any("**25 combinations**" in m.value for m in at.markdown)  # the default grid: stop x target, 5 x 5
    at.multiselect(key="grid.keys").set_value(["stop_loss", "rule.1"]).run()
    at.number_input(key="grid.stop_loss.hi").set_value(4.0).run()  # 2, 4
    at.number_input(key="grid.rule.1.lo").set_value(30.0).run()
    at.number_input(key="grid.rule.1.hi").set_value(40.0).run()
    at.number_input(key="grid.rule.1.st").set_value(5.0).run()  # 30, 35, 40
    assert any("**6 combinations**" in m.value for m in at.markdown)
    assert at.query_params["grid"] in ("stop_loss:2:4:2,rule.1:30:40:5", ["stop_loss:2:4:2,rule.1:30:40:5"])
    at.number_input(key="p.mint").set_value(1).run()
    at.button[0].click().run()
    assert not at.exception
    run = at.session_state["session"].opt
    result, merged = run.grid, run.ranked
    assert run.mode == "split" and len(merged) == 6 and "sharpe_oos" in merged
    assert any("Best in-sample" in s.value for s in at.success)
    best = result.best()
    at.button[1].click().run()
    assert at.session_state["p.sl"] == best["stop_loss"]
    assert at.session_state["session"].rule == f"rsi(14) < {int(best['rule.1'])}"


def test_monte_carlo_resamples_the_last_backtest(cache_dir):
    at = fresh()
    at.switch_page("../pages/montecarlo.py").run()
    assert "Run a backtest first" in at.info[0].value
    at.switch_page("../pages/backtest.py").run()  # runs at once
    at.switch_page("../pages/montecarlo.py").run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Probability of a loss"].endswith("%") and "Median final return" in shown
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    assert at.dataframe[0].value["kind"].tolist() == ["montecarlo", "backtest"]
    assert at.dataframe[1].value.index.tolist() == ["p5", "p25", "p50", "p75", "p95"]  # the reopened summary


def test_load_without_the_bad_rows_then_download_the_report_and_exclude_outliers():
    csv = (
        b"symbol,date,open,high,low,close,volume\n"
        + b"".join(b"AAA,2024-01-%02d,10,11,9,10.5,100\n" % d for d in range(2, 12))
        + b"BBB,2024-01-02,0,0,0,0,0\n"
        + b"".join(b"BBB,2024-01-%02d,10,11,9,10,100\n" % d for d in range(3, 8))
        + b"BBB,2024-01-08,25,26,24,25,100\nBBB,2024-01-09,25,26,24,25,100\n"
    )
    at = fresh()
    at.file_uploader(key="upload").upload("messy.csv", csv, "text/csv").run()
    assert not at.exception and "1 row has a zero or negative price, e.g. line 12 (BBB 2024-01-02)" in at.error[0].value
    assert metrics(at)["Symbols"] == "6"  # the sample stays until the user decides
    at.button(key="load_without").click().run()
    assert not at.exception and not at.error
    market = at.session_state["session"].market
    assert market.symbols == ("AAA", "BBB") and market.dropped_rows.line.tolist() == [12]
    assert any("Left out 1 bad rows" in w.value for w in at.warning)
    assert any("+150%" in w.value for w in at.warning)  # BBB jumps from 10 to 25: flagged
    at.button(key="exclude_outliers").click().run()
    assert at.session_state["session"].market.symbols == ("AAA",)


def test_a_private_run_shows_nothing_to_a_teammate_even_one_holding_the_same_bytes_until_shared(cache_dir):
    csv = b"symbol,date,open,high,low,close,volume\n" + b"".join(
        b"ZZZ,2024-%02d-%02d,10,11,9,%d,100\n" % (1 + d // 28, 1 + d % 28, 9 + d % 3) for d in range(200)
    )
    alice, bob = fresh(user="alice@x.org"), fresh(user="bob@x.org")
    alice.file_uploader(key="upload").upload("alice-secret-book.csv", csv, "text/csv").run()
    assert not any("nothing is private" in c.value for c in alice.caption)  # signed in: private by default
    data_id = alice.session_state["session"].data_id
    alice.switch_page("../pages/scanner.py").run()
    alice.text_area(key="rule_text").set_value("close > 9.5 and rsi(3) < 77").run()
    alice.switch_page("../pages/backtest.py").run()  # runs at once
    assert not alice.exception and alice.session_state["session"].result is not None
    bob.file_uploader(key="upload").upload("bobs-copy.csv", csv, "text/csv").run()  # the same bytes, his listing
    assert bob.session_state["session"].data_id == data_id
    bob.switch_page("../pages/runs.py").run()
    assert "No runs yet" in bob.info[0].value  # Bob's own runs: none
    bob.toggle(key="w.runs.everyone").set_value(True).run()
    assert not bob.exception and "No runs yet" in bob.info[0].value and not bob.dataframe
    assert [c.value for c in bob.caption if "private" in c.value] == [
        "2 private runs of teammates (on data they have not shared) not shown."  # her event study and backtest
    ]
    for secret in ("alice-secret-book", "rsi(3) < 77", "9.5"):  # no name, rule, parameter or note
        assert secret not in str(bob)
    alice.switch_page("../pages/runs.py").run()
    assert alice.dataframe[0].value["data"].tolist() == ["alice-secret-book.csv"] * 2
    assert not alice.button(key="runs_delete").disabled
    alice.switch_page("../pages/scanner.py").run()
    alice.text_area(key="rule_text").set_value("close > 9").run()
    alice.switch_page("../pages/runs.py").run()
    listed = alice.dataframe[0].value
    backtest_run = listed[(listed["kind"] == "backtest") & (listed["rule"] == "close > 9.5 and rsi(3) < 77")]
    alice.selectbox(key="runs_pick").set_value(backtest_run["id"].iloc[0]).run()
    alice.button(key="runs_restore").click().run()  # her rule and settings come back, and it runs
    assert not alice.exception and alice.session_state["session"].rule == "close > 9.5 and rsi(3) < 77"
    assert alice.session_state["session"].result.metrics["n_trades"] == 130
    alice.switch_page("../pages/data.py").run()
    alice.button(key="stored_share").click().run()  # alice lists it for the team: her runs on it are the team's
    bob.switch_page("../pages/runs.py").run()
    table = bob.dataframe[0].value
    assert set(table["by"]) == {"alice@x.org"} and "backtest" in set(table["kind"])  # her runs, now the team's
    assert "close > 9.5 and rsi(3) < 77" in set(table["rule"])
    assert bob.button(key="runs_delete").disabled


def test_a_link_to_a_private_dataset_runs_nothing_for_another_user_until_shared(cache_dir):
    csv = b"symbol,date,open,high,low,close,volume\n" + b"".join(
        b"ZZZ,2024-%02d-%02d,10,11,9,%d,100\n" % (1 + d // 28, 1 + d % 28, 9 + d % 3) for d in range(200)
    )
    alice = fresh(user="alice@x.org")
    alice.file_uploader(key="upload").upload("alice-secret-book.csv", csv, "text/csv").run()
    data_id = alice.session_state["session"].data_id
    bob = fresh({"data": data_id, "rule": "close > 9"}, page="backtest", user="bob@x.org")
    held = bob.session_state["session"]
    assert not bob.exception and held.market is None and held.result is None
    assert any("private to its owner; ask them to share it" in e.value for e in bob.error)
    assert "alice-secret-book" not in str(bob) and "ZZZ" not in str(bob)
    unknown = fresh({"data": "0123456789abcdef", "rule": "close > 9"}, page="backtest", user="bob@x.org")
    said = [e.value.replace(data_id, "ID") for e in bob.error]  # a private id answers as an unknown one
    assert said == [e.value.replace("0123456789abcdef", "ID") for e in unknown.error]
    alice.button(key="stored_share").click().run()  # alice lists it for the team
    bob = fresh({"data": data_id, "rule": "close > 9"}, page="backtest", user="bob@x.org")
    assert bob.session_state["session"].market.symbols == ("ZZZ",)


def test_without_sign_in_nothing_is_private_and_with_a_proxy_a_visit_without_its_header_is_read_only(
    cache_dir, monkeypatch
):
    at = fresh()
    assert any("No sign-in is configured on this server, so nothing is private" in c.value for c in at.caption)
    monkeypatch.setenv("SCANNER_USER_HEADER", "X-Forwarded-Email")  # a proxy set-up, visited without the header
    at = fresh()
    said = [i.value for i in at.info if "read-only" in i.value]
    assert len(said) == 1 and "'X-Forwarded-Email'" in said[0] and "No sign-in is configured" not in str(at)
    assert at.file_uploader(key="upload").disabled  # (and app.state refuses an upload from such a visit)
    signed_in = fresh(user="alice@x.org")
    assert not signed_in.file_uploader(key="upload").disabled and not signed_in.info


def test_an_upload_on_a_broken_store_still_loads_with_one_warning(tmp_path, monkeypatch):
    csv = b"symbol,date,open,high,low,close,volume\nZZZ,2024-01-02,1,2,0.5,1.5,10\nZZZ,2024-01-03,1.5,2,1,1.8,12\n"
    (tmp_path / "ro").mkdir()
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "ro"))
    at = fresh()
    (tmp_path / "ro" / "datasets").chmod(0o500)  # read-only (root ignores modes: deleted below as well)
    shutil.rmtree(tmp_path / "ro" / "datasets")
    (tmp_path / "ro" / "datasets").write_text("a file where the store should be")
    at.file_uploader(key="upload").upload("mine.csv", csv, "text/csv").run()
    assert not at.exception and at.session_state["session"].market.symbols == ("ZZZ",)
    assert [w.value for w in at.warning if "not stored on the server" in w.value] == [
        "This dataset is loaded but not stored on the server (its storage is full or unavailable): links to it "
        "work only in this session."
    ]
    assert str(tmp_path) not in str(at)  # no server path in what users see


def test_the_team_view_can_be_switched_off(cache_dir, monkeypatch):
    monkeypatch.setenv("SCANNER_TEAM_VIEW", "0")
    at = fresh(page="runs")
    assert not at.exception and not at.toggle


def test_an_unusable_or_deleted_cache_directory_keeps_the_app_working(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache directory should be, like a read-only mount")
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(blocker / "cache"))
    at = fresh(page="backtest")  # runs at once
    assert not at.exception and at.session_state["session"].result is not None
    assert any("Caching is off" in w.value for w in at.warning)
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and "Caching and run history are off" in at.warning[0].value

    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path / "live"))
    at = fresh(page="backtest")
    shutil.rmtree(tmp_path / "live")  # deleted while the server runs
    at.number_input(key="p.sl").set_value(3.0)
    at.run()
    assert not at.exception and at.session_state["session"].result.params.stop_loss == 3.0
    at.switch_page("../pages/runs.py").run()
    assert not at.exception


def test_result_tables_are_headed_by_labels_not_field_names():
    import pandas as pd

    from app import formatting as app_format

    assert app_format.column_title("total_return_pct") == "Total return [%]"
    assert app_format.column_title("sharpe_oos") == "Sharpe ratio (out of sample)"
    assert app_format.column_title("sharpe_in_sample") == "Sharpe ratio (in sample)"
    assert app_format.column_title("stop_loss") == "Stop-loss (%)"
    assert app_format.column_title("max_positions") == "Max positions"  # a count needs no unit
    grid = pd.DataFrame({"stop_loss": [2.0], "rule.1": [30.0], "cagr_pct": [2.5], "n_trades": [10]})
    config = app_format.grid_columns(grid, app_format.rule_number_titles("rsi(14) < 30"))
    assert [config[c]["label"] for c in grid] == [
        "Stop-loss (%)",
        "threshold of rsi(14) (30 in rsi(14) < 30)",
        "CAGR [%]",
        "# Trades",
    ]


def test_a_run_waits_for_the_servers_memory_then_runs_or_says_the_server_is_busy(cache_dir, monkeypatch):
    import threading
    import time

    from engine.server.stores import server_budget

    monkeypatch.setenv("SCANNER_SERVER_MB", "32")
    monkeypatch.setenv("SCANNER_QUEUE_WAIT_S", "20")
    at = fresh(page="backtest")
    hold = server_budget().reserve(32 * 2**20, "grid")
    hold.__enter__()
    threading.Thread(target=lambda: (time.sleep(1.5), hold.__exit__(None, None, None))).start()
    started = time.monotonic()
    at.number_input(key="p.sl").set_value(4.5).run()  # an edit reruns at once
    assert time.monotonic() - started >= 1.0  # it waited its turn ...
    assert not at.exception and at.session_state["session"].result is not None  # ... then ran
    monkeypatch.setenv("SCANNER_QUEUE_WAIT_S", "0.3")
    at = fresh(page="backtest")
    with server_budget().reserve(32 * 2**20, "grid"):
        at.number_input(key="p.sl").set_value(3.5)
        at.run()
    assert not at.exception and any("The server is busy" in e.value for e in at.error)


def test_a_runs_note_is_written_by_its_owner_and_read_by_the_team(cache_dir):
    alice, bob = fresh(user="alice@x.org", page="backtest"), fresh(user="bob@x.org")  # Alice's page runs at once
    alice.switch_page("../pages/runs.py").run()
    run_id = alice.selectbox(key="runs_pick").value
    alice.text_input(key=f"w.runs.note.{run_id}").input("baseline on the sample").run()
    assert not alice.exception and alice.dataframe[0].value["note"].tolist() == ["baseline on the sample"]
    bob.switch_page("../pages/runs.py").run()
    bob.toggle(key="w.runs.everyone").set_value(True).run()
    note = bob.text_input(key=f"w.runs.note.{run_id}")
    assert note.disabled and note.value == "baseline on the sample"  # the sample is no one's secret
    assert bob.dataframe[0].value["note"].tolist() == ["baseline on the sample"]


def test_an_empty_walk_forward_says_why_and_what_to_change():
    query = {"rule": "rsi(14) < 35", "mode": "walk_forward", "mint": "500", "grid": "stop_loss:2:4:2"}
    at = fresh(query, page="optimize")  # a link runs at once
    assert not at.exception
    warning = next(w.value for w in at.warning if "No training window" in w.value)
    assert "lower **Min trades** (now 500)" in warning and "lengthen the training windows" in warning


def test_shuffle_monte_carlo_shows_the_drawdowns_it_changes_not_an_empty_return_histogram(cache_dir):
    at = fresh(page="backtest")
    at.switch_page("../pages/montecarlo.py").run()
    at.selectbox(key="p.mcm").set_value("shuffle").run()
    assert not at.exception
    assert any("every simulation ends at the same return" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # the fan and the drawdowns


def test_the_data_page_fixes_one_flagged_bar_at_a_time(cache_dir):
    rows = [b"symbol,date,open,high,low,close,volume"]
    for i, d in enumerate(pd.bdate_range("2024-01-01", periods=40)):
        price = 100.0 + i if i < 20 else (100.0 + i) / 2  # an unadjusted 2:1 split on bar 20
        rows += [b"SPL,%s,%g,%g,%g,%g,1000" % (str(d.date()).encode(), price, price, price, price)]
        rows += [b"FLAT,%s,50,50,50,50,1000" % str(d.date()).encode()]
    at = fresh()
    at.file_uploader(key="upload").upload("split.csv", b"\n".join(rows), "text/csv").run()
    before = at.session_state["session"].data_id
    assert len(at.session_state["session"].market.issues) == 1
    at.button(key="w.data.fix.adjust").click().run()
    assert not at.exception
    market = at.session_state["session"].market
    assert market.issues.empty and at.session_state["session"].data_id != before  # a new dataset, for links
    assert any("Back-adjusted the SPL split" in w.value for w in at.warning)


def test_a_run_with_few_trades_greys_its_per_trade_figures_and_says_why():
    at = fresh({"rule": "rsi(14) < 12"}, page="backtest")  # a handful of signals on the sample
    n = at.session_state["session"].result.metrics["n_trades"]
    assert not at.exception and 0 < n < 20
    shown = metrics(at)
    assert "Profit factor · few trades" in shown and "Win rate [%] · few trades" in shown
    assert "Total return [%]" in shown  # figures of the whole curve are not greyed
    card = next(m for m in at.metric if m.label == "Profit factor · few trades")
    assert f"Only {n:,} trades" in card.help


def test_a_ranking_rule_shows_its_factor_quantiles_and_ic_under_what_happened_next():
    at = fresh({"rule": "close > sma(50) rank by roc(20)"}, page="scanner")
    assert not at.exception
    assert any("Does a higher rank mean a higher return?" in m.value for m in at.markdown)
    assert any("Information coefficient at 60 bars" in c.value for c in at.caption)
    plain = fresh({"rule": "rsi(14) < 30"}, page="scanner")
    assert not any("Does a higher rank" in m.value for m in plain.markdown)


def test_the_scanner_sweeps_a_rule_number_and_deflates_the_best_value():
    at = fresh({"rule": "rsi(14) < 30"}, page="scanner")
    at.selectbox(key="w.scanner.sweep_number").set_value(1).run()  # the 30
    at.number_input(key="w.scanner.sweep_lo.1").set_value(20.0)
    at.number_input(key="w.scanner.sweep_hi.1").set_value(40.0)
    at.number_input(key="w.scanner.sweep_st.1").set_value(5.0).run()
    at.button(key="w.scanner.sweep_run").click().run()
    assert not at.exception
    said = [c.value for c in at.caption if c.value.startswith("Best:")]
    assert len(said) == 1 and "After 5 tries" in said[0]
