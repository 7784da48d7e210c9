"""Library and server limits apart: the upload limit applies to uploads and a rule's memory limit to the
server; a local file or rule in the library (or the CLI) is limited by the machine's available memory."""

from __future__ import annotations

import os

import pytest

from engine import load_market, synthetic_market
from engine.__main__ import main
from engine.budget import available_bytes, check_available, serve_defaults
from engine.data import SAMPLE_PATH, DataError
from engine.datasets import to_frame
from engine.rules import rule_memory_limit, scan


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
    library = rule_memory_limit()
    assert library == pytest.approx(available_bytes() / 2, rel=0.2)  # half of what is free now
    market = synthetic_market(200, 1000, seed=2)
    scan(market, " and ".join(f"sma({n}) > 0" for n in range(5, 35)))  # 30 indicators: ~50 MB, fine here
    serve_defaults()  # what the dashboard and the API do as they start
    assert os.environ["SCANNER_RULE_MB"] == "1024" and rule_memory_limit() == 1024 * 2**20
    monkeypatch.setenv("SCANNER_RULE_MB", "5")
    serve_defaults()  # a host's own setting wins
    assert rule_memory_limit() == 5 * 2**20
