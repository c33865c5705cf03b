"""Check-ins: ``/me/{token}/checkin/{lesson_id}/{answer}``, the three links ("A flare",
"About the same", "Better") under a lesson that asks "How has this week been?".

``GET`` records nothing and changes nothing: corporate link scanners (Outlook Safe Links,
Mimecast) fetch every link of an email before the reader sees it. It shows the chosen answer
with one button that records it (``POST``), and a small inline script that presses that button
by itself once the page is really shown to a person (``document.visibilityState`` is
``visible``, and the browser is not driven by automation: ``navigator.webdriver``). A reader
with JavaScript records with one click; without it, with one press of the button. ``POST``
records one answer per (reader, lesson), the latest winning, and shows a kind page; a flare
offers the pause and the flare-plan lesson (or the Roadmap page while that is not sent yet).

What someone holding a check-in link can do, and what stops more:

- The link carries the reader's "me" token, the key to their Roadmap page, which the same
  email's footer links to anyway: a check-in purpose of its own would protect nothing the
  email does not already give away, and would cost every email another signed link.
- A forwarded email lets its new reader check in (and read the Roadmap) as the subscriber,
  as it lets them pause or unsubscribe: the worst is a wrong answer, which the subscriber
  replaces with their own next click (latest wins).
- Replaying a POST records the same answer again: nothing changes but its time. Each reader
  has at most one answer per lesson, so no number of requests adds keys or counts beyond one
  per lesson a reader was sent; another reader's answers need another reader's token.
- A scanner that only fetches records nothing. One that runs scripts in a visible page of an
  automated browser is stopped by ``navigator.webdriver``; one that hides even that records
  an answer the reader can change. A page elsewhere cannot post for someone: it does not know
  the token (the pages send no referrer and are never cached).
- A forged, truncated or other-purpose token, an unknown answer, or a lesson not sent to this
  reader is a 404; a reader who left (or was erased) sees that they left, and nothing is
  recorded (checked inside the store's script, atomically with the answer).
- The answer is health data: it is kept with the reader (exported and erased with them), and
  the log line of a check-in names the subscriber and lesson, never the answer.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from course.logs import log_event
from course.models.checkin import ANSWER_LABELS, ANSWERS
from course.models.schedule import LESSON, Lesson
from course.models.subscriber import SUPPRESSED, Subscriber
from course.reports.roadmap import readable_lesson
from course.subscribers.checkin import check_in
from course.web.links import erased_reader, invalid_link, links, token_sub
from course.web.openapi import HTML, UNAVAILABLE
from course.web.state import WebState, now

log = logging.getLogger("course.web")

FLARE_PLAN = "flare-plan"  # the lesson a flare's page points to, once the reader has it
# The reader's pages carry their token in every link: never kept by a cache, never sent on.
PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
PATH = "/me/{token}/checkin/{lesson_id}/{answer}"
_NOT_VALID = {"description": "the link is not valid, or the lesson was not sent", **HTML}


def router(state: WebState) -> APIRouter:
    """The check-in page and the answer it records."""
    router = APIRouter()

    @router.get(
        PATH,
        response_class=HTMLResponse,
        responses={
            200: {"description": "the chosen answer and its button; records nothing", **HTML},
            404: _NOT_VALID,
            503: UNAVAILABLE,
        },
    )
    def checkin_page(token: str, lesson_id: str, answer: str) -> HTMLResponse:
        found = _checkin_of(state, token, lesson_id, answer)
        if isinstance(found, HTMLResponse):
            return found
        _, lesson = found
        return state.page(
            "checkin",
            title="How has this week been?",
            headers=PRIVATE,
            lesson=lesson,
            answer=answer,
            label=ANSWER_LABELS[answer],
            action=f"/me/{token}/checkin/{lesson.id}/{answer}",
        )

    @router.post(
        PATH,
        response_class=HTMLResponse,
        responses={
            200: {"description": "recorded (or: the reader has left, nothing recorded)", **HTML},
            404: _NOT_VALID,
            503: UNAVAILABLE,
        },
    )
    def record(token: str, lesson_id: str, answer: str) -> HTMLResponse:
        found = _checkin_of(state, token, lesson_id, answer)
        if isinstance(found, HTMLResponse):
            return found
        sub, lesson = found
        schedule = state.schedule()
        if not check_in(state.store, schedule, sub.id, lesson, answer, now(), state.events):
            return _left(state)  # left (or erased) since it was read: nothing recorded
        log_event(log, logging.INFO, "checkin", subscriber=sub.id, lesson=lesson.id)
        flare_plan = readable_lesson(schedule, state.store.ledger(sub.id), FLARE_PLAN)
        return state.page(
            "checked_in",
            title="Thank you",
            headers=PRIVATE,
            answer=answer,
            label=ANSWER_LABELS[answer],
            status=sub.status,
            links=links(state, sub),
            roadmap=f"/me/{token}",
            flare_plan=f"/me/{token}/lessons/{FLARE_PLAN}" if flare_plan else None,
        )

    return router


def _checkin_of(
    state: WebState, token: str, lesson_id: str, answer: str
) -> tuple[Subscriber, Lesson] | HTMLResponse:
    """The reader and lesson a check-in link names, or the page to answer instead: 404 for a
    link that is not valid (token, answer, a lesson not sent to them), the "you have left"
    page for a reader who left or was erased."""
    if answer not in ANSWERS:
        return invalid_link(state, "me")
    sub = token_sub(state, token, "me")
    if sub is None:
        return _erased_or_invalid(state, token)
    if sub.status in SUPPRESSED:
        return _left(state)
    lesson = readable_lesson(state.schedule(), state.store.ledger(sub.id), lesson_id)
    if lesson is None or lesson.kind != LESSON:
        return invalid_link(state, "me")
    return sub, lesson


def _left(state: WebState) -> HTMLResponse:
    return state.page(
        "message",
        title="You have left the course",
        headers=PRIVATE,
        message="Nothing more will be sent to you, and nothing was recorded.",
    )


def _erased_or_invalid(state: WebState, token: str) -> HTMLResponse:
    """A genuine "me" token whose record is gone was erased on request: the reader left.
    Any other token is not valid."""
    return _left(state) if erased_reader(state, token) else invalid_link(state, "me")
