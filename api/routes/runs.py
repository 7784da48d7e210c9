"""/api/scan, /api/backtest/run and /api/runs: signals of a rule, a backtest answered at once (from the run
cache on a repeat) with the dashboard link that reproduces it, and the run history. Answers are bounded: a
backtest's trades and events come as counts and a first page, the rest by page or as a CSV stream."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from engine import params as table
from engine.backtest import BacktestResult, params_from_values
from engine.data import DataError, Market
from engine.server import service
from engine.server.settings import dashboard_link

from ..deps import User, data_id_of, open_dataset, user
from ..models import BacktestRequest, ScanRequest, values_by_path
from ..serialize import clean, csv_chunks, records

router = APIRouter(prefix="/api", dependencies=[Depends(user)])
FIRST_PAGE = 100  # trades and events rows in a backtest's answer; the rest by page or CSV
MAX_PAGE = 10_000
Part = Literal["trades", "events", "positions"]


@router.post("/scan", tags=["scan"])
def run_scan(req: ScanRequest, who: User) -> dict[str, Any]:
    """Signals of a rule on a dataset, newest first; with `date`, the screen on that bar as well (`matches`
    ranked, `entered` and `left` since the bar before, each at most `limit` rows)."""
    market = open_dataset(req.data, who)
    signals = service.cached_scan(market, req.rule)
    out: dict[str, Any] = {
        "count": signals.count,
        "symbols_hit": signals.symbols_hit(),
        "signals": records(signals.table(market, req.limit)),
    }
    if req.date is not None:
        screen = signals.on(None if req.date == "latest" else req.date, market)
        out["screen"] = {
            "date": screen.date.strftime("%Y-%m-%d"),
            "matches": records(screen.matches, req.limit),
            "entered": records(screen.entered, req.limit),
            "left": records(screen.left, req.limit),
        }
    return out


def _signals_rule(req: BacktestRequest, who: str) -> tuple[str, Any, Market]:
    """(the rule text the run is keyed and listed by, the signals (None: the rule's own), the market)."""
    if (req.rule is None) == (req.signals is None):
        raise DataError("Give exactly one of `rule` or `signals`.")
    market = open_dataset(req.data, who)
    if req.rule is not None:
        return req.rule, None, market
    assert req.signals is not None  # exactly one of the two was given
    if len(req.signals) > market.close.size:
        raise DataError(
            f"{len(req.signals):,} signals are more than the dataset's {market.close.size:,} bars "
            "(symbols x dates); send each (symbol, date) once."
        )
    frame = pd.DataFrame([s.model_dump() for s in req.signals], columns=["symbol", "date"])
    digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:16]
    return f"({len(frame):,} signals from the API, sha256 {digest})", frame, market


def _rows(result: BacktestResult, part: str, offset: int, limit: int) -> pd.DataFrame:
    if part == "events":  # built from the page's records only: a run may log a million events
        return result.events_rows(offset, offset + limit)
    frame = result.trades if part == "trades" else result.positions
    return frame.iloc[offset : offset + limit]


def _total(result: BacktestResult, part: str) -> int:
    return len(result.event_log) if part == "events" else len(result.fills if part == "trades" else result.positions)


def _page(result: BacktestResult, run_id: str, part: str, offset: int, limit: int) -> dict[str, Any]:
    total = _total(result, part)
    following = offset + limit if offset + limit < total else None
    base = f"/api/runs/{run_id}/{part}"
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "rows": records(_rows(result, part, offset, limit)),
        "next": None if following is None or not run_id else f"{base}?offset={following}&limit={limit}",
        "csv": f"{base}?format=csv" if run_id else None,
    }


@router.post("/backtest/run", tags=["backtest"])
def run_backtest(req: BacktestRequest, who: User) -> dict[str, Any]:
    """Backtest a rule (or a signal list) with the parameters; served from the run cache on repeat. Trades and
    events come as counts and their first rows, with links to the other pages and to CSV downloads."""
    rule, signals, market = _signals_rule(req, who)
    values = values_by_path(req.params)
    params = params_from_values(values)
    query = table.link_query(data_id_of(market, req.data), rule, values)
    by_rule = req.rule is not None
    run = service.cached_backtest(market, rule, params, who, urlencode(query) if by_rule else "", signals=signals)
    result = run.value
    return {
        "data": data_id_of(market, req.data),
        "rule": rule,
        "run_id": run.run_id,
        "cache_hit": run.hit,
        "metrics": clean(result.metrics),
        "skipped": result.skipped(),
        "ruined_on": clean(result.ruined_on),
        "warnings": result.warnings,
        "link": dashboard_link("backtest", query) if by_rule else None,
        "trades": _page(result, run.run_id, "trades", 0, FIRST_PAGE),
        "events": {**_page(result, run.run_id, "events", 0, FIRST_PAGE), "counts": result.skipped()},
        "equity": records(result.equity),
    }


def _view(record: service.RunRecord, me: str) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "when": record.when,
        "by": service.maker(record),
        "yours": record.session == me,
        "data": record.data,
        "rule": record.rule,
        "params": record.params,
        "metrics": clean(record.metrics),
        "note": record.note,
        "cache_hit": record.cache_hit,
        "link": record.link,
    }


@router.get("/runs", tags=["runs"])
def list_runs(
    who: User,
    team: Annotated[bool, Query(description="Also the teammates' runs you may see")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Your runs (team=true: and the teammates' runs on data open to the team), newest first. Runs on data
    private to a teammate are only counted."""
    page = service.runs_page(who, team, limit, offset)
    return {
        "total": page.total,
        "private_runs_not_shown": page.private,
        "runs": [_view(r, who) for r in page.runs],
    }


def _backtest_of(run_id: str, who: str) -> BacktestResult:
    record = service.find_run(run_id, who)
    if record is None or record.kind != "backtest":
        raise HTTPException(404, f"No backtest run {run_id[:40]!r} that you may see.")
    result = service.run_result(record)
    if result is None:
        raise HTTPException(
            404, "This run's result has left the cache (size limit); run it again with POST /api/backtest/run."
        )
    return result


@router.get("/runs/{run_id}/{part}", tags=["runs"])
def run_rows(
    run_id: str,
    part: Part,
    who: User,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """A page of a backtest's trades, events or positions; format=csv streams every row from the cache."""
    result = _backtest_of(run_id, who)
    if format == "json":
        return _page(result, run_id, part, offset, limit)
    headers = {"Content-Disposition": f'attachment; filename="{run_id}_{part}.csv"'}
    rows = csv_chunks(_total(result, part), lambda start, stop: _rows(result, part, start, stop - start))
    return StreamingResponse(rows, media_type="text/csv", headers=headers)
