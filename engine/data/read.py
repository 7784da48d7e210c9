"""Reading bytes: the size limits, decompression (gzip, zip) with a bound on expansion, Parquet, and CSV
(dialect sniffing, header aliases) into an Arrow table; `LoadOptions` says how."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .. import params as table
from ..budget import check_available, local_parquet_bytes, upload_bytes
from ..errors import BadRowsError, DataError

# Arrow on the system allocator unless the host chose one: its default (mimalloc) keeps freed pages, so a
# 10 M-row load peaked 0.3-0.6 GB higher and held ~0.6 GB more after (benchmarks/bench_scale.py); a server
# (benchmarks/load_test.py) goes back nearer its baseline after uploads.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())

PRICE_COLUMNS = ("open", "high", "low", "close")
EXAMPLES = 5  # rows or symbols quoted in a message
MAX_EXPANSION = 100  # real price files compress 3-10:1; more than this is a decompression bomb


NULLS = ["", "nan", "NaN", "NA", "N/A", "null", "NULL", "None", "none", "-"]


ALIASES = {
    "symbol": ("symbol", "ticker", "code", "stock", "name", "instrument"),
    "date": ("date", "datetime", "timestamp", "time", "day"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last", "price"),
    "volume": ("volume", "vol", "v"),
    "adj_close": ("adj_close", "adj close", "adjclose", "adjusted_close", "adj. close"),
    "sector": ("sector", "industry", "group"),
    "dividend": ("dividend", "dividends", "div", "dividend_amount", "cash_dividend", "dividend_per_share"),
}


OnBadRows = Literal["raise", "drop"]


Prices = Literal["raw", "adjusted", "split_adjusted"]
Intraday = Literal["refuse", "daily"]


def max_upload_bytes() -> int:
    """The file size limit: SCANNER_MAX_UPLOAD_MB (default 200), read at each load so a host can change it."""
    return int(float(os.environ.get("SCANNER_MAX_UPLOAD_MB", "200")) * 1024 * 1024)


def max_decompressed_bytes() -> int:
    """Decompressed size limit: SCANNER_MAX_DECOMPRESSED_MB (default 1024)."""
    return int(float(os.environ.get("SCANNER_MAX_DECOMPRESSED_MB", "1024")) * 1024 * 1024)


@dataclass(frozen=True)
class LoadOptions:
    """How to read a file: what to do with bad rows, which prices to use, how to read dates."""

    on_bad_rows: OnBadRows = table.TABLE["load.on_bad_rows"].library_default
    prices: Prices = table.TABLE["load.prices"].library_default
    date_format: str | None = table.TABLE["load.date_format"].library_default  # None: detect
    intraday: Intraday = table.TABLE["load.intraday"].library_default
    outlier_pct: float = table.TABLE["load.outlier_pct"].library_default

    def __post_init__(self) -> None:
        table.normalise("load", self)  # the table's `load` rows: their ranges, choices and messages


def local_parquet(source: str | os.PathLike | BinaryIO, max_bytes: int | None) -> Path | None:
    """The path of a local Parquet file (no upload limit: read from disk, not through memory), after the
    memory check read_bytes does; None for anything else."""
    if max_bytes is not None or hasattr(source, "read"):
        return None
    path = Path(source)
    head = _head(path) if path.is_file() else b""
    if not (path.suffix.lower() in (".parquet", ".pq") or head[:2] == b"PA"):
        return None
    size = _size(path)
    try:
        footer = pq.read_metadata(path)
    except (pa.ArrowException, OSError, ValueError):
        return None  # not readable as Parquet: read as bytes, which says what is wrong
    need = local_parquet_bytes(footer.num_rows, footer.num_columns)
    check_available(need, f"Loading {path.name} ({_human(size)}, {footer.num_rows:,} rows)", _SMALLER)
    return path


def read_bytes(source: str | os.PathLike | BinaryIO, max_bytes: int | None) -> bytes:
    """The file's bytes, within `max_bytes` (an upload's limit). None: a local file (the library, the CLI),
    limited only by the memory parsing it needs, checked against what the machine has available first."""
    if max_bytes is None:
        local = _size(source)
        check_available(upload_bytes(local, _head(source)), f"Loading {_name(source)} ({_human(local)})", _SMALLER)
        return source.read() if hasattr(source, "read") else Path(source).read_bytes()
    if hasattr(source, "read"):
        size = getattr(source, "size", None)
        if size is not None and size > max_bytes:
            raise too_big(size, max_bytes)
        raw = source.read(max_bytes + 1)
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"File not found: {path}")
        if path.stat().st_size > max_bytes:
            raise too_big(path.stat().st_size, max_bytes)
        raw = path.read_bytes()
    if len(raw) > max_bytes:
        raise too_big(len(raw), max_bytes)
    return raw


_SMALLER = "Load fewer symbols or dates (e.g. a Parquet of the ones you need), or use a machine with more memory."


def _name(source) -> str:
    return Path(str(getattr(source, "name", source))).name


def _size(source) -> int:
    """The size of a path or of a seekable file-like (0 when it cannot be told)."""
    if not hasattr(source, "read"):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"File not found: {path}")
        return path.stat().st_size
    size = getattr(source, "size", None)
    if size is not None:
        return int(size)
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
        return int(end - here)
    except (AttributeError, OSError, ValueError):
        return 0


def _head(source) -> bytes:
    """The first two bytes (gzip and zip are told by them), leaving the source where it was."""
    try:
        if not hasattr(source, "read"):
            with open(source, "rb") as handle:
                return handle.read(2)
        here = source.tell()
        head = source.read(2)
        source.seek(here)
        return head
    except (AttributeError, OSError, ValueError):
        return b""


def _human(n_bytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:,} bytes"


def too_big(size: int, limit: int) -> DataError:
    return DataError(
        f"The file is {_human(size)}, over the {_human(limit)} limit. "
        "Upload a smaller file (e.g. Parquet, or fewer symbols) or raise SCANNER_MAX_UPLOAD_MB."
    )


def decompress(raw: bytes, filename: str) -> bytes:
    """gzip input, decompressed in pieces and refused as soon as it exceeds the limits (never all of it)."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    limit = min(max_decompressed_bytes(), MAX_EXPANSION * len(raw))
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while chunk := stream.read(8 * 1024 * 1024):
                out.write(chunk)
                if out.tell() > limit:
                    why = (
                        f"more than {MAX_EXPANSION}:1, which real price files never do"
                        if limit < max_decompressed_bytes()
                        else f"over the {_human(limit)} limit (SCANNER_MAX_DECOMPRESSED_MB)"
                    )
                    raise DataError(
                        f"{Path(filename).name} expands to over {_human(out.tell())} when "
                        f"decompressed: {why}. Upload the file uncompressed or as Parquet."
                    )
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{Path(filename).name} is not a complete gzip file ({exc}). Compress it again or upload it uncompressed."
        ) from None
    return out.getvalue()


def unzip(raw: bytes, filename: str) -> bytes:
    """The one CSV inside a zip archive, read within the same limits as gzip; anything else says to unzip."""
    if raw[:4] != b"PK\x03\x04":
        return raw
    shown = Path(filename).name
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
            if len(members) != 1 or not members[0].filename.lower().endswith((".csv", ".txt", ".tsv")):
                names = ", ".join(m.filename for m in members[:3]) + (", ..." if len(members) > 3 else "")
                raise DataError(
                    f"{shown} is a zip archive of {len(members)} files ({names[:120]}): unzip it and "
                    "upload the CSV or Parquet file itself (one archive can hold one CSV)."
                )
            limit = min(max_decompressed_bytes(), MAX_EXPANSION * len(raw))
            with archive.open(members[0]) as stream:
                out = stream.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise DataError(
            f"{shown} is not a readable zip archive ({str(exc)[:100]}): unzip it and upload the CSV itself."
        ) from None
    if len(out) > limit:
        raise DataError(
            f"{shown} expands to over {_human(limit)} when unzipped: upload the CSV uncompressed or as Parquet."
        )
    return out


def read_parquet(raw: bytes | Path, filename: str) -> pa.Table:
    """The Parquet file's table, from its bytes (an upload) or straight from its path (a local file: no copy
    of the file in memory)."""
    try:
        return pq.read_table(raw if isinstance(raw, Path) else io.BytesIO(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{Path(filename).name} is not a readable Parquet file ({str(exc)[:160]}). "
            "It may be truncated: export it again."
        ) from None


@dataclass(frozen=True)
class Numbering:
    """How messages name a row: 'line' numbers in a CSV (header = line 1), 'row' numbers otherwise."""

    word: str
    first: int
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # CSV lines read as no row

    def numbers(self, idx: np.ndarray) -> np.ndarray:
        base = np.asarray(idx, np.int64) + self.first
        if not len(self.skipped):
            return base
        # The k-th kept row sits after every skipped line numbered at or below it.
        out = base.copy()
        for _ in range(2):
            out = base + np.searchsorted(self.skipped, out, side="right")
        return out


def _sniff(text: bytes) -> tuple[str, str]:
    """(delimiter, decimal mark) from the first lines: , ; tab or |, and a decimal comma where used."""
    head = text[:65536].decode("utf-8", errors="replace").splitlines()[:20]
    if not head:
        return ",", "."
    header = head[0]
    delimiter = max((",", ";", "\t", "|"), key=lambda d: (header.count(d), d == ","))
    decimal = "."
    if delimiter != ",":
        body = "\n".join(head[1:])
        if re.search(r"\d,\d", body) and not re.search(r"\d\.\d", body):
            decimal = ","
    return delimiter, decimal


def read_csv(text: bytes, filename: str, opts: LoadOptions) -> tuple[pa.Table, Numbering, pd.DataFrame | None]:
    """The CSV as a table of strings, how its rows are numbered, and the ragged lines left out (if any)."""
    if text[:3] == b"\xef\xbb\xbf":
        text = text[3:]
    if b"\r" in text[:65536] and b"\n" not in text[:65536]:  # old Mac line endings (CR only)
        text = text.replace(b"\r", b"\n")
    head = text[:4096]
    if head.count(b"\x00") > len(head) // 20 or (head[:1] == b"\x00" and b"\n" not in head):
        raise DataError(f"{Path(filename).name} is binary, not a CSV or Parquet file.")
    delimiter, decimal = _sniff(text)
    first_line = text.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip("\r")
    if len(first_line) > csv.field_size_limit():
        raise DataError(
            f"The first line of {Path(filename).name} is {len(first_line):,} characters long: the header should name"
            f" the columns (symbol, date, open, high, low, close, volume) in at most {csv.field_size_limit():,}."
        )
    names = next(csv.reader([first_line], delimiter=delimiter), [])
    internal = [f"c{i}" for i in range(len(names))]
    convert = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(internal, pa.string()),
        strings_can_be_null=True,
        null_values=NULLS,
        quoted_strings_can_be_null=True,
    )
    read = dict(column_names=internal, skip_rows=1)
    skipped: list[int] = []
    dropped = None
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text),
            read_options=pa_csv.ReadOptions(**read),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False),
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        if "columns" not in str(exc):
            raise DataError(f"Could not read {Path(filename).name} as CSV: {str(exc)[:200]}") from None
        ragged: list[tuple[int, str]] = []

        def handler(row) -> str:
            if row.text.strip():
                ragged.append((row.number, row.text[:60]))
            else:
                skipped.append(row.number)
            return "skip"

        table = pa_csv.read_csv(
            io.BytesIO(text),
            read_options=pa_csv.ReadOptions(**read, use_threads=False),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=handler, ignore_empty_lines=False
            ),
            convert_options=convert,
        )
        if ragged:
            rows = pd.DataFrame(
                {
                    "line": [n for n, _ in ragged],
                    "symbol": "",
                    "date": "",
                    "reason": f"field count is not the header's {len(names)}",
                }
            )
            if opts.on_bad_rows == "raise":
                required_columns(names)  # a header without the columns is the news, not its ragged rows
                examples = ", ".join(f"line {n} ({t!r})" for n, t in ragged[:EXAMPLES])
                message = (
                    f"{len(ragged):,} {'row does' if len(ragged) == 1 else 'rows do'} not have the header's "
                    f"{len(names)} fields, "
                    f"e.g. {examples}. Fix these lines, or load without them."
                )
                raise BadRowsError(message, rows) from None
            skipped.extend(n for n, _ in ragged)
            dropped = rows
    table = table.rename_columns(names)
    if decimal == ",":
        table = pa.table(
            [
                pc.replace_substring(col, ",", ".") if n.strip().lower() in _NUMERIC_NAMES else col
                for n, col in zip(names, table.columns, strict=True)
            ],
            names=names,
        )
    return table, Numbering("line", 2, np.array(sorted(skipped), np.int64)), dropped


_NUMERIC_NAMES = {a for key in ("open", "high", "low", "close", "volume", "adj_close") for a in ALIASES[key]}


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _check_header(names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = _norm(n)
        if key in seen:
            raise DataError(
                f"Column {n.strip()!r} appears twice (columns {seen[key] + 1} and {i + 1}). Keep one "
                "column of each name."
            )
        seen[key] = i


def _map_columns(names: list[str]) -> dict[str, str]:
    """canonical name -> the file's column name, by the alias table (first alias that is present wins)."""
    _check_header(names)
    by_key = {_norm(n).replace(" ", "_"): n for n in names} | {_norm(n): n for n in names}
    out: dict[str, str] = {}
    used: set[str] = set()
    for canonical, aliases in ALIASES.items():
        for alias in aliases:
            for key in (alias, alias.replace(" ", "_")):
                if key in by_key and by_key[key] not in used:
                    out[canonical] = by_key[key]
                    used.add(by_key[key])
                    break
            if canonical in out:
                break
    return out


def required_columns(names: list[str]) -> dict[str, str]:
    """_map_columns, or a DataError naming the required columns the header lacks."""
    cols = _map_columns(names)
    missing = [c for c in ("date", *PRICE_COLUMNS) if c not in cols]
    if missing:
        raise DataError(
            f"Missing required column(s): {', '.join(missing)}. Found: {', '.join(names)}. "
            "Expected symbol (or ticker), date, open, high, low, close and volume, in any case."
        )
    return cols
