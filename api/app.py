"""The HTTP API: the engine, dataset store and run cache of the dashboard, for other programs.

    make api        # uvicorn on 127.0.0.1:8000; OpenAPI docs at /docs

A dataset uploaded here is on the dashboard's Data page (and one uploaded there is here) because both use
`engine.stores`; every run goes through the same run cache, so it is listed in Runs, and a repeat from
either side is served from the cache. Each backtest answer carries a dashboard link that reproduces it.

Access: when SCANNER_API_TOKEN is set, every request needs `Authorization: Bearer <token>`; the variable is
checked at start-up and a malformed one stops the server (api/identity.py). The token's name owns the caller's
runs and datasets (`user:<name>`); without tokens the identity is the trusted proxy header
SCANNER_USER_HEADER, as on the dashboard, else `api:anonymous`. A dataset uploaded by an authenticated caller
is private to them (404 for everyone else) until they share it (`shared=true`, or POST /api/data/{id}/share);
an anonymous caller proves nothing, so its uploads are open to everyone.

Errors are JSON `{"error": message}` with the messages the pages show: 422 for bad input (with `errors`
naming each field), 404 for an unknown dataset or job, 413 for an oversized upload, 429 when too many jobs
are queued; no traceback leaves the server.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import engine
from engine import params as table
from engine.backtest import BacktestResult, backtest, params_from_values
from engine.budget import ServerBusy, backtest_bytes, montecarlo_bytes, upload_bytes
from engine.data import BadRowsError, DataError, Market, load_market, max_upload_bytes, too_big
from engine.datasets import BUILTIN, dataset_id, describe, to_frame, valid_id
from engine.filters import parse_rule
from engine.montecarlo import MonteCarloResult, settings_used, simulate
from engine.optimize import (
    OptimizationRun,
    estimate_work,
    format_grid_spec,
    grid_from_spec,
    optimization_key,
    run_optimization,
)
from engine.safe_csv import to_safe_csv
from engine.stores import builtin, cached_scan, dataset_store, reserved, run_cache

from .identity import Identities, TokenError, from_environment
from .jobs import Busy, Job, Jobs
from .models import BacktestRequest, MonteCarloRequest, OptimizeRequest, ScanRequest, values_by_path

log = logging.getLogger("scanner.api")
MAX_ROWS = 10_000  # rows per page of /api/data/{id}/ohlcv as JSON (CSV and Parquet stream every row)
MAX_GRID_ROWS = 1_000  # combinations listed in an optimisation's result (best first); all of them: the dashboard


# --- identity ---------------------------------------------------------------------------------------------


def user(request: Request) -> str:
    """Who makes this request (401 without a valid token when tokens are configured)."""
    identities: Identities = request.app.state.identities
    header = request.headers.get(identities.header) if identities.header else None
    who = identities.who(request.headers.get("authorization", ""), header)
    if who is None:
        raise HTTPException(
            401,
            "A valid token is required: send the header 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


User = Annotated[str, Depends(user)]


# --- datasets and JSON ----------------------------------------------------------------------------------


def open_dataset(data_id: str, who: str) -> Market:
    """A built-in dataset or a stored one the caller may open; 404 with the dashboard's advice otherwise. A
    dataset private to another user is a 404 like an unknown one: its existence is not confirmed."""
    if data_id in BUILTIN:
        return builtin(data_id)
    market = dataset_store().get(data_id, viewer=who) if valid_id(data_id) else None
    if market is None:
        shown = data_id[:40].replace("`", "'")
        raise HTTPException(
            404,
            f"The dataset `{shown}` is not on this server (unknown, deleted, evicted, or "
            "private to another user). Upload the file again with POST /api/data: the same file "
            "gets the same id.",
        )
    return market


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities -> null, numpy scalars -> numbers, timestamps -> YYYY-MM-DD."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.strftime("%Y-%m-%d")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """A table as a list of JSON objects (a named index, such as the equity curve's dates, as a column)."""
    f = frame if limit is None else frame.head(limit)
    if f.index.name is not None:  # a named index (dates of the equity curve) is a column too
        f = f.reset_index()
    columns = {c: f[c].astype(object) if isinstance(f[c].dtype, pd.CategoricalDtype) else f[c] for c in f.columns}
    return [clean(dict(zip(columns, row, strict=True))) for row in zip(*columns.values(), strict=True)]


def _listing(market: Market, data_id: str, who: str) -> dict[str, Any]:
    info = dataset_store().info(data_id, viewer=who) if data_id not in BUILTIN else None
    listing = describe(market) if info is None else info
    out = {**vars(listing), "id": data_id}
    return clean(out)


def dashboard_link(page: str, query: dict[str, str]) -> str:
    """A dashboard URL that opens `page` with this state (SCANNER_DASHBOARD_URL, default 127.0.0.1:8501)."""
    base = os.environ.get("SCANNER_DASHBOARD_URL", "http://127.0.0.1:8501").rstrip("/")
    return f"{base}/{page}?{urlencode(query)}"


# --- the application --------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """A new application with its own job pool (tests create one each)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.jobs.shutdown()

    app = FastAPI(
        title="Stock scanner & backtester API", version=engine.__version__, lifespan=lifespan, description=__doc__
    )
    try:
        app.state.identities = from_environment()
    except TokenError as exc:  # fail closed: no server without the access control it was configured for
        log.critical("the API does not start: %s", exc)
        raise SystemExit(f"The API does not start: {exc}") from None
    app.state.jobs = Jobs()
    app.add_middleware(BodyLimit)
    # Starlette types a handler as taking any Exception; each of these takes its own class.
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # FastAPI's 404, 405
    app.add_exception_handler(DataError, _data_error)  # type: ignore[arg-type]
    app.add_exception_handler(ServerBusy, _busy)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(router)
    return app


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"] if x not in ("body", "query", "path", "form"))
        cause = (e.get("ctx") or {}).get("error")
        errors.append({"field": where, "message": str(cause) if cause is not None else e["msg"]})
    first = errors[0] if errors else {"field": "", "message": "Invalid request."}
    return _error(422, f"{first['field']}: {first['message']}" if first["field"] else first["message"], errors=errors)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail
    path = request.url.path[:80]
    if exc.status_code == 404 and message == "Not Found":  # the framework's own: no such route
        message = f"There is no endpoint {path}: the endpoints are listed at /docs."
    elif exc.status_code == 405 and message == "Method Not Allowed":
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {path}" + (f"; use {allowed}." if allowed else ".")
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    if isinstance(exc, BadRowsError):
        return _error(422, str(exc), bad_rows=len(exc.rows), rows=records(exc.rows, 100))
    return _error(422, str(exc))


async def _busy(request: Request, exc: ServerBusy) -> JSONResponse:
    response = _error(503, str(exc), queued_behind=exc.queued_behind)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "An unexpected error stopped the request (it has been logged).")


def max_json_bytes() -> int:
    """The body limit of a JSON request: SCANNER_MAX_JSON_MB (default 4), far below the upload limit."""
    return int(float(os.environ.get("SCANNER_MAX_JSON_MB", "4")) * 2**20)


class BodyLimit:
    """413 before reading a body over its limit: a JSON request's (SCANNER_MAX_JSON_MB), else the upload limit
    (SCANNER_MAX_UPLOAD_MB plus 1 MB for the form); by its Content-Length or, when it is streamed, as soon as
    the bytes received pass it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        is_json = not headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        limit = max_json_bytes() if is_json else max_upload_bytes() + 2**20
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            response = _error(413, self._message(int(length), limit, is_json))
            return await response(scope, receive, send)
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, self._message(received, limit, is_json))
            return message

        await self.app(scope, limited, send)

    @staticmethod
    def _message(size: int, limit: int, is_json: bool) -> str:
        if not is_json:
            return str(too_big(size, limit - 2**20))
        return (
            f"The request body is {size / 2**20:,.1f} MB, over the {limit / 2**20:,.1f} MB limit of a JSON "
            "request (SCANNER_MAX_JSON_MB). Send a rule instead of a long signal list, or upload the data "
            "with POST /api/data."
        )


router = APIRouter(prefix="/api")


@router.post("/data", status_code=201, tags=["data"])
def upload_dataset(
    who: User,
    file: Annotated[UploadFile, File(description="CSV (optionally gzip) or Parquet of daily bars")],
    on_bad_rows: Annotated[Literal["raise", "drop"], Form()] = "raise",
    prices: Annotated[Literal["raw", "adjusted", "split_adjusted"], Form()] = "raw",
    date_format: Annotated[str | None, Form(max_length=40)] = None,
    intraday: Annotated[Literal["refuse", "daily"], Form()] = "refuse",
    shared: Annotated[bool, Form(description="List it for the whole team on the Data page")] = False,
) -> dict[str, Any]:
    """Load a file with the Data page's loader and limits and store it; returns its id and listing. Bad rows
    are a 422 naming them; send on_bad_rows=drop to load without them (they are listed here afterwards)."""
    if file.size is not None and file.size > max_upload_bytes():
        raise HTTPException(413, str(too_big(file.size, max_upload_bytes())))
    buffer = io.BytesIO(file.file.read(max_upload_bytes() + 1))
    buffer.name = os.path.basename(file.filename or "upload.csv")
    need = upload_bytes(len(buffer.getvalue()), compressed=buffer.getvalue()[:2] in (b"\x1f\x8b", b"PK"))
    market = reserved(
        "upload",
        need,
        lambda: load_market(
            buffer,
            name=buffer.name,
            on_bad_rows=on_bad_rows,
            prices=prices,
            date_format=date_format or None,
            intraday=intraday,
        ),
    )()
    store = dataset_store()
    try:
        info = store.put(market, owner=who)
        if shared and not info.shared:
            store.set_shared(info.id, who, True)
    except OSError as exc:
        log.error("dataset store unusable: %r", exc)
        raise HTTPException(
            503,
            "The server cannot store datasets right now (its storage is full or unavailable); try again later.",
            headers={"Retry-After": "60"},
        ) from None
    data_id = dataset_id(market)
    return {
        **_listing(market, data_id, who),
        "link": dashboard_link("data", {"data": data_id}),
        "issues": records(market.issues) if market.issues is not None else [],
    }


@router.get("/data", tags=["data"])
def list_datasets(who: User) -> dict[str, Any]:
    """The built-in datasets, this user's and the shared ones (all, for an anonymous caller), newest first."""
    stored = [clean(vars(info)) for info in dataset_store().list(viewer=who)]
    return {"datasets": [_listing(builtin(name), name, who) for name in BUILTIN] + stored}


@router.get("/data/{data_id}", tags=["data"])
def get_dataset(data_id: str, who: User) -> dict[str, Any]:
    """Summary, warnings and the rows the load left out (at most 1,000 listed)."""
    market = open_dataset(data_id, who)
    dropped = market.dropped_rows
    return {
        **_listing(market, data_id, who),
        **market.summary(),
        "dropped": [] if dropped is None else records(dropped, 1000),
    }


@router.delete("/data/{data_id}", tags=["data"])
def delete_dataset(data_id: str, who: User) -> dict[str, Any]:
    """Delete your listing of a dataset (the bars stay while another user's listing uses them; runs on it stay
    in the history)."""
    if data_id in BUILTIN:
        raise HTTPException(403, "Built-in datasets cannot be deleted.")
    open_dataset(data_id, who)  # the 404 for what the caller cannot open
    if not dataset_store().delete(data_id, who):
        raise HTTPException(403, "Only the user who uploaded a dataset can delete it.")
    return {"deleted": data_id}


@router.post("/data/{data_id}/share", tags=["data"])
def share_dataset(data_id: str, who: User, shared: Annotated[bool, Query()] = True) -> dict[str, Any]:
    """List your dataset for the team (`shared=false`: make it private again). Only an uploader can."""
    open_dataset(data_id, who)
    if not dataset_store().set_shared(data_id, who, shared):
        raise HTTPException(403, "Only the user who uploaded a dataset can share it.")
    return _listing(open_dataset(data_id, who), data_id, who)


@router.get("/data/{data_id}/ohlcv", tags=["data"])
def get_bars(
    data_id: str,
    who: User,
    symbols: Annotated[str | None, Query(description="Comma-separated, e.g. AAPL,MSFT (default all)")] = None,
    start: Annotated[str | None, Query(description="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, Query(description="Last date, YYYY-MM-DD")] = None,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """The bars in normalised long format (symbol, date, open, high, low, close, volume[, sector]). JSON is
    paginated (limit, offset, next_offset); CSV and Parquet hold every matching row."""
    market = open_dataset(data_id, who)
    wanted = None if not symbols else [s.strip().upper() for s in symbols.split(",") if s.strip()]
    frame = to_frame(market, wanted, start, end)
    if format == "json":
        page = frame.iloc[offset : offset + limit]
        following = offset + limit if offset + limit < len(frame) else None
        return {"total": len(frame), "offset": offset, "limit": limit, "next_offset": following, "rows": records(page)}
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    name = f"{data_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "parquet":
        out = io.BytesIO()
        frame.to_parquet(out, index=False, compression="zstd")
        return Response(out.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)
    text = io.StringIO()
    to_safe_csv(frame, text, index=False)
    text.seek(0)
    return StreamingResponse(iter(lambda: text.read(1 << 20), ""), media_type="text/csv", headers=headers)


@router.post("/scan", tags=["scan"])
def run_scan(req: ScanRequest, who: User) -> dict[str, Any]:
    """Signals of a rule on a dataset, newest first."""
    market = open_dataset(req.data, who)
    signals = cached_scan(market, req.rule)
    return {
        "count": signals.count,
        "symbols_hit": signals.symbols_hit(),
        "signals": records(signals.table(market, req.limit)),
    }


def _signals_rule(req: BacktestRequest, who: str) -> tuple[str, Any, Market]:
    """(the rule text the run is keyed and listed by, the signals, the market)."""
    if (req.rule is None) == (req.signals is None):
        raise DataError("Give exactly one of `rule` or `signals`.")
    market = open_dataset(req.data, who)
    if req.rule is not None:
        return req.rule, cached_scan(market, req.rule), market
    assert req.signals is not None  # exactly one of the two was given
    if len(req.signals) > market.close.size:
        raise DataError(
            f"{len(req.signals):,} signals are more than the dataset's {market.close.size:,} bars "
            "(symbols x dates); send each (symbol, date) once."
        )
    frame = pd.DataFrame([s.model_dump() for s in req.signals], columns=["symbol", "date"])
    digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:16]
    return f"({len(frame):,} signals from the API, sha256 {digest})", frame, market


def _data_id(market: Market, requested: str) -> str:
    return requested if requested in BUILTIN else dataset_id(market)


@router.post("/backtest/run", tags=["backtest"])
def run_backtest(req: BacktestRequest, who: User) -> dict[str, Any]:
    """Backtest a rule (or a signal list) with the parameters; served from the run cache on repeat."""
    rule, signals, market = _signals_rule(req, who)
    values = values_by_path(req.params)
    params = params_from_values(values)
    data_id = _data_id(market, req.data)
    query = table.link_query(data_id, rule, values)
    by_rule = req.rule is not None
    link = urlencode(query) if by_rule else ""
    compute = reserved("backtest", backtest_bytes(market.close.nbytes), lambda: backtest(market, signals, params))
    result, hit = run_cache().run(
        "backtest", market, rule, params, compute, BacktestResult.key_metrics, session=who, link=link
    )
    return {
        "data": data_id,
        "rule": rule,
        "cache_hit": hit,
        "metrics": clean(result.metrics),
        "skipped": result.skipped(),
        "ruined_on": clean(result.ruined_on),
        "link": dashboard_link("backtest", query) if by_rule else None,
        "trades": records(result.trades),
        "equity": records(result.equity),
        "events": records(result.events),
    }


def _accepted(job: Job) -> JSONResponse:
    url = f"/api/jobs/{job.id}"
    return JSONResponse({"id": job.id, "status": job.status, "url": url}, status_code=202, headers={"Location": url})


def _submit(request: Request, who: str, kind: str, work: Any) -> JSONResponse:
    try:
        return _accepted(request.app.state.jobs.submit(who, kind, work))
    except Busy as exc:
        raise HTTPException(429, str(exc)) from None


class Cancelled(Exception):
    """A job was cancelled: nothing is cached or returned."""


@router.post("/backtest/optimize", status_code=202, tags=["jobs"])
def start_optimize(req: OptimizeRequest, request: Request, who: User) -> JSONResponse:
    """Start a grid optimisation (mode, objective, split or windows from `settings`) as a job; 202 with its id.
    The grid and the work are checked first (422 with the limit when too big)."""
    market = open_dataset(req.data, who)
    parse_rule(req.rule)
    grid = grid_from_spec(req.rule, req.grid)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    estimate_work(market, grid, settings["mode"], settings["train_bars"], settings["test_bars"]).check()
    values = values_by_path(req.params)
    base = params_from_values(values)
    settings_link = {f"optimize.{k}": v for k, v in settings.items()}
    query = table.link_query(_data_id(market, req.data), req.rule, values | settings_link)
    query["grid"] = format_grid_spec(req.grid)
    scheduler = os.environ.get("SCANNER_DASK_SCHEDULER") or None

    def work(job: Job) -> dict[str, Any] | None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def compute() -> Any:
            out = run_optimization(
                market,
                req.rule,
                base,
                grid,
                settings,
                progress=progress,
                should_stop=job.cancel.is_set,
                scheduler=scheduler,
            )
            if job.cancel.is_set():
                raise Cancelled
            return out

        summary = {"combinations": math.prod(map(len, grid.values())), "mode": settings["mode"]}
        compute = reserved("optimisation", 2 * backtest_bytes(market.close.nbytes), compute)
        try:
            out, hit = run_cache().run(
                "optimize",
                market,
                req.rule,
                optimization_key(base, grid, settings),
                compute,
                lambda r: summary,
                session=who,
                link=urlencode(query),
            )
        except Cancelled:
            return None
        return {"cache_hit": hit, "link": dashboard_link("optimize", query), **_optimize_view(out)}

    return _submit(request, who, "optimize", work)


def _optimize_view(out: OptimizationRun) -> dict[str, Any]:
    if out.grid is None:  # walk-forward: one row per window
        return {
            "mode": out.mode,
            "windows": records(out.ranked),
            "efficiency": clean(out.efficiency),
            "anchored": out.anchored,
            "oos_equity": records(out.oos_equity) if out.oos_equity is not None else [],
        }
    result, best = out.grid, out.grid.best()
    return {
        "mode": out.mode,
        "objective": out.objective,
        "best": None if best is None else clean(best.to_dict()),
        "best_params": out.best_params(),
        "combinations": len(result.table),
        "seconds": result.seconds,
        "cancelled": result.cancelled,
        "failed": result.failed,
        "overfitting": clean(out.overfitting()),
        "table": records(out.ranked, MAX_GRID_ROWS),
    }


@router.post("/montecarlo", status_code=202, tags=["jobs"])
def start_montecarlo(req: MonteCarloRequest, request: Request, who: User) -> JSONResponse:
    """Start a Monte Carlo of the rule's backtest trades as a job; 202 with its id."""
    market = open_dataset(req.data, who)
    parse_rule(req.rule)
    values = values_by_path(req.params)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    query = table.link_query(
        _data_id(market, req.data), req.rule, values | {f"montecarlo.{k}": v for k, v in settings.items()}
    )

    def work(job: Job) -> dict[str, Any]:
        rule = req.rule
        signals = cached_scan(market, rule)
        params = params_from_values(values)
        run = reserved("backtest", backtest_bytes(market.close.nbytes), lambda: backtest(market, signals, params))
        result, _ = run_cache().run(
            "backtest", market, rule, params, run, BacktestResult.key_metrics, session=who, link=urlencode(query)
        )
        need = montecarlo_bytes(settings["n_simulations"], len(result.trades))
        mc, hit = run_cache().run(
            "montecarlo",
            market,
            rule,
            settings_used(result, settings),
            reserved("Monte Carlo", need, lambda: simulate(result, settings)),
            MonteCarloResult.key_figures,
            session=who,
            link=urlencode(query),
        )
        threshold = settings["drawdown_pct"]
        return {
            "cache_hit": hit,
            "link": dashboard_link("montecarlo", query),
            "trades": len(result.trades),
            "summary": clean(mc.summary().to_dict(orient="index")),
            "probability_of_loss": mc.probability_of_loss(),
            "probability_of_drawdown_worse_than_threshold": mc.probability_of_drawdown_worse_than(threshold),
            "bands": records(mc.bands),
        }

    return _submit(request, who, "montecarlo", work)


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: str, request: Request, who: User) -> dict[str, Any]:
    """A job's status, progress (done of total) and, once done, its result."""
    jobs: Jobs = request.app.state.jobs
    job = jobs.get(job_id, who)
    if job is None and jobs.expired(job_id, who):
        raise HTTPException(
            404,
            f"Job {job_id[:40]!r} has expired: finished jobs are kept for "
            f"{jobs.ttl / 60:,.0f} minutes, at most {jobs.kept:,} per user. Submit it again (a "
            "repeat is served from the run cache).",
        )
    if job is None:
        raise HTTPException(404, f"No job {job_id[:40]!r} of yours.")
    return job.view()


@router.delete("/jobs/{job_id}", tags=["jobs"])
def cancel_job(job_id: str, request: Request, who: User) -> dict[str, Any]:
    """Cancel a queued or running job (a running grid stops after its current chunk)."""
    job = request.app.state.jobs.cancel(job_id, who)
    if job is None:
        raise HTTPException(404, f"No job {job_id[:40]!r} of yours.")
    return job.view()


@router.get("/params", tags=["reference"])
def parameters() -> list[dict[str, Any]]:
    """The parameter table: path, URL key, label, unit, default, range, whether 0 is off, grid range."""
    return [
        clean(
            {
                "path": p.path,
                "url": p.url,
                "label": p.label,
                "unit": p.unit,
                "default": p.default,
                "min": p.lo,
                "max": p.hi,
                "off": p.off,
                "choices": list(p.choices),
                "allowed": p.allowed(),
                "grid": p.grid,
                "help": p.help,
            }
        )
        for p in table.PARAMS
    ]


app = create_app()
