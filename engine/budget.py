"""One memory budget for the whole server process: heavy work reserves its estimated bytes before it runs.

A scan, backtest, grid, Monte Carlo or upload asks `reserve(nbytes, what)`. While the reservations under way
plus this one fit the budget it runs at once; otherwise it waits its turn in a bounded first-come queue
(`on_wait` is told how many runs it is queued behind), and when the queue is full or the wait would pass
`max_wait_s` it is refused with ServerBusy (the API's 503 with Retry-After). Work larger than the whole
budget is refused at once, with the limit and how to stay under it. The estimates are calibrated against
measured peaks (tests/test_memory.py), so the budget bounds what the process really holds.

    budget = MemoryBudget(total_bytes=8 * 2**30)
    with budget.reserve(estimate, "scan", on_wait=lambda ahead: print(f"queued behind {ahead} runs")):
        run_the_scan()
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import DataError, InputError

MB = 2**20
# Who is told about a wait when the caller passes no on_wait: the page being drawn (set per script run).
WAIT_NOTICE: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("wait_notice", default=None)


def machine_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_bytes() -> int:
    """Memory the machine can give now (MemAvailable on Linux; else all of it)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return machine_bytes()


def check_available(need: int, what: str, fix: str) -> None:
    """Local work (the library, the CLI) is limited by the machine, not by the server's limits: refused before
    it starts when it would need more memory than is available now."""
    free = available_bytes()
    if need > free:
        raise DataError(
            f"{what} needs about {need / 2**30:,.1f} GB of memory; this machine has {free / 2**30:,.1f} GB "
            f"available now. {fix}"
        )


SERVER_RULE_MB = 1024  # a rule's indicator memory on a shared server, unless SCANNER_RULE_MB says otherwise
SERVER_MEMO_MB = 512  # all indicator memos together on a shared server, unless SCANNER_MEMO_MB says otherwise


def serve_defaults() -> None:
    """Called where a server starts (the dashboard, the API): limits that protect users from each other apply
    there, and only there (the library and the CLI are limited by the machine's memory)."""
    os.environ.setdefault("SCANNER_RULE_MB", str(SERVER_RULE_MB))
    os.environ.setdefault("SCANNER_MEMO_MB", str(SERVER_MEMO_MB))


def server_budget_bytes() -> int:
    """SCANNER_SERVER_MB (default half of this machine's memory)."""
    given = os.environ.get("SCANNER_SERVER_MB", "")
    return int(float(given) * MB) if given else machine_bytes() // 2


class ServerBusy(InputError):
    """The server's memory is taken by other runs for longer than this caller may wait. Not the user's mistake,
    but answered like one: every face shows its message (wait, or make the run smaller); the API answers it
    with 503 and Retry-After."""

    def __init__(self, message: str, retry_after_s: int, queued_behind: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.queued_behind = queued_behind


@dataclass(eq=False)  # a ticket is itself: two runs of the same size are two tickets
class _Ticket:
    nbytes: int
    what: str


class MemoryBudget:
    """Reservations of bytes against one total, granted first come, first served."""

    def __init__(self, total_bytes: int, max_queue: int = 32, max_wait_s: float = 600.0) -> None:
        self.total = int(total_bytes)
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.used = 0
        self.running = 0
        self._queue: list[_Ticket] = []
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(
        self, nbytes: int, what: str, on_wait: Callable[[int], None] | None = None, max_wait_s: float | None = None
    ) -> Iterator[None]:
        """Hold `nbytes` of the budget while the block runs (waiting for room first, if need be)."""
        nbytes = max(int(nbytes), 0)
        if nbytes > self.total:
            raise DataError(
                f"This {what} needs about {nbytes / MB:,.0f} MB, more than the server's whole memory "
                f"budget of {self.total / MB:,.0f} MB (SCANNER_SERVER_MB). Use fewer symbols or dates, "
                "fewer different indicators, or run it with the Python library or the CLI."
            )
        self._wait_for_room(_Ticket(nbytes, what), on_wait or WAIT_NOTICE.get(), max_wait_s)
        try:
            yield
        finally:
            with self._changed:
                self.used -= nbytes
                self.running -= 1
                self._changed.notify_all()

    def _wait_for_room(self, ticket: _Ticket, on_wait: Callable[[int], None] | None, max_wait_s: float | None) -> None:
        limit = self.max_wait_s if max_wait_s is None else max_wait_s
        deadline = time.monotonic() + limit
        with self._changed:
            if len(self._queue) >= self.max_queue:
                raise self._busy(ticket, f"{len(self._queue)} runs are already waiting (the most the server queues)")
            self._queue.append(ticket)
            told = -1
            try:
                while not (self._queue[0] is ticket and self.used + ticket.nbytes <= self.total):
                    ahead = self.running + self._queue.index(ticket)
                    if on_wait is not None and ahead != told:
                        told = ahead
                        self._changed.release()  # the notice (a page update) runs without the server's lock
                        try:
                            on_wait(ahead)
                        finally:
                            self._changed.acquire()
                        continue  # the queue may have moved meanwhile
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._busy(ticket, f"it would wait more than {limit:,.0f} s behind {ahead} runs")
                    self._changed.wait(min(left, 1.0))
            except BaseException:
                self._queue.remove(ticket)
                self._changed.notify_all()
                raise
            self._queue.remove(ticket)
            self.used += ticket.nbytes
            self.running += 1
            self._changed.notify_all()

    def _busy(self, ticket: _Ticket, why: str) -> ServerBusy:
        ahead = self.running + len(self._queue)
        retry = max(5, min(300, int(10 * max(ahead, 1))))
        return ServerBusy(
            f"The server is busy: this {ticket.what} needs about {ticket.nbytes / MB:,.0f} MB of its "
            f"{self.total / MB:,.0f} MB memory budget, and {why}. Try again in about {retry} s.",
            retry,
            ahead,
        )


# --- estimates (calibrated by tests/test_memory.py: the measured peak stays within 1.5x) ------------------

# Arrays an indicator kernel holds while it computes, beyond the one it returns (measured on 500 x 2,520).
_WORK_ARRAYS = {
    "rsi": 6.2,
    "stoch_k": 6.2,
    "stoch_d": 6.2,
    "macd": 4.2,
    "macd_signal": 4.2,
    "macd_hist": 4.2,
    "bb_upper": 4.0,
    "bb_middle": 4.0,
    "bb_lower": 4.0,
    "bb_pct_b": 4.0,
    "bb_width": 4.0,
    "volatility": 2.0,
}


def scan_bytes(cells_bytes: int, indicator_names: list[str]) -> int:
    """A scan holds every distinct indicator of its rule at once, plus the largest kernel's work arrays and
    the rule's boolean temporaries: (n + max work + 2) arrays of the dataset's size."""
    work = max((_WORK_ARRAYS.get(name, 1.0) for name in indicator_names), default=0.0)
    return int(cells_bytes * (len(indicator_names) + work + 2))


def backtest_bytes(cells_bytes: int) -> int:
    """The dense priority matrix, the kernel's buffers and the result frames: about three arrays."""
    return 3 * cells_bytes


def montecarlo_bytes(simulations: int, trades: int) -> int:
    return 5 * 8 * simulations * max(trades, 1) + 64 * MB


def local_parquet_bytes(rows: int, columns: int) -> int:
    """Loading a local Parquet file of rows x columns cells, read from disk and converted a column at a time:
    about 21 bytes per cell and 128 MB (benchmarks/bench_scale.py measured 162 bytes per row of 8 columns at
    9.7, 36 and 73 M rows; Arrow's threads cost more than that below a few million rows), told from the
    file's footer before any of it is read."""
    return 21 * rows * columns + 128 * MB


def upload_bytes(file_bytes: int, head: bytes) -> int:
    """Parsing a file takes about 9x its size (Parquet; CSV less); a gzip or zip one (told by its first bytes,
    `head`), of what it expands to."""
    compressed = head[:2] in (b"\x1f\x8b", b"PK")
    return 9 * file_bytes * (8 if compressed else 1)
