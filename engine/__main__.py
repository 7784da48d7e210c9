"""Command line: `python -m engine scan|backtest|warmup|params`. Backtest flags come from the parameter
table (engine/params.py): `--stop-loss 5 --sizing.method kelly --limits.max-position-pct 10`; 0 = off."""

from __future__ import annotations

import argparse
import json
import math
import sys

from . import params as table
from .backtest import backtest, params_from_values
from .data import DataError, load_market, load_sample
from .filters import scan
from .metrics import LABELS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("scan", "backtest"):
        s = sub.add_parser(name)
        s.add_argument("--data", help="CSV or Parquet of daily bars (default: the bundled sample)")
        s.add_argument("--rule", help='scanner rule, e.g. "rsi(14) < 30 and close > sma(200)"')
        s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bt = sub.choices["backtest"]
    bt.add_argument("--signals", help="CSV of (symbol, date) entry signals, instead of --rule")
    for param in table.backtest_params():
        default = "off" if param.off and not param.default else param.format(param.default)
        bt.add_argument(param.cli, dest=param.path, metavar=param.url.upper(),
                        help=f"{param.label}: {param.allowed()} (default {default}). {param.help}")  # fmt: skip
    bt.add_argument("--trades-csv", help="write the trades here")
    bt.add_argument("--equity-csv", help="write the equity curve here")
    sub.add_parser("warmup", help="compile the Numba kernels now (make does this after installing)")
    sub.add_parser("params", help="print the parameter table as Markdown (the README's table)")
    return p


def _clean(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "warmup":
            from .warmup import warm_up

            print(f"Numba kernels compiled and cached in {warm_up():.1f} s.")
            return 0
        if args.command == "params":
            print(table.markdown_table())
            return 0
        market = load_market(args.data) if args.data else load_sample()
        if args.command == "scan":
            if not args.rule:
                raise DataError('scan needs --rule, e.g. --rule "rsi(14) < 30"')
            hits = scan(market, args.rule).table(market)
            print(hits.to_json(orient="records", date_format="iso") if args.json else hits.to_string(index=False))
            return 0
        return _backtest(market, args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _backtest(market, args) -> int:
    import pandas as pd

    from .safe_csv import to_safe_csv

    values = {}
    for param in table.backtest_params():
        text = getattr(args, param.path)
        if text is not None:
            try:
                values[param.path] = param.parse(text)
            except table.ParamError as exc:
                raise DataError(f"{param.cli}: {exc}") from None
    params = params_from_values(values)
    if bool(args.rule) == bool(args.signals):
        raise DataError("backtest needs exactly one of --rule or --signals.")
    signals = scan(market, args.rule) if args.rule else pd.read_csv(args.signals)
    result = backtest(market, signals, params)
    if args.trades_csv:
        to_safe_csv(result.trades, args.trades_csv, index=False)
    if args.equity_csv:
        to_safe_csv(result.equity, args.equity_csv)
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in result.metrics.items()}))
    else:
        for key, value in result.metrics.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"{LABELS.get(key, key.replace('_', ' ').capitalize()):<32} {shown:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
