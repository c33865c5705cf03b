"""The signup page (``GET /``) and ``POST /subscribe`` (a form, or JSON): every valid address
gets the same neutral answer after the same work: the per-IP limit, the form checked, one
``course.signup`` task queued. What the signup then does is the worker's
(:mod:`course.subscribers.double_opt_in`)."""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from course.logs import log_event
from course.subscribers.double_opt_in import SignupRequest
from course.subscribers.signup import InvalidSignup, zone_or_default
from course.task_names import SIGNUP_TASK
from course.web.bodies import BadBody, problem, read_body
from course.web.openapi import UNAVAILABLE
from course.web.origins import allowed_origins, foreign_origin
from course.web.pages import CONSENT_TEXT, CONSENT_VERSION
from course.web.signup import SignupForm, TooManySignups, check_ip
from course.web.state import Unavailable, WebState, now

log = logging.getLogger("course.web")

HONEYPOT = "website"  # hidden from people; a bot that fills it is answered but ignored
NEUTRAL = (
    "Thank you. If that address can receive the course, a confirmation email is on its way: "
    "open it and press the link to start."
)


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


def router(state: WebState) -> APIRouter:
    """The signup page and the signup."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, responses={200: {"description": "signup page"}})
    def signup_page() -> HTMLResponse:
        return _signup_form(state)

    @router.post(
        "/subscribe",
        response_class=HTMLResponse,
        openapi_extra=_SIGNUP_BODY,
        responses={
            200: {
                "description": "the same neutral answer for every valid address",
                "content": {"text/html": {}, "application/json": {"schema": _MESSAGE}},
            },
            400: {"description": "a body that cannot be read"},
            403: {
                "description": "posted from a page of another site (Origin or Referer) that "
                "COURSE_ALLOWED_ORIGINS does not list",
                "content": {"text/html": {}, "application/json": {"schema": _MESSAGE}},
            },
            415: {"description": "neither a form nor JSON"},
            422: {"description": "not a valid email address (the form, shown again)"},
            429: {"description": "too many signups from this IP address (Retry-After)"},
            503: {
                **UNAVAILABLE,
                "description": "Redis or the schedule is not available, "
                "or the signup could not be queued for the workers",
            },
        },
    )
    async def subscribe(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        wants_json = content_type == "application/json" or (
            "application/json" in request.headers.get("accept", "")
            and "text/html" not in request.headers.get("accept", "")
        )
        own = f"{request.url.scheme}://{request.url.netloc}"
        foreign = foreign_origin(request.headers, allowed_origins(state.settings, own))
        if foreign is not None:
            return _cross_site(state, foreign, wants_json)
        try:
            data = await read_body(request, content_type)
        except BadBody as exc:
            return problem(state, wants_json, exc.status, exc.message)
        ip = request.client.host if request.client else "unknown"
        return await run_in_threadpool(_signup, state, data, ip, wants_json, now())

    return router


# The signup pages carry no token, and the form must send its Origin to POST /subscribe:
# under "no-referrer" a browser sends "Origin: null" with a form post.
SIGNUP_REFERRER_POLICY = "same-origin"


def _cross_site(state: WebState, origin: str, as_json: bool) -> Response:
    log.warning("signup refused: posted from %s, not an allowed origin", origin)
    message = "Signups from this page are not accepted. Please sign up on the course's own page."
    if as_json:
        return JSONResponse({"status": "error", "message": message}, 403)
    return state.page("message", 403, title="Sign up on the course's page", message=message)


def _signup_form(
    state: WebState,
    status_code: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
    error_field: str | None = None,
) -> HTMLResponse:
    try:
        default_zone = state.schedule().course.timezone.key
    except Unavailable:
        default_zone = ""
    page = state.page(
        "signup",
        status_code,
        title="",
        consent_text=CONSENT_TEXT,
        honeypot=HONEYPOT,
        default_zone=default_zone,
        error=error,
        error_field=error_field,
        values=values or {},
    )
    page.headers["Referrer-Policy"] = SIGNUP_REFERRER_POLICY
    return page


def _signup(state: WebState, data: dict, ip: str, as_json: bool, now: datetime) -> Response:
    try:
        check_ip(state.store, state.settings, ip, now)
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
    except InvalidSignup as exc:
        if as_json:
            return JSONResponse(
                {"status": "error", "field": exc.field, "message": exc.message}, 422
            )
        values = {k: v for k, v in data.items() if k in ("email", "first_name", "timezone")}
        values = {k: v for k, v in values.items() if isinstance(v, str)}
        return _signup_form(state, 422, exc.message, values, exc.field)
    if form.honeypot:  # a bot: nothing queued (this says nothing about the address)
        log_event(log, logging.INFO, "signup", outcome="honeypot", ip=ip)
    else:
        zone = zone_or_default(form.timezone, schedule)
        request = SignupRequest(form.address, form.first_name, zone, ip, now, CONSENT_VERSION)
        # No store work here: what the address's state decides is the worker's, so every
        # signup does the same Redis round trips (the IP's counter, the enqueue).
        if not state.send_task(
            SIGNUP_TASK, kwargs=request.message(), kwargsrepr=request.message_repr()
        ):
            raise Unavailable("the signup could not be queued")
    # Every outcome gets the same answer: no enumeration of addresses.
    if as_json:
        return JSONResponse({"status": "ok", "message": NEUTRAL})
    page = state.page(
        "check_inbox",
        title="Check your inbox",
        message=NEUTRAL,
        email=form.email,
        # "Not you? Fix it" links back to the form with the typed values in the fragment,
        # which the page's script fills in: never sent to the server, so never in its logs.
        fix_fragment=urlencode(
            {"email": form.email, "first_name": form.first_name or ""}, safe="@"
        ),
    )
    page.headers["Referrer-Policy"] = SIGNUP_REFERRER_POLICY
    return page
