"""Frees closed sessions' memory on an idle server.

Streamlit keeps a disconnected session for `server.disconnectedSessionTTL` seconds so a reconnecting tab
gets it back, in a TTL cache that drops expired entries only when something is next written to it; on a
quiet server that can be hours, and each session holds its uploaded file and dataset. This thread reaps
expired sessions every 30 s, then collects garbage and returns freed heap to the OS. It reaches into
Streamlit's session manager (pinned in requirements.txt); if that changes, it stops and logs why, and
memory is freed on the next session write instead.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

import pyarrow

from engine.server.admission import release_freed_memory

log = logging.getLogger("scanner.app")
_started = threading.Event()


def start(every_seconds: float = 30.0) -> None:
    """Start the reaper once per process (later calls do nothing)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_loop, args=(every_seconds,), name="session-reaper", daemon=True).start()


def reap() -> int:
    """Shut down expired disconnected sessions (their uploads, media and state go); how many there were."""
    from streamlit.runtime import Runtime

    manager = Runtime.instance()._session_mgr
    with manager._storage_lock:  # type: ignore[attr-defined]  # Streamlit's own storage: no public API for it
        expired = manager._session_storage._cache.expire()  # type: ignore[attr-defined]
    for _, info in expired:
        info.session.shutdown()  # what Streamlit does when it drops a session: files, media, caches
    gc.collect()
    pyarrow.default_memory_pool().release_unused()  # Parquet writes of datasets and results use Arrow's pool
    release_freed_memory()
    return len(expired)


def _loop(every_seconds: float) -> None:
    while True:
        time.sleep(every_seconds)
        try:
            reap()
        except Exception as exc:  # Streamlit's internals moved: stop, say why, never crash
            log.warning("session reaper stopped: %r", exc)
            return
