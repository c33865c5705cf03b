"""What a schedule edit does to the people already in the course, and the ``course diff``
report that puts it beside the lesson-level changes of :mod:`course.schedule.diff`.

Pure: subscribers come in as decoded records with the lesson ids in their ledgers (the CLI
feeds them from a pipelined scan of the store) and a ``now``. It predicts with the engine's
own rules (:func:`course.progress.next_lesson`, :func:`course.progress.next_send`),
never a copy of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from course.models.schedule import Schedule
from course.models.subscriber import Subscriber, to_instant
from course.progress import next_lesson, next_send, progress_after, resumed_at
from course.schedule.diff import (
    ScheduleDiff,
    change_lines,
    changes_json,
    course_timing,
    rename_warning,
)

IN_COURSE = ("active", "paused")  # the statuses a schedule change can still reach
SOON = timedelta(hours=1)  # a removed lesson due this soon for someone needs an explicit yes


@dataclass
class Shifts:
    """How far next sends move, in seconds (positive: later)."""

    values: list[float] = field(default_factory=list)
    due_now: int = 0  # not due before, due at once now (overdue: catches up one a day)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def summary(self) -> dict[str, Any]:
        values = self.values
        return {
            "moved": len(values),
            "earlier": sum(1 for v in values if v < 0),
            "later": sum(1 for v in values if v > 0),
            "min_seconds": min(values) if values else None,
            "median_seconds": statistics.median(values) if values else None,
            "max_seconds": max(values) if values else None,
            "due_at_once": self.due_now,
        }


@dataclass
class Impact:
    """Counts over the subscribers a diff was checked against."""

    now: datetime
    statuses: dict[str, int] = field(default_factory=dict)
    added_get: dict[str, int] = field(default_factory=dict)  # lesson -> will get it
    added_skip: dict[str, int] = field(default_factory=dict)  # lesson -> past it: will not
    removed_pending: dict[str, int] = field(default_factory=dict)  # lesson -> were still to get
    removed_soon: dict[str, int] = field(default_factory=dict)  # lesson -> next for them, due
    # within SOON (or overdue): removing it changes what someone gets within the hour
    offset_pending: dict[str, int] = field(default_factory=dict)  # lesson -> not had it yet
    offset_shifts: dict[str, Shifts] = field(default_factory=dict)  # lesson -> next send moves
    # (old id, new id) -> already past the old lesson (most had it), will get the new one
    rename_again: dict[tuple[str, str], int] = field(default_factory=dict)
    next_send: Shifts = field(default_factory=Shifts)
    affected: int = 0

    @property
    def in_course(self) -> int:
        return sum(self.statuses.get(status, 0) for status in IN_COURSE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "statuses": dict(sorted(self.statuses.items())),
            "in_course": self.in_course,
            "added": {
                k: {"will_get": self.added_get[k], "will_not": self.added_skip[k]}
                for k in self.added_get
            },
            "removed": {
                k: {"were_still_to_get": v, "due_within_an_hour": self.removed_soon.get(k, 0)}
                for k, v in self.removed_pending.items()
            },
            "offsets": {
                k: {"not_had_yet": self.offset_pending[k], **self.offset_shifts[k].summary()}
                for k in self.offset_pending
            },
            "renames": [
                {"old_id": a, "new_id": b, "past_old_will_get_new": n}
                for (a, b), n in self.rename_again.items()
            ],
            "next_send": self.next_send.summary(),
            "affected": self.affected,
        }


class _Plans:
    """Per schedule, the lessons a subscriber has still to get, memoized by their position.

    The future depends only on the position (last lesson, its day) and the ledger's lesson
    ids, which most subscribers share with many others; each distinct one is worked out
    once, with the engine's ``next_lesson`` and ``progress_after``.
    """

    def __init__(self, schedule: Schedule, now: datetime):
        self.schedule = schedule
        self.now = now
        self._memo: dict[tuple[str | None, int | None, frozenset[str]], tuple[str, ...]] = {}

    def remaining(self, sub: Subscriber, done: frozenset[str]) -> tuple[str, ...]:
        key = (sub.last_lesson, sub.last_day, done)
        found = self._memo.get(key)
        if found is None:
            found = remaining_lessons(self.schedule, sub, done, self.now)
            self._memo[key] = found
        return found


def remaining_lessons(
    schedule: Schedule, sub: Subscriber, done: Iterable[str], now: datetime
) -> tuple[str, ...]:
    """Every lesson ``sub`` will still be given, in order, if nothing else changes: the
    engine's ``next_lesson`` asked again after each one, as ticks would."""
    given = set(done)
    found = []
    while (lesson := next_lesson(schedule, sub, given)) is not None:
        found.append(lesson.id)
        given.add(lesson.id)
        sub = progress_after(sub, lesson, now)
    return tuple(found)


def next_due(
    schedule: Schedule, sub: Subscriber, done: set[str], now: datetime
) -> tuple[str, datetime] | None:
    """The next lesson of an active or paused subscriber and when it may go out.

    A paused subscriber is taken as resuming when the pause ends (``paused_until``), or at
    ``now`` for a pause without an end; the engine's ``next_send`` does the rest.
    """
    if sub.status == "paused":
        until = to_instant(sub.paused_until) if sub.paused_until else now
        at = max(until, now)
        sub = resumed_at(sub, at)
    else:
        at = now
    upcoming = next_send(schedule, sub, done, at)
    return None if upcoming is None else (upcoming[0].id, upcoming[2])


def impact(
    diff: ScheduleDiff,
    old: Schedule,
    new: Schedule,
    subscribers: Iterable[tuple[Subscriber | None, set[str]]],
    now: datetime,
) -> Impact:
    """Count what ``diff`` does to each subscriber in the course (active or paused) at ``now``.

    Others are only counted by status: completed, suppressed and erased subscribers get no
    more lessons; pending ones start on the new schedule when they confirm.
    """
    result = Impact(now=now)
    for lesson in diff.added:
        result.added_get[lesson.id] = result.added_skip[lesson.id] = 0
    for lesson in diff.removed:
        result.removed_pending[lesson.id] = result.removed_soon[lesson.id] = 0
    for change in diff.offsets:
        result.offset_pending[change.lesson_id] = 0
        result.offset_shifts[change.lesson_id] = Shifts()
    for rename in diff.renames:
        result.rename_again[(rename.old_id, rename.new_id)] = 0
    plans = (_Plans(old, now), _Plans(new, now))
    days = ({les.id: les.day for les in old.lessons}, {les.id: les.day for les in new.lessons})
    same_timing = course_timing(old) == course_timing(new)

    for sub, done in subscribers:
        status = sub.status if sub is not None else "erased"
        if sub is not None and status in IN_COURSE:
            try:
                _count(result, diff, sub, frozenset(done), plans, days, same_timing, now)
            except (ValueError, KeyError):  # a damaged record, as the tick would quarantine it
                status = "unreadable"
        result.statuses[status] = result.statuses.get(status, 0) + 1
    return result


def _count(
    result: Impact,
    diff: ScheduleDiff,
    sub: Subscriber,
    ledger: frozenset[str],
    plans: tuple[_Plans, _Plans],
    days: tuple[dict[str, int], dict[str, int]],
    same_timing: bool,
    now: datetime,
) -> None:
    """Add one subscriber in the course to the counts (all worked out before any is added,
    so a damaged record raises without counting half)."""
    old_plans, new_plans = plans
    old_days, new_days = days
    before = old_plans.remaining(sub, ledger)
    after = new_plans.remaining(sub, ledger)
    # The next send, worked out only where it can differ: another lesson, another day offset
    # or other course timing (due times depend on nothing else).
    was = will = None
    old_next, new_next = before[:1], after[:1]
    if old_next or new_next:
        same_lesson = old_next == new_next and old_days[old_next[0]] == new_days[new_next[0]]
        if not (same_lesson and same_timing):
            was = next_due(old_plans.schedule, sub, set(ledger), now)
            will = next_due(new_plans.schedule, sub, set(ledger), now)

    affected = [(i, old_days[i]) for i in before] != [(i, new_days[i]) for i in after]
    was_coming, coming = set(before), set(after)
    for lesson in diff.added:
        if lesson.id in coming:
            result.added_get[lesson.id] += 1
        elif lesson.id not in ledger:
            result.added_skip[lesson.id] += 1
    for lesson in diff.removed:
        if lesson.id in was_coming:
            result.removed_pending[lesson.id] += 1
    if was and was[0] in result.removed_soon and was[1] <= now + SOON:
        result.removed_soon[was[0]] += 1
    for lesson_id in coming.intersection(result.offset_pending):
        result.offset_pending[lesson_id] += 1
    for old_id, new_id in result.rename_again:
        if old_id not in was_coming and new_id in coming:
            result.rename_again[(old_id, new_id)] += 1
    if was and will and was[1] != will[1]:
        seconds = (will[1] - was[1]).total_seconds()
        result.next_send.add(seconds)
        shifts = result.offset_shifts.get(will[0])
        if shifts is not None:
            shifts.add(seconds)
        if sub.status == "active" and will[1] <= now < was[1]:
            result.next_send.due_now += 1
            if shifts is not None:
                shifts.due_now += 1
        affected = True
    if affected:
        result.affected += 1


# --- Reporting --------------------------------------------------------------------------------


def warnings(diff: ScheduleDiff, found: Impact | None) -> list[str]:
    """What deserves a second look before the schedule goes live."""
    lines = []
    for rename in diff.renames:
        line = rename_warning(rename)
        if found is not None:
            again = found.rename_again.get((rename.old_id, rename.new_id), 0)
            line += (
                f"; {again} already past {rename.old_id} (most had it) will get {rename.new_id}"
                " as a new lesson"
            )
        lines.append(line)
    if found is not None and found.next_send.due_now:
        lines.append(
            f"{found.next_send.due_now} subscriber(s) become due at once: the next tick sends"
            " their next lesson (overdue lessons still catch up one a day)"
        )
    return lines


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else "+"
    left = abs(seconds)
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes = left // 60
    parts = [f"{int(days)}d"] if days else []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes and not days:
        parts.append(f"{int(minutes)}m")
    return sign + ("".join(parts) or "0m")


def _shift_text(summary: dict[str, Any]) -> str:
    if not summary["moved"]:
        return "moves for nobody"
    return (
        f"{summary['moved']} move ({summary['earlier']} earlier, {summary['later']} later;"
        f" min {_span(summary['min_seconds'])}, median {_span(summary['median_seconds'])},"
        f" max {_span(summary['max_seconds'])})"
    )


def impact_lines(diff: ScheduleDiff, found: Impact) -> list[str]:
    """The impact as text, one finding a line (after a blank line)."""
    lines = []
    counted = ", ".join(f"{n} {s}" for s, n in sorted(found.statuses.items())) or "none"
    lines.append("")
    lines.append(f"Subscribers at {found.now.isoformat()}: {counted}")
    lines.append(f"  in the course (active or paused): {found.in_course}")
    for lesson in diff.added:
        lines.append(
            f"  {lesson.id}: {found.added_get[lesson.id]} will get it, "
            f"{found.added_skip[lesson.id]} will not (already past it: forward-only)"
        )
    for lesson in diff.removed:
        soon = found.removed_soon.get(lesson.id, 0)
        lines.append(
            f"  {lesson.id}: {found.removed_pending[lesson.id]} were still to get"
            " it and now will not" + (f"; {soon} were due for it within the hour" if soon else "")
        )
    for change in diff.offsets:
        summary = found.offset_shifts[change.lesson_id].summary()
        text = f"  {change.lesson_id}: applies to {found.offset_pending[change.lesson_id]}"
        text += f" who have not had it; next send: {_shift_text(summary)}"
        if summary["due_at_once"]:
            text += f"; {summary['due_at_once']} due at once"
        lines.append(text)
    overall = found.next_send.summary()
    text = f"  next send: {_shift_text(overall)}"
    if overall["due_at_once"]:
        text += f"; {overall['due_at_once']} due at once"
    lines.append(text)
    lines.append(f"  affected in total: {found.affected}")
    return lines


def report_lines(diff: ScheduleDiff, found: Impact | None) -> list[str]:
    """The diff and its impact as text, one finding a line."""
    lines = change_lines(diff)
    if found is not None:
        lines += impact_lines(diff, found)
    notes = warnings(diff, found)
    if notes:
        lines.append("")
        lines.extend(f"warning: {note}" for note in notes)
    return lines


def to_json(diff: ScheduleDiff, found: Impact | None) -> dict[str, Any]:
    """The diff and its impact as plain data (``course diff --json``)."""
    return {
        **changes_json(diff),
        "impact": found.to_dict() if found is not None else None,
        "warnings": warnings(diff, found),
    }
