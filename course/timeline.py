"""When each lesson is due: DST-correct send slots, flare pauses and per-day pacing.

Pure arithmetic on aware datetimes: no I/O and no clock. The engine calls ``nominal_due``,
``paced_due`` and ``advance_pace`` one lesson at a time with the state it stores; ``calendar``
chains the same three calls for a subscriber who receives every lesson exactly when it is due,
so the timeline a marketer previews is the one the engine follows.

A *slot* is the course ``send_time`` on the local wall clock of the subscriber's zone, on an
allowed weekday. If ``send_time`` falls in a DST gap that day, the slot is the end of the gap
(the first instant that exists after it); if it is ambiguous (fall back), the slot is its first
occurrence. A date whose slot would spill onto the next date (a skipped calendar day, or a gap
across midnight) has no slot. Every instant returned here is an aware datetime in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from course.models.schedule import CourseSettings, Schedule

# A week finds any allowed weekday; the rest covers dates without a slot (Samoa skipped
# 2011-12-30 entirely) and leaves a margin.
_MAX_SCAN_DAYS = 15
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class CalendarEntry:
    """One lesson of a subscriber's timeline and the instant (UTC) it is due."""

    lesson_id: str
    phase_id: str
    send_at: datetime


@dataclass(frozen=True)
class Pace:
    """Per-subscriber pacing state: the last send and how many sends its local date has had."""

    last_sent_at: datetime | None = None
    sent_that_day: int = 0


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The calendar date on the wall clock of ``tz`` at ``instant``."""
    _require_aware(instant, "instant")
    return instant.astimezone(tz).date()


def local_slot(day: date, send_time: time, tz: ZoneInfo) -> datetime:
    """The instant (UTC) when the wall clock of ``tz`` shows ``send_time`` on ``day``.

    A time in a spring-forward gap moves to the end of the gap; an ambiguous time (fall back)
    takes its first occurrence. The result can land on the next local date when the gap spans
    midnight; ``next_slot`` treats such a date as having no slot.
    """
    wall = datetime.combine(day, send_time.replace(tzinfo=None))
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        return first
    return _gap_end(wall, tz)


def next_slot(
    at_or_after: datetime, send_time: time, tz: ZoneInfo, weekdays: frozenset[int]
) -> datetime:
    """The first slot (UTC) at or after ``at_or_after``.

    Raises ValueError when ``weekdays`` allows no day of the week.
    """
    _require_aware(at_or_after, "at_or_after")
    not_before = at_or_after.astimezone(UTC)
    return _first_slot(local_date(not_before, tz), not_before, send_time, tz, weekdays)


CATCH_UP_WINDOW = timedelta(hours=12)  # after the send time: still a sensible hour to send
PAUSE_TOLERANCE = timedelta(hours=1)  # the largest clock change (DST) a pause may span
LATE_GRACE = timedelta(hours=1)  # a lesson this late still goes at once, whatever the hour
DAY0_GRACE = timedelta(hours=12)  # the same for the lesson that answers a confirmation


def catch_up(
    due: datetime,
    now: datetime,
    course: CourseSettings,
    tz: ZoneInfo,
    grace: timedelta = LATE_GRACE,
) -> datetime:
    """When a lesson that fell due at ``due`` may go out, seen at ``now``.

    Up to ``grace`` late it goes at once (a late tick; day 0 is given longer, since it answers
    a confirmation). Later than that (downtime) it goes at once only at a sensible hour, within
    ``CATCH_UP_WINDOW`` after the send time on an allowed weekday, and otherwise at the next
    slot, so nobody gets a lesson at 03:00 because the workers came back then.
    """
    _require_aware(due, "due")
    _require_aware(now, "now")
    if due >= now:
        return due.astimezone(UTC)
    if now - due <= grace:
        return now.astimezone(UTC)
    today = local_date(now, tz)
    slot = local_slot(today, course.send_time, tz)
    if today.weekday() in course.weekdays and slot <= now < slot + CATCH_UP_WINDOW:
        return now.astimezone(UTC)
    return next_slot(now, course.send_time, tz, course.weekdays)


def add_local_days(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    """``days`` later on the local wall clock (a week's pause across DST is still a week)."""
    _require_aware(instant, "instant")
    wall = _wall(instant, tz) + timedelta(days=days)
    return wall.replace(tzinfo=tz).astimezone(UTC)


def nominal_due(
    start: datetime,
    day: int,
    course: CourseSettings,
    tz: ZoneInfo,
    paused: timedelta = timedelta(0),
    factor: int = 1,
    anchor: tuple[date, int] | None = None,
) -> datetime:
    """When the lesson with offset ``day`` is due (UTC) for a subscriber who started at ``start``.

    Day 0 is due right away: at ``start``, or ``start + paused`` if the clock was paused before
    it went. A later lesson is due at the first slot on or after the local date of ``start``
    plus ``day`` times ``factor`` (2 for a reader's gentle pace: every gap doubled); a pause
    shifts it by ``paused`` and then forward to the next slot, so it still goes at the send
    time. With ``anchor`` ``(local date, course day)`` the days count from there instead (a
    reader who changed their pace or hour): the lesson is due on that date plus its days
    beyond that course day times ``factor``, never before the anchor's date.
    """
    _require_aware(start, "start")
    if day < 0:
        raise ValueError(f"lesson day offset must be 0 or more, got {day}")
    if paused < timedelta(0):
        raise ValueError(f"paused time must not be negative, got {paused}")
    if factor < 1:
        raise ValueError(f"pace factor must be 1 or more, got {factor}")
    start = start.astimezone(UTC)
    if anchor is not None:
        on = anchor[0] + timedelta(days=factor * max(day - anchor[1], 0))
    elif day == 0:
        return start + paused
    else:
        on = local_date(start, tz) + timedelta(days=factor * day)
    nominal = _first_slot(on, None, course.send_time, tz, course.weekdays)
    if not paused:
        return nominal
    # Pauses are measured in elapsed time, so a week's pause across a clock change is a week
    # plus or minus an hour: a slot up to PAUSE_TOLERANCE before the shifted instant counts,
    # or that hour would push the lesson a whole day.
    shifted = max(nominal, nominal + paused - PAUSE_TOLERANCE)
    return next_slot(shifted, course.send_time, tz, course.weekdays)


def paced_due(
    nominal: datetime,
    last_sent_at: datetime | None,
    sent_that_day: int,
    course: CourseSettings,
    tz: ZoneInfo,
) -> datetime:
    """The nominal due instant held back by pacing (UTC).

    ``sent_that_day`` counts the lessons sent on the local date of ``last_sent_at``, that one
    included. Once that date has had ``max_lessons_per_day`` lessons, the next one waits for the
    first slot on a later local date; otherwise it never goes before the last send. This is
    also what makes overdue lessons catch up one per day instead of in a burst.
    """
    _require_aware(nominal, "nominal")
    nominal = nominal.astimezone(UTC)
    if last_sent_at is None:
        return nominal
    _require_aware(last_sent_at, "last_sent_at")
    if course.max_lessons_per_day < 1:
        raise ValueError(f"max_lessons_per_day must be 1 or more, got {course.max_lessons_per_day}")
    last = last_sent_at.astimezone(UTC)
    if sent_that_day >= course.max_lessons_per_day:
        earliest = _first_slot(
            local_date(last, tz) + _ONE_DAY, None, course.send_time, tz, course.weekdays
        )
    else:
        earliest = last
    return max(nominal, earliest)


def advance_pace(pace: Pace, sent_at: datetime, tz: ZoneInfo) -> Pace:
    """The pacing state after one more send at ``sent_at``.

    A send on the local date of the last one adds to its count; a later date starts a new
    count. A send recorded late for an earlier date (clock skew between workers) leaves the
    later date's state as it is.
    """
    _require_aware(sent_at, "sent_at")
    sent_at = sent_at.astimezone(UTC)
    if pace.last_sent_at is None:
        return Pace(last_sent_at=sent_at, sent_that_day=1)
    last = pace.last_sent_at.astimezone(UTC)
    if local_date(sent_at, tz) == local_date(last, tz):
        return Pace(last_sent_at=max(last, sent_at), sent_that_day=pace.sent_that_day + 1)
    if sent_at < last:
        return pace
    return Pace(last_sent_at=sent_at, sent_that_day=1)


def calendar(
    schedule: Schedule,
    start: datetime,
    tz: ZoneInfo,
    paused: timedelta = timedelta(0),
) -> list[CalendarEntry]:
    """Every lesson, in course order, with the instant it is due (UTC).

    For a subscriber who started at ``start`` in ``tz`` and is sent each lesson exactly when it
    is due: the same ``nominal_due`` / ``paced_due`` / ``advance_pace`` steps the engine takes.
    """
    course = schedule.course
    pace = Pace()
    entries = []
    for lesson in schedule.lessons:
        nominal = nominal_due(start, lesson.day, course, tz, paused)
        send_at = paced_due(nominal, pace.last_sent_at, pace.sent_that_day, course, tz)
        entries.append(CalendarEntry(lesson.id, lesson.phase_id, send_at))
        pace = advance_pace(pace, send_at, tz)
    return entries


def _first_slot(
    day: date,
    not_before: datetime | None,
    send_time: time,
    tz: ZoneInfo,
    weekdays: frozenset[int],
) -> datetime:
    """The first slot on ``day`` or a later date, and at or after ``not_before`` if given."""
    for _ in range(_MAX_SCAN_DAYS):
        if day.weekday() in weekdays:
            slot = local_slot(day, send_time, tz)
            if local_date(slot, tz) == day and (not_before is None or slot >= not_before):
                return slot
        day += _ONE_DAY
    allowed = ", ".join(str(d) for d in sorted(weekdays)) or "none"
    raise ValueError(
        f"weekdays: no send slot within {_MAX_SCAN_DAYS} days (allowed weekdays: {allowed};"
        " 0 = Monday ... 6 = Sunday)"
    )


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) the clock of ``tz`` jumps over ``wall``, a local time that never occurs.

    Read with the offset before the jump, ``wall`` is an instant after it; read with the offset
    after, one before it. Transitions fall on whole seconds, so bisect seconds in between for
    the first instant whose wall clock has reached ``wall``.
    """
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low = min(a, b).replace(microsecond=0)
    span = max(a, b) - low
    lo, hi = 0, int(span.total_seconds()) + 1  # _wall(low + lo s) < wall <= _wall(low + hi s)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(low + mid * _ONE_SECOND, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return low + hi * _ONE_SECOND


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``tz`` at ``instant``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {instant.isoformat()}")
