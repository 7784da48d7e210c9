"""Where a family's new bars come from: `url` (an HTTP(S) CSV or Parquet address per symbol, e.g. Stooq's daily
CSV), `sql` (a SQLAlchemy URL and a query with `:start`: Postgres, DuckDB, SQLite) and `yahoo` (through the
optional `yfinance`). A source is settings only: a credential is the name of an environment variable
(`{credential}` in a URL, `${NAME}` in a database URL), never its value.

`fetch(source, start)` answers every symbol it could get as one long frame (symbol, date, open, high, low,
close, volume) for the loader, and every symbol it could not with the reason: a timeout, an HTTP error, an
empty answer, a truncated body or a changed header is that symbol's failure, never the whole refresh's.
Requests are bounded: a timeout per request, a few at a time, retries with backoff on timeouts and 5xx, a
size limit per answer; a URL must be http(s) and must not resolve to this machine's loopback or link-local
range (nor redirect there) unless the operator allows the host in SCANNER_SOURCE_ALLOW (comma-separated).
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import DataError

KINDS = ("url", "sql", "yahoo")
TIMEOUT_S = 20.0
ATTEMPTS = 3  # a timeout or a 5xx is tried again after 0.5 s, then 1 s
CONCURRENCY = 4
MAX_ANSWER_BYTES = 64 * 2**20
NEEDED = ("date", "open", "high", "low", "close")
_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")

Progress = Callable[[int, int, str], None]  # (done, total, symbol)


@dataclass(frozen=True)
class Source:
    """A family's source. url: `address` with {symbol} (and optional {start} as YYYY-MM-DD, {credential});
    sql: `address` a SQLAlchemy URL (${NAME} for a secret) and `query` with :start; yahoo: `adjusted`."""

    kind: str
    address: str = ""
    symbols: tuple[str, ...] = ()
    query: str = ""
    credential: str = ""  # the NAME of an environment variable
    adjusted: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"A source is one of {', '.join(KINDS)}; got {self.kind!r}.")
        if self.kind == "url" and "{symbol}" not in self.address:
            raise DataError("A url source's address has {symbol} where each symbol goes, e.g. ...?s={symbol}&i=d.")
        if self.kind == "sql" and ":start" not in self.query:
            raise DataError("A sql source's query has :start (the first date to fetch), e.g. WHERE date >= :start.")
        if self.kind in ("url", "yahoo") and not self.symbols:
            raise DataError(f"A {self.kind} source lists its symbols.")
        if self.credential and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.credential):
            raise DataError("credential is the NAME of an environment variable (A-Z, 0-9, _), not its value.")

    def settings(self) -> dict[str, Any]:
        """What is stored with the family (no secret is in it)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_settings(cls, raw: dict[str, Any]) -> Source:
        known = {k: raw[k] for k in ("kind", "address", "query", "credential", "adjusted") if k in raw}
        return cls(**known, symbols=tuple(str(s) for s in raw.get("symbols", ())))


@dataclass
class Fetched:
    """What a fetch got: the bars (long format) and, per symbol that failed, why."""

    bars: pd.DataFrame
    failures: dict[str, str] = field(default_factory=dict)
    asked: int = 0

    def failure_text(self, shown: int = 5) -> str:
        listed = "; ".join(f"{s}: {why}" for s, why in list(self.failures.items())[:shown])
        more = f"; and {len(self.failures) - shown} more" if len(self.failures) > shown else ""
        return f"{len(self.failures):,} of {self.asked:,} symbols failed: {listed}{more}"


def fetch(
    source: Source,
    start: pd.Timestamp | None,
    symbols: tuple[str, ...] | None = None,
    progress: Progress | None = None,
    opener: Callable[[str], bytes] | None = None,
) -> Fetched:
    """The bars from `start` on (None: the whole history) of the source's symbols (or `symbols`)."""
    wanted = symbols if symbols is not None else source.symbols
    if source.kind == "url":
        return _fetch_url(source, start, wanted, progress, opener or read_url)
    if source.kind == "sql":
        return _fetch_sql(source, start)
    return _fetch_yahoo(source, start, wanted, progress)


# --- url ---------------------------------------------------------------------------------------------------


def _fetch_url(source: Source, start: pd.Timestamp | None, symbols: tuple[str, ...], progress, opener) -> Fetched:
    frames: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    secret = _secret(source.credential)

    def one(symbol: str) -> pd.DataFrame:
        address = source.address.format(
            symbol=urllib.parse.quote(symbol),
            start="" if start is None else start.strftime("%Y-%m-%d"),
            credential=urllib.parse.quote(secret),
        )
        body = opener(address)
        return _table(body, symbol)

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        futures = {symbol: pool.submit(one, symbol) for symbol in symbols}
        for done, (symbol, future) in enumerate(futures.items(), start=1):
            try:
                frame = future.result()
                frames.append(frame if start is None else frame[frame.date >= start])
            except (DataError, OSError, ValueError) as exc:
                failures[symbol] = _reason(exc, secret)
            if progress:
                progress(done, len(symbols), symbol)
    bars = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["symbol", *NEEDED, "volume"])
    return Fetched(bars, failures, len(symbols))


def read_url(address: str) -> bytes:
    """The body at an http(s) address: checked against the allow-list (redirects too), a timeout per request,
    retried with backoff on timeouts, dropped connections and 5xx, at most MAX_ANSWER_BYTES."""
    check_address(address)
    opener = urllib.request.build_opener(_CheckedRedirects())
    for attempt in range(ATTEMPTS):
        try:
            request = urllib.request.Request(address, headers={"User-Agent": "stock-scanner"})
            with opener.open(request, timeout=TIMEOUT_S) as answer:
                body = answer.read(MAX_ANSWER_BYTES + 1)
                length = answer.headers.get("Content-Length")
            if length and length.isdigit() and len(body) < int(length) <= MAX_ANSWER_BYTES:
                raise DataError(f"a truncated answer ({len(body):,} of {int(length):,} bytes)")
            if len(body) > MAX_ANSWER_BYTES:
                raise DataError(f"the answer is larger than {MAX_ANSWER_BYTES // 2**20} MB")
            return body
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS - 1:
                raise DataError(f"HTTP {exc.code} {exc.reason}") from None
        except http.client.IncompleteRead:
            raise DataError("a truncated answer (the connection closed before the body's end)") from None
        except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException) as exc:
            if attempt == ATTEMPTS - 1:
                raise DataError(f"no answer ({_short(exc)})") from None
        time.sleep(0.5 * 2**attempt)
    raise DataError("no answer")  # not reached


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_address(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_address(address: str) -> None:
    """DataError unless the address is http(s) and its host resolves outside loopback and link-local (or the
    operator allows the host in SCANNER_SOURCE_ALLOW)."""
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DataError(f"A source address is http:// or https://; got {address[:60]!r}.")
    allowed = {h.strip().lower() for h in os.environ.get("SCANNER_SOURCE_ALLOW", "").split(",") if h.strip()}
    if parts.hostname.lower() in allowed:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        raise DataError(f"The host {parts.hostname!r} does not resolve.") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            raise DataError(
                f"The address {parts.hostname} resolves to {ip}, this server's own range: refused (an operator "
                "may allow the host in SCANNER_SOURCE_ALLOW)."
            )


def _table(body: bytes, symbol: str) -> pd.DataFrame:
    """One symbol's answer (CSV or Parquet) as the loader's long rows; DataError for an empty answer or one
    without the needed columns (a changed format)."""
    if not body.strip():
        raise DataError("an empty answer")
    try:
        frame = pd.read_parquet(io.BytesIO(body)) if body[:4] == b"PAR1" else pd.read_csv(io.BytesIO(body))
    except (ValueError, OSError) as exc:
        raise DataError(f"not a CSV or Parquet table ({_short(exc)})") from None
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        head = ", ".join(map(str, frame.columns[:8]))
        raise DataError(f"the format changed: no {', '.join(missing)} column (the header is {head[:80]})")
    frame = frame[[c for c in (*NEEDED, "volume") if c in frame.columns]].copy()
    frame["date"] = pd.to_datetime(frame["date"], errors="coerce")
    if frame["date"].isna().any() or frame[list(NEEDED[1:])].isna().any().any():
        raise DataError("a truncated or damaged answer: rows without a date or a price")
    frame.insert(0, "symbol", symbol)
    return frame


def _secret(name: str) -> str:
    if not name:
        return ""
    value = os.environ.get(name)
    if value is None:
        raise DataError(f"The source's credential {name} is not set in the server's environment.")
    return value


def _reason(exc: BaseException, secret: str) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace(secret, "***") if secret else text


def _short(exc: BaseException) -> str:
    return (str(getattr(exc, "reason", "")) or str(exc) or type(exc).__name__)[:80]


# --- sql ---------------------------------------------------------------------------------------------------


def _fetch_sql(source: Source, start: pd.Timestamp | None) -> Fetched:
    try:
        import sqlalchemy
    except ImportError:
        raise DataError("The sql source needs SQLAlchemy: pip install -e .[sql]") from None
    address = _ENV.sub(lambda m: _secret(m.group(1)), source.address)
    when = (start or pd.Timestamp("1900-01-01")).date()
    try:
        engine = sqlalchemy.create_engine(address)
        try:
            with engine.connect() as connection:
                frame = pd.read_sql(sqlalchemy.text(source.query), connection, params={"start": when})
        finally:
            engine.dispose()
    except Exception as exc:  # every driver raises its own: the refresh reports it and keeps the family
        text = str(exc).splitlines()[0][:200]
        for name in _ENV.findall(source.address):
            text = text.replace(os.environ.get(name, "\0"), "***")
        raise DataError(f"The database answered: {text}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("symbol", *NEEDED) if c not in frame.columns]
    if missing:
        raise DataError(f"The query's answer has no {', '.join(missing)} column: return the loader's columns.")
    return Fetched(frame, {}, int(frame["symbol"].nunique()))


# --- yahoo -------------------------------------------------------------------------------------------------


def _fetch_yahoo(source: Source, start: pd.Timestamp | None, symbols: tuple[str, ...], progress) -> Fetched:
    try:
        import yfinance
    except ImportError:
        raise DataError("The yahoo source needs yfinance: pip install -e .[yahoo]") from None
    frames, failures = [], {}
    for done, symbol in enumerate(symbols, start=1):
        try:
            raw = yfinance.download(
                symbol,
                start=None if start is None else start.strftime("%Y-%m-%d"),
                auto_adjust=source.adjusted,
                progress=False,
                timeout=TIMEOUT_S,
            )
            frames.append(from_yahoo(raw, symbol))
        except Exception as exc:  # yfinance raises many kinds: each is this symbol's failure
            failures[symbol] = _short(exc)
        if progress:
            progress(done, len(symbols), symbol)
    bars = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["symbol", *NEEDED, "volume"])
    return Fetched(bars, failures, len(symbols))


def from_yahoo(raw: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """yfinance's frame (a Date index; Open, High, Low, Close, [Adj Close,] Volume, possibly under a second
    column level naming the ticker) as the loader's long rows."""
    if raw is None or raw.empty:
        raise DataError("an empty answer")
    frame = raw.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = frame.columns.get_level_values(0)
    frame = frame.reset_index()
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    return _table(frame.to_csv(index=False).encode(), symbol)
