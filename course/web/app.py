"""The subscriber web app: signup with double opt-in, confirmation, one-click unsubscribe,
flare pause and resume, the SendGrid Event Webhook, a health check and Prometheus metrics.

Every state change goes through :mod:`course.subscribers.lifecycle`; nothing here writes subscriber
fields itself. Emails are never sent inside a request: the app enqueues Celery tasks
(``course.confirmation``, ``course.tick``) for the workers.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.logs import log_event
from course.mail.render import Renderer, RenderError
from course.models.subscriber import (
    SUPPRESSED,
    Subscriber,
    due_at,
    next_lesson,
    resumed_at,
    to_instant,
)
from course.reports.metrics import build_registry
from course.runtime import ScheduleHolder
from course.schedule import Lesson, Schedule, ScheduleError
from course.settings import Settings
from course.store import Store, StoreError, connect
from course.store.embedded import resolve_redis_url
from course.subscribers.lifecycle import (
    SubscriptionError,
    confirm,
    pause,
    resume,
    unsubscribe,
    wait_for_sends,
)
from course.timeline import add_local_days
from course.tokens import ExpiredToken, InvalidToken, link, read_token
from course.web.admin import install_admin
from course.web.limits import BodyLimit
from course.web.pages import CONSENT_TEXT, CONSENT_VERSION, Pages
from course.web.signup import (
    InvalidSignup,
    SendTask,
    SignupForm,
    Signups,
    TooManySignups,
)
from course.web.webhook import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    Verifier,
    handle_events,
)

log = logging.getLogger("course.web")

HONEYPOT = "website"  # hidden from people; a bot that fills it is answered but ignored
MAX_TOKEN = 400  # characters; real tokens are far shorter
MAX_FORM = 16 * 1024  # bytes of body for a form or JSON; a signup is a few hundred
TICK_TASK = "course.tick"
SCHEDULE_CHECK_EVERY = 1.0  # seconds between looks for schedule edits (a stat per template)
PAUSE_CHOICES = {"7": 7, "14": 14, "": None}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CHANGED = "Your subscription changed just now. Please try again."
ERASED = "Nothing more will be sent to you: your data was erased at your request."
PAUSE_CHOICE_ERROR = "Please choose one week, two weeks, or until you resume."
NEUTRAL = (
    "Thank you. If that address can receive the course, a confirmation email is on its way: "
    "open it and press the link to start."
)

# -- OpenAPI descriptions ---------------------------------------------------------------------

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_SIGNUP_FIELDS = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "maxLength": 254, "description": "the address to confirm"},
        "first_name": {"type": "string", "maxLength": 80},
        "timezone": {
            "type": "string",
            "description": "IANA zone, e.g. Europe/Berlin (unknown: the course's zone)",
        },
        HONEYPOT: {"type": "string", "description": "leave empty (bots fill it)"},
    },
    "required": ["email"],
}
_SIGNUP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _SIGNUP_FIELDS},
            "multipart/form-data": {"schema": _SIGNUP_FIELDS},
            "application/json": {"schema": _SIGNUP_FIELDS},
        },
    }
}
_MESSAGE = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "message": {"type": "string"}},
}
_ONE_CLICK = {
    "type": "object",
    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
}
_UNSUBSCRIBE_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _ONE_CLICK},
            "multipart/form-data": {"schema": _ONE_CLICK},
        },
    }
}
_PAUSE_FIELDS = {
    "type": "object",
    "properties": {
        "days": {
            "type": "string",
            "enum": ["7", "14", ""],
            "description": "7 or 14 days; empty: until resumed",
        }
    },
}
_PAUSE_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": _PAUSE_FIELDS}},
    }
}
_EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string"},
                            "email": {"type": "string"},
                            "sg_event_id": {"type": "string"},
                            "sg_message_id": {"type": "string"},
                            "subscriber_id": {"type": "string"},
                            "lesson_id": {"type": "string"},
                            "type": {"type": "string"},
                            "reason": {"type": "string"},
                            "timestamp": {"type": "integer"},
                        },
                    },
                }
            }
        },
    }
}
_INVALID_LINK = {"description": "the link is not valid (forged, truncated, other purpose)", **_HTML}
_UNAVAILABLE = {"description": "Redis or the schedule is not available", **_HTML}


_TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe|pause|resume)/[^/?#]+")


class RedactTokens(logging.Filter):
    """Keeps subscriber tokens out of the access log: they never expire and are the only key
    to someone's unsubscribe and pause links."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _TOKEN_PATH.sub(r"/\1/<token>", args[2]), *args[3:])
        return True


_REDACT = RedactTokens()


class Unavailable(Exception):
    """Redis or the schedule cannot be used right now."""


class WebState:
    """What the app's requests share: the store, the schedule (reloaded when edited; the
    app starts even while it is invalid, and says so on /healthz) and the task sender."""

    def __init__(
        self,
        settings: Settings,
        send_task: SendTask | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._clock = clock  # paces the looks for schedule edits
        url = resolve_redis_url(settings.redis_url, settings.var_dir)
        self.client = connect(
            url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self.store = Store(self.client)
        self._send_task = send_task
        self._celery = None
        self._broker_url = url
        self._holder: ScheduleHolder | None = None
        self._load_error: str | None = None
        self._lock = threading.Lock()
        self.pages = Pages(settings.templates_dir)
        self.signups = Signups(self.store, settings, self.send_task)
        self.verifier = (
            Verifier(settings.sendgrid_webhook_public_key)
            if settings.sendgrid_webhook_public_key
            else None
        )

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Hand a task to the workers; False (logged) when the broker cannot take it.

        The state change that asked for it is already saved, and both tasks are safe to
        leave: beat's next tick sends what a confirm made due, and signing up again resends
        a confirmation. So the visitor gets the normal answer, not an error.
        """
        try:
            if self._send_task is not None:
                self._send_task(name, *args, **kwargs)
                return True
            with self._lock:
                if self._celery is None:
                    from course.tasks import create_app as create_celery

                    self._celery = create_celery(self.settings, self._broker_url)
            self._celery.send_task(name, *args, **kwargs)
            return True
        except Exception as exc:  # kombu's OperationalError, a Redis error, a timeout
            log.error("could not queue %s: %s", name, exc)
            return False

    def schedule(self, fresh: bool = False) -> Schedule:
        """The current valid schedule, or :class:`Unavailable`. Edits are looked for at
        most once per SCHEDULE_CHECK_EVERY seconds, or now when ``fresh``."""
        with self._lock:
            if self._holder is None:
                try:
                    self._holder = ScheduleHolder(
                        self.settings.schedule_path,
                        self.settings.templates_dir,
                        self.store.schedule_snapshot(),
                        self.store.status_board("web"),
                        check_every=SCHEDULE_CHECK_EVERY,
                        monotonic=self._clock,
                    )
                except (ScheduleError, RenderError, OSError, StoreError) as exc:
                    self._load_error = str(exc)
                    raise Unavailable(f"no valid schedule: {exc}") from None
                self._load_error = None
            schedule, _ = self._holder.current(fresh)
            return schedule

    def renderer(self) -> Renderer:
        """The current schedule's compiled templates (:class:`Unavailable` without one)."""
        self.schedule()
        assert self._holder is not None
        return self._holder.current()[1]

    def schedule_status(self) -> dict[str, object]:
        try:
            self.schedule(fresh=True)  # a health check sees an edit at once
        except Unavailable:
            return {"loaded": False, "error": self._load_error}
        error = self._holder.error if self._holder else None  # an invalid edit, still running
        running = {"fingerprint": self._holder.fingerprint} if self._holder else {}
        if self._holder and self._holder.schedule.confirmation is None:
            message = f"{self.settings.schedule_path}: no confirmation email: signups are refused"
            return {"loaded": True, "error": error or message, "signups": False, **running}
        return {"loaded": True, "error": error, "signups": True, **running}

    def workers_schedule(self, now: datetime) -> list[dict[str, object]]:
        """The schedule each running worker process last reported (course.reports.stats)."""
        from course.reports.stats import read_processes

        return [
            {"process": p.process, "fingerprint": p.fingerprint,
             "loaded_at": p.loaded_at.isoformat() if p.loaded_at else None,
             "error": p.error, "error_at": p.error_at.isoformat() if p.error_at else None}
            for p in read_processes(self.store, now)
            if p.role == "worker" and not p.stale
        ]  # fmt: skip

    def course_name(self) -> str:
        try:
            return self.schedule().course.name
        except Unavailable:
            return "The Healing Roadmap"

    def page(self, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        context.setdefault("course_name", self.course_name())
        return self.pages.render(name, status_code=status_code, **context)

    def close(self) -> None:
        self.client.close()
        if self._celery is not None:
            self._celery.close()


def create_app(settings: Settings, send_task: SendTask | None = None) -> FastAPI:
    """The web app for ``settings``; ``send_task`` replaces Celery's (for tests)."""
    state = WebState(settings, send_task)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        access_log = logging.getLogger("uvicorn.access")  # configured by now
        if _REDACT not in access_log.filters:
            access_log.addFilter(_REDACT)
        yield
        state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Healing Roadmap subscriber web",
        version="1",
        description="Signup with double opt-in, one-click unsubscribe, flare pause, "
        "SendGrid events. Pages are HTML; POST /subscribe also answers JSON.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not offline
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.web = state
    # Added first, so it sits inside the other middleware: a body that passes its cap raises
    # in the route's own read, where the exception handlers answer it with a 413.
    app.add_middleware(BodyLimit, default=MAX_FORM, limits={"/webhooks/sendgrid": MAX_BODY})
    _install_handlers(app, state)
    install_admin(app, state)

    def now() -> datetime:
        return datetime.now(UTC)

    def token_sub(token: str, purpose: str) -> Subscriber | None:
        """The subscriber a token names, or None when the token or the record is not valid."""
        if len(token) > MAX_TOKEN:
            return None
        try:
            sub_id = read_token(settings.verification_keys, token, purpose)
        except InvalidToken:
            return None
        return state.store.get(sub_id)

    def read_confirm(token: str) -> str:
        """The subscriber id of a confirm token (:class:`ExpiredToken` when too old)."""
        token = token if len(token) <= MAX_TOKEN else ""
        return read_token(settings.verification_keys, token, "confirm")

    def invalid_link(purpose: str) -> HTMLResponse:
        return state.page("invalid_link", 404, title="This link is not valid", purpose=purpose)

    def erased_or_invalid(token: str) -> HTMLResponse:
        """A genuine unsubscribe link whose record was erased on request: nothing is ever
        sent again, so it is answered as done (a one-click POST from a mailbox provider
        gets its 200); any other token is not valid."""
        try:
            read_token(settings.secret_key, token if len(token) <= MAX_TOKEN else "", "unsubscribe")
        except InvalidToken:
            return invalid_link("unsubscribe")
        return state.page("message", title="You are unsubscribed", message=ERASED)

    def links(sub: Subscriber) -> dict[str, str]:
        """The subscriber's own links, relative to this site."""
        return {
            purpose: link("", settings.secret_key, sub.id, purpose)
            for purpose in ("unsubscribe", "pause", "resume")
        }

    # -- signup ---------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, responses={200: {"description": "signup page"}})
    def signup_page() -> HTMLResponse:
        return _signup_form(state)

    @app.post(
        "/subscribe",
        response_class=HTMLResponse,
        openapi_extra=_SIGNUP_BODY,
        responses={
            200: {
                "description": "the same neutral answer for every valid address",
                "content": {"text/html": {}, "application/json": {"schema": _MESSAGE}},
            },
            400: {"description": "a body that cannot be read"},
            415: {"description": "neither a form nor JSON"},
            422: {"description": "not a valid email address (the form, shown again)"},
            429: {"description": "too many signups from this IP address (Retry-After)"},
            503: _UNAVAILABLE,
        },
    )
    async def subscribe(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        wants_json = content_type == "application/json" or (
            "application/json" in request.headers.get("accept", "")
            and "text/html" not in request.headers.get("accept", "")
        )
        try:
            data = await _read_body(request, content_type)
        except _BadBody as exc:
            return _problem(state, wants_json, exc.status, exc.message)
        ip = request.client.host if request.client else "unknown"
        return await run_in_threadpool(_signup, state, data, ip, wants_json, now())

    # -- confirmation ---------------------------------------------------------------------

    @app.get(
        "/confirm/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "confirmed (or already confirmed)", **_HTML},
            404: _INVALID_LINK,
            410: {"description": "the link expired; the page offers a new one", **_HTML},
            503: _UNAVAILABLE,
        },
    )
    def confirm_link(token: str) -> HTMLResponse:
        try:
            sub_id = read_confirm(token)
        except ExpiredToken as exc:
            sub = state.store.get(exc.subscriber_id)
            if sub is not None and sub.status == "pending":
                return state.page(
                    "confirm_expired", 410, title="This link has expired", token=token
                )
            if sub is None:
                return invalid_link("confirm")
            return _status_page(state, sub, links(sub), now())
        except InvalidToken:
            return invalid_link("confirm")
        sub = state.store.get(sub_id)
        if sub is None:
            return invalid_link("confirm")
        if sub.status != "pending":  # a second click, or a later state: say where they are
            return _status_page(state, sub, links(sub), now(), already=True)
        schedule = state.schedule()
        for _ in range(3):
            try:
                sub = confirm(state.store, schedule, sub, now())
                break
            except SubscriptionError:  # changed meanwhile: read again
                sub = state.store.get(sub.id)
                if sub is None or sub.status != "pending":
                    break
        if sub is None:
            return invalid_link("confirm")
        if sub.status != "active":  # something else happened meanwhile: say what
            return _status_page(state, sub, links(sub), now(), already=True)
        state.send_task(TICK_TASK)  # state-based and idempotent: day 0 goes at once
        log_event(log, logging.INFO, "confirm", subscriber=sub.id)
        return state.page(
            "confirmed",
            title="You are in",
            sub=sub,
            links=links(sub),
            send_time=schedule.course.send_time.strftime("%H:%M"),
        )

    @app.post(
        "/confirm/{token}/renew",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a new link was sent if the address is still pending", **_HTML},
            404: _INVALID_LINK,
            503: _UNAVAILABLE,
        },
    )
    def renew_confirmation(token: str) -> HTMLResponse:
        try:
            sub_id = read_confirm(token)
        except ExpiredToken as exc:
            sub_id = exc.subscriber_id
        except InvalidToken:
            return invalid_link("confirm")
        sub = state.store.get(sub_id)
        if sub is None:
            return invalid_link("confirm")
        if sub.status == "pending":
            state.signups.resend(sub.id, now())
            return state.page("check_inbox", title="Check your inbox", message=NEUTRAL)
        return _status_page(state, sub, links(sub), now(), already=True)

    # -- unsubscribe ----------------------------------------------------------------------

    @app.get(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a page with one button; a GET never unsubscribes", **_HTML},
            404: _INVALID_LINK,
        },
    )
    def unsubscribe_page(token: str) -> HTMLResponse:
        sub = token_sub(token, "unsubscribe")
        if sub is None:
            return erased_or_invalid(token)
        if sub.status in SUPPRESSED:
            current = state.store.find(sub.email)
            if current is None or current.status in SUPPRESSED:
                return state.page("unsubscribed", title="You are unsubscribed", sub=sub)
        return state.page(
            "unsubscribe",
            title="Unsubscribe?",
            sub=sub,
            links=links(sub),
            can_pause=sub.status == "active",
        )

    @app.post(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        openapi_extra=_UNSUBSCRIBE_BODY,
        responses={
            200: {"description": "unsubscribed (RFC 8058 one-click too); no redirect", **_HTML},
            404: _INVALID_LINK,
        },
    )
    def unsubscribe_now(token: str) -> HTMLResponse:
        # RFC 8058: the body is "List-Unsubscribe=One-Click" (form or multipart) or the
        # page's own form; neither a cookie nor a CSRF token is needed: the token is the key.
        sub = token_sub(token, "unsubscribe")
        if sub is None:
            return erased_or_invalid(token)
        sub = unsubscribe(state.store, sub)  # also whoever holds the address now
        if not wait_for_sends(state.store, sub.id):  # a lesson already on its way goes first
            log_event(log, logging.WARNING, "unsubscribe", subscriber=sub.id,
                      note="a send was still unfinished")  # fmt: skip
        log_event(log, logging.INFO, "unsubscribe", subscriber=sub.id)
        return state.page("unsubscribed", title="You are unsubscribed", sub=sub)

    # -- flare pause ----------------------------------------------------------------------

    @app.get(
        "/pause/{token}",
        response_class=HTMLResponse,
        responses={200: {"description": "the pause choices", **_HTML}, 404: _INVALID_LINK},
    )
    def pause_page(token: str) -> HTMLResponse:
        sub = token_sub(token, "pause")
        if sub is None:
            return invalid_link("pause")
        if sub.status != "active":
            return _status_page(state, sub, links(sub), now())
        return state.page(
            "pause",
            title="Pause the course",
            sub=sub,
            links=links(sub),
            next=_next_lesson(state, sub, now()),
        )

    @app.post(
        "/pause/{token}",
        response_class=HTMLResponse,
        openapi_extra=_PAUSE_BODY,
        responses={
            200: {"description": "paused; says when the next lesson comes", **_HTML},
            404: _INVALID_LINK,
            409: {"description": "changed meanwhile; try again", **_HTML},
            422: {"description": "days is not 7, 14 or empty", **_HTML},
            503: _UNAVAILABLE,
        },
    )
    async def pause_now(token: str, request: Request) -> HTMLResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            data = await _read_body(request, content_type, optional=True)
        except _BadBody as exc:
            return _problem(state, False, exc.status, exc.message)
        days = data.get("days", "")
        return await run_in_threadpool(_pause, state, token_sub(token, "pause"), days, links, now())

    @app.get(
        "/resume/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a page with the resume button", **_HTML},
            404: _INVALID_LINK,
        },
    )
    def resume_page(token: str) -> HTMLResponse:
        sub = token_sub(token, "resume")
        if sub is None:
            return invalid_link("resume")
        if sub.status != "paused":
            return _status_page(state, sub, links(sub), now())
        return state.page(
            "resume",
            title="Resume the course",
            sub=sub,
            links=links(sub),
            pause=_pause_info(sub),
        )

    @app.post(
        "/resume/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "resumed; says when the next lesson comes", **_HTML},
            404: _INVALID_LINK,
            409: {"description": "changed meanwhile; try again", **_HTML},
            503: _UNAVAILABLE,
        },
    )
    def resume_now(token: str) -> HTMLResponse:
        sub = token_sub(token, "resume")
        if sub is None:
            return invalid_link("resume")
        if sub.status != "paused":
            return _status_page(state, sub, links(sub), now())
        schedule = state.schedule()
        try:
            sub = resume(state.store, schedule, sub, now())
        except SubscriptionError:
            return state.page("message", 409, title="Please try again", message=CHANGED)
        log_event(log, logging.INFO, "resume", subscriber=sub.id)
        return _status_page(state, sub, links(sub), now(), resumed=True)

    # -- provider events and health -------------------------------------------------------

    @app.post(
        "/webhooks/sendgrid",
        openapi_extra=_EVENTS_BODY,
        responses={
            200: {"description": "events applied", "content": {"application/json": {}}},
            400: {"description": "not a JSON array"},
            401: {"description": "a signature is required and missing"},
            403: {"description": "bad or stale signature, or no key configured outside dev"},
            413: {"description": "body too large"},
            503: {"description": "Redis or the schedule is not available"},
        },
    )
    async def sendgrid_events(request: Request) -> JSONResponse:
        body = await request.body()  # at most MAX_BODY: BodyLimit
        if state.verifier is None and settings.env != "dev":
            # Unsigned events could suppress anyone, and the answer would tell which
            # addresses are known: outside dev they are accepted only when signed.
            log.error("webhook refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
            return JSONResponse({"error": "signed events only: the key is not configured"}, 403)
        if state.verifier is not None:
            try:
                state.verifier.check(
                    body,
                    request.headers.get(SIGNATURE_HEADER),
                    request.headers.get(TIMESTAMP_HEADER),
                    now().timestamp(),
                )
            except SignatureRejected as exc:
                log.warning("webhook rejected: %s", exc.reason)
                return JSONResponse({"error": exc.reason}, exc.status)
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "not JSON"}, 400)
        if not isinstance(events, list):
            return JSONResponse({"error": "expected a JSON array of events"}, 400)
        schedule = await run_in_threadpool(state.schedule)
        report = await run_in_threadpool(
            handle_events, state.store, schedule, events, now().timestamp()
        )
        return JSONResponse(report.as_dict())

    def lesson_ids() -> list[str]:
        try:
            return [lesson.id for lesson in state.schedule().lessons]
        except Unavailable:
            return []

    registry = build_registry(state.store, lesson_ids, time.time)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition, read from Redis at each scrape",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            401: {"description": "COURSE_METRICS_TOKEN is set and the bearer token is not it"},
        },
    )
    def metrics(request: Request) -> Response:
        if settings.metrics_token and not _bearer_matches(
            request.headers.get("authorization", ""), settings.metrics_token
        ):
            return PlainTextResponse(
                "a bearer token is required\n",
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz",
        responses={
            200: {"description": "Redis reachable and a schedule loaded"},
            503: {"description": "Redis unreachable or no valid schedule"},
        },
    )
    def healthz() -> JSONResponse:
        try:
            state.store.ping()
            redis_ok, last_tick = True, state.store.last_tick()
        except (StoreError, OSError):
            redis_ok, last_tick = False, None
        schedule = state.schedule_status() if redis_ok else {"loaded": False, "error": None}
        if redis_ok:
            schedule["workers"] = state.workers_schedule(now())
        if not redis_ok and state._holder is not None:
            schedule = {"loaded": True, "error": state._holder.error}
        # Loaded but without a confirmation email, signups are refused: not healthy either.
        # An invalid edit is reported while the last valid schedule keeps running.
        healthy = redis_ok and bool(schedule["loaded"]) and schedule.get("signups", True)
        body = {
            "status": "ok" if healthy else "error",
            "redis": "ok" if redis_ok else "error",
            "schedule": schedule,
            "last_tick": last_tick,
        }
        return JSONResponse(body, 200 if healthy else 503)

    return app


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


# -- request bodies ---------------------------------------------------------------------------


class _BadBody(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(request: Request, content_type: str, optional: bool = False) -> dict:
    """A form (urlencoded or multipart) or a JSON object, as a dict of field -> value."""
    if content_type == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise _BadBody(400, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise _BadBody(400, "Expected a JSON object.")
        return data
    if content_type in FORM_TYPES:
        try:
            form = await request.form(max_files=0, max_fields=50)
        except StarletteHTTPException:  # the body passed its cap (BodyLimit)
            raise
        except Exception:  # a malformed multipart body, too many fields, a file
            raise _BadBody(400, "The form could not be read.") from None
        return {key: value if isinstance(value, str) else None for key, value in form.items()}
    if optional and not content_type:
        return {}
    raise _BadBody(415, "Send the form (urlencoded or multipart) or JSON.")


def _problem(state: WebState, as_json: bool, status: int, message: str) -> Response:
    if as_json:
        return JSONResponse({"status": "error", "message": message}, status)
    return state.page("message", status, title="Something is not right", message=message)


# -- signup -----------------------------------------------------------------------------------


def _signup_form(
    state: WebState,
    status_code: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    try:
        default_zone = state.schedule().course.timezone.key
    except Unavailable:
        default_zone = ""
    return state.page(
        "signup",
        status_code,
        title="",
        consent_text=CONSENT_TEXT,
        honeypot=HONEYPOT,
        default_zone=default_zone,
        error=error,
        values=values or {},
    )


def _signup(state: WebState, data: dict, ip: str, as_json: bool, now: datetime) -> Response:
    try:
        state.signups.check_ip(ip, now)
    except TooManySignups as exc:
        message = "Too many signups from your network just now. Please try again later."
        headers = {"Retry-After": str(exc.retry_after)}
        if as_json:
            return JSONResponse({"status": "error", "message": message}, 429, headers=headers)
        return state.page(
            "message", 429, title="Please try again later", message=message, headers=headers
        )
    try:
        form = SignupForm.parse(data, HONEYPOT)
        schedule = state.schedule()
        if schedule.confirmation is None:  # a signup nobody could confirm: refuse it loudly
            raise Unavailable("the schedule has no confirmation email")
        result = state.signups.signup(form, schedule, ip, now, CONSENT_VERSION)
    except InvalidSignup as exc:
        if as_json:
            return JSONResponse(
                {"status": "error", "field": exc.field, "message": exc.message}, 422
            )
        values = {k: v for k, v in data.items() if k in ("email", "first_name", "timezone")}
        values = {k: v for k, v in values.items() if isinstance(v, str)}
        return _signup_form(state, 422, exc.message, values)
    del result  # every outcome gets the same answer: no enumeration of addresses
    if as_json:
        return JSONResponse({"status": "ok", "message": NEUTRAL})
    return state.page("check_inbox", title="Check your inbox", message=NEUTRAL)


# -- pause, resume and where a subscriber stands ----------------------------------------------


def _next_lesson(state: WebState, sub: Subscriber, now: datetime) -> tuple[Lesson, datetime] | None:
    """The next lesson and when it comes: for an active subscriber from the due index; for a
    timed pause as if resumed at its end; None when none is left or the pause is open."""
    try:
        schedule = state.schedule()
    except Unavailable:
        return None
    done = set(state.store.ledger(sub.id))
    if sub.status == "active":
        lesson = next_lesson(schedule, sub, done)
        due = state.store.due_score(sub.id)
        if lesson is None or due is None:
            return None
        return lesson, max(now, to_instant(due))
    if sub.status == "paused" and sub.paused_until and sub.paused_at:
        resumed = resumed_at(sub, to_instant(sub.paused_until))
        lesson = next_lesson(schedule, resumed, done)
        if lesson is None or resumed.start is None:
            return None
        due = max(due_at(schedule, resumed, lesson), to_instant(sub.paused_until))
        return lesson, due
    return None


def _pause_info(sub: Subscriber) -> dict[str, object]:
    return {
        "until": to_instant(sub.paused_until) if sub.paused_until else None,
        "since": to_instant(sub.paused_at) if sub.paused_at else None,
    }


def _status_page(
    state: WebState,
    sub: Subscriber,
    links: dict[str, str],
    now: datetime,
    already: bool = False,
    resumed: bool = False,
) -> HTMLResponse:
    """Where this subscriber stands, in words: the friendly answer to a link used in a state
    it does not apply to (pausing twice, resuming while active, a second confirmation)."""
    return state.page(
        "status",
        title="Your course",
        sub=sub,
        links=links,
        already=already,
        resumed=resumed,
        next=_next_lesson(state, sub, now),
        pause=_pause_info(sub),
        suppressed=sub.status in SUPPRESSED,
    )


def _pause(
    state: WebState,
    sub: Subscriber | None,
    days_text: object,
    make_links: Callable[[Subscriber], dict[str, str]],
    now: datetime,
) -> HTMLResponse:
    if sub is None:
        return state.page("invalid_link", 404, title="This link is not valid", purpose="pause")
    links = make_links(sub)
    if not isinstance(days_text, str) or days_text.strip() not in PAUSE_CHOICES:
        return state.page(
            "pause",
            422,
            title="Pause the course",
            sub=sub,
            links=links,
            next=_next_lesson(state, sub, now),
            error=PAUSE_CHOICE_ERROR,
        )
    if sub.status != "active":
        return _status_page(state, sub, links, now, already=sub.status == "paused")
    days = PAUSE_CHOICES[days_text.strip()]
    until = add_local_days(now, days, sub.zone) if days else None
    try:
        sub = pause(state.store, sub, now, until)
    except SubscriptionError:
        current = state.store.get(sub.id)
        if current is not None and current.status != "active":
            return _status_page(state, current, links, now, already=True)
        return state.page("message", 409, title="Please try again", message=CHANGED)
    log_event(log, logging.INFO, "pause", subscriber=sub.id, days=days or "open")
    return _status_page(state, sub, links, now)


# -- errors -----------------------------------------------------------------------------------


def _install_handlers(app: FastAPI, state: WebState) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A link cut short by a mail program lands here (/unsubscribe/ with no token): say
        # so in words rather than in JSON.
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            purpose = request.url.path.strip("/").split("/")[0]
            return state.pages.render(
                "invalid_link",
                404,
                title="This link is not valid",
                purpose=purpose,
                headers=headers,
            )
        if exc.status_code == 405:
            return state.pages.render(
                "message",
                405,
                title="This link is not valid",
                message="This link is not valid for that kind of request.",
                headers=headers,
            )
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        log.error("unavailable: %s", exc)
        return state.page(
            "message",
            503,
            title="Back soon",
            course_name="The Healing Roadmap",
            message="We cannot do that right now. Please try again in a few minutes.",
            headers={"Retry-After": "60"},
        )

    @app.exception_handler(StoreError)
    async def redis_down(request: Request, exc: StoreError) -> Response:
        log.error("redis: %s", exc)
        return state.pages.render(
            "message",
            503,
            title="Back soon",
            message="We cannot do that right now. Please try again in a few minutes.",
            headers={"Retry-After": "60"},
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")  # links carry tokens
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        if request.url.path != "/" and request.url.path != "/openapi.json":
            headers.setdefault("Cache-Control", "no-store")
        return response
