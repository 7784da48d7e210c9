"""Every error as JSON `{"error": message}` (FastAPI's own 404 and 405 included), never a traceback, and the
body limits that answer 413 before a large body is read."""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.data import RestatedHistory, max_upload_bytes, too_big
from engine.errors import BadRowsError, InputError
from engine.server.admission import ServerBusy

from .serialize import records

log = logging.getLogger("scanner.api")


def install(app: FastAPI) -> None:
    """The body limits and every error handler."""
    app.add_middleware(BodyLimit)
    app.add_middleware(UnexpectedErrors)
    # Starlette types a handler as taking any Exception; each of these takes its own class.
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # FastAPI's 404, 405
    app.add_exception_handler(InputError, _input_error)  # type: ignore[arg-type]
    app.add_exception_handler(ServerBusy, _busy)  # type: ignore[arg-type]


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


async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    if isinstance(exc, BadRowsError):
        return _error(422, str(exc), bad_rows=len(exc.rows), rows=records(exc.rows, 100))
    if isinstance(exc, RestatedHistory):  # the append conflicts with stored bars: which, and the likely cause
        return _error(409, str(exc), causes=exc.causes, restated=records(exc.table, 100))
    return _error(422, str(exc))


async def _busy(request: Request, exc: ServerBusy) -> JSONResponse:
    response = _error(503, str(exc), queued_behind=exc.queued_behind)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


class UnexpectedErrors:
    """A bug answers 500 with a plain message (the traceback goes to the log) and the connection stays usable:
    the error is handled here, so it never reaches the server, which would close the connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # half an answer was sent: only closing the connection can say it is incomplete
                raise
            response = _error(500, "An unexpected error stopped the request (it has been logged).")
            await response(scope, receive, send)


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
