"""The CLI as a user runs it: a real subprocess on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from engine.__main__ import main


def test_backtest_with_a_rule_prints_json_metrics(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "backtest",
            "--rule",
            "rsi(14) < 30",
            "--stop-loss",
            "5",
            "--take-profit",
            "10",
            "--holding-period",
            "20",
            "--json",
            "--trades-csv",
            str(tmp_path / "t.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    metrics = json.loads(out.stdout)
    trades = pd.read_csv(tmp_path / "t.csv")
    assert metrics["n_trades"] == len(trades) > 0


def test_signals_file_and_scan_and_errors(tmp_path, capsys):
    signals = tmp_path / "s.csv"
    pd.DataFrame({"symbol": ["AAPL"], "date": ["2020-03-02"]}).to_csv(signals, index=False)
    assert main(["backtest", "--signals", str(signals), "--equity-csv", str(tmp_path / "e.csv")]) == 0
    assert "# Trades" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "e.csv")) == 2699
    assert main(["scan", "--rule", "gap_pct() > 10", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["gap_pct()"] > 10 for h in hits)
    assert main(["scan", "--rule", "import os"]) == 2
    assert "Syntax error" in capsys.readouterr().err
    assert main(["backtest", "--data", str(tmp_path / "missing.csv"), "--rule", "close > 1"]) == 2
    assert main(["scan"]) == 2
    assert main(["backtest"]) == 2


def test_columns_files_are_joined_before_the_rule_runs(tmp_path, capsys):
    fundamentals = tmp_path / "pe.csv"
    pd.DataFrame({"symbol": ["AAPL", "AAPL"], "date": ["2020-01-01", "2021-01-01"], "pe_ratio": [12, 30]}).to_csv(
        fundamentals, index=False
    )
    assert main(["scan", "--columns", str(fundamentals), "--rule", "pe_ratio < 15", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and {h["symbol"] for h in hits} == {"AAPL"} and all("2020" <= h["date"] < "2021" for h in hits)
    assert main(["scan", "--rule", "pe_ratio < 15"]) == 2
    assert "Unknown name 'pe_ratio'" in capsys.readouterr().err


def test_optimize_prints_the_best_and_the_overfitting_figures(capsys, tmp_path):
    from engine.__main__ import main

    out_csv = tmp_path / "grid.csv"
    code = main(
        [
            "optimize",
            "--rule",
            "rsi(14) < 30",
            "--grid",
            "stop_loss:2:6:2,rule.1:25:35:5",
            "--optimize.mode",
            "all",
            "--optimize.min-trades",
            "5",
            "--json",
            "--csv",
            str(out_csv),
        ]
    )
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["best"]) == {"stop_loss", "rule.1"} and figures["overfitting"]["n_trials"] == 9
    assert len(out_csv.read_text().splitlines()) == 10
    assert main(["optimize", "--rule", "rsi(14) < 30", "--grid", "nonsense:1:2:1"]) == 2
    assert "grid key" in capsys.readouterr().err


def test_montecarlo_takes_the_pages_settings(capsys):
    from engine.__main__ import main

    code = main(
        [
            "montecarlo",
            "--rule",
            "rsi(14) < 30",
            "--montecarlo.method",
            "daily_blocks",
            "--montecarlo.n-simulations",
            "300",
            "--json",
        ]
    )
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["method"] == "daily_blocks" and 0 <= figures["probability_of_loss"] <= 1
    assert main(["montecarlo", "--rule", "rsi(14) < 30", "--montecarlo.method", "magic"]) == 2
    assert "Method must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["scan", "backtest", "optimize", "montecarlo", "warmup", "params"])
def test_every_command_prints_its_help(command, capsys):
    """A range such as "0.1 to 99%" once crashed `backtest --help`: argparse %-formats help text."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m engine {command}")
    if command == "backtest":
        assert "--stop-loss SL Stop-loss: 0 (off) or 0.1 to 99% (default 5)" in " ".join(out.split())


def test_events_prints_the_summary_per_horizon_as_json(capsys):
    assert main(["events", "--rule", "rsi(14) < 30", "--horizons", "1,5,20", "--cooldown", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["summary"], key=int) == ["1", "5", "20"] and out["events"] > 0
    assert main(["events", "--rule", "rsi(14) < 30", "--horizons", "0"]) == 2
    assert "Horizons are whole numbers" in capsys.readouterr().err
