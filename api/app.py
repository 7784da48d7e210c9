"""The HTTP API: the engine, dataset store and run cache of the dashboard, for other programs.

    make api        # uvicorn on 127.0.0.1:8000; OpenAPI docs at /docs

A dataset uploaded here is on the dashboard's Data page (and one uploaded there is here) because both use
`engine.server.stores`; every run goes through the same run cache, so it is listed in Runs, and a repeat from
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

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

import engine
from engine.server import alert_worker
from engine.server.admission import serve_defaults
from engine.server.settings import SettingsError

from . import errors
from .disconnect import CancelOnDisconnect
from .identity import TokenError, from_environment
from .jobs import Jobs
from .routes import alerts, data, families, jobs, reference, runs, screens

log = logging.getLogger("scanner.api")


def create_app() -> FastAPI:
    """A new application with its own job pool (tests create one each)."""
    try:
        serve_defaults()  # the server's limits apply here, not in the library; its settings are checked
    except SettingsError as exc:  # fail closed: no server with settings its operator did not mean
        log.critical("%s", exc)
        raise SystemExit(str(exc)) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        alert_worker.start()  # screens run on new versions, webhooks are sent, in this process too
        yield
        alert_worker.stop()
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
    errors.install(app)
    app.add_middleware(CancelOnDisconnect)
    for module in (families, data, runs, jobs, screens, alerts, reference):
        app.include_router(module.router)
    return app


app = create_app()
