"""Command line: `python -m engine scan|backtest --data prices.csv --rule "..." [--json]`."""

from __future__ import annotations

import argparse
import json
import math
import sys

from .backtest import backtest
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
    bt.add_argument("--stop-loss", type=float, default=5.0, help="percent; 0 switches it off")
    bt.add_argument("--take-profit", type=float, default=0.0, help="percent; 0 switches it off")
    bt.add_argument("--holding-period", type=int, default=20, help="bars; 0 switches it off")
    bt.add_argument("--direction", choices=("long", "short"), default="long")
    bt.add_argument("--capital", type=float, default=100_000.0)
    bt.add_argument("--commission", type=float, default=0.0, help="percent of traded value")
    bt.add_argument("--slippage-bps", type=float, default=0.0)
    bt.add_argument("--max-positions", type=int, default=10)
    bt.add_argument("--sizing", default="equal_weight")
    bt.add_argument("--trades-csv", help="write the trades here")
    bt.add_argument("--equity-csv", help="write the equity curve here")
    return p


def _clean(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        market = load_market(args.data) if args.data else load_sample()
        if args.command == "scan":
            if not args.rule:
                raise DataError('scan needs --rule, e.g. --rule "rsi(14) < 30"')
            table = scan(market, args.rule).table(market)
            print(table.to_json(orient="records", date_format="iso") if args.json else table.to_string(index=False))
            return 0
        return _backtest(market, args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _backtest(market, args) -> int:
    import pandas as pd

    if bool(args.rule) == bool(args.signals):
        raise DataError("backtest needs exactly one of --rule or --signals.")
    signals = scan(market, args.rule) if args.rule else pd.read_csv(args.signals)
    result = backtest(
        market,
        signals,
        initial_capital=args.capital,
        stop_loss=args.stop_loss or None,
        take_profit=args.take_profit or None,
        holding_period=args.holding_period or None,
        signal_type=args.direction,
        commission=args.commission,
        slippage_bps=args.slippage_bps,
        max_positions=args.max_positions,
        position_sizing=args.sizing,
    )
    if args.trades_csv:
        result.trades.to_csv(args.trades_csv, index=False)
    if args.equity_csv:
        result.equity.to_csv(args.equity_csv)
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in result.metrics.items()}))
    else:
        for key, value in result.metrics.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"{LABELS.get(key, key.replace('_', ' ').capitalize()):<32} {shown:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
