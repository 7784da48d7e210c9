"""/api/data: upload, list, describe, share and delete datasets, and read their bars."""

from __future__ import annotations

import io
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response, StreamingResponse

from engine.data import Market, describe_columns
from engine.server import service
from engine.server.datasets import BUILTIN, describe
from engine.server.settings import dashboard_link

from ..deps import User, open_dataset, received, user
from ..models import LoadSettings, library_values
from ..serialize import clean, csv_chunks, records

log = logging.getLogger("scanner.api")
MAX_ROWS = 10_000  # rows per page of /api/data/{id}/ohlcv as JSON (CSV and Parquet stream every row)
router = APIRouter(prefix="/api", tags=["data"], dependencies=[Depends(user)])


def _listing(market: Market, data_id: str, who: str) -> dict[str, Any]:
    info = service.dataset_listing(data_id, who)
    listing = describe(market) if info is None else info
    out = {**vars(listing), "id": data_id}
    return clean(out)


@router.post("/data", status_code=201, tags=["data"])
def upload_dataset(
    who: User,
    file: Annotated[UploadFile, File(description="CSV (optionally gzip) or Parquet of daily bars")],
    options: Annotated[LoadSettings, Form()],  # type: ignore[valid-type]  # the table's `load` rows
    shared: Annotated[bool, Form(description="List it for the whole team on the Data page")] = False,
) -> dict[str, Any]:
    """Load a file with the Data page's loader and limits and store it; returns its id and listing. Bad rows
    are a 422 naming them; send on_bad_rows=drop to load without them (they are listed here afterwards)."""
    buffer = received(file)
    return _stored(service.ingest(buffer, buffer.name, who, shared, **library_values("load", options)), who)


@router.post("/data/{data_id}/columns", status_code=201, tags=["data"])
def attach_dataset_columns(
    data_id: str,
    who: User,
    file: Annotated[UploadFile, File(description="CSV or Parquet of symbol, date and your columns (e.g. pe_ratio)")],
    shared: Annotated[bool, Form(description="List the new dataset for the whole team")] = False,
) -> dict[str, Any]:
    """Join a file of own columns to a dataset as of each bar's date (a value is used from its date on, carried
    forward per symbol): a new dataset with a new id, stored like an upload; rules can name its columns."""
    market = open_dataset(data_id, who)
    return _stored(service.attach(market, received(file), who, shared), who)


def _stored(stored: service.Stored, who: str) -> dict[str, Any]:
    if stored.not_stored is not None:
        raise HTTPException(
            503,
            f"The server cannot store datasets right now ({stored.not_stored}); try again later.",
            headers={"Retry-After": "60"},
        )
    market, data_id = stored.market, stored.data_id
    return {
        **_listing(market, data_id, who),
        "link": dashboard_link("data", {"data": data_id}),
        "issues": records(market.issues) if market.issues is not None else [],
        "columns": records(describe_columns(market)),
    }


@router.get("/data", tags=["data"])
def list_datasets(who: User) -> dict[str, Any]:
    """The built-in datasets, this user's and the shared ones (all, for an anonymous caller), newest first."""
    stored = [clean(vars(info)) for info in service.datasets().list(viewer=who)]
    return {"datasets": [_listing(service.builtin(name), name, who) for name in BUILTIN] + stored}


@router.get("/data/{data_id}", tags=["data"])
def get_dataset(data_id: str, who: User) -> dict[str, Any]:
    """Summary, warnings and the rows the load left out (at most 1,000 listed)."""
    market = open_dataset(data_id, who)
    dropped = market.dropped_rows
    return {
        **_listing(market, data_id, who),
        **market.summary(),
        "columns": records(describe_columns(market)),
        "dropped": [] if dropped is None else records(dropped, 1000),
    }


@router.delete("/data/{data_id}", tags=["data"])
def delete_dataset(data_id: str, who: User) -> dict[str, Any]:
    """Delete your listing of a dataset (the bars stay while another user's listing uses them; runs on it stay
    in the history)."""
    if data_id in BUILTIN:
        raise HTTPException(403, "Built-in datasets cannot be deleted.")
    open_dataset(data_id, who)  # the 404 for what the caller cannot open
    if not service.datasets().delete(data_id, who):
        raise HTTPException(403, "Only the user who uploaded a dataset can delete it.")
    return {"deleted": data_id}


@router.post("/data/{data_id}/share", tags=["data"])
def share_dataset(data_id: str, who: User, shared: Annotated[bool, Query()] = True) -> dict[str, Any]:
    """List your dataset for the team (`shared=false`: make it private again). Only an uploader can."""
    open_dataset(data_id, who)
    if not service.datasets().set_shared(data_id, who, shared):
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
    frame = service.bars(market, wanted, start, end)
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
    rows = csv_chunks(len(frame), lambda start, stop: frame.iloc[start:stop])
    return StreamingResponse(rows, media_type="text/csv", headers=headers)
