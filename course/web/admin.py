"""The admin page at ``/admin``, behind ``COURSE_ADMIN_TOKEN``: the course's stats (from
:mod:`course.reports.stats`), the lesson gallery, a subscriber lookup, and pause, resume,
unsubscribe, export and erase.

Without a token set every ``/admin`` path answers 404 (and the log says why). With one, a
browser logs in with a form: the answer sets an HttpOnly, SameSite=Strict cookie (Secure
over https) holding a session signed with ``COURSE_SECRET_KEY`` that also carries the CSRF
token every POST form must echo. Each session also has an id kept in Redis for its lifetime
(``P admin:session:{id}``), checked on every request: signing out deletes it, so a copy of
the cookie stops working too. A script sends ``Authorization: Bearer TOKEN`` instead
and needs no CSRF token (a browser never adds that header by itself). Tokens are compared
in constant time. Sign-in attempts (form or bearer) are counted per IP address before the
token is compared, and a correct token gives its attempt back: only failures stay counted, and
parallel guesses cannot all slip under the limit. Every state change goes through
:mod:`course.subscribers.lifecycle` or :mod:`course.subscribers.privacy`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.mail.samples import sample_email
from course.models.subscriber import SUPPRESSED, Subscriber, to_instant
from course.reports import stats as course_stats
from course.reports.subscriber import subscriber_report
from course.schedule import CONFIRMATION, LESSON, Lesson
from course.subscribers.lifecycle import (
    SubscriptionError,
    pause,
    resume,
    unsubscribe,
    wait_for_sends,
)
from course.subscribers.privacy import erase, export_data, record_ids
from course.timeline import add_local_days

if TYPE_CHECKING:
    from course.store import Store
    from course.web.app import WebState

log = logging.getLogger("course.web.admin")

COOKIE = "hr_admin"
SESSION_MAX_AGE = 12 * 3600  # seconds a login lasts
FAILURE_WINDOW = 900  # seconds: failed logins are counted per IP address per 15 minutes
MAX_FAILURES = 10  # wrong tokens compared per IP address per window; then 429 without comparing
PAUSE_DAYS = {"7": 7, "14": 14, "": None}
SAMPLE_NAME = "Alex"
DONE = {  # what a finished action says (?done=... after the redirect)
    "paused": "Paused.",
    "resumed": "Resumed: the remaining lessons moved later by the time paused.",
    "unsubscribed": "Unsubscribed: nothing more is sent to this address.",
}
# Admin pages frame the gallery's emails (from this origin only) and run no scripts at all.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# An email shown in the gallery: a sandbox (a unique origin, no scripts, no forms), no
# network, framed only by the admin page.
EMAIL_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


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
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_MAX_AGE)
        except (BadSignature, UnicodeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("k") != self._token_id:
            return None
        csrf, sid = data.get("csrf"), data.get("s")
        if not (isinstance(csrf, str) and csrf and isinstance(sid, str) and sid):
            return None  # a cookie from before sessions had ids: sign in again
        if not self._store.admin_session_open(sid):
            return None  # signed out, or expired
        return Session(csrf, sid)

    def end_session(self, session: Session) -> None:
        """Sign out: the session's id goes, and with it every copy of its cookie."""
        if session.sid is not None:
            self._store.end_admin_session(session.sid)


def stamp(instant: datetime | None, tz: str | None = None) -> str:
    """``2026-03-04 08:00 CET`` in ``tz`` (UTC without one)."""
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(tz) if tz else UTC)
    return f"{local:%Y-%m-%d %H:%M %Z}"


def iso_stamp(text: str | None, tz: str | None = None) -> str:
    return stamp(datetime.fromisoformat(text), tz) if text else ""


def install_admin(app: FastAPI, state: WebState) -> None:
    """Add ``/admin`` to ``app``: the pages with a token set, a logged 404 without one."""
    token = state.settings.admin_token
    if token is None:
        log.info("admin page off: COURSE_ADMIN_TOKEN is not set, so /admin answers 404")

        @app.api_route("/admin{rest:path}", methods=["GET", "POST"], include_in_schema=False)
        def admin_off(rest: str) -> Response:
            log.info("admin page off: 404 because COURSE_ADMIN_TOKEN is not set")
            return state.page("message", 404, title="Not found", message="There is no page here.")

        return
    state.pages.env.filters["stamp"] = stamp
    state.pages.env.filters["iso_stamp"] = iso_stamp
    auth = AdminAuth(token, state.settings.secret_key, state.store)
    app.include_router(_router(state, auth))


class _Denied(Exception):
    def __init__(self, response: Response):
        self.response = response


def _router(state: WebState, auth: AdminAuth) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False)
    settings = state.settings

    def now() -> datetime:
        return datetime.now(UTC)

    def ip(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def page(name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        context.setdefault("csrf", "")
        response = state.page(f"admin/{name}", status_code, **context)
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    def attempt(request: Request, at: float) -> bool:
        """Count a sign-in attempt, then say whether its token may be compared.

        Counting first (one atomic INCR) is what holds under parallel guesses: each gets
        its own count, so at most MAX_FAILURES of them in a window are ever compared."""
        count, _ = state.store.hit("admin", ip(request), FAILURE_WINDOW, at)
        return count <= MAX_FAILURES

    def succeeded(request: Request, at: float) -> None:
        """A correct token gives its attempt back, so signing in (or a script's bearer
        requests) never locks the admin out; only failures stay counted."""
        state.store.unhit("admin", ip(request), FAILURE_WINDOW, at)

    def failed(request: Request) -> None:
        log.warning("admin login failed ip=%s", ip(request))

    def login_page(status_code: int = 200, error: str | None = None) -> HTMLResponse:
        return page("login", status_code, title="Admin sign-in", error=error)

    def session(request: Request) -> Session:
        """The caller's session, or :class:`_Denied` with the answer to give instead."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Only a bearer token is ours: other schemes (a proxy's basic auth) use the cookie.
        if scheme.lower() == "bearer":
            at = now().timestamp()
            if not attempt(request, at):
                raise _Denied(PlainTextResponse("too many failed attempts", 429))
            if auth.token_ok(given.strip()):
                succeeded(request, at)
                return Session(None)
            failed(request)
            raise _Denied(
                PlainTextResponse(
                    "invalid admin token", 401, headers={"WWW-Authenticate": "Bearer"}
                )
            )
        found = auth.read_session(request.cookies.get(COOKIE, ""))
        if found is None:
            if request.method == "GET":
                raise _Denied(RedirectResponse("/admin/login", 303))
            raise _Denied(login_page(401, "Please sign in first."))
        return found

    async def form(request: Request, who: Session) -> dict[str, str]:
        """The POSTed form; :class:`_Denied` (403) without the session's CSRF token."""
        try:
            data = await request.form(max_files=0, max_fields=20)
        except StarletteHTTPException:  # the body passed its cap (BodyLimit): a 413
            raise
        except Exception:
            raise _Denied(PlainTextResponse("the form could not be read", 400)) from None
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        if who.csrf is not None:
            given = fields.get("csrf", "")
            if not hmac.compare_digest(given.encode(), who.csrf.encode()):
                log.warning("admin request refused: missing or wrong CSRF token ip=%s", ip(request))
                raise _Denied(
                    page(
                        "message",
                        403,
                        title="Refused",
                        message="This form is stale or did not come from the admin page. "
                        "Open the page again and repeat.",
                    )
                )
        return fields

    def subscriber(sub_id: str) -> Subscriber:
        sub = state.store.get(sub_id) if len(sub_id) <= 64 else None
        if sub is None:
            raise _Denied(
                page("message", 404, title="Not found", message="No such subscriber (erased?).")
            )
        return sub

    def sub_page(who: Session, sub: Subscriber, status_code: int = 200, **extra: object):
        extra.setdefault("message", None)
        schedule = state.schedule()
        report = subscriber_report(state.store, schedule, sub)
        others = [i for i in record_ids(state.store, sub.email) if i != sub.id]
        due = state.store.due_score(sub.id)
        return page(
            "subscriber",
            status_code,
            title=sub.email,
            csrf=who.csrf or "",
            sub=sub,
            report=report,
            others=[state.store.get(i) for i in others],
            due=to_instant(due) if due is not None else None,
            paused_since=to_instant(sub.paused_at) if sub.paused_at else None,
            paused_until=to_instant(sub.paused_until) if sub.paused_until else None,
            suppressed=sub.status in SUPPRESSED,
            quarantine=state.store.quarantined().get(sub.id),
            **extra,
        )

    def guarded(handler):
        """Answers :class:`_Denied` with its response, for sync and async handlers alike."""
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def run_async(*args, **kwargs):
                try:
                    return await handler(*args, **kwargs)
                except _Denied as exc:
                    return exc.response

            return run_async

        @functools.wraps(handler)
        def run(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except _Denied as exc:
                return exc.response

        return run

    # -- signing in -----------------------------------------------------------------------

    @router.get("/login")
    def login_form() -> HTMLResponse:
        return login_page()

    @router.post("/login")
    @guarded
    async def login(request: Request) -> Response:
        at = now().timestamp()
        if not await run_in_threadpool(attempt, request, at):
            return login_page(429, "Too many failed attempts. Please wait a few minutes.")
        try:
            data = await request.form(max_files=0, max_fields=5)
        except StarletteHTTPException:
            raise
        except Exception:
            return login_page(400, "The form could not be read.")
        given = data.get("token")
        if not isinstance(given, str) or not auth.token_ok(given.strip()):
            failed(request)
            return login_page(401, "That is not the admin token.")
        await run_in_threadpool(succeeded, request, at)
        cookie, _ = await run_in_threadpool(auth.new_session)
        response = RedirectResponse("/admin", 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_MAX_AGE,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("admin signed in ip=%s", ip(request))
        return response

    @router.post("/logout")
    @guarded
    async def logout(request: Request) -> Response:
        who = session(request)
        await form(request, who)
        await run_in_threadpool(auth.end_session, who)
        response = RedirectResponse("/admin/login", 303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    # -- the overview and the lookup ------------------------------------------------------

    @router.get("")
    @guarded
    def overview(request: Request) -> HTMLResponse:
        who = session(request)
        return page("index", title="Admin", csrf=who.csrf or "", error=None, email="")

    @router.post("/lookup")
    @guarded
    async def lookup(request: Request) -> Response:
        who = session(request)
        fields = await form(request, who)
        email = fields.get("email", "").strip()
        sub = await run_in_threadpool(state.store.find, email) if email else None
        if sub is None:
            erased = bool(email) and await run_in_threadpool(state.store.is_erased, email)
            error = (
                f"{email} was erased on request: nothing is held but its hash."
                if erased
                else f"No subscriber with the address {email!r}."
            )
            return page("index", 404, title="Admin", csrf=who.csrf or "", error=error, email=email)
        # The address stays out of the URL (and so out of access logs): the id names it.
        return RedirectResponse(f"/admin/subscribers/{sub.id}", 303)

    # -- one subscriber -------------------------------------------------------------------

    @router.get("/subscribers/{sub_id}")
    @guarded
    def show(request: Request, sub_id: str, done: str = "") -> HTMLResponse:
        who = session(request)
        return sub_page(who, subscriber(sub_id), message=DONE.get(done))

    def act(who: Session, sub_id: str, name: str, change) -> Response:
        sub = subscriber(sub_id)
        try:
            change(sub)
        except SubscriptionError as exc:
            return sub_page(who, state.store.get(sub.id) or sub, 409, error=str(exc))
        log.info("admin action=%s subscriber=%s", name, sub.id)
        return RedirectResponse(f"/admin/subscribers/{sub.id}?done={name}", 303)

    @router.post("/subscribers/{sub_id}/pause")
    @guarded
    async def pause_sub(request: Request, sub_id: str) -> Response:
        who = session(request)
        fields = await form(request, who)
        days_text = fields.get("days", "").strip()
        if days_text not in PAUSE_DAYS:
            return await run_in_threadpool(
                sub_page, who, subscriber(sub_id), 422, error="Pause for 7 or 14 days, or open."
            )
        days, at = PAUSE_DAYS[days_text], now()

        def change(sub: Subscriber) -> None:
            until = add_local_days(at, days, sub.zone) if days else None
            pause(state.store, sub, at, until)

        return await run_in_threadpool(act, who, sub_id, "paused", change)

    @router.post("/subscribers/{sub_id}/resume")
    @guarded
    async def resume_sub(request: Request, sub_id: str) -> Response:
        who = session(request)
        await form(request, who)
        at = now()
        return await run_in_threadpool(
            act, who, sub_id, "resumed", lambda sub: resume(state.store, state.schedule(), sub, at)
        )

    @router.post("/subscribers/{sub_id}/unsubscribe")
    @guarded
    async def unsubscribe_sub(request: Request, sub_id: str) -> Response:
        who = session(request)
        await form(request, who)

        def change(sub: Subscriber) -> None:
            unsubscribe(state.store, sub)
            wait_for_sends(state.store, sub.id)  # a lesson already on its way goes first

        return await run_in_threadpool(act, who, sub_id, "unsubscribed", change)

    @router.get("/subscribers/{sub_id}/export")
    @guarded
    def export_sub(request: Request, sub_id: str) -> Response:
        session(request)
        # scan: records of re-signups made before the chain of earlier records existed
        data = export_data(state.store, subscriber(sub_id).email, now(), scan=True)
        log.info("admin action=export subscriber=%s", sub_id)
        disposition = f'attachment; filename="subscriber-{sub_id}.json"'
        return JSONResponse(data, headers={"Content-Disposition": disposition})

    @router.get("/subscribers/{sub_id}/erase")
    @guarded
    def erase_confirm(request: Request, sub_id: str) -> HTMLResponse:
        who = session(request)
        sub = subscriber(sub_id)
        count = len(record_ids(state.store, sub.email))
        return page("erase", title="Erase?", csrf=who.csrf or "", sub=sub, count=count)

    @router.post("/subscribers/{sub_id}/erase")
    @guarded
    async def erase_sub(request: Request, sub_id: str) -> Response:
        who = session(request)
        fields = await form(request, who)
        sub = subscriber(sub_id)
        if fields.get("confirm") != "erase":
            return page("erase", 422, title="Erase?", csrf=who.csrf or "", sub=sub,
                        count=len(record_ids(state.store, sub.email)),
                        error="Tick the box to confirm.")  # fmt: skip
        # scan=True: records of re-signups made before the chain of earlier records existed
        result = await run_in_threadpool(erase, state.store, sub.email, now(), True, (sub.id,))
        log.info("admin action=erase records=%d", len(result.records))
        return page("erased", title="Erased", csrf=who.csrf or "", result=result)

    # -- stats ----------------------------------------------------------------------------

    @router.get("/stats")
    @guarded
    def stats_page(request: Request) -> HTMLResponse:
        who = session(request)
        disk = course_stats.check_disk(settings.schedule_path, settings.templates_dir)
        report = course_stats.collect(state.store, state.schedule(), now(), disk)
        return page(
            "stats",
            title="Stats",
            csrf=who.csrf or "",
            stats=report,
            funnel=Markup(course_stats.funnel_svg(report)),  # its labels escaped by it
            columns=[heading for _, heading, _ in course_stats.COLUMNS],
            rows=course_stats.table_rows(report),
            removed=course_stats.removed_rows(report),
            note=course_stats.EVENTS_NOTE,
            schedule_lines=course_stats.schedule_lines(report),
        )

    # -- the lesson gallery ---------------------------------------------------------------

    def email_of(lesson_id: str) -> tuple[Lesson, object]:
        schedule = state.schedule()
        lesson = next((e for e in schedule.emails if e.id == lesson_id), None)
        if lesson is None:
            raise _Denied(page("message", 404, title="Not found", message="No such email."))
        return lesson, sample_email(state.renderer(), settings, lesson, SAMPLE_NAME)

    def describe(lesson: Lesson) -> str:
        if lesson.kind == LESSON:
            return f"day {lesson.day} · {state.schedule().phase(lesson.phase_id).title}"
        if lesson.kind == CONFIRMATION:
            return "at signup · confirmation (double opt-in)"
        return f"day {lesson.day} · course complete"

    @router.get("/gallery")
    @guarded
    def gallery(request: Request) -> HTMLResponse:
        who = session(request)
        rows = [(e, describe(e)) for e in state.schedule().emails]
        return page("gallery", title="Every email", csrf=who.csrf or "", rows=rows)

    @router.get("/gallery/{lesson_id}")
    @guarded
    def gallery_email(request: Request, lesson_id: str) -> HTMLResponse:
        who = session(request)
        lesson, email = email_of(lesson_id)
        ids = [e.id for e in state.schedule().emails]
        at = ids.index(lesson.id)
        return page(
            "email",
            title=lesson.subject,
            csrf=who.csrf or "",
            lesson=lesson,
            email=email,
            meta=describe(lesson),
            previous=ids[at - 1] if at > 0 else None,
            following=ids[at + 1] if at + 1 < len(ids) else None,
        )

    @router.get("/gallery/{lesson_id}/html")
    @guarded
    def gallery_html(request: Request, lesson_id: str) -> HTMLResponse:
        session(request)
        _, email = email_of(lesson_id)
        headers = {"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN"}
        return HTMLResponse(email.html, headers=headers)  # type: ignore[attr-defined]

    return router
