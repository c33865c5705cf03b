"""The subscriber web app: signup with double opt-in, confirmation, one-click unsubscribe,
flare pause and resume, the reader's Roadmap and lessons online, check-ins, the SendGrid Event
Webhook, SendGrid's Inbound Parse (readers' replies), a health check and Prometheus metrics.

:func:`create_app` builds the shared :class:`~course.web.state.WebState`, caps request bodies,
installs the error handlers and the security headers, and includes one router per noun
(``course.web.subscribe``, ``confirm``, ``unsubscribe``, ``pause``, ``roadmap`` (the reader's
own pages), ``checkin``, ``webhook``, ``inbound`` (readers' replies), ``health``,
``course.web.admin``, and the REST API's, ``course.web.api``).

Every state change goes through :mod:`course.subscribers.lifecycle` (a check-in through
:mod:`course.subscribers.checkin`); nothing here writes subscriber fields itself. Emails are
never sent inside a request: the app enqueues Celery tasks (``course.signup``,
``course.confirmation``, ``course.tick``) for the workers; a signup's store work is the
``course.signup`` task's, so every signup costs the web the same.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from course.settings import Settings
from course.subscribers.double_opt_in import SendTask
from course.web.access_log import redact_access_log
from course.web.admin.install import install_admin
from course.web.api import install_api
from course.web.checkin import router as checkin_router
from course.web.confirm import router as confirm_router
from course.web.errors import install_handlers
from course.web.head import HeadAsGet
from course.web.health import router as health_router
from course.web.inbound import MAX_BODY as INBOUND_MAX_BODY
from course.web.inbound import PATH as INBOUND_PATH
from course.web.inbound import router as inbound_router
from course.web.limits import BodyLimit
from course.web.pause import router as pause_router
from course.web.roadmap import router as roadmap_router
from course.web.state import WebState
from course.web.subscribe import router as subscribe_router
from course.web.unsubscribe import router as unsubscribe_router
from course.web.webhook import MAX_BODY
from course.web.webhook import router as webhook_router

MAX_FORM = 16 * 1024  # bytes of body for a form or JSON; a signup is a few hundred
# One router per noun, in the order their routes are matched and described.
ROUTERS = (
    subscribe_router,
    confirm_router,
    unsubscribe_router,
    pause_router,
    roadmap_router,
    checkin_router,
    webhook_router,
    inbound_router,
    health_router,
)


def create_app(settings: Settings, send_task: SendTask | None = None) -> FastAPI:
    """The web app for ``settings``; ``send_task`` replaces Celery's (for tests)."""
    state = WebState(settings, send_task)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_access_log()
        yield
        state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Healing Roadmap subscriber web",
        version="1",
        description="Signup with double opt-in, one-click unsubscribe, flare pause, "
        "SendGrid events. Pages are HTML; POST /subscribe also answers JSON. The REST API "
        "under /api/v1 (JSON, bearer tokens) is described here when COURSE_API_TOKENS is set.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not offline
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.web = state
    # Added first, so it sits inside the other middleware: a body that passes its cap raises
    # in the route's own read, where the exception handlers answer it with a 413.
    limits = {"/webhooks/sendgrid": MAX_BODY, INBOUND_PATH: INBOUND_MAX_BODY}
    app.add_middleware(BodyLimit, default=MAX_FORM, limits=limits, prefixes={INBOUND_PATH + "/"})
    install_handlers(app, state)
    app.middleware("http")(security_headers)
    install_admin(app, state)
    install_api(app, state)
    for router in ROUTERS:
        app.include_router(router(state))
    app.add_middleware(HeadAsGet)  # the outermost: everything inside sees the GET
    return app


async def security_headers(request: Request, call_next):
    """Headers on every answer: no sniffing, no referrer (links carry tokens), no framing, a
    strict Content-Security-Policy, and no caching but for the signup page and the API
    description."""
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
