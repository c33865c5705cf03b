"""Where a subscriber stands, as a page: the next lesson and when it comes, a pause's dates."""

from __future__ import annotations

from datetime import datetime

from fastapi.responses import HTMLResponse

from course.models.schedule import Lesson
from course.models.subscriber import SUPPRESSED, Subscriber, to_instant
from course.progress import due_at, next_lesson, resumed_at
from course.web.state import Unavailable, WebState


def upcoming_lesson(
    state: WebState, sub: Subscriber, now: datetime
) -> tuple[Lesson, datetime] | None:
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


def pause_info(sub: Subscriber) -> dict[str, object]:
    return {
        "until": to_instant(sub.paused_until) if sub.paused_until else None,
        "since": to_instant(sub.paused_at) if sub.paused_at else None,
    }


def status_page(
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
        next=upcoming_lesson(state, sub, now),
        pause=pause_info(sub),
        suppressed=sub.status in SUPPRESSED,
    )
