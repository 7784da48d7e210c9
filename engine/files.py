"""Atomic file writes and the clean-up of what a crash leaves behind, for the dataset store (the results
cache has diskcache's own).

A file is written beside its final name as `<name>.<pid>.<thread>.tmp`, then renamed over it, so a reader
never sees half a file. A process killed mid-write leaves the `.tmp`: it is removed when the store opens (its
writer's process is gone) and once an hour after, once it is older than any write can take.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TEMPORARY_MAX_AGE_S = 3600.0


def temporary(path: Path) -> Path:
    """Where to write `path` before renaming it into place (unique per process and thread)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomically(path: Path, data: bytes) -> None:
    tmp = temporary(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directory: Path, max_age_s: float = TEMPORARY_MAX_AGE_S) -> int:
    """Remove `*.tmp` files whose writer is gone (its process id no longer runs: a failed or killed write) or
    that are older than max_age_s (a write under way elsewhere is younger); how many went."""
    removed = 0
    now = time.time()
    for path in directory.glob("*.tmp"):
        try:
            if not _writer_alive(path) or now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _writer_alive(path: Path) -> bool:
    """Does the process that named this temporary file (`temporary`) still run on this machine?"""
    parts = path.name.split(".")
    if len(parts) < 4 or not parts[-3].isdigit():
        return True  # not one of ours: left to the age rule
    try:
        os.kill(int(parts[-3]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # runs as another user, or not a process id: keep it
    return True
