"""A reader's check-in: their answer to "How has this week been?" under a lesson, recorded
(latest wins) only while they have not left; see :mod:`course.web.checkin` for the links."""

from __future__ import annotations

from datetime import datetime

from course.models.checkin import ANSWERS, CheckIn
from course.models.schedule import Lesson, Schedule
from course.store import Store
from course.subscribers.variants import count_reader
from course.webhooks.events import NO_EVENTS, EventSink


def check_in(
    store: Store,
    schedule: Schedule,
    sub_id: str,
    lesson: Lesson,
    answer: str,
    now: datetime,
    events: EventSink = NO_EVENTS,
) -> bool:
    """Record ``answer`` for ``lesson``; False (nothing recorded) when the reader has left,
    was erased or never confirmed. The caller checks that the lesson was sent to them. A
    recorded answer goes to ``events`` as ``checkin.recorded``."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown check-in answer {answer!r}")
    phase_lessons = [item.id for item in schedule.phase(lesson.phase_id).lessons]
    checkin = CheckIn(lesson.id, answer, now.timestamp())
    recorded, before = store.record_checkin(sub_id, checkin, lesson.phase_id, phase_lessons)
    if recorded and not before:  # the reader's first answer to this lesson: once per reader
        count_reader(store, sub_id, lesson.id, "checkins")
    if recorded:
        data = {"subscriber": sub_id, "lesson": lesson.id, "answer": answer}
        events.emit("checkin.recorded", data, now)
    return recorded
