"""Subscriber and ledger types, and the pure rules of a subscriber's progress."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from course.schedule import Lesson, Schedule
from course.timeline import Pace, advance_pace, nominal_due, paced_due

STATUSES = ("pending", "active", "paused", "completed", "unsubscribed", "bounced", "complained")
# A subscriber in one of these never gets another email.
SUPPRESSED = frozenset({"unsubscribed", "bounced", "complained"})


@dataclass(frozen=True)
class Subscriber:
    id: str
    email: str
    first_name: str | None
    tz: str
    status: str
    created: float
    start: float | None = None  # course clock start (confirmation), epoch seconds
    paused: float = 0.0  # total seconds spent paused so far
    paused_at: float | None = None
    paused_until: float | None = None
    last_sent: float | None = None  # epoch of the last claim
    sent_that_day: int = 0  # claims on the local date of last_sent
    last_lesson: str | None = None
    last_day: int | None = None
    version: int = 0
    source: str = ""
    consent: str = ""  # "text version|IP address" of the signup that made this record

    @property
    def consent_record(self) -> dict[str, str | float | None]:
        """When, from where, under which consent text and from which IP this record began."""
        version, _, ip = self.consent.partition("|")
        return {"at": self.created, "source": self.source or None,
                "text_version": version or None, "ip": ip or None}  # fmt: skip

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LedgerEntry:
    lesson_id: str
    state: str
    at: float
    attempt: int = 0
    detail: str = ""

    def encode(self) -> str:
        """``state|epoch|attempt|detail``, the epoch in whole seconds (entries written before
        kept milliseconds: ``decode`` reads both)."""
        return f"{self.state}|{math.floor(self.at)}|{self.attempt}|{self.detail}"

    @classmethod
    def decode(cls, lesson_id: str, raw: str) -> LedgerEntry:
        state, at, attempt, detail = [*raw.split("|", 3), "", "0", ""][:4]
        return cls(lesson_id, state, float(at or 0), int(attempt or 0), detail)


def to_instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


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
    """When ``lesson`` is due for ``sub``: its nominal time, shifted by pauses, then paced."""
    if sub.start is None:
        raise ValueError(f"subscriber {sub.id} has not started the course")
    zone = sub.zone
    nominal = nominal_due(
        to_instant(sub.start), lesson.day, schedule.course, zone, timedelta(seconds=sub.paused)
    )
    last = to_instant(sub.last_sent) if sub.last_sent is not None else None
    return paced_due(nominal, last, sub.sent_that_day, schedule.course, zone)


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
