"""Where a subscriber stands, as a page: the next lesson and when it comes, a pause's dates."""

from __future__ import annotations

from datetime import datetime

from fastapi.responses import HTMLResponse

from course.models.schedule import Lesson
from course.models.subscriber import SUPPRESSED, Subscriber, to_instant
from course.progress import upcoming
from course.web.state import Unavailable, WebState


def upcoming_lesson(
    state: WebState, sub: Subscriber, now: datetime
) -> tuple[Lesson, datetime] | None:
    """The next lesson and when it comes (:func:`course.progress.upcoming`); None when none
    is left, the pause is open, or the schedule cannot be loaded."""
    try:
        schedule = state.schedule()
    except Unavailable:
        return None
    done = set(state.store.ledger(sub.id))
    return upcoming(schedule, sub, done, state.store.due_score(sub.id), now)


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
