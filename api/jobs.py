"""Long work (grids, Monte Carlo) as jobs on a small thread pool, so a request never waits for it and the
server's event loop never runs it. The kernels release the GIL (`nogil=True`), so jobs and requests run
side by side. Jobs live in memory: queued or running ones are bounded per user and in all; finished ones
are kept for SCANNER_API_JOB_TTL seconds (default 3600) for their owner to fetch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.data import DataError

log = logging.getLogger("scanner.api")
MAX_ACTIVE_PER_USER = 4
MAX_ACTIVE = 32


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

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def view(self) -> dict[str, Any]:
        """What GET /api/jobs/{id} returns."""
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "progress": {"done": self.done, "total": self.total}, "result": self.result, "error": self.error,
                "created": self.created, "finished": self.finished}  # fmt: skip


class Jobs:
    """Submit work as a job; look it up, or cancel it, by id and owner (another user's job is not found)."""

    def __init__(self, workers: int | None = None, ttl: float | None = None) -> None:
        self.workers = workers or int(os.environ.get("SCANNER_API_WORKERS", "2"))
        self.ttl = float(os.environ.get("SCANNER_API_JOB_TTL", "3600")) if ttl is None else ttl
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="api-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, owner: str, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue work(job) -> JSON-able result; the work reports progress on job.done/total and stops early
        when job.cancel is set."""
        with self._lock:
            self._forget_expired()
            active = [j for j in self._jobs.values() if j.active]
            mine = sum(j.owner == owner for j in active)
            if mine >= MAX_ACTIVE_PER_USER:
                raise Busy(f"You have {mine} jobs queued or running (the limit is {MAX_ACTIVE_PER_USER}); wait "
                           "for one to finish or cancel one with DELETE /api/jobs/{id}.")  # fmt: skip
            if len(active) >= MAX_ACTIVE:
                raise Busy(f"The server has {len(active)} jobs queued or running (the limit is {MAX_ACTIVE}); "
                           "try again in a minute.")  # fmt: skip
            job = Job(uuid.uuid4().hex, owner, kind)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def cancel(self, job_id: str, owner: str) -> Job | None:
        job = self.get(job_id, owner)
        if job is not None and job.active:
            job.cancel.set()
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
        return job

    def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        if job.cancel.is_set():
            return
        job.status = "running"
        try:
            result = work(job)
            job.result = result
            if job.total == 0:  # served from the cache: nothing was counted
                job.done = job.total = 1
            job.status = "cancelled" if job.cancel.is_set() else "done"
        except DataError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception:  # noqa: BLE001 - a bug fails the job with a plain message; the traceback stays in the log
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error = "failed", "An unexpected error stopped the job (it has been logged)."
        job.finished = time.time()

    def _forget_expired(self) -> None:
        now = time.time()
        for job_id in [j.id for j in self._jobs.values() if j.finished and now - j.finished > self.ttl]:
            del self._jobs[job_id]
