"""The flare pause: ``/pause/{token}`` (7 days, 14 days, or until resumed) and
``/resume/{token}``; each says when the next lesson comes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from course.logs import log_event
from course.models.subscriber import Subscriber
from course.subscribers.lifecycle import SubscriptionError, pause, resume
from course.timeline import add_local_days
from course.web.bodies import BadBody, problem, read_body
from course.web.links import invalid_link, links, token_sub
from course.web.openapi import HTML, INVALID_LINK, UNAVAILABLE
from course.web.state import WebState, now
from course.web.status import pause_info, status_page, upcoming_lesson

log = logging.getLogger("course.web")

PAUSE_CHOICES = {"7": 7, "14": 14, "": None}
CHANGED = "Your subscription changed just now. Please try again."
PAUSE_CHOICE_ERROR = "Please choose one week, two weeks, or until you resume."

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


def router(state: WebState) -> APIRouter:
    """The pause and resume pages and actions."""
    router = APIRouter()

    @router.get(
        "/pause/{token}",
        response_class=HTMLResponse,
        responses={200: {"description": "the pause choices", **HTML}, 404: INVALID_LINK},
    )
    def pause_page(token: str) -> HTMLResponse:
        sub = token_sub(state, token, "pause")
        if sub is None:
            return invalid_link(state, "pause")
        if sub.status != "active":
            return status_page(state, sub, links(state, sub), now())
        return state.page(
            "pause",
            title="Pause the course",
            sub=sub,
            links=links(state, sub),
            next=upcoming_lesson(state, sub, now()),
        )

    @router.post(
        "/pause/{token}",
        response_class=HTMLResponse,
        openapi_extra=_PAUSE_BODY,
        responses={
            200: {"description": "paused; says when the next lesson comes", **HTML},
            404: INVALID_LINK,
            409: {"description": "changed meanwhile; try again", **HTML},
            422: {"description": "days is not 7, 14 or empty", **HTML},
            503: UNAVAILABLE,
        },
    )
    async def pause_now(token: str, request: Request) -> HTMLResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            data = await read_body(request, content_type, optional=True)
        except BadBody as exc:
            return problem(state, False, exc.status, exc.message)
        days = data.get("days", "")
        sub = token_sub(state, token, "pause")
        make_links = functools.partial(links, state)
        return await run_in_threadpool(_pause, state, sub, days, make_links, now())

    @router.get(
        "/resume/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a page with the resume button", **HTML},
            404: INVALID_LINK,
        },
    )
    def resume_page(token: str) -> HTMLResponse:
        sub = token_sub(state, token, "resume")
        if sub is None:
            return invalid_link(state, "resume")
        if sub.status != "paused":
            return status_page(state, sub, links(state, sub), now())
        return state.page(
            "resume",
            title="Resume the course",
            sub=sub,
            links=links(state, sub),
            pause=pause_info(sub),
        )

    @router.post(
        "/resume/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "resumed; says when the next lesson comes", **HTML},
            404: INVALID_LINK,
            409: {"description": "changed meanwhile; try again", **HTML},
            503: UNAVAILABLE,
        },
    )
    def resume_now(token: str) -> HTMLResponse:
        sub = token_sub(state, token, "resume")
        if sub is None:
            return invalid_link(state, "resume")
        if sub.status != "paused":
            return status_page(state, sub, links(state, sub), now())
        schedule = state.schedule()
        try:
            sub = resume(state.store, schedule, sub, now())
        except SubscriptionError:
            return state.page("message", 409, title="Please try again", message=CHANGED)
        log_event(log, logging.INFO, "resume", subscriber=sub.id)
        return status_page(state, sub, links(state, sub), now(), resumed=True)

    return router


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
            next=upcoming_lesson(state, sub, now),
            error=PAUSE_CHOICE_ERROR,
        )
    if sub.status != "active":
        return status_page(state, sub, links, now, already=sub.status == "paused")
    days = PAUSE_CHOICES[days_text.strip()]
    until = add_local_days(now, days, sub.zone) if days else None
    try:
        sub = pause(state.store, sub, now, until)
    except SubscriptionError:
        current = state.store.get(sub.id)
        if current is not None and current.status != "active":
            return status_page(state, current, links, now, already=True)
        return state.page("message", 409, title="Please try again", message=CHANGED)
    log_event(log, logging.INFO, "pause", subscriber=sub.id, days=days or "open")
    return status_page(state, sub, links, now)
