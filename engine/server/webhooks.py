"""Webhook deliveries: a JSON POST of an alert, signed, sent with a timeout, retried with backoff.

Every POST carries three headers; a receiver checks the signature with the secret it was shown once, and drops
a timestamp older than a few minutes (a replay) and a delivery id it has seen (a retry of one it took):

    X-Scanner-Timestamp: 1765100000                       (Unix seconds, when this try was sent)
    X-Scanner-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
    X-Scanner-Delivery:  3f2a...                           (the same on every try of one alert)

The body is the alert (screen, date, entered and left with the rule's values, a dashboard link), or with the
Slack option `{"text": ...}`, which a Slack incoming webhook posts as a message. Addresses follow the data
sources' allow-list (no loopback or link-local target unless the operator allows its host), and a redirect is
never followed (it could lead there).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import time
import urllib.error
import urllib.request

from ..data.sources import check_address
from ..errors import InputError
from .alerts import Alert, entered_text

BACKOFF_S = (10.0, 60.0, 300.0, 1800.0)  # the waits after the first, second, ... failed try; then it has failed
MAX_URL_CHARS = 500


def timeout_s() -> float:
    """How long one try waits for an answer: SCANNER_WEBHOOK_TIMEOUT_S (default 10)."""
    return float(os.environ.get("SCANNER_WEBHOOK_TIMEOUT_S", "10"))


def check_url(url: str) -> str:
    """The address, when a webhook may be sent there (InputError says why not)."""
    url = str(url).strip()
    if len(url) > MAX_URL_CHARS:
        raise InputError(f"A webhook address has at most {MAX_URL_CHARS} characters.")
    try:
        check_address(url)
    except InputError as exc:
        raise InputError(str(exc).replace("A source address", "A webhook address")) from None
    return url


def body(alert: Alert, link: str, slack: bool) -> str:
    """The POST's JSON: the alert itself, or Slack's `{"text": ...}`."""
    if slack:
        gone = f"; {len(alert.left):,} left" if alert.left else ""
        names = entered_text(alert.entered, 20)
        text = f"*{alert.screen_name}* on {alert.bar}: entered {names}{gone}. <{link}|Open in the Scanner>"
        return json.dumps({"text": text})
    return json.dumps(
        {
            "screen": {"id": alert.screen_id, "name": alert.screen_name},
            "date": alert.bar,
            "entered": alert.entered,
            "left": alert.left,
            "link": link,
        }
    )


def signature(secret: str, timestamp: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # a 3xx is an answer, not a new address to post to


def post(url: str, payload: str, secret: str, delivery_id: str) -> tuple[int, str]:
    """One try: (HTTP status, '') when answered 2xx, else (status or 0, why)."""
    try:
        check_address(url)  # again: the host may resolve elsewhere now
    except InputError as exc:
        return 0, str(exc)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "stock-scanner-alerts",
            "X-Scanner-Timestamp": timestamp,
            "X-Scanner-Signature": signature(secret, timestamp, payload),
            "X-Scanner-Delivery": delivery_id,
        },
    )
    try:
        with urllib.request.build_opener(_NoRedirects()).open(request, timeout=timeout_s()) as answer:
            answer.read(4096)
            return int(answer.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code} {exc.reason}"[:200]
    except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return 0, f"no answer within {timeout_s():g} s"
        return 0, f"no answer ({reason.__class__.__name__}: {str(reason)[:120]})"


def after_failure(attempts: int, now: float) -> tuple[str, float]:
    """(status, next try) after the `attempts`-th failed try: queued again later, or failed for good."""
    if attempts > len(BACKOFF_S):
        return "failed", now
    return "queued", now + BACKOFF_S[attempts - 1]
