"""Run in a fresh process by tests/test_limits.py: how far loading one file raises the process's peak memory."""

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from engine import load_market, load_sample  # noqa: E402

load_sample()  # imports, compiled kernels and allocators warmed: what is left is the load itself


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


before = peak()
market = load_market(sys.argv[1])
print(json.dumps({"growth": peak() - before, "arrays": sum(getattr(market, n).nbytes for n in market.bar_arrays())}))
