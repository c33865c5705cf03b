"""Where a subscriber stands in the course: the next lesson, when it is due, what a claim
changes, when a pause ends, and what a tick would send next.

Pure: no store, no clock (``now`` is a parameter). The tick, the lifecycle operations, the
reports, ``course diff`` and the web pages all ask these same functions, never a copy.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import date, datetime, time, timedelta

from course.models.schedule import CourseSettings, Lesson, Schedule
from course.models.subscriber import SUPPRESSED, ReaderSettings, Subscriber, to_instant
from course.timeline import (
    DAY0_GRACE,
    LATE_GRACE,
    Pace,
    advance_pace,
    catch_up,
    local_date,
    next_slot,
    nominal_due,
    paced_due,
)

# How much longer every gap between lessons is at each pace.
PACE_FACTORS = {"standard": 1, "gentle": 2}


def reader_course(course: CourseSettings, sub: Subscriber) -> CourseSettings:
    """The course's settings as they apply to ``sub``: their own send time, if they set one."""
    return course if sub.send_time is None else _at_hour(course, sub.send_time)


@functools.lru_cache(maxsize=256)
def _at_hour(course: CourseSettings, send_time: str) -> CourseSettings:
    hour, _, minute = send_time.partition(":")
    return replace(course, send_time=time(int(hour), int(minute)))


def _nominal(course: CourseSettings, sub: Subscriber, day: int) -> datetime:
    """When course day ``day`` falls for ``sub`` (their pace, anchor and pauses; unpaced)."""
    if sub.start is None:
        raise ValueError(f"subscriber {sub.id} has not started the course")
    anchor = (date.fromordinal(sub.anchor), sub.anchor_day) if sub.anchor is not None else None
    paused = timedelta(seconds=max(0.0, sub.paused - sub.anchor_paused))
    factor = PACE_FACTORS[sub.pace]
    return nominal_due(to_instant(sub.start), day, course, sub.zone, paused, factor, anchor)


def next_lesson(schedule: Schedule, sub: Subscriber, done: set[str]) -> Lesson | None:
    """The lesson this subscriber gets next, under the forward-only rule.

    A lesson is next when it is not in the ledger and lies after the subscriber's position
    (the last lesson they were given; or, if that lesson was removed, its day offset).
    Lessons marked ``backfill`` are given even when they lie behind the position.
    """
    lessons = schedule.lessons
    position = -1
    if sub.last_lesson is not None:
        ids = [lesson.id for lesson in lessons]
        if sub.last_lesson in ids:
            position = ids.index(sub.last_lesson)
        else:
            last_day = sub.last_day if sub.last_day is not None else -1
            position = max((i for i, les in enumerate(lessons) if les.day <= last_day), default=-1)
    for index, lesson in enumerate(lessons):
        if lesson.id in done:
            continue
        if index > position or lesson.backfill:
            return lesson
    return None


def due_at(schedule: Schedule, sub: Subscriber, lesson: Lesson) -> datetime:
    """When ``lesson`` is due for ``sub``: its nominal time (their pace and hour), shifted by
    pauses, then paced."""
    course = reader_course(schedule.course, sub)
    nominal = _nominal(course, sub, lesson.day)
    last = to_instant(sub.last_sent) if sub.last_sent is not None else None
    return paced_due(nominal, last, sub.sent_that_day, course, sub.zone)


def progress_after(sub: Subscriber, lesson: Lesson, now: datetime) -> Subscriber:
    """The subscriber as it is once ``lesson`` was claimed at ``now`` (pure)."""
    last = to_instant(sub.last_sent) if sub.last_sent is not None else None
    pace = advance_pace(Pace(last, sub.sent_that_day), now, sub.zone)
    return replace(
        sub,
        last_sent=now.timestamp(),
        sent_that_day=pace.sent_that_day,
        last_lesson=lesson.id,
        last_day=lesson.day,
    )


def resumed_at(sub: Subscriber, at: datetime) -> Subscriber:
    """``sub`` once a pause ends at ``at``: active again, every remaining lesson later by the
    time spent paused (used to resume, and to say ahead of time when a pause will end)."""
    ts = at.timestamp()
    paused = sub.paused + max(0.0, ts - (sub.paused_at if sub.paused_at is not None else ts))
    return replace(sub, status="active", paused=paused, paused_at=None, paused_until=None)


def next_send(
    schedule: Schedule, sub: Subscriber, done: set[str], now: datetime
) -> tuple[Lesson, datetime, datetime] | None:
    """What a tick at ``now`` would do next for an active ``sub`` whose ledger holds ``done``:
    ``(lesson, nominal due, due)``, where ``due`` is when it may go out (an overdue lesson
    waits for a sensible hour); None when no lesson is left. Pure: ``course diff`` predicts
    with it too."""
    lesson = next_lesson(schedule, sub, done)
    if lesson is None:
        return None
    nominal = due_at(schedule, sub, lesson)
    grace = DAY0_GRACE if lesson.day == 0 else LATE_GRACE
    course = reader_course(schedule.course, sub)
    return lesson, nominal, catch_up(nominal, now, course, sub.zone, grace)


def upcoming(
    schedule: Schedule, sub: Subscriber, done: set[str], due: float | None, now: datetime
) -> tuple[Lesson, datetime] | None:
    """The next lesson and when it comes, as the reader is told: for an active ``sub`` from
    their due time ``due`` (epoch, from the due index; an overdue one waits for a sensible
    hour, as the tick makes it); for a timed pause as if resumed at its end. None when no
    lesson is left, the pause is open (it comes when they resume), they have not confirmed
    (day 0 comes at confirmation) or they have left."""
    if sub.status in SUPPRESSED or sub.start is None:
        return None
    if sub.status == "active":
        lesson = next_lesson(schedule, sub, done)
        if lesson is None or due is None:
            return None
        grace = DAY0_GRACE if lesson.day == 0 else LATE_GRACE
        course = reader_course(schedule.course, sub)
        return lesson, catch_up(to_instant(due), now, course, sub.zone, grace)
    if sub.status == "paused" and sub.paused_until and sub.paused_at:
        end = to_instant(sub.paused_until)
        resumed = resumed_at(sub, end)
        lesson = next_lesson(schedule, resumed, done)
        if lesson is None:
            return None
        return lesson, max(due_at(schedule, resumed, lesson), end)
    return None


def with_settings(
    schedule: Schedule, sub: Subscriber, done: set[str], now: datetime, wanted: ReaderSettings
) -> Subscriber:
    """``sub`` with the pace, send time and zone the reader chose at ``now`` (pure).

    Lessons already sent keep their dates. From the day the last one was due (pauses up to
    ``now`` counted), each remaining gap between lessons is the written one times the new
    pace's factor: ``gentle`` doubles them, ``standard`` restores them. If that would make the
    next lesson due before the next slot still ahead (in the new hour and zone), it comes at
    that slot and the gaps count from there: a change never makes a lesson overdue, so it
    never goes at once at an odd hour nor in a burst (and pacing still holds one a day). A
    reader who has not had a lesson yet keeps counting from the start.
    """
    if sub.settings == wanted:
        return sub
    changed = replace(sub, pace=wanted.pace, send_time=wanted.send_time, tz=wanted.tz)
    lesson = next_lesson(schedule, sub, done)
    if sub.start is None or sub.last_day is None or lesson is None:
        return changed
    paused_now = resumed_at(sub, now).paused if sub.paused_at is not None else sub.paused
    last_due = _nominal(reader_course(schedule.course, sub), replace(sub, paused=paused_now),
                        sub.last_day)  # fmt: skip
    anchored = replace(
        changed,
        anchor=local_date(last_due, sub.zone).toordinal(),
        anchor_day=sub.last_day,
        anchor_paused=paused_now,
    )
    course = reader_course(schedule.course, anchored)
    ahead = next_slot(now, course.send_time, anchored.zone, course.weekdays)
    if _nominal(course, anchored, lesson.day) < ahead:
        anchored = replace(
            anchored, anchor=local_date(ahead, anchored.zone).toordinal(), anchor_day=lesson.day
        )
    return anchored
