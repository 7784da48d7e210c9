"""/api/backtest/optimize, /api/montecarlo and /api/jobs: long work as jobs (202 with an id), their progress,
results and cancellation."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from engine import params as table
from engine.backtest import BacktestResult, backtest, params_from_values
from engine.budget import backtest_bytes, montecarlo_bytes
from engine.montecarlo import MonteCarloResult, montecarlo_settings, run_montecarlo
from engine.optimize import (
    OptimizationRun,
    estimate_work,
    format_grid_spec,
    grid_from_spec,
    optimization_key,
    run_optimization,
)
from engine.rules import parse_rule, split_rank
from engine.search import check_constraint, column_name
from engine.stores import cached_scan, reserved, run_cache

from ..deps import User, dashboard_link, data_id_of, open_dataset, user
from ..jobs import Busy, Job, Jobs
from ..models import MonteCarloRequest, OptimizeRequest, values_by_path
from ..serialize import clean, records

MAX_GRID_ROWS = 1_000  # combinations listed in an optimisation's result (best first); all of them: the dashboard
router = APIRouter(prefix="/api", dependencies=[Depends(user)])


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
    parse_rule(split_rank(req.rule)[0], market.column_kinds())
    grid = grid_from_spec(req.rule, req.grid)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    trials = None if settings["search"] == "grid" else settings["n_trials"]
    check_constraint(settings["constraint"], [column_name(k) for k in grid])
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

        summary = {"combinations": estimate.combinations, "mode": settings["mode"], "search": settings["search"]}
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
    parse_rule(split_rank(req.rule)[0], market.column_kinds())
    values = values_by_path(req.params)
    settings = req.settings.model_dump()  # type: ignore[attr-defined]  # a model generated from the table
    query = table.link_query(
        data_id_of(market, req.data), req.rule, values | {f"montecarlo.{k}": v for k, v in settings.items()}
    )

    def work(job: Job) -> dict[str, Any]:
        rule = req.rule
        signals = cached_scan(market, rule)
        params = params_from_values(values)
        run = reserved("backtest", backtest_bytes(market.close.nbytes), lambda: backtest(market, signals, params))
        result, _ = run_cache().run(
            "backtest", market, rule, params, run, BacktestResult.key_metrics, session=who, link=urlencode(query)
        )
        need = montecarlo_bytes(settings["n_simulations"], len(result.positions))
        mc, hit = run_cache().run(
            "montecarlo",
            market,
            rule,
            montecarlo_settings(result, settings),
            reserved("Monte Carlo", need, lambda: run_montecarlo(result, settings)),
            MonteCarloResult.key_figures,
            session=who,
            link=urlencode(query),
        )
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
