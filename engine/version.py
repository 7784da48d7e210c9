"""The engine's version for cache keys: the package version plus a hash of the source that decides results
(engine/*.py and engine/data/*.py), so any edit to it misses the cache rather than serving an old answer."""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import __version__

_HERE = Path(__file__).parent


def _engine_version() -> str:
    h = hashlib.blake2b(digest_size=6)
    for path in [*sorted(_HERE.glob("*.py")), *sorted((_HERE / "data").glob("*.py"))]:
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()}"


ENGINE_VERSION = _engine_version()
