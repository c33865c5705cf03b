"""Who may use the admin pages: the admin token, the signed browser sessions made from it (each
also held in Redis), and :class:`Gate`, which checks every request (a bearer token, or a
session's cookie and, on a POST, its CSRF token) and counts failed sign-ins per IP address."""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.web.admin.pages import admin_page
from course.web.state import WebState, now

if TYPE_CHECKING:
    from course.store import Store

log = logging.getLogger("course.web.admin")

COOKIE = "hr_admin"
SESSION_MAX_AGE = 12 * 3600  # seconds a login lasts
# A browser that has signed in before carries a signed device cookie; its attempts are
# counted against its own budget, not its IP address's, so failures from others behind the
# same address (an attacker, or every visitor behind an unlisted proxy) never lock it out.
DEVICE_COOKIE = "hr_admin_device"
DEVICE_MAX_AGE = 180 * 86400  # seconds a browser stays known
FAILURE_WINDOW = 900  # seconds: failed logins are counted per IP address per 15 minutes
MAX_FAILURES = 10  # wrong tokens compared per IP address per window; then 429 without comparing


@dataclass(frozen=True)
class Session:
    csrf: str | None  # None: a bearer client, which needs no CSRF token
    sid: str | None = None  # the server-side id of a signed-in browser's session


class AdminAuth:
    """The admin token and the signed sessions made from it, each also held in Redis."""

    def __init__(self, token: str, secret_key: str, store: Store):
        self._digest = hashlib.sha256(token.encode()).digest()
        # Sessions name the token they came from: changing the token ends every session.
        self._token_id = hmac.new(secret_key.encode(), self._digest, "sha256").hexdigest()[:16]
        self._serializer = URLSafeTimedSerializer(secret_key, salt="course.admin")
        self._devices = URLSafeTimedSerializer(secret_key, salt="course.admin.device")
        self._store = store

    def token_ok(self, given: str) -> bool:
        """Constant time, whatever the length or content of ``given``."""
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest)

    def new_session(self) -> tuple[str, str]:
        """A cookie value and the CSRF token inside it; the session's id goes into Redis
        for as long as the cookie may last."""
        csrf, sid = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
        self._store.open_admin_session(sid, SESSION_MAX_AGE)
        return self._serializer.dumps({"k": self._token_id, "csrf": csrf, "s": sid}), csrf

    def read_session(self, cookie: str) -> Session | None:
        """The session of a signed cookie, while its token is current and its id is held."""
        data = self._signed(self._serializer, cookie, SESSION_MAX_AGE)
        if data is None:
            return None
        csrf, sid = data.get("csrf"), data.get("s")
        if not (isinstance(csrf, str) and csrf and isinstance(sid, str) and sid):
            return None  # a cookie from before sessions had ids: sign in again
        if not self._store.admin_session_open(sid):
            return None  # signed out, or expired
        return Session(csrf, sid)

    def _signed(self, serializer, cookie: str, max_age: int) -> dict | None:
        """What a cookie signed by ``serializer`` holds, while young enough and made for the
        current token; None for anything else."""
        try:
            data = serializer.loads(cookie, max_age=max_age)
        except (BadSignature, UnicodeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("k") != self._token_id:
            return None
        return data

    def device_cookie(self, known: str | None) -> str:
        """The device cookie for a browser that has just signed in: its known id kept (its
        failures stay counted), else a new one; signed afresh, so it lasts from now."""
        device = known or secrets.token_urlsafe(12)
        return self._devices.dumps({"k": self._token_id, "d": device})

    def read_device(self, cookie: str) -> str | None:
        """The id of a known device (signed by us, for the current token), or None."""
        data = self._signed(self._devices, cookie, DEVICE_MAX_AGE) if cookie else None
        if data is None:
            return None
        device = data.get("d")
        return device if isinstance(device, str) and device else None

    def end_session(self, session: Session) -> None:
        """Sign out: the session's id goes, and with it every copy of its cookie."""
        if session.sid is not None:
            self._store.end_admin_session(session.sid)


def ip(request: Request) -> str:
    """The caller's IP address as the server sees it."""
    return request.client.host if request.client else "unknown"


class Denied(Exception):
    """The answer to give instead of the page asked for (sign in first, refused, not found)."""

    def __init__(self, response: Response):
        self.response = response


def guarded(handler):
    """Answers :class:`Denied` with its response, for sync and async handlers alike."""
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def run_async(*args, **kwargs):
            try:
                return await handler(*args, **kwargs)
            except Denied as exc:
                return exc.response

        return run_async

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Denied as exc:
            return exc.response

    return run


class Gate:
    """The checks every admin request passes, over ``state`` and the admin's ``auth``."""

    def __init__(self, state: WebState, auth: AdminAuth):
        self.state = state
        self.auth = auth

    def _budget(self, request: Request) -> tuple[str, str]:
        """Whose failures an attempt counts against: a known device's own, else its IP's."""
        device = self.auth.read_device(request.cookies.get(DEVICE_COOKIE, ""))
        return ("admin-device", device) if device else ("admin", ip(request))

    def attempt(self, request: Request, at: float) -> bool:
        """Count a sign-in attempt, then say whether its token may be compared.

        Counting first (one atomic INCR) is what holds under parallel guesses: each gets
        its own count, so at most MAX_FAILURES of them in a window are ever compared, per
        IP address, or per known device (whose cookie only a correct token earns)."""
        scope, key = self._budget(request)
        count, _ = self.state.store.hit(scope, key, FAILURE_WINDOW, at)
        if count == MAX_FAILURES + 1:
            log.warning(
                "admin sign-in refused: %d failures in %d s ip=%s known_device=%s",
                MAX_FAILURES, FAILURE_WINDOW, ip(request), scope == "admin-device",
            )  # fmt: skip
        return count <= MAX_FAILURES

    def succeeded(self, request: Request, at: float) -> None:
        """A correct token gives its attempt back, so signing in (or a script's bearer
        requests) never locks the admin out; only failures stay counted."""
        scope, key = self._budget(request)
        self.state.store.unhit(scope, key, FAILURE_WINDOW, at)

    def failed(self, request: Request) -> None:
        log.warning("admin login failed ip=%s", ip(request))

    def login_page(self, status_code: int = 200, error: str | None = None) -> HTMLResponse:
        return admin_page(self.state, "login", status_code, title="Admin sign-in", error=error)

    def session(self, request: Request) -> Session:
        """The caller's session, or :class:`Denied` with the answer to give instead."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Only a bearer token is ours: other schemes (a proxy's basic auth) use the cookie.
        if scheme.lower() == "bearer":
            at = now().timestamp()
            if not self.attempt(request, at):
                raise Denied(PlainTextResponse("too many failed attempts", 429))
            if self.auth.token_ok(given.strip()):
                self.succeeded(request, at)
                return Session(None)
            self.failed(request)
            raise Denied(
                PlainTextResponse(
                    "invalid admin token", 401, headers={"WWW-Authenticate": "Bearer"}
                )
            )
        found = self.auth.read_session(request.cookies.get(COOKIE, ""))
        if found is None:
            if request.method == "GET":
                raise Denied(RedirectResponse("/admin/login", 303))
            raise Denied(self.login_page(401, "Please sign in first."))
        return found

    async def form(self, request: Request, who: Session) -> dict[str, str]:
        """The POSTed form; :class:`Denied` (403) without the session's CSRF token."""
        try:
            data = await request.form(max_files=0, max_fields=20)
        except StarletteHTTPException:  # the body passed its cap (BodyLimit): a 413
            raise
        except Exception:
            raise Denied(PlainTextResponse("the form could not be read", 400)) from None
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        if who.csrf is not None:
            given = fields.get("csrf", "")
            if not hmac.compare_digest(given.encode(), who.csrf.encode()):
                log.warning("admin request refused: missing or wrong CSRF token ip=%s", ip(request))
                raise Denied(
                    admin_page(
                        self.state,
                        "message",
                        403,
                        title="Refused",
                        message="This form is stale or did not come from the admin page. "
                        "Open the page again and repeat.",
                    )
                )
        return fields
