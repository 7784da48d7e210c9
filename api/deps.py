"""What every route depends on: who the caller is (checked on the router, so no route can forget it), the
dataset they name (404 unless they may open it) and the dashboard link that reproduces a run."""

from __future__ import annotations

import io
import os
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile

from engine.data import Market, max_upload_bytes, too_big
from engine.server import service
from engine.server.datasets import BUILTIN, dataset_id

from .identity import Identities


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


def open_dataset(data_id: str, who: str) -> Market:
    """A built-in dataset or a stored one the caller may open; 404 with the dashboard's advice otherwise. A
    dataset private to another user is a 404 like an unknown one: its existence is not confirmed."""
    market = service.open_dataset(data_id, who)
    if market is None:
        shown = data_id[:40].replace("`", "'")
        raise HTTPException(
            404,
            f"The dataset `{shown}` is not on this server (unknown, deleted, evicted, or "
            "private to another user). Upload the file again with POST /api/data: the same file "
            "gets the same id.",
        )
    return market


def data_id_of(market: Market, requested: str) -> str:
    """The id a link names the dataset by: a built-in's name, else its content id."""
    return requested if requested in BUILTIN else dataset_id(market)


def received(file: UploadFile) -> io.BytesIO:
    """The upload in memory (never more than the upload limit)."""
    if file.size is not None and file.size > max_upload_bytes():
        raise HTTPException(413, str(too_big(file.size, max_upload_bytes())))
    buffer = io.BytesIO(file.file.read(max_upload_bytes() + 1))
    buffer.name = os.path.basename(file.filename or "upload.csv")
    return buffer
