"""A refresh of 500 symbols from a local HTTP server answering Stooq-format daily CSVs (one request per
symbol, the whole history each, as Stooq answers), through the service: fetch, the loader's checks, append,
and the new version stored. Timed once per round after a warm-up round; the family is 500 x 2,520 bars and
each round adds one day.

    .venv/bin/python benchmarks/bench_refresh.py
    .venv/bin/python benchmarks/bench_refresh.py --symbols 100 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine import synthetic_market
from engine.data import market_from_frame
from engine.server.datasets import to_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    whole = synthetic_market(args.symbols, args.bars + args.rounds + 1, seed=3)
    frame = to_frame(whole)
    bodies: dict[str, bytes] = {}

    def serve_until(day) -> None:
        """Every symbol's answer up to `day`, made before the round is timed (the source's cost, not ours)."""
        rows = frame[frame.date <= day].rename(columns=str.capitalize)
        rows = rows.assign(Date=rows.Date.dt.strftime("%Y-%m-%d"))
        for symbol, table in rows.groupby("Symbol", sort=False):
            body = table[["Date", "Open", "High", "Low", "Close", "Volume"]].to_csv(index=False).encode()
            bodies[str(symbol)] = body

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            body = bodies.get(self.path.rsplit("/", 1)[-1].removesuffix(".csv").upper(), b"")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(SCANNER_CACHE_DIR=tempfile.mkdtemp(), SCANNER_SOURCE_ALLOW="127.0.0.1")
    from engine.server import service

    first = market_from_frame(frame[frame.date < whole.dates[args.bars]], name="bench")
    address = f"http://127.0.0.1:{server.server_port}/q/{{symbol}}.csv"
    service.create_family(
        "bench", first, "user:b@x", source={"kind": "url", "address": address, "symbols": list(whole.symbols)}
    )
    times, messages = [], []
    for i in range(args.rounds + 1):
        serve_until(whole.dates[args.bars + i])
        started = time.perf_counter()
        outcome = service.refresh_family("bench", "user:b@x")
        if i:  # the first round warms the kernels and fills the server's answers
            times.append(time.perf_counter() - started)
            messages.append(outcome.message if outcome else "refused")
    server.shutdown()
    print(
        json.dumps(
            {
                "workload": f"refresh {args.symbols} symbols x {args.bars} bars + 1 day from a local HTTP server",
                "seconds_median": round(statistics.median(times), 2),
                "seconds": [round(t, 2) for t in times],
                "last": messages[-1],
            }
        )
    )


if __name__ == "__main__":
    main()
