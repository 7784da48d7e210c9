"""Run in a fresh process by tests/test_limits.py: how far loading one file raises the process's peak memory."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pyarrow.parquet as pq  # noqa: E402

from engine import load_market, load_sample  # noqa: E402
from engine.budget import local_parquet_bytes  # noqa: E402

load_sample()  # imports, compiled kernels and allocators warmed: what is left is the load itself


def peak() -> int:
    """This process's peak RSS (VmHWM: getrusage's ru_maxrss would start at the parent's, kept across exec)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


before = peak()
market = load_market(sys.argv[1])
footer = pq.read_metadata(sys.argv[1])
estimate = local_parquet_bytes(footer.num_rows, footer.num_columns)
print(json.dumps({"growth": peak() - before, "estimate": estimate}))
