"""`python -m engine screens ...`: saved screens on the server's history (SCANNER_CACHE_DIR), acting as `--user`
(or SCANNER_CLI_USER) like the `data` commands.

    python -m engine screens save "Oversold" --rule "rsi(14) < 30 rank by roc(20) desc" --data family:pse-daily
    python -m engine screens list | show ID | matches ID [--date 2024-06-03] | record ID | copy ID | delete ID
    python -m engine screens follow ID | unfollow ID | alerts | send

`alerts` lists your inbox (newest bar first); `send` runs the alerts of versions made since the last run and
sends the webhook deliveries that are due, once (a running server does both by itself; this is for cron).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cli_data import acting_user


def add_parser(sub: Any) -> None:
    screens = sub.add_parser(
        "screens", help="saved screens: save, list, show, matches, record, copy, delete, follow, alerts, send"
    )
    verbs = screens.add_subparsers(dest="verb", required=True)
    save = verbs.add_parser("save", help="save a screen (private unless --shared)")
    save.add_argument("name")
    save.add_argument("--rule", required=True)
    save.add_argument("--data", default="sample", help="a dataset id, or family:<slug> (its latest version)")
    save.add_argument("--note", default="")
    save.add_argument("--shared", action="store_true")
    verbs.add_parser("list", help="your screens and the team's shared ones")
    verbs.add_parser("alerts", help="your alerts, newest bar first")
    verbs.add_parser("send", help="run queued versions' alerts and send due webhooks now")
    for verb, text in (
        ("show", "a screen and its earlier texts"),
        ("matches", "the screen on a bar: matches, entered, left"),
        ("record", "its track record before and since saving"),
        ("copy", "your own copy"),
        ("delete", "delete your screen"),
        ("follow", "get the screen's alerts"),
        ("unfollow", "stop getting them"),
    ):
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("id")
        if verb == "matches":
            parser.add_argument("--date", help="YYYY-MM-DD (default: the latest bar)")
    for parser in verbs.choices.values():
        parser.add_argument("--user", help="who acts (an e-mail; default SCANNER_CLI_USER or this login)")
        parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Exit 0 done, 2 unknown or not yours."""
    from .server import service

    who = acting_user(args.user)
    book = service.screens()
    if args.verb == "save":
        saved = service.save_screen(args.name, args.rule, args.data, who, args.shared, args.note)
        return _print(args, vars(saved), f"Saved {saved.id}: {saved.name}")
    if args.verb == "list":
        rows = [vars(s) for s in book.list(who)]
        lines = [f"{r['id']}  {r['name']:<30} {r['rule']}" for r in rows]
        return _print(args, rows, "\n".join(lines) or "No screens yet.")
    if args.verb == "alerts":
        entries = [vars(e) for e in service.inbox(who)]
        lines = [
            f"{e['bar']}  {e['screen_name']:<30} entered: {', '.join(r['symbol'] for r in e['entered'])}"
            for e in entries
        ]
        return _print(args, entries, "\n".join(lines) or "No alerts yet.")
    if args.verb == "send":
        from .server import alert_worker

        sent, tried = alert_worker.run_versions(), alert_worker.deliver_due()
        return _print(args, {"alerts": sent, "deliveries": tried}, f"{sent:,} alerts, {tried:,} webhook tries")
    screen = book.get(args.id, who)
    if screen is None:
        print(f"error: no screen {args.id!r} you can see (python -m engine screens list).", file=sys.stderr)
        return 2
    if args.verb == "show":
        history = [vars(t) for t in book.history(screen.id, who)]
        return _print(args, {**vars(screen), "history": history}, f"{screen.name}: {screen.rule} ({screen.data})")
    if args.verb == "matches":
        found = service.screen_on(screen.id, who, args.date)
        if found is None:
            print("error: the screen's data is no longer on this server.", file=sys.stderr)
            return 2
        from .__main__ import print_screen

        return print_screen(found[1], args.json)
    if args.verb == "record":
        record = service.track_record(screen.id, who)
        if record is None:
            print("error: the screen's data is no longer on this server.", file=sys.stderr)
            return 2
        payload = {
            "split": record.split.strftime("%Y-%m-%d"),
            "before": json.loads(record.before.to_json(orient="index")),
            "since": json.loads(record.since.to_json(orient="index")),
            "note": record.note,
        }
        columns = ["events", "mean", "mean_excess", "t_stat", "hit_rate"]
        text = (
            f"Before saving (to {record.split:%Y-%m-%d}), {record.signals_before:,} signals:\n"
            f"{record.before[columns].to_string()}\nSince saving, {record.signals_since:,} signals:\n"
            f"{record.since[columns].to_string()}\n{record.note}"
        )
        return _print(args, payload, text)
    if args.verb == "copy":
        copied = book.copy(screen.id, who)
        return _print(args, vars(copied), f"Copied as {copied.id}") if copied else 2
    if args.verb in ("follow", "unfollow"):
        if not service.follow_screen(screen.id, who, args.verb == "follow"):
            print("error: following needs an identity of your own (--user).", file=sys.stderr)
            return 2
        following = args.verb == "follow"
        return _print(args, {"screen": screen.id, "following": following}, f"{args.verb.capitalize()}ed {screen.id}")
    if not service.delete_screen(screen.id, who):
        print("error: only the screen's owner can delete it.", file=sys.stderr)
        return 2
    return _print(args, {"deleted": screen.id}, f"Deleted {screen.id}")


def _print(args: argparse.Namespace, payload: Any, text: str) -> int:
    print(json.dumps(payload, default=str) if args.json else text)
    return 0
