"""Long work (grids, Monte Carlo) as jobs on a few worker threads, so a request never waits for it and the
server's event loop never runs it. The kernels release the GIL (`nogil=True`), so jobs and requests run
side by side. Workers take jobs per user in turn (round robin across the users with waiting work), and one
user runs at most all workers but one at once (SCANNER_API_WORKERS, default 3), so another user's job starts
as soon as it is submitted, however long the first user's searches are; a queued job says its place in line.
Jobs live in memory: queued or running ones are bounded per user and in all; finished ones
are kept for their owner to fetch for SCANNER_API_JOB_TTL seconds (default 3600), at most
SCANNER_API_JOBS_KEPT (default 50) per user and SCANNER_API_JOBS_MB (default 256) of results in memory in all, oldest
first out. A timer expires them even when nothing is submitted; an expired job's id answers "expired".
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from engine.errors import InputError

log = logging.getLogger("scanner.api")
MAX_ACTIVE_PER_USER = 4
MAX_ACTIVE = 32
EXPIRED_REMEMBERED = 10_000  # ids of expired jobs kept to answer "expired" rather than "unknown"
SWEEP_S = 30.0


def held_bytes(value: Any) -> int:
    """What a JSON-like result holds in memory: its objects' sizes, containers and contents (not its JSON's
    length, which is a few times smaller)."""
    size, todo, seen = 0, [value], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            todo += item
    return size


class Busy(Exception):
    """Too many queued or running jobs; the message says how many and what to do."""


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    size: int = 0  # bytes the result holds in memory, counted against the byte budget
    place: int | None = None  # while queued: how many jobs start before it (set when viewed)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def view(self) -> dict[str, Any]:
        """What GET /api/jobs/{id} returns."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": {"done": self.done, "total": self.total},
            "place_in_line": self.place,
            "result": self.result,
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
        }


class Jobs:
    """Submit work as a job; look it up, or cancel it, by id and owner (another user's job is not found)."""

    def __init__(
        self,
        workers: int | None = None,
        ttl: float | None = None,
        kept: int | None = None,
        kept_bytes: int | None = None,
        sweep_s: float = SWEEP_S,
    ) -> None:
        env = os.environ.get
        self.workers = workers or int(env("SCANNER_API_WORKERS", "3"))
        self.per_user = max(1, self.workers - 1)  # one worker is always free for another user
        self.ttl = float(env("SCANNER_API_JOB_TTL", "3600")) if ttl is None else ttl
        self.kept = int(env("SCANNER_API_JOBS_KEPT", "50")) if kept is None else kept
        self.kept_bytes = int(float(env("SCANNER_API_JOBS_MB", "256")) * 2**20) if kept_bytes is None else kept_bytes
        self._jobs: dict[str, Job] = {}
        self._waiting: OrderedDict[str, deque[tuple[Job, Callable[[Job], Any]]]] = OrderedDict()  # owner -> line
        self._running: dict[str, int] = {}  # owner -> jobs running
        self._ready = threading.Condition(threading.Lock())
        self._expired: OrderedDict[str, str] = OrderedDict()  # id -> owner
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._sweep, args=(sweep_s,), name="api-job-expiry", daemon=True).start()
        for n in range(self.workers):
            threading.Thread(target=self._work, name=f"api-job-{n}", daemon=True).start()

    def submit(self, owner: str, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue work(job) -> JSON-able result; the work reports progress on job.done/total and stops early
        when job.cancel is set."""
        with self._lock:
            self._forget_expired()
            active = [j for j in self._jobs.values() if j.active]
            mine = sum(j.owner == owner for j in active)
            if mine >= MAX_ACTIVE_PER_USER:
                raise Busy(
                    f"You have {mine} jobs queued or running (the limit is {MAX_ACTIVE_PER_USER}); wait "
                    "for one to finish or cancel one with DELETE /api/jobs/{id}."
                )
            if len(active) >= MAX_ACTIVE:
                raise Busy(
                    f"The server has {len(active)} jobs queued or running (the limit is {MAX_ACTIVE}); "
                    "try again in a minute."
                )
            job = Job(uuid.uuid4().hex, owner, kind)
            self._jobs[job.id] = job
        with self._ready:
            self._waiting.setdefault(owner, deque()).append((job, work))
            self._ready.notify()
        return job

    def place(self, job: Job) -> int:
        """How many jobs will start before this queued one (0: it is next), taking turns across users."""
        with self._ready:
            line = self._waiting.get(job.owner, deque())
            mine = next((i for i, (queued, _) in enumerate(line) if queued is job), None)
            if mine is None:
                return 0
            others = sum(min(len(q), mine + 1) for o, q in self._waiting.items() if o != job.owner)
            return mine + others

    def _next(self) -> tuple[Job, Callable[[Job], Any]] | None:
        """The first user in turn with waiting work and a free share of the workers; that user goes last."""
        for owner, line in self._waiting.items():
            if line and self._running.get(owner, 0) < self.per_user:
                item = line.popleft()
                self._waiting.move_to_end(owner)
                if not line:
                    del self._waiting[owner]
                return item
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                item = self._next()
                while item is None and not self._stop.is_set():
                    self._ready.wait(1.0)
                    item = self._next()
                if item is None:
                    return
                job = item[0]
                self._running[job.owner] = self._running.get(job.owner, 0) + 1
            try:
                self._run(*item)
            finally:
                with self._ready:
                    self._running[job.owner] -= 1
                    self._ready.notify_all()

    def get(self, job_id: str, owner: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def expired(self, job_id: str, owner: str) -> bool:
        """Was this the owner's job, now expired (kept too long, or over the count or byte limit)?"""
        with self._lock:
            return self._expired.get(job_id) == owner

    def cancel(self, job_id: str, owner: str) -> Job | None:
        job = self.get(job_id, owner)
        if job is not None and job.active:
            job.cancel.set()
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
        return job

    def shutdown(self) -> None:
        self._stop.set()
        for job in list(self._jobs.values()):
            job.cancel.set()
        with self._ready:
            self._waiting.clear()
            self._ready.notify_all()

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        if job.cancel.is_set():
            return
        job.status = "running"
        try:
            result = work(job)
            job.result = result
            job.size = held_bytes(result)
            if job.total == 0:  # served from the cache: nothing was counted
                job.done = job.total = 1
            job.status = "cancelled" if job.cancel.is_set() else "done"
        except InputError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception:  # a bug fails the job with a plain message; the traceback stays in the log
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error = "failed", "An unexpected error stopped the job (it has been logged)."
        job.finished = time.time()
        with self._lock:
            self._forget_expired()

    def _sweep(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            with self._lock:
                self._forget_expired()

    def _forget_expired(self) -> None:
        """Drop finished jobs past the TTL, past the per-user count and past the byte budget, oldest first."""
        now = time.time()
        finished = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished or 0)
        per_user: dict[str, int] = {}
        for job in reversed(finished):  # newest first: the first `kept` of each user stay
            per_user[job.owner] = per_user.get(job.owner, 0) + 1
            if per_user[job.owner] > self.kept or now - (job.finished or now) > self.ttl:
                self._expire(job)
        total = sum(j.size for j in finished if j.id in self._jobs)
        for job in finished:
            if total <= self.kept_bytes:
                break
            if job.id in self._jobs:
                self._expire(job)
                total -= job.size

    def _expire(self, job: Job) -> None:
        del self._jobs[job.id]
        self._expired[job.id] = job.owner
        while len(self._expired) > EXPIRED_REMEMBERED:
            self._expired.popitem(last=False)


def _accepted(job: Job) -> JSONResponse:
    url = f"/api/jobs/{job.id}"
    return JSONResponse({"id": job.id, "status": job.status, "url": url}, status_code=202, headers={"Location": url})


def submit(request: Request, who: str, kind: str, work: Any) -> JSONResponse:
    """Queue the caller's work: 202 with its job's address, or 429 when they have too many waiting."""
    try:
        return _accepted(request.app.state.jobs.submit(who, kind, work))
    except Busy as exc:
        raise HTTPException(429, str(exc)) from None
