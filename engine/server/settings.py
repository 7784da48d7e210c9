"""The server's settings, checked before it serves anyone: a setting that cannot be what its operator meant
stops the start with what to fix, rather than serving with less protection than they configured.

- A SCANNER_* variable the server does not know (a misspelt SCANNER_API_TOKENS) names the nearest known one.
- SCANNER_CACHE_KEY, when set, has at least 32 characters.
- The cache's secret file belongs to the server's user with mode 0600: a file someone else could have written
  would let them forge cached results.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from ..errors import InputError

KNOWN = frozenset(
    {
        "SCANNER_API_ANONYMOUS",
        "SCANNER_API_JOB_TTL",
        "SCANNER_API_JOBS_KEPT",
        "SCANNER_API_JOBS_MB",
        "SCANNER_API_TOKEN",
        "SCANNER_API_WORKERS",
        "SCANNER_CACHE_DIR",
        "SCANNER_CACHE_KEY",
        "SCANNER_CACHE_MB",
        "SCANNER_CACHE_RETRY_S",
        "SCANNER_CLI_USER",
        "SCANNER_DASHBOARD_URL",
        "SCANNER_DASK_SCHEDULER",
        "SCANNER_DATASET_MEMO_MB",
        "SCANNER_DATASETS_MB",
        "SCANNER_GRID_WORK",
        "SCANNER_HISTORY_BUSY_S",
        "SCANNER_HISTORY_DAYS",
        "SCANNER_HISTORY_MAX",
        "SCANNER_MAX_DECOMPRESSED_MB",
        "SCANNER_MAX_JSON_MB",
        "SCANNER_MAX_UPLOAD_MB",
        "SCANNER_MEMO_MB",
        "SCANNER_QUEUE_WAIT_S",
        "SCANNER_RULE_MB",
        "SCANNER_SERVER_MB",
        "SCANNER_SOURCE_ALLOW",
        "SCANNER_TEAM_VIEW",
        "SCANNER_USER_HEADER",
        "SCANNER_WEBHOOK_TIMEOUT_S",
    }
)
MIN_KEY_CHARS = 32


class SettingsError(InputError):
    """A setting the server will not start with; the message says which and how to fix it."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Messages for SCANNER_* variables (any case) that are not settings, each with the nearest known name."""
    out = []
    for name in sorted(environ):
        if name.upper().startswith("SCANNER_") and name not in KNOWN:
            near = difflib.get_close_matches(name.upper(), KNOWN, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else f"known settings: {', '.join(sorted(KNOWN))}."
            out.append(f"{name} is not a setting of this server; {hint}")
    return out


def check_secret_file(path: Path) -> None:
    """The secret file, when it exists, belongs to this process's user and nobody else may read or write it."""
    try:
        info = path.stat()
    except OSError:  # none yet, or a directory that cannot be used: the cache turns itself off and says so
        return
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise SettingsError(
            f"The cache secret {path} must belong to this server's user with mode 0600 (it has owner uid "
            f"{info.st_uid} and mode {stat.S_IMODE(info.st_mode):o}). Delete it (a new one is made at the next "
            f"start, and cached results are computed again) or run: chown {os.getuid()} {path} && chmod 600 {path}"
        )


def check(environ: Mapping[str, str] | None = None) -> None:
    """Every start-up check; SettingsError with all that must be fixed."""
    env = os.environ if environ is None else environ
    problems = unknown_variables(env)
    key = env.get("SCANNER_CACHE_KEY", "")
    if key and len(key) < MIN_KEY_CHARS:
        problems.append(
            f"SCANNER_CACHE_KEY has {len(key)} characters; it needs at least {MIN_KEY_CHARS} (for example "
            "the output of: python -c 'import secrets; print(secrets.token_hex(32))'), or unset it to use "
            "the cache directory's secret file."
        )
    directory = env.get("SCANNER_CACHE_DIR", str(Path.home() / ".cache" / "stock-scanner"))
    if directory and not key:
        try:
            check_secret_file(Path(directory).expanduser() / "secret.key")
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("The server does not start: " + " ".join(problems))


def dashboard_link(page: str, query: dict[str, str]) -> str:
    """A dashboard URL that opens `page` with this state (SCANNER_DASHBOARD_URL, default 127.0.0.1:8501). The
    Data page is the default page, at the root (/data is not a route: Streamlit would say "page not found")."""
    base = os.environ.get("SCANNER_DASHBOARD_URL", "http://127.0.0.1:8501").rstrip("/")
    return f"{base}/{'' if page == 'data' else page}?{urlencode(query)}"
