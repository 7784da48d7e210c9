"""Who this session is: the signed-in user (st.login), else the header a trusted auth proxy sets
(SCANNER_USER_HEADER), else this browser (a cookie). Decided once per session; on a server configured with a
proxy header, a visit without it is read-only."""

from __future__ import annotations

import logging
import os
import re
import uuid

import streamlit as st

from app import session

log = logging.getLogger("scanner.app")
COOKIE = "scanner_uid"
_COOKIE_VALUE = re.compile(r"^[0-9a-f]{32}$")


def user_id() -> str:
    """Who owns the runs and datasets this session makes, decided once per session: the signed-in user
    (st.login), else the header a trusted auth proxy sets (SCANNER_USER_HEADER), else this browser (a
    cookie, so a reload keeps "my runs")."""
    s = session.get()
    if not s.user_id:
        s.user_id, s.user_source = _identify()
    return s.user_id


def _proxy_header() -> str:
    return os.environ.get("SCANNER_USER_HEADER", "").strip()


def log_identity_sources() -> None:
    """One line at start: which identities the dashboard trusts (operators see at once if nothing is private)."""
    header = _proxy_header()
    sources = ["sign-in (st.login) where [auth] is configured in .streamlit/secrets.toml"]
    sources.append(f"the proxy header {header!r}" if header else "no proxy header (SCANNER_USER_HEADER unset)")
    sources.append(
        "without it a visit is read-only (no uploads)" if header else "else a browser cookie: uploads are not private"
    )
    log.warning("dashboard identity from " + "; ".join(sources))


def _identify() -> tuple[str, str]:
    try:
        if st.user.is_logged_in:
            return f"user:{st.user.get('email') or st.user.get('sub')}", "login"
    except Exception:  # no authentication configured
        pass
    header = _proxy_header()
    value = st.context.headers.get(header) if header else None
    if isinstance(value, str) and value.strip():
        return f"user:{value.strip().lower()[:200]}", "header"
    cookie = st.context.cookies.get(COOKIE)
    if isinstance(cookie, str) and _COOKIE_VALUE.match(cookie):
        return f"browser:{cookie}", "browser"
    return f"browser:{uuid.uuid4().hex}", "new browser"


def remember_browser() -> None:
    """Give a new browser its id cookie (a year; read back on reload by st.context.cookies)."""
    value = user_id().removeprefix("browser:")  # decides the identity now: on a session's first run too
    if session.get().user_source == "new browser":
        st.html(
            f"<script>document.cookie = '{COOKIE}={value}; path=/; max-age=31536000; SameSite=Strict';</script>",
            unsafe_allow_javascript=True,
        )


def user_label() -> str:
    uid = user_id()
    return uid.removeprefix("user:") if private_by_identity() else "this browser"


def private_by_identity() -> bool:
    """Can this user's uploads be private? Only with a real identity (sign-in or a trusted proxy header)."""
    user_id()
    return session.get().user_source in ("login", "header")


def upload_refusal() -> str | None:
    """Why this visitor may not upload, or None: on a server that signs users in through a proxy, a visit
    without its header is read-only (what it uploaded would be listed for everyone)."""
    if not _proxy_header() or private_by_identity():
        return None
    return (
        f"This server signs users in through a proxy (the {_proxy_header()!r} header), and this visit came without "
        "it, so it is read-only: you can open shared data and run backtests, not upload. Open the dashboard "
        "through your team's sign-in address to upload."
    )


def identity_note() -> str:
    """Who may see what this visitor makes, true to how the server identifies users."""
    return upload_refusal() or (
        "No sign-in is configured on this server, so nothing is private here: uploads are listed for everyone on it."
    )
