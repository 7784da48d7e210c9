"""A client that goes away cancels its request's waiting work.

ASGI middleware: once a request's body has been read, the next message from the server is the client's
disconnect. It sets the request's CANCEL event (engine/server/admission.py), which the request's thread
carries (contextvars follow a request into the thread pool), so work still queued for memory leaves the
queue instead of running for nobody.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from engine.server.admission import CANCEL


class CancelOnDisconnect:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gone, body_read = threading.Event(), asyncio.Event()

        async def watched() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch() -> None:
            await body_read.wait()
            if (await receive())["type"] == "http.disconnect":
                gone.set()

        token = CANCEL.set(gone)
        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, watched, send)
        finally:
            watcher.cancel()
            CANCEL.reset(token)
