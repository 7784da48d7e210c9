"""Admission: one memory budget for the whole server process, enforced by measuring the process.

A scan, backtest, grid, Monte Carlo or upload asks `reserve(nbytes, what)` with its calibrated estimate
(`engine/budget.py`). It runs at once when nothing else is running, or when both the reservations under way
and the process's measured resident memory above its idle size, plus this estimate, fit the budget: so what
the estimates miss (memos, responses being built, memory not yet returned) still holds work back. Otherwise
it waits its turn in a bounded first-come queue (`on_wait` is told how many runs it is queued behind); when
the queue is full, the wait would pass `max_wait_s`, or the caller has gone (`CANCEL`), it is refused
(ServerBusy: the API's 503 with Retry-After). Work larger than the whole budget is refused at once, with the
limit and how to stay under it.

    budget = MemoryBudget(total_bytes=8 * 2**30, measure=process_bytes)
    with budget.reserve(estimate, "scan", on_wait=lambda ahead: print(f"queued behind {ahead} runs")):
        run_the_scan()
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..budget import SERVER_MEMO_MB, SERVER_RULE_MB, machine_bytes
from ..errors import DataError, InputError
from . import settings

MB = 2**20
# Who is told about a wait when the caller passes no on_wait: the page being drawn (set per script run).
WAIT_NOTICE: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("wait_notice", default=None)
# Set when the caller of the work under way has gone (an HTTP client that disconnected): a queued run leaves.
CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("cancel", default=None)
POLL_S = 0.2  # how often a waiting run looks at the process's memory again


def server_budget_bytes() -> int:
    """SCANNER_SERVER_MB (default half of this machine's memory)."""
    given = os.environ.get("SCANNER_SERVER_MB", "")
    return int(float(given) * MB) if given else machine_bytes() // 2


def serve_defaults() -> None:
    """Called where a server starts (the dashboard, the API): limits that protect users from each other apply
    there, and only there (the library and the CLI are limited by the machine's memory). The memos are a
    quarter of the budget at most, so that work has the rest; freed arrays go back to the system at once.
    SettingsError (the server must not start) when a setting is unusable (`settings.check`)."""
    settings.check()
    quarter_mb = server_budget_bytes() // MB // 4
    os.environ.setdefault("SCANNER_RULE_MB", str(SERVER_RULE_MB))
    os.environ.setdefault("SCANNER_MEMO_MB", str(min(SERVER_MEMO_MB, quarter_mb)))
    os.environ.setdefault("SCANNER_DATASET_MEMO_MB", str(min(1024, quarter_mb)))
    _allocate_to_give_back()


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3


def _allocate_to_give_back() -> None:
    """Allocate so that freed memory can go back to the system (glibc only): at most two heaps, as
    MALLOC_ARENA_MAX=2 would for a host that starts the server without it; and a fixed 1 MB mmap threshold,
    since glibc raises it after each large free, so a server's big arrays would end up in the heap and its
    resident size only grow: every large array is given back when it is freed."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_ARENA_MAX, 2)
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 * MB)


def release_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc keeps them otherwise)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def process_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm; elsewhere 0, so the estimates decide)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


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
    """Reservations of bytes against one total, granted first come, first served. With `measure` (the
    process's resident bytes), the growth it measures above the size at start also has to fit."""

    def __init__(
        self,
        total_bytes: int,
        max_queue: int = 32,
        max_wait_s: float = 600.0,
        measure: Callable[[], int] | None = None,
    ) -> None:
        self.total = int(total_bytes)
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.used = 0
        self.running = 0
        self._measure = measure
        self.idle = measure() if measure is not None else 0
        self.floor = 0  # growth held while nothing runs (the memos, kept datasets), measured when work ends
        self._queue: list[_Ticket] = []
        self._changed = threading.Condition()

    def in_use(self) -> int:
        """Bytes held beyond the idle process: the reservations on top of what is held between runs, or the
        measured growth, whichever is larger (work admitted a moment ago has not allocated yet)."""
        grown = self._measure() - self.idle if self._measure is not None else 0
        return max(self.used + self.floor, grown)

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
            if self._measure is not None:
                release_freed_memory()
            with self._changed:
                self.used -= nbytes
                self.running -= 1
                if self.running == 0 and self._measure is not None:
                    self.floor = max(0, self._measure() - self.idle)
                self._changed.notify_all()

    def _fits(self, ticket: _Ticket) -> bool:
        if self._queue[0] is not ticket:
            return False
        if self.running == 0:  # alone, it fits by its estimate: what else the process holds is bounded
            return True
        return self.in_use() + ticket.nbytes <= self.total

    def _wait_for_room(self, ticket: _Ticket, on_wait: Callable[[int], None] | None, max_wait_s: float | None) -> None:
        limit = self.max_wait_s if max_wait_s is None else max_wait_s
        deadline = time.monotonic() + limit
        gone = CANCEL.get()
        with self._changed:
            if len(self._queue) >= self.max_queue:
                raise self._busy(ticket, f"{len(self._queue)} runs are already waiting (the most the server queues)")
            self._queue.append(ticket)
            told = -1
            try:
                while not self._fits(ticket):
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
                    if gone is not None and gone.is_set():
                        raise self._busy(ticket, "its caller has gone")
                    self._changed.wait(min(left, POLL_S if self._measure is not None else 1.0))
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
