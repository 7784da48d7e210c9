"""The one parameter table drives the library, links, the grid, the CLI and the README."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import BacktestParams, DataError, RiskLimits, Sizing
from engine import params as table
from engine.__main__ import _parser, main
from engine.backtest import params_from_values
from engine.data import LoadOptions, load_market
from engine.errors import InputError, ParamError, RuleError
from engine.optimize import check_grid, grid_values, parse_grid_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_dataclasses_have_exactly_the_tables_fields_and_defaults():
    for cls, group in ((BacktestParams, ""), (Sizing, "sizing"), (RiskLimits, "limits")):
        fields = {f.name for f in dataclasses.fields(cls)} - {"sizing", "limits"}
        assert fields == {p.name for p in table.group(group)}
        assert {name: getattr(cls(), name) for name in fields} == table.defaults(group)


def test_one_default_everywhere_limits_off_and_costs_zero():
    p = BacktestParams()
    assert p.limits.active() == [] and p.take_profit is None and p.commission == 0.0
    assert params_from_values({}) == p  # what the pages, links and the CLI build with no values given
    ns = _parser().parse_args(["backtest", "--rule", "close > 1"])
    assert all(getattr(ns, q.path) is None for q in table.backtest_params())  # unset CLI flags take the table's


@pytest.mark.parametrize("param", table.PARAMS, ids=lambda p: p.path)
def test_every_parameter_round_trips_through_a_link_and_rejects_junk(param):
    values = [param.default, *(param.choices or [])]
    if param.kind in (int, float):
        values += [param.kind(param.lo), param.kind(param.hi)]
    for v in values:
        assert param.parse(param.format(v)) == v
    if param.kind is str and not param.choices:  # free text (a rule): any text up to its length
        with pytest.raises(table.ParamError, match=re.escape(param.label) + ".* not 2,001 characters"):
            param.parse("x" * 2001)
        return
    for junk in ("nan", "inf", "-inf", "1e400", "", "abc", "1e308"):
        if param.kind is str and junk in param.choices:
            continue
        if param.kind in (int, float) and param.hi is not None and junk == "1e308" and param.hi >= 1e308:
            continue
        with pytest.raises(table.ParamError, match=re.escape(param.label)):
            param.parse(junk)


@given(text=st.text(max_size=30) | st.floats().map(repr) | st.integers().map(str))
def test_parsing_any_link_text_gives_a_value_in_range_or_one_clear_error(text):
    for param in table.PARAMS:
        try:
            value = param.parse(text)
        except table.ParamError as exc:
            assert param.label in str(exc) and "must be" in str(exc)
            continue
        if param.kind in (int, float):
            assert math.isfinite(value)
            assert (param.off and value == 0) or param.lo <= value <= param.hi
        elif param.choices:
            assert value in param.choices


def test_the_library_rejects_nan_and_infinities_and_names_the_field():
    for field, bad in (
        ("slippage_bps", math.nan),
        ("initial_capital", math.inf),
        ("stop_loss", 1e308),
        ("max_positions", 10**9),
        ("holding_period", -5),
    ):
        with pytest.raises(table.ParamError, match=f"^{field}: "):
            BacktestParams(**{field: bad})
    with pytest.raises(table.ParamError, match="limits.max_correlation: Max correlation must be 0 \\(off\\) or 0.01"):
        RiskLimits(max_correlation=2)
    assert BacktestParams(stop_loss=0, holding_period=0).stop_loss is None  # 0 means off in the library too


def test_the_cli_has_a_flag_for_every_backtest_parameter_and_rejects_nan(capsys):
    parser = _parser()
    for p in table.backtest_params():
        ns = parser.parse_args(["backtest", "--rule", "close > 1", p.cli, p.format(p.default)])
        assert getattr(ns, p.path) == p.format(p.default)
    assert main(["backtest", "--rule", "rsi(14) < 30", "--slippage-bps", "nan"]) == 2
    assert "--slippage-bps: Slippage must be 0 to 500 bps, not nan" in capsys.readouterr().err
    assert (
        main(
            [
                "backtest",
                "--rule",
                "rsi(14) < 30",
                "--sizing.method",
                "kelly",
                "--limits.max-position-pct",
                "10",
                "--json",
            ]
        )
        == 0
    )


def test_grid_keys_come_from_the_table_and_values_are_checked_against_it():
    assert set(table.grid_keys()) == {p.path for p in table.PARAMS if p.grid}
    check_grid("rsi(14) < 30", {key: [p.default or p.lo] for key, p in table.grid_keys().items()})
    with pytest.raises(DataError, match="stop_loss: Stop-loss must be 0 \\(off\\) or 0.1 to 99%, not 150"):
        check_grid("rsi(14) < 30", {"stop_loss": [5, 150]})
    assert parse_grid_spec("stop_loss:2:10:2,rule.1:25:35:5") == {"stop_loss": (2, 10, 2), "rule.1": (25, 35, 5)}
    with pytest.raises(DataError, match="over the 100,000 limit"):
        grid_values("stop_loss", 0, 1e7, 1e-6)  # refused before anything is allocated
    for bad in ("stoploss:1:2:1", "stop_loss:1:2", "stop_loss:a:2:1", "stop_loss:5:1:1", "stop_loss:1:2:-1"):
        with pytest.raises(DataError):
            parse_grid_spec(bad)


def test_the_readme_shows_the_generated_parameter_table():
    assert table.markdown_table() in (ROOT / "README.md").read_text()


def test_one_input_error_family_and_the_load_rows_check_the_loader():
    """Data, parameter and rule errors share one base that every face catches; the loader's options are the
    table's `load` rows (defaults, ranges and messages)."""
    assert all(issubclass(e, InputError) for e in (DataError, ParamError, RuleError))
    assert {f.name for f in dataclasses.fields(LoadOptions)} == {p.name for p in table.group("load")}
    assert dataclasses.asdict(LoadOptions()) == table.defaults("load")
    with pytest.raises(ParamError, match=r"load.outlier_pct: Outlier threshold must be 1 to 10,000%, not 0.5"):
        load_market(pd.DataFrame({"symbol": ["A"], "date": ["2024-01-02"], "close": [1.0]}), outlier_pct=0.5)
    with pytest.raises(ParamError, match="load.prices: Prices must be one of raw, adjusted, split_adjusted"):
        LoadOptions(prices="cooked")
    assert LoadOptions(date_format="").date_format is None  # empty: detect
    assert all(p not in table.linked_params() for p in table.group("load"))  # a link names the dataset instead
    assert "prices" not in table.link_query("x", "close > 1", {"load.prices": "adjusted"})
