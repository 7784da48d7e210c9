"""Library and server limits apart: the upload limit applies to uploads and a rule's memory limit to the
server; a local file or rule in the library (or the CLI) is limited by the machine's available memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import load_market, synthetic_market
from engine.__main__ import main
from engine.budget import available_bytes, check_available
from engine.data import SAMPLE_PATH, DataError
from engine.indicators import memo_limit_bytes
from engine.rules import rule_memory_limit, scan
from engine.server.admission import serve_defaults
from engine.server.datasets import to_frame

LOAD_PEAK = Path(__file__).parent / "helpers" / "load_peak.py"


def test_a_local_file_over_the_upload_limit_loads_in_the_library_and_the_cli(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bars.csv"
    to_frame(synthetic_market(20, 400, seed=1)).to_csv(path, index=False)
    monkeypatch.setenv("SCANNER_MAX_UPLOAD_MB", "0.01")  # 10 KB: the file is far bigger
    assert os.path.getsize(path) > 10 * 1024
    assert load_market(path).shape == (400, 20)
    assert load_market(SAMPLE_PATH).shape[1] == 6  # gzip too
    with open(path, "rb") as handle:
        assert load_market(handle).shape == (400, 20)  # an open file, as the library takes one
    assert main(["scan", "--data", str(path), "--rule", "close > 0", "--json"]) == 0
    capsys.readouterr()
    with pytest.raises(DataError, match=r"over the 10\.0 KB limit"):  # an upload (the faces pass the limit)
        load_market(path, max_bytes=10 * 1024)


def test_work_that_needs_more_memory_than_is_available_is_refused_first_with_the_figures():
    free = available_bytes()
    assert free > 0
    check_available(1, "Loading x.csv", "Load fewer symbols.")
    with pytest.raises(DataError, match=r"Loading x\.csv needs about [\d,.]+ GB of memory; this machine has"):
        check_available(4 * free + 2**30, "Loading x.csv", "Load fewer symbols.")


def test_a_rules_memory_limit_is_the_servers_on_a_server_and_the_machines_in_the_library(monkeypatch):
    monkeypatch.delenv("SCANNER_RULE_MB", raising=False)
    monkeypatch.delenv("SCANNER_MEMO_MB", raising=False)
    assert memo_limit_bytes() >= 512 * 2**20  # a quarter of what is free, at least 512 MB
    assert memo_limit_bytes() == pytest.approx(max(512 * 2**20, available_bytes() / 4), rel=0.2)
    library = rule_memory_limit()
    assert library == pytest.approx(available_bytes() / 2, rel=0.2)  # half of what is free now
    market = synthetic_market(200, 1000, seed=2)
    scan(market, " and ".join(f"sma({n}) > 0" for n in range(5, 35)))  # 30 indicators: ~50 MB, fine here
    serve_defaults()  # what the dashboard and the API do as they start
    assert os.environ["SCANNER_RULE_MB"] == "1024" and rule_memory_limit() == 1024 * 2**20
    assert memo_limit_bytes() == 512 * 2**20
    monkeypatch.setenv("SCANNER_RULE_MB", "5")
    serve_defaults()  # a host's own setting wins
    assert rule_memory_limit() == 5 * 2**20


def test_loading_a_parquet_file_peaks_under_nine_times_its_size_and_within_its_estimate(tmp_path):
    """Measured in a fresh process on a generated 1 M-row file: the loader reads the file from disk (no copy
    of it in memory), frees each Arrow column once converted and checks the rows in one pass. Before: about
    13x the file (the bytes, the table and every column's copies held together)."""
    path = tmp_path / "bars.parquet"
    to_frame(synthetic_market(400, 2520, seed=3)).to_parquet(path, index=False)
    done = subprocess.run([sys.executable, str(LOAD_PEAK), str(path)], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    assert figures["growth"] < 9 * size, f"peak grew {figures['growth'] / size:.1f}x the file's size"
    assert figures["growth"] <= figures["estimate"] < 3 * figures["growth"]  # the check before loading is honest
