"""Command line: `python -m engine scan|backtest|optimize|montecarlo|events|data|screens|warmup|params`.
Setting flags come from the parameter table (engine/params.py): `--stop-loss 5 --sizing.method kelly
--limits.max-position-pct 10` (0 = off), `--optimize.mode walk_forward`, `--montecarlo.method daily_blocks`;
a grid is written as in links: `--grid stop_loss:2:10:2,rule.1:25:35:5`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from . import cli_data, cli_screens
from . import params as table
from .backtest import backtest, params_from_values
from .data import attach_columns, load_market, load_sample
from .errors import DataError, InputError
from .events import forward_returns, study_settings
from .metrics import LABELS
from .montecarlo import run_montecarlo
from .optimize import grid_from_spec, parse_grid_spec, run_optimization
from .plots.report import tear_sheet
from .rules import scan
from .safe_csv import to_safe_csv
from .warmup import warm_up


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("scan", "backtest", "optimize", "montecarlo", "events"):
        s = sub.add_parser(name)
        s.add_argument("--data", help="CSV or Parquet of daily bars (default: the bundled sample)")
        s.add_argument(
            "--columns",
            action="append",
            metavar="FILE",
            help="CSV or Parquet of symbol, date and own columns (e.g. pe_ratio), joined as of each date; repeatable",
        )
        s.add_argument("--rule", help='scanner rule, e.g. "rsi(14) < 30 and close > sma(200)"')
        s.add_argument("--json", action="store_true", help="print JSON instead of a table")
        settings = {"scan": [], "events": table.group("events")}.get(name, table.backtest_params() + table.group(name))
        for param in table.group("load") + settings:
            default = param.shown(param.default) if param.off and not param.default else param.format(param.default)
            text = f"{param.label}: {param.allowed()} (default {default}). {param.help}".replace("%", "%%")
            flags = [param.cli, "--" + param.name] if param.group == "events" else [param.cli]  # --horizons too
            s.add_argument(*flags, dest=param.path, metavar=param.url.upper(), help=text)  # argparse %-formats it
    sub.choices["scan"].add_argument(
        "--date", help="the screen on that bar (YYYY-MM-DD, or 'latest'): matches ranked, entered and left"
    )
    bt = sub.choices["backtest"]
    bt.add_argument("--signals", help="CSV of (symbol, date) entry signals, instead of --rule")
    bt.add_argument("--trades-csv", help="write the trades here")
    bt.add_argument("--equity-csv", help="write the equity curve here")
    bt.add_argument("--report", help="write the HTML tear sheet here (one file; opens offline)")
    opt = sub.choices["optimize"]
    opt.add_argument(
        "--grid",
        required=True,
        help="key:from:to:step, comma-separated (grid keys: the table's rows marked (grid), or rule.<i>); "
        "step 0 is a continuous range, for --search random or tpe",
    )
    opt.add_argument("--top", type=int, default=10, help="combinations to print, best first (default 10)")
    opt.add_argument("--csv", help="write every combination here")
    cli_data.add_parser(sub)
    cli_screens.add_parser(sub)
    sub.add_parser("warmup", help="compile the Numba kernels now (make does this after installing)")
    sub.add_parser("params", help="print the parameter table as Markdown (the README's table)")
    return p


def _clean(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "warmup":
            print(f"Numba kernels compiled and cached in {warm_up():.1f} s.")
            return 0
        if args.command == "params":
            print(table.markdown_table())
            return 0
        if args.command == "data":
            return cli_data.run(args)
        if args.command == "screens":
            return cli_screens.run(args)
        load = table.library_fields(_values(args, table.group("load")))
        market = load_market(args.data, **load) if args.data else load_sample()
        for path in args.columns or ():
            market = attach_columns(market, path)
        if args.command == "optimize":
            return _optimize(market, args)
        if args.command == "montecarlo":
            return _montecarlo(market, args)
        if args.command == "events":
            return _events(market, args)
        if args.command == "scan":
            if not args.rule:
                raise DataError('scan needs --rule, e.g. --rule "rsi(14) < 30"')
            signals = scan(market, args.rule)
            if args.date:
                return print_screen(signals.on(None if args.date == "latest" else args.date, market), args.json)
            hits = signals.table(market)
            print(hits.to_json(orient="records", date_format="iso") if args.json else hits.to_string(index=False))
            return 0
        return _backtest(market, args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def print_screen(screen, as_json: bool) -> int:
    """The screen on one bar: its matches (ranked), and the symbols that entered and left since the bar before."""
    parts = {"matches": screen.matches, "entered": screen.entered, "left": screen.left}
    if as_json:
        tables = {k: json.loads(v.to_json(orient="records")) for k, v in parts.items()}
        print(json.dumps({"date": screen.date.strftime("%Y-%m-%d"), **tables}))
        return 0
    for name, rows in parts.items():
        print(f"{name} on {screen.date:%Y-%m-%d} ({len(rows):,})")
        print(rows.to_string(index=False, float_format=lambda x: f"{x:,.2f}") if len(rows) else "  none")
    return 0


def _values(args, params: list) -> dict:
    """The flags given, checked against the table (a bad one names its flag and the allowed range)."""
    values = {}
    for param in params:
        text = getattr(args, param.path, None)
        if text is not None:
            try:
                values[param.path] = param.parse(text)
            except table.ParamError as exc:
                raise DataError(f"{param.cli}: {exc}") from None
    return values


def _need_rule(args) -> str:
    if not args.rule:
        raise DataError(f'{args.command} needs --rule, e.g. --rule "rsi(14) < 30"')
    return args.rule


def _optimize(market, args) -> int:
    rule = _need_rule(args)
    base = params_from_values(_values(args, table.backtest_params()))
    settings = {table.TABLE[p].name: v for p, v in _values(args, table.group("optimize")).items()}
    out = run_optimization(market, rule, base, grid_from_spec(rule, parse_grid_spec(args.grid)), settings)
    ranked = out.ranked  # every combination (with *_oos in split mode), or one row per walk-forward window
    if args.csv:
        to_safe_csv(ranked, args.csv, index=False)
    fit = out.overfitting()
    if args.json:
        top = json.loads(ranked.head(args.top).to_json(orient="records", date_format="iso"))
        print(
            json.dumps(
                {
                    "best": None if out.grid is None else out.best_params(),
                    "top": top,
                    "overfitting": None if fit is None else {k: _clean(v) for k, v in fit.items()},
                }
            )
        )
        return 0
    print(ranked.head(args.top).to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    if fit is not None:
        print(
            f"\n{fit['n_trials']:,} combinations; deflated Sharpe {fit['deflated_sharpe']:.2%}, probability of "
            f"overfitting {fit['pbo']:.2%}.\n{fit['verdict']}"
        )
    return 0


def _montecarlo(market, args) -> int:
    rule = _need_rule(args)
    params = params_from_values(_values(args, table.backtest_params()))
    settings = {table.TABLE[p].name: v for p, v in _values(args, table.group("montecarlo")).items()}
    result = backtest(market, scan(market, rule), params)
    mc = run_montecarlo(result, settings)
    threshold = settings.get("drawdown_pct", table.TABLE["montecarlo.drawdown_pct"].default)
    figures = {
        "method": mc.method,
        "probability_of_loss": mc.probability_of_loss(),
        "probability_of_drawdown_worse_than_threshold": mc.probability_of_drawdown_worse_than(threshold),
        "summary": mc.summary().to_dict(orient="index"),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(mc.summary().to_string(float_format=lambda x: f"{x:,.2f}"))
    print(
        f"\nP(loss) {figures['probability_of_loss']:.2%}; P(drawdown worse than {threshold:g}%) "
        f"{figures['probability_of_drawdown_worse_than_threshold']:.2%} ({mc.method})."
    )
    return 0


def _events(market, args) -> int:
    """What each signal did next: the summary per horizon (and with --json every figure of it)."""
    rule = _need_rule(args)
    defaults = {p.path: p.default for p in table.group("events")}
    settings = table.library_fields(defaults | _values(args, table.group("events")))
    study = forward_returns(market, scan(market, rule), **study_settings(settings))
    if args.json:
        summary = {int(h): {k: _clean(float(v)) for k, v in row.items()} for h, row in study.summary.iterrows()}
        print(json.dumps({"events": len(study.events), "open": study.open_events, "summary": summary}))
        return 0
    print(study.summary.to_string(float_format=lambda x: f"{x:,.4f}"))
    print(f"\n{len(study.events):,} signals; {study.open_events:,} too recent to measure.")
    return 0


def _backtest(market, args) -> int:
    params = params_from_values(_values(args, table.backtest_params()))
    if bool(args.rule) == bool(args.signals):
        raise DataError("backtest needs exactly one of --rule or --signals.")
    signals = scan(market, args.rule) if args.rule else pd.read_csv(args.signals)
    result = backtest(market, signals, params)
    if args.trades_csv:
        to_safe_csv(result.trades, args.trades_csv, index=False)
    if args.equity_csv:
        to_safe_csv(result.equity, args.equity_csv)
    if args.report:
        rule = args.rule or f"signals from {args.signals}"
        Path(args.report).write_text(tear_sheet(market, rule, result), encoding="utf-8")
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in result.metrics.items()}))
    else:
        for key, value in result.metrics.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"{LABELS.get(key, key.replace('_', ' ').capitalize()):<32} {shown:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
