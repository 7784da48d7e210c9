"""`python -m engine data ...`: families of dataset versions on the server's store (SCANNER_CACHE_DIR), for
scripts and cron. Acts as `--user` (or SCANNER_CLI_USER); without one, as this machine's login, whose families
are open to the team like any unauthenticated upload.

    python -m engine data create "US daily" us.csv --user ana@example.org \
        --url "https://stooq.com/q/d/l/?s={symbol}&i=d" --symbols aapl.us,msft.us
    python -m engine data append pse-daily today.csv --user ana@example.org [--replace]
    python -m engine data refresh pse-daily --user ana@example.org [--partial] [--replace]
    python -m engine data list | versions pse-daily
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from .data import RestatedHistory, load_market


def add_parser(sub: Any) -> None:
    data = sub.add_parser("data", help="families of dataset versions: create, append, refresh, list, versions")
    verbs = data.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="a new family from a file (its first version)")
    create.add_argument("name")
    create.add_argument("file")
    create.add_argument("--shared", action="store_true", help="open to the team (default: private)")
    create.add_argument("--url", help="source: an http(s) CSV/Parquet address with {symbol} (and {start})")
    create.add_argument("--sql", help="source: a SQLAlchemy URL (${NAME} for a secret from the environment)")
    create.add_argument("--query", help="the sql source's query, with :start")
    create.add_argument("--yahoo", action="store_true", help="source: Yahoo through yfinance (pip install -e .[yahoo])")
    create.add_argument("--raw", action="store_true", help="yahoo: raw prices (default adjusted)")
    create.add_argument("--symbols", help="url/yahoo: comma-separated symbols as the source spells them")
    create.add_argument("--credential", help="url: the NAME of an environment variable for {credential}")
    append = verbs.add_parser("append", help="append a file of recent bars: a new version when anything changed")
    append.add_argument("family")
    append.add_argument("file")
    append.add_argument("--replace", action="store_true", help="take the file's history where stored bars differ")
    refresh = verbs.add_parser("refresh", help="fetch new bars from the family's source (for cron)")
    refresh.add_argument("family")
    refresh.add_argument("--partial", action="store_true", help="append the symbols that answered when some fail")
    refresh.add_argument("--replace", action="store_true", help="take the source's history where stored bars differ")
    verbs.add_parser("list", help="the families you can see, latest changed first")
    versions = verbs.add_parser("versions", help="a family's versions, the latest first")
    versions.add_argument("family")
    for parser in (create, append, refresh, verbs.choices["list"], versions):
        parser.add_argument("--user", help="who acts (an e-mail; default SCANNER_CLI_USER or this login)")
        parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Exit 0 done, 1 refused or failed (the family keeps its last good version), 2 bad input."""
    from .server import service  # the server wing (its stores) only for this command

    user = acting_user(args.user)
    if args.verb == "create":
        market = load_market(args.file, name=args.name)
        made = service.create_family(args.name, market, user, args.shared, _source(args))
        return _print(args, {"family": made.slug, "versions": 1}, f"Created {made.slug} ({made.latest.id}).")
    if args.verb == "list":
        rows = [
            {"family": f.slug, "name": f.name, "versions": len(f.versions), "last_date": f.latest.last_date}
            for f in service.families().list(user)
        ]
        return _print(
            args, rows, "\n".join(f"{r['family']:<24} {r['versions']:>3} versions, to {r['last_date']}" for r in rows)
        )
    found = service.families().get(args.family, user)
    if found is None:
        print(f"error: no family {args.family!r} you can see (python -m engine data list).", file=sys.stderr)
        return 2
    if args.verb == "versions":
        rows = [
            {"id": v.id, "how": v.how, "by": v.by, "last_date": v.last_date, "bars_added": v.bars_added, "note": v.note}
            for v in reversed(found.versions)
        ]
        text = "\n".join(
            f"{r['id']}  {r['how']:<8} {r['last_date']}  +{r['bars_added']:,} bars  {r['note']}" for r in rows
        )
        return _print(args, rows, text)
    on_restated = "replace" if args.replace else "refuse"
    try:
        if args.verb == "append":
            with open(args.file, "rb") as handle:
                outcome = service.append_to_family(args.family, handle, user, on_restated)
        else:
            progress = None if args.json else _progress
            outcome = service.refresh_family(
                args.family, user, partial=args.partial, on_restated=on_restated, progress=progress
            )
    except RestatedHistory as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(exc.table.head(20).to_string(index=False), file=sys.stderr)
        return 1
    if outcome is None:
        print(f"error: the family {args.family!r} is not yours to change.", file=sys.stderr)
        return 2
    payload = {
        "family": outcome.family.slug,
        "changed": outcome.changed,
        "version": outcome.family.latest.id,
        "failures": outcome.failures,
        "message": outcome.message,
    }
    _print(args, payload, outcome.message)
    return 1 if outcome.failures and not outcome.changed else 0


def acting_user(given: str | None) -> str:
    """Who a CLI command acts as: --user, else SCANNER_CLI_USER (an e-mail: a user), else this login (local)."""
    who = given or os.environ.get("SCANNER_CLI_USER")
    return f"user:{who.strip().lower()}" if who else f"local:{getpass.getuser()}"


def _source(args: argparse.Namespace) -> dict[str, Any] | None:
    symbols = [s.strip() for s in (args.symbols or "").split(",") if s.strip()]
    if args.url:
        return {"kind": "url", "address": args.url, "symbols": symbols, "credential": args.credential or ""}
    if args.sql:
        return {"kind": "sql", "address": args.sql, "query": args.query or ""}
    if args.yahoo:
        return {"kind": "yahoo", "symbols": symbols, "adjusted": not args.raw}
    return None


def _progress(done: int, total: int, symbol: str) -> None:
    print(f"\r{done:,}/{total:,} {symbol:<16}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _print(args: argparse.Namespace, payload: Any, text: str) -> int:
    print(json.dumps(payload) if args.json else text)
    return 0
