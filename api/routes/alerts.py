"""/api/alerts, /api/screens/{id}/follow and /api/webhook: a saved screen's alerts when its family gets new bars.

The inbox lists the names that entered your followed screens on each new bar; a webhook gets the same alert as a
signed JSON POST (engine/server/webhooks.py says how to check it). Its secret is in the answer that sets or
rotates it, and never again. Another user's private screen is a 404 like an unknown id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from engine.server import service
from engine.server.alerts import MAX_INBOX, Delivery, InboxEntry, Webhook
from engine.server.settings import dashboard_link
from engine.server.webhooks import MAX_URL_CHARS

from ..deps import User, user
from ..models import _STRICT

router = APIRouter(prefix="/api", tags=["alerts"], dependencies=[Depends(user)])
Limit = Annotated[int, Query(ge=1, le=200, description="Rows in this page (at most 200)")]
Offset = Annotated[int, Query(ge=0, le=MAX_INBOX, description="Rows to skip")]


class Follow(BaseModel):
    model_config = _STRICT
    follow: bool = True


class Read(BaseModel):
    model_config = _STRICT
    ids: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, max_length=MAX_INBOX, description="The entries to mark read (none given: all of them)"
    )


class WebhookRequest(BaseModel):
    model_config = _STRICT
    url: str = Field(..., max_length=MAX_URL_CHARS, description="http(s) address that takes the POST")
    slack: bool = Field(False, description="A Slack-compatible body ({'text': ...}) instead of the alert's JSON")


def _entry(entry: InboxEntry) -> dict[str, Any]:
    return {**vars(entry), "link": dashboard_link("scanner", entry.link)}


def _hook(hook: Webhook, secret: bool = False) -> dict[str, Any]:
    view = {"url": hook.url, "slack": hook.slack, "created": hook.created, "secret_hint": hook.hint}
    return {**view, "secret": hook.secret} if secret else view


def _delivery(d: Delivery) -> dict[str, Any]:
    return {k: v for k, v in vars(d).items() if k not in ("user", "body")}


@router.get("/alerts")
def list_alerts(who: User, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    """Your alerts, newest first, and how many are unread."""
    return {"unread": service.unread_alerts(who), "alerts": [_entry(e) for e in service.inbox(who, limit, offset)]}


@router.post("/alerts/read")
def mark_read(req: Read, who: User) -> dict[str, Any]:
    """Mark alerts read (all of yours when no ids are given)."""
    return {"marked": service.mark_alerts_read(who, req.ids), "unread": service.unread_alerts(who)}


@router.put("/screens/{screen_id}/follow")
def follow(screen_id: str, req: Follow, who: User) -> dict[str, Any]:
    """Get a screen's alerts (or stop: `follow` false). Its owner gets them until they stop."""
    if service.screens().get(screen_id, who) is None:
        raise HTTPException(404, f"No screen `{screen_id[:40]}` you can see (GET /api/screens lists them).")
    if not service.follow_screen(screen_id, who, req.follow):
        raise HTTPException(403, "Following a screen needs an identity of your own (a token).")
    return {"screen": screen_id, "following": req.follow}


@router.get("/webhook")
def get_webhook(who: User) -> dict[str, Any]:
    """Your webhook (its secret's last four characters only)."""
    hook = service.webhook(who)
    if hook is None:
        raise HTTPException(404, "You have no webhook: PUT /api/webhook with a url sets one.")
    return _hook(hook)


@router.put("/webhook")
def set_webhook(req: WebhookRequest, who: User) -> dict[str, Any]:
    """Set your webhook; the answer carries its new secret, shown this once."""
    return _hook(service.set_webhook(who, req.url, req.slack), secret=True)


@router.post("/webhook/rotate")
def rotate_webhook(who: User) -> dict[str, Any]:
    """A new secret for your webhook (the old one stops at once), shown this once."""
    hook = service.rotate_webhook(who)
    if hook is None:
        raise HTTPException(404, "You have no webhook: PUT /api/webhook with a url sets one.")
    return _hook(hook, secret=True)


@router.delete("/webhook")
def remove_webhook(who: User) -> dict[str, Any]:
    service.remove_webhook(who)
    return {"removed": True}


@router.get("/webhook/deliveries")
def list_deliveries(who: User, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    """Your webhook's deliveries, newest first: status (queued, sending, delivered, failed), tries, last answer."""
    return {"deliveries": [_delivery(d) for d in service.deliveries(who, limit, offset)]}
