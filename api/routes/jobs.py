"""/api/backtest/optimize, /api/montecarlo and /api/jobs: long work as jobs (202 with an id), their progress,
results and cancellation."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from engine import params as table
from engine.backtest import params_from_values
from engine.events import study_settings
from engine.optimize import OptimizationRun, check_satisfiable, estimate_work, format_grid_spec, grid_from_spec
from engine.rules import parse_rule, split_rank
from engine.server import service
from engine.server.settings import dashboard_link

from ..deps import User, data_id_of, open_dataset, user
from ..jobs import Job, Jobs, submit
from ..models import EventsRequest, MonteCarloRequest, OptimizeRequest, library_values, values_by_path
from ..serialize import clean, records

MAX_GRID_ROWS = 1_000  # combinations listed in an optimisation's result (best first); all of them: the dashboard
router = APIRouter(prefix="/api", dependencies=[Depends(user)])


FIRST_EVENTS = 100  # signals listed in an event study's answer (every one is in the Scanner's CSV)


@router.post("/backtest/optimize", status_code=202, tags=["jobs"])
def start_optimize(req: OptimizeRequest, request: Request, who: User) -> JSONResponse:
    """Start a grid optimisation (mode, objective, split or windows from `settings`) as a job; 202 with its id.
    The grid and the work are checked first (422 with the limit when too big)."""
    market = open_dataset(req.data, who)
    parse_rule(split_rank(req.rule)[0], market.column_kinds())
    grid = grid_from_spec(req.rule, req.grid)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    trials = None if settings["search"] == "grid" else settings["n_trials"]
    check_satisfiable(grid, settings["constraint"])
    estimate = estimate_work(market, grid, settings["mode"], settings["train_bars"], settings["test_bars"], trials)
    estimate.check()
    values = values_by_path(req.params)
    base = params_from_values(values)
    settings_link = {f"optimize.{k}": v for k, v in settings.items()}
    query = table.link_query(data_id_of(market, req.data), req.rule, values | settings_link)
    query["grid"] = format_grid_spec(req.grid)
    scheduler = os.environ.get("SCANNER_DASK_SCHEDULER") or None

    def work(job: Job) -> dict[str, Any] | None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        summary = {"combinations": estimate.combinations, "mode": settings["mode"], "search": settings["search"]}
        try:
            run = service.cached_optimization(
                market,
                req.rule,
                base,
                grid,
                settings,
                who,
                urlencode(query),
                summary,
                should_stop=job.cancel.is_set,
                progress=progress,
                scheduler=scheduler,
            )
        except service.Stopped:
            return None
        return {"cache_hit": run.hit, "link": dashboard_link("optimize", query), **_optimize_view(run.value)}

    return submit(request, who, "optimize", work)


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
    parse_rule(split_rank(req.rule)[0], market.column_kinds())
    values = values_by_path(req.params)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    query = table.link_query(
        data_id_of(market, req.data), req.rule, values | {f"montecarlo.{k}": v for k, v in settings.items()}
    )

    def work(job: Job) -> dict[str, Any]:
        params = params_from_values(values)
        result = service.cached_backtest(market, req.rule, params, who, urlencode(query)).value
        run = service.cached_montecarlo(market, req.rule, result, settings, who, urlencode(query))
        mc, hit = run.value, run.hit
        threshold = settings["drawdown_pct"]
        return {
            "cache_hit": hit,
            "link": dashboard_link("montecarlo", query),
            "trades": len(result.positions),
            "summary": clean(mc.summary().to_dict(orient="index")),
            "probability_of_loss": mc.probability_of_loss(),
            "probability_of_drawdown_worse_than_threshold": mc.probability_of_drawdown_worse_than(threshold),
            "bands": records(mc.bands),
        }

    return submit(request, who, "montecarlo", work)


EVENTS_AT_ONCE_CELLS = 5_000_000  # symbol-bars up to which an event study is answered at once; past it, a job


@router.post("/events", tags=["scan"], responses={202: {"description": "a job, for a large dataset"}})
def run_events(req: EventsRequest, request: Request, who: User) -> Any:
    """What each signal of the rule did next: the summary per horizon (date-clustered intervals, the percentile
    among random entries), the drift curve, the first signals and the Scanner link; cached like a run. Answered
    at once up to EVENTS_AT_ONCE_CELLS symbol-bars; past it, 202 with a job id (GET /api/jobs/{id})."""
    market = open_dataset(req.data, who)
    parse_rule(split_rank(req.rule)[0], market.column_kinds())
    settings = library_values("events", req.settings)
    study_settings(settings)  # a bad horizon list is a 422 now, not a failed job later
    values = {p.path: getattr(req.settings, p.name) for p in table.group("events")}
    query = table.link_query(data_id_of(market, req.data), req.rule, values)

    def work(job: Job | None = None) -> dict[str, Any]:
        run = service.cached_events(market, req.rule, settings, who, urlencode(query))
        study = run.value
        return {
            "data": data_id_of(market, req.data),
            "rule": req.rule,
            "run_id": run.run_id,
            "cache_hit": run.hit,
            "events": len(study.events),
            "open": study.open_events,
            "summary": records(study.summary.reset_index()),
            "path": records(study.path.reset_index()),
            "first_events": records(study.events.head(FIRST_EVENTS)),
            "link": dashboard_link("scanner", query),
        }

    if market.close.size <= EVENTS_AT_ONCE_CELLS:
        return work()
    return submit(request, who, "events", work)


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
    job.place = jobs.place(job) if job.status == "queued" else None
    return job.view()


@router.delete("/jobs/{job_id}", tags=["jobs"])
def cancel_job(job_id: str, request: Request, who: User) -> dict[str, Any]:
    """Cancel a queued or running job (a running grid stops after its current chunk)."""
    job = request.app.state.jobs.cancel(job_id, who)
    if job is None:
        raise HTTPException(404, f"No job {job_id[:40]!r} of yours.")
    return job.view()
