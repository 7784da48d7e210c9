"""/api/families and /api/data/{family}/append|refresh: named families of dataset versions that stay current."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from engine.data import DataError, load_market, max_upload_bytes
from engine.server import service
from engine.server.families import Family
from engine.server.settings import dashboard_link

from ..deps import User, received, user
from ..jobs import Job, submit
from ..serialize import clean, records

router = APIRouter(prefix="/api", tags=["families"], dependencies=[Depends(user)])
OnRestated = Literal["refuse", "replace"]


def _family(slug: str, who: str) -> Family:
    family = service.families().get(slug, who)
    if family is None:
        raise HTTPException(404, f"No family `{slug[:40]}` you can see (GET /api/families lists them).")
    return family


def _view(family: Family) -> dict[str, Any]:
    return {
        "family": family.slug,
        "name": family.name,
        "owner": family.owner,
        "shared": family.shared,
        "source": family.source,
        "latest": family.latest.id,
        "link": dashboard_link("data", {"family": family.slug}),
        "versions": [clean(vars(v)) for v in reversed(family.versions)],
    }


@router.get("/families")
def list_families(who: User) -> dict[str, Any]:
    """The families you can see (yours and the team's), the latest changed first."""
    return {"families": [_view(f) for f in service.families().list(who)]}


@router.post("/families", status_code=201)
def create_family(
    who: User,
    name: Annotated[str, Form(max_length=80, description="The family's name, e.g. 'PSE daily'")],
    file: Annotated[UploadFile, File(description="CSV or Parquet of daily bars: the first version")],
    shared: Annotated[bool, Form(description="Open to the team")] = False,
    source: Annotated[
        str | None, Form(description='JSON, e.g. {"kind": "url", "address": ..., "symbols": [...]}')
    ] = None,
) -> dict[str, Any]:
    """A new family from a file (the loader's checks and limits), with an optional source for refreshes."""
    buffer = received(file)
    try:
        settings = None if not source else json.loads(source)
    except ValueError:
        raise HTTPException(422, 'source is JSON: {"kind": "url", "address": "...{symbol}...", ...}') from None
    market = load_market(buffer, name=name, max_bytes=max_upload_bytes())
    return _view(service.create_family(name, market, who, shared, settings))


@router.get("/families/{family}")
def get_family(family: str, who: User) -> dict[str, Any]:
    """A family's versions (the latest first, with what each changed) and its source."""
    return _view(_family(family, who))


@router.post("/families/{family}/share")
def share_family(family: str, who: User, shared: Annotated[bool, Query()] = True) -> dict[str, Any]:
    """Open the family (every version) to the team, or make it private again; its owner only."""
    _family(family, who)
    if not service.share_family(family, who, shared):
        raise HTTPException(403, "Only the family's owner can share it.")
    return _view(_family(family, who))


@router.post("/data/{family}/append", tags=["data"])
def append_bars(
    family: str,
    who: User,
    file: Annotated[UploadFile, File(description="CSV or Parquet of recent bars (may overlap the end)")],
    on_restated: Annotated[OnRestated, Form(description="refuse (409 with the differing bars) or replace")] = "refuse",
) -> dict[str, Any]:
    """Append recent bars to the family's latest version: a new version when anything changed. Stored bars
    that differ are refused with 409 and the differing values and their likely cause, unless on_restated=replace."""
    _family(family, who)
    outcome = service.append_to_family(family, received(file), who, on_restated)
    if outcome is None:
        raise HTTPException(403, "Only the owner of a private family, or the team for a shared one, can append.")
    return _outcome(outcome)


@router.post("/data/{family}/refresh", status_code=202, tags=["data"])
def refresh_family(
    family: str,
    request: Request,
    who: User,
    partial: Annotated[bool, Query(description="Append the symbols that answered when some fail")] = False,
    on_restated: Annotated[OnRestated, Query()] = "refuse",
) -> JSONResponse:
    """Fetch the family's new bars from its source as a job (progress per symbol; GET /api/jobs/{id}): a new
    version only when something changed; an outage keeps the last good version and lists the failures."""
    found = _family(family, who)
    if not found.source:
        raise HTTPException(422, f"The family {found.name!r} has no source: create it with one to refresh it.")

    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int, symbol: str) -> None:
            job.done, job.total = done, total

        outcome = service.refresh_family(family, who, partial=partial, on_restated=on_restated, progress=progress)
        if outcome is None:
            raise DataError("Only the owner of a private family, or the team for a shared one, can refresh it.")
        return _outcome(outcome)

    return submit(request, who, "refresh", work)


def _outcome(outcome: service.Outcome) -> dict[str, Any]:
    report = outcome.report
    return {
        **_view(outcome.family),
        "changed": outcome.changed,
        "message": outcome.message,
        "failures": outcome.failures,
        "bars_added": 0 if report is None else report.bars_added,
        "symbols_added": [] if report is None else list(report.symbols_added),
        "symbols_gone": [] if report is None else list(report.symbols_gone),
        "replaced": [] if report is None else list(report.replaced),
        "flags": [] if report is None else records(report.flags, 100),
    }
