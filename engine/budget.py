"""Memory estimates of heavy work (calibrated by tests/test_memory.py against measured peaks) and the
machine's free memory. The library and the CLI check local work against the machine; the server's admission
(`engine/server/admission.py`) reserves these estimates from its budget.
"""

from __future__ import annotations

import os

from .errors import DataError

MB = 2**20


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


EVENT_BYTES = 32  # one skipped or cut signal in the kernel's event log (engine/_records.py EVENT)


def backtest_bytes(cells_bytes: int, signals: int | None = None) -> int:
    """The dense priority matrix, the kernel's buffers and the result frames (about three arrays), plus the
    event log, at most one record per signal, twice (the result's and the cache's encoded copy). Without a
    count, every bar may signal. Measured on 1,000 x 2,520 bars of `close > sma(50)` (1.3 M skipped
    signals): 127-146 MB for the backtest, 164 MB for the cache's write; this says 190 MB."""
    events = cells_bytes // 8 if signals is None else signals
    return 3 * cells_bytes + 2 * EVENT_BYTES * events + 16 * 2**20


def montecarlo_bytes(simulations: int, trades: int) -> int:
    return 5 * 8 * simulations * max(trades, 1) + 64 * MB


def local_parquet_bytes(rows: int, columns: int) -> int:
    """Loading a local Parquet file of rows x columns cells, read from disk and converted a column at a time:
    about 21 bytes per cell and 128 MB (benchmarks/bench_scale.py measured 162 bytes per row of 8 columns at
    9.7, 36 and 73 M rows; Arrow's threads cost more than that below a few million rows), told from the
    file's footer before any of it is read."""
    return 21 * rows * columns + 128 * MB


def stored_read_bytes(rows: int, columns: int) -> int:
    """Reading a dataset the server stored (its own zstd Parquet of rows x columns cells) into a Market: 24
    bytes a cell (measured 392-430 MB for 2.41 M rows x 8 columns, 19.3 M cells, with large frees returned)."""
    return 24 * rows * columns


def upload_bytes(file_bytes: int, head: bytes) -> int:
    """Parsing a file takes about 9x its size (Parquet; CSV less); a gzip or zip one (told by its first bytes,
    `head`), of what it expands to."""
    compressed = head[:2] in (b"\x1f\x8b", b"PK")
    return 9 * file_bytes * (8 if compressed else 1)
