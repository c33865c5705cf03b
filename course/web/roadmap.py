"""The reader's own pages, on the never-expiring "me" token of every lesson email:
``GET /me/{token}`` (Your Roadmap: the lessons so far, the next one and when, the phase,
the zone, pause/resume and unsubscribe) and ``GET /me/{token}/lessons/{lesson_id}`` (a
lesson they were sent, online). Read-only: nothing here changes a record.

The token is the only key, so: a forged, truncated or other-purpose token is a 404; a lesson
not handed to the provider for this reader is a 404; a reader who left sees only that they
left; nothing personal is in a URL but the token (kept out of the access log, no referrer
sent, never cached).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from course.mail.online import online_lesson
from course.mail.samples import PREVIEW_ID, SAMPLE_ID
from course.mail.send_test import TEST_SUBSCRIBER_ID
from course.models.email import Recipient
from course.models.subscriber import SUPPRESSED, Subscriber
from course.reports.roadmap import readable_lesson, roadmap
from course.tokens import InvalidToken, read_token, subscriber_links
from course.web.links import MAX_TOKEN, invalid_link, links, token_sub
from course.web.openapi import HTML, INVALID_LINK, UNAVAILABLE
from course.web.state import WebState, now
from course.web.status import pause_info

# The reader's pages carry their token in every link: never kept by a cache, never sent on.
PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
# A lesson's own images (if a marketer adds one) load as they did in the email.
LESSON_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Readers who never were: the previews' and send-test's links open the not-valid page.
_NOBODY = frozenset({PREVIEW_ID, SAMPLE_ID, TEST_SUBSCRIBER_ID})


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
            return _left_or_invalid(state, token)
        view = roadmap(
            state.schedule(), sub, state.store.ledger(sub.id), state.store.due_score(sub.id), now()
        )
        return state.page(
            "roadmap",
            title="Your Roadmap",
            headers=PRIVATE,
            sub=sub,
            view=view,
            token=token,
            links=links(state, sub),
            pause=pause_info(sub),
        )

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
            return _left_or_invalid(state, token)
        if sub.status in SUPPRESSED:
            return _left(state)
        schedule = state.schedule()
        lesson = readable_lesson(schedule, state.store.ledger(sub.id), lesson_id)
        if lesson is None:  # not sent to them (yet), or no such lesson: nothing to show
            return state.page(
                "lesson", 404, title="Not here yet", headers=PRIVATE, shown=None, token=token
            )
        recipient = Recipient.for_subscriber(sub, _email_links(state, sub))
        shown = online_lesson(schedule, state.renderer(), lesson, recipient)
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


def _left(state: WebState) -> HTMLResponse:
    return state.page("roadmap", title="You have left the course", headers=PRIVATE, view=None)


def _left_or_invalid(state: WebState, token: str) -> HTMLResponse:
    """A genuine token whose record is gone was erased on request: the reader has left.
    Any other token (and the sample readers' links) is not valid."""
    try:
        sub_id = read_token(
            state.settings.verification_keys, token if len(token) <= MAX_TOKEN else "", "me"
        )
    except InvalidToken:
        return invalid_link(state, "me")
    if sub_id in _NOBODY:
        return invalid_link(state, "me")
    return _left(state)
