"""Your Roadmap: one reader's own view of their course, for ``GET /me/{token}``.

What they have received (each readable online), the next lesson and when it comes in their
zone, the phase they are in, and their zone by a readable name. Pure: the route reads the
record, the ledger and the due time, and passes ``now``.

A lesson is *readable* online once the ledger shows it handed to the provider (``sent``;
``sending`` while the request is out; ``uncertain``: it went out whole, the answer was lost).
A lesson still ``claimed``, in ``retry``, ``failed`` or ``skipped`` never reached the reader,
and the confirmation email is not a lesson: none of them is readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from course.models.ledger import HANDED_OVER
from course.models.schedule import CONFIRMATION, Lesson, Phase, Schedule
from course.models.subscriber import SUPPRESSED, LedgerEntry, Subscriber, to_instant
from course.progress import upcoming


@dataclass(frozen=True)
class Received:
    """A lesson the reader was sent, and when (the ledger's instant)."""

    lesson: Lesson
    at: datetime


@dataclass(frozen=True)
class Roadmap:
    """What the Roadmap page shows. ``left``: unsubscribed, bounced or complained: the page
    says only that."""

    status: str
    left: bool
    received: tuple[Received, ...]
    next: tuple[Lesson, datetime] | None  # None: none left, an open pause, not confirmed
    phase: Phase | None  # the phase they are in (of the next lesson, else of the last one)
    zone: str  # "New York (America/New_York)"
    send_time: str  # "08:00": the local hour lessons come (the reader's, else the course's)


def readable_lesson(
    schedule: Schedule, ledger: Mapping[str, LedgerEntry], lesson_id: str
) -> Lesson | None:
    """The lesson ``lesson_id`` if this reader may read it online, else None."""
    entry = ledger.get(lesson_id)
    if entry is None or entry.state not in HANDED_OVER:
        return None
    for lesson in schedule.lessons:  # the lessons and the completion, never the confirmation
        if lesson.id == lesson_id and lesson.kind != CONFIRMATION:
            return lesson
    return None  # no longer in the schedule: nothing to render it from


def zone_name(tz: str) -> str:
    """``America/New_York`` as ``New York (America/New_York)``; ``UTC`` as it is."""
    place = tz.rsplit("/", 1)[-1].replace("_", " ")
    return tz if place == tz else f"{place} ({tz})"


def roadmap(
    schedule: Schedule,
    sub: Subscriber,
    ledger: Mapping[str, LedgerEntry],
    due: float | None,
    now: datetime,
) -> Roadmap:
    """The Roadmap of ``sub`` whose ledger is ``ledger`` and due time ``due`` (epoch), at
    ``now``."""
    send_time = sub.send_time or f"{schedule.course.send_time:%H:%M}"
    if sub.status in SUPPRESSED:
        return Roadmap(sub.status, True, (), None, None, zone_name(sub.tz), send_time)
    received = tuple(
        Received(lesson, to_instant(ledger[lesson.id].at))
        for lesson in schedule.lessons
        if readable_lesson(schedule, ledger, lesson.id) is not None
    )
    following = upcoming(schedule, sub, set(ledger), due, now)
    current = following[0] if following else (received[-1].lesson if received else None)
    phase = schedule.phase(current.phase_id) if current is not None else schedule.phases[0]
    return Roadmap(sub.status, False, received, following, phase, zone_name(sub.tz), send_time)
