"""Who makes an API request, decided from configuration checked once, at start-up: the API fails closed.

SCANNER_API_TOKEN holds comma-separated `name:token` entries (or one bare token, whose holder is `user:api`).
When the variable is set at all, every entry must be whole: a name and a token of at least 16 characters,
no name or token twice. Anything else (`alice:`, `:`, `,`, a space, `alice:$UNSET_VAR`, `alice:s,bob:s`) stops
the server with a message naming the entry, never the token: a typo must not start an API without access
control. To run without tokens, leave the variable unset.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass

log = logging.getLogger("scanner.api")
MIN_TOKEN_CHARS = 16
ANONYMOUS = "api:anonymous"


class TokenError(ValueError):
    """SCANNER_API_TOKEN cannot be used as it is; the message names the entry and what to fix."""


@dataclass(frozen=True)
class Identities:
    """The identity sources in force: named tokens (token -> name), the proxy header, else anonymous."""

    tokens: tuple[tuple[str, str], ...] = ()  # (token, name); name '' for a bare token
    header: str = ""

    def who(self, authorization: str, header_value: str | None) -> str | None:
        """The caller's identity; None when tokens are required and none of them was given."""
        if self.tokens:
            scheme, _, given = authorization.partition(" ")
            given_bytes = given.strip().encode() if scheme.lower() == "bearer" else b""
            name = None
            for token, token_name in self.tokens:  # no early exit: the time does not depend on which matched
                if hmac.compare_digest(given_bytes, token.encode()):
                    name = token_name
            if name is None:
                return None
            if name:
                return f"user:{name}"
        if header_value and header_value.strip():
            return f"user:{header_value.strip().lower()[:200]}"
        return "user:api" if self.tokens else ANONYMOUS

    def describe(self) -> str:
        """One log line: which sources decide identity (never a token)."""
        sources = []
        if self.tokens:
            names = sorted({n or "(bare token: user:api)" for _, n in self.tokens})
            sources.append(f"{len(self.tokens)} API token(s) for {', '.join(names)}")
        if self.header:
            sources.append(f"the proxy header {self.header!r}")
        if not self.tokens:
            sources.append(f"anonymous callers as {ANONYMOUS} (no access control: SCANNER_API_ANONYMOUS=1)")
        return "API identity from " + "; ".join(sources)


def parse_tokens(raw: str | None) -> tuple[tuple[str, str], ...]:
    """(token, name) pairs from SCANNER_API_TOKEN's value; None (unset) means no tokens. TokenError otherwise."""
    if raw is None:
        return ()
    entries = raw.split(",")
    pairs: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    for number, entry in enumerate(entries, 1):
        where = f"SCANNER_API_TOKEN entry {number} of {len(entries)}"
        name, sep, token = entry.strip().partition(":")
        if not sep:
            name, token = "", name
        name, token = name.strip().lower(), token.strip()
        if sep and not name:
            raise TokenError(f"{where} has no name before ':'; write name:token.")
        shown = f"{where} (name {name!r})" if name else where
        if not token:
            raise TokenError(
                f"{shown} has an empty token (an unset variable?). The API does not start without "
                "access control by mistake: give every name a token, or unset SCANNER_API_TOKEN."
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenError(
                f"{shown} has a token of {len(token)} characters; at least {MIN_TOKEN_CHARS} are "
                "required (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)."
            )
        if any(hmac.compare_digest(token.encode(), t.encode()) for t, _ in pairs):
            raise TokenError(f"{shown} repeats the token of an earlier entry: one token would act as two users.")
        if name in names or (not name and pairs) or (pairs and not pairs[0][1]):
            raise TokenError(f"{shown}: a name is given twice, or a bare token is mixed with named ones.")
        names[name] = number
        pairs.append((token, name))
    return tuple(pairs)


def from_environment() -> Identities:
    """The identity sources from SCANNER_API_TOKEN and SCANNER_USER_HEADER; TokenError when they are unusable."""
    identities = Identities(
        parse_tokens(os.environ.get("SCANNER_API_TOKEN")), os.environ.get("SCANNER_USER_HEADER", "").strip()
    )
    if not identities.tokens and not identities.header and os.environ.get("SCANNER_API_ANONYMOUS") != "1":
        raise TokenError(
            "no access control is configured. Set SCANNER_API_TOKEN (name:token entries, comma-separated) or "
            "SCANNER_USER_HEADER (behind an authenticating proxy); to serve anyone who can reach it, on purpose, "
            "set SCANNER_API_ANONYMOUS=1."
        )
    log.warning(identities.describe())
    return identities
