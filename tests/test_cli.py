"""The CLI as a user runs it: a real subprocess on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from engine.__main__ import main


def test_backtest_with_a_rule_prints_json_metrics(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "engine", "backtest", "--rule", "rsi(14) < 30", "--stop-loss", "5",
         "--take-profit", "10", "--holding-period", "20", "--json", "--trades-csv", str(tmp_path / "t.csv")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
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
