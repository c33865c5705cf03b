"""The reader's own pages, on the never-expiring "me" token of every lesson email:
``GET /me/{token}`` (Your Roadmap: the lessons so far, the next one and when, the phase,
the zone, the reader's settings, pause/resume and unsubscribe), ``POST /me/{token}`` (any of
``pace``, ``send_time``, ``timezone``: :mod:`course.web.roadmap_form`) and
``GET /me/{token}/lessons/{lesson_id}`` (a lesson they were sent, online).

The token is the only key, so: a forged, truncated or other-purpose token is a 404; a lesson
not handed to the provider for this reader is a 404; a reader who left sees only that they
left, and their POST changes nothing; nothing personal is in a URL but the token (kept out of
the access log, no referrer sent, never cached). The POST needs no cookie, as ``POST
/confirm`` and the one-click unsubscribe: the token is the secret, and a page on another site
cannot know it (see :mod:`course.web.confirm`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from course.mail.online import online_lesson
from course.models.email import Recipient
from course.models.subscriber import SUPPRESSED, Subscriber
from course.reports.roadmap import readable_lesson
from course.tokens import subscriber_links
from course.web.bodies import BadBody, problem, read_body
from course.web.links import token_sub
from course.web.openapi import HTML, INVALID_LINK, UNAVAILABLE
from course.web.roadmap_form import (
    PRIVATE,
    SETTINGS_BODY,
    change_from_form,
    left,
    left_or_invalid,
    roadmap_response,
)
from course.web.state import WebState, now

# A lesson's own images (if a marketer adds one) load as they did in the email.
LESSON_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def router(state: WebState) -> APIRouter:
    """Your Roadmap and the lessons online."""
    router = APIRouter()

    @router.get(
        "/me/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "Your Roadmap (or only that the reader has left)", **HTML},
            404: INVALID_LINK,
            503: UNAVAILABLE,
        },
    )
    def roadmap_page(token: str) -> HTMLResponse:
        sub = token_sub(state, token, "me")
        if sub is None:
            return left_or_invalid(state, token)
        return roadmap_response(state, sub, token, now())

    @router.post(
        "/me/{token}",
        response_class=HTMLResponse,
        openapi_extra=SETTINGS_BODY,
        responses={
            200: {"description": "saved: Your Roadmap says when the next lesson now comes", **HTML},
            400: {"description": "the form could not be read", **HTML},
            404: INVALID_LINK,
            409: {"description": "the reader has left (nothing changed), or try again", **HTML},
            415: {"description": "not a form", **HTML},
            422: {"description": "a field is not valid: the form again, the field marked", **HTML},
            503: UNAVAILABLE,
        },
    )
    async def change_page(token: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            data = await read_body(request, content_type, optional=True)
        except BadBody as exc:
            return problem(state, False, exc.status, exc.message)
        return await run_in_threadpool(change_from_form, state, token, data, now())

    @router.get(
        "/me/{token}/lessons/{lesson_id}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a lesson the reader was sent, as the email had it", **HTML},
            404: {"description": "the link is not valid, or the lesson was not sent", **HTML},
            503: UNAVAILABLE,
        },
    )
    def lesson_page(token: str, lesson_id: str) -> HTMLResponse:
        sub = token_sub(state, token, "me")
        if sub is None:
            return left_or_invalid(state, token)
        if sub.status in SUPPRESSED:
            return left(state)
        ledger = state.store.ledger(sub.id)
        entry = ledger.get(lesson_id)
        sent_at = datetime.fromtimestamp(entry.at, UTC) if entry else now()
        schedule, renderer = state.as_sent(sent_at)  # the lesson as the email had it
        lesson = readable_lesson(schedule, ledger, lesson_id)
        if lesson is None:  # not sent to them (yet), or no such lesson: nothing to show
            return state.page(
                "lesson", 404, title="Not here yet", headers=PRIVATE, shown=None, token=token
            )
        recipient = Recipient.for_subscriber(sub, _email_links(state, sub))
        shown = online_lesson(schedule, renderer, lesson, recipient)
        return state.page(
            "lesson",
            title=lesson.subject,
            headers={**PRIVATE, "Content-Security-Policy": LESSON_CSP},
            shown=shown,
            token=token,
        )

    return router


def _email_links(state: WebState, sub: Subscriber) -> dict[str, str]:
    """The links the reader's email carried (absolute, as the lesson's own text has them)."""
    return subscriber_links(state.settings.base_url, state.settings.secret_key, sub.id)
