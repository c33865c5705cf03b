"""Who may use the REST API: a bearer token from ``COURSE_API_TOKENS``, compared in constant
time with every configured token (no early exit, so the time says nothing about which one
nearly matched), its scope (``read``: GET only; ``write``: everything), and its rate limit.

A missing or wrong token is a 401 with ``WWW-Authenticate: Bearer``; past MAX_FAILURES wrong
tokens from one IP address in FAILURE_WINDOW seconds, a wrong token is a 429 (logged once). A
right token is never refused for others' failures: someone sharing its client's address (a
NAT, a cloud host) cannot lock it out, and at 32 random characters or more a token is not
found by guessing. A read token that writes is a 403. Past ``COURSE_API_RATE_LIMIT``
requests in a minute, a token gets 429 with ``Retry-After``. The log names the token, never
its secret. No cookies: no CSRF to forge.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from course.logs import log_event
from course.settings import ApiToken
from course.web.api.errors import ApiError
from course.web.state import WebState, now

log = logging.getLogger("course.web.api")

RATE_WINDOW = 60  # seconds: COURSE_API_RATE_LIMIT counts requests per token per minute
# Reads of every record (stats, segment counts: about a second per 100,000 readers) per token
# per minute: a token must not keep the web app's threads, the signup pages' too, busy.
HEAVY_PER_MINUTE = 6
FAILURE_WINDOW = 900  # seconds: wrong tokens are counted per IP address per 15 minutes
MAX_FAILURES = 20  # wrong tokens compared per IP address per window; then 429

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from COURSE_API_TOKENS (NAME:SCOPE:TOKEN): read tokens may GET, "
    "write tokens may do everything.",
)


CREDENTIALS = Security(bearer)


@dataclass(frozen=True)
class Caller:
    """The token a request came with: its name (for the logs) and scope."""

    name: str
    scope: str


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class ApiAuth:
    """The configured tokens, and the checks of every API request."""

    def __init__(self, state: WebState):
        self.state = state
        self.tokens: list[tuple[bytes, ApiToken]] = [
            (_digest(token.secret), token) for token in state.settings.api_tokens
        ]

    def token_for(self, given: str) -> ApiToken | None:
        """The token ``given`` is, compared with each in constant time."""
        wanted = _digest(given)
        found = None
        for digest, token in self.tokens:
            if hmac.compare_digest(wanted, digest):
                found = token
        return found

    def caller(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
        """The caller of ``request``, or :class:`ApiError` (401, 429)."""
        ip = request.client.host if request.client else "unknown"
        at = now().timestamp()
        if credentials is None:
            raise ApiError(401, "a bearer token is required", None, _CHALLENGE)
        token = self.token_for(credentials.credentials)
        if token is None:
            failures, left = self.state.store.hit("api-fail", ip, FAILURE_WINDOW, at)
            if failures > MAX_FAILURES:
                if failures == MAX_FAILURES + 1:
                    log.warning("api tokens refused: %d wrong from ip=%s", MAX_FAILURES, ip)
                retry = str(max(1, int(left + 0.999)))
                raise ApiError(429, "too many wrong tokens; try later", None,
                               {"Retry-After": retry})  # fmt: skip
            log.warning("api token refused ip=%s", ip)
            raise ApiError(401, "the bearer token is not valid", None, _CHALLENGE)
        count, left = self.state.store.hit("api", token.name, RATE_WINDOW, at)
        if count > self.state.settings.api_rate_limit:
            retry = str(max(1, int(left + 0.999)))
            raise ApiError(429, "rate limit reached; try later", None, {"Retry-After": retry})
        log_event(log, logging.INFO, "api", token=token.name, method=request.method,
                  path=request.url.path)  # fmt: skip
        return Caller(token.name, token.scope)

    def heavy(self, caller: Caller) -> None:
        """Count a read of every record against the caller's HEAVY_PER_MINUTE; 429 past it."""
        count, left = self.state.store.hit("api-heavy", caller.name, RATE_WINDOW, now().timestamp())
        if count > HEAVY_PER_MINUTE:
            retry = str(max(1, int(left + 0.999)))
            raise ApiError(429, f"at most {HEAVY_PER_MINUTE} of these a minute; try later", None,
                           {"Retry-After": retry})  # fmt: skip


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


def reader(auth: ApiAuth):
    """The dependency of a route any token may use."""

    def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = CREDENTIALS
    ) -> Caller:
        return auth.caller(request, credentials)

    return check


def writer(auth: ApiAuth):
    """The dependency of a route that changes something: a write token only (403 otherwise)."""

    def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = CREDENTIALS
    ) -> Caller:
        caller = auth.caller(request, credentials)
        if caller.scope != "write":
            log.warning("api write refused token=%s (read scope)", caller.name)
            raise ApiError(403, f"token {caller.name!r} may only read")
        return caller

    return check
