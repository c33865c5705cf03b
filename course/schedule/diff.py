"""What a changed schedule does: to the lessons, and to the people already in the course.

Pure: two loaded :class:`~course.schedule.Schedule` objects in, plain data out. The impact
pass takes subscribers as decoded records with the lesson ids in their ledgers (the CLI feeds
it from a pipelined scan of the store) and a ``now``; it predicts with the engine's own rules
(:func:`course.progress.next_lesson`, :func:`course.progress.next_send`), never a copy
of them.

Invariant 6 is what it reports against: lessons have stable ids; a lesson added behind a
subscriber's position is skipped for them (forward-only) unless it is marked ``backfill``; a
removed lesson is never sent; a changed offset applies to everyone who has not had that lesson.
An id change is therefore a delete plus an add, which is why probable renames are warned about.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from course.models.subscriber import Subscriber, to_instant
from course.progress import next_lesson, next_send, progress_after, resumed_at
from course.schedule import Lesson, Schedule

IN_COURSE = ("active", "paused")  # the statuses a schedule change can still reach
_CONTENT_FIELDS = ("subject", "preheader", "template", "call_to_action", "backfill")
_TIMING_FIELDS = ("send_time", "weekdays", "max_lessons_per_day")


# --- The schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OffsetChange:
    lesson_id: str
    old_day: int
    new_day: int


@dataclass(frozen=True)
class ContentChange:
    lesson_id: str
    fields: tuple[str, ...]  # which of subject, preheader, template, call_to_action, backfill


@dataclass(frozen=True)
class PhaseMove:
    lesson_id: str
    old_phase: str
    new_phase: str


@dataclass(frozen=True)
class Rename:
    """A removed and an added lesson that look like one lesson under a new id."""

    old_id: str
    new_id: str
    because: tuple[str, ...]  # "same template", "same subject", "same day"


@dataclass(frozen=True)
class SettingChange:
    name: str
    old: str
    new: str


@dataclass(frozen=True)
class ScheduleDiff:
    added: tuple[Lesson, ...]
    removed: tuple[Lesson, ...]
    offsets: tuple[OffsetChange, ...]
    content: tuple[ContentChange, ...]
    moved: tuple[PhaseMove, ...]
    renames: tuple[Rename, ...]
    settings: tuple[SettingChange, ...]  # course timing: send_time, weekdays, max per day
    reordered: tuple[str, ...] = ()  # kept lessons now in another order (same-day swaps)

    @property
    def empty(self) -> bool:
        return not (self.timing or self.content or self.moved)

    @property
    def timing(self) -> bool:
        """Whether anyone's lessons or send times can change (else no subscriber is affected)."""
        return bool(self.added or self.removed or self.offsets or self.settings or self.reordered)


def _setting_text(name: str, value: Any) -> str:
    if name == "weekdays":
        names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        return ",".join(names[d] for d in sorted(value))
    if name == "send_time":
        return value.strftime("%H:%M")
    return str(value)


def compare(old: Schedule, new: Schedule) -> ScheduleDiff:
    """The lesson-level differences between two schedules (the completion email included)."""
    old_lessons = {lesson.id: lesson for lesson in old.lessons}
    new_lessons = {lesson.id: lesson for lesson in new.lessons}
    added = tuple(les for les in new.lessons if les.id not in old_lessons)
    removed = tuple(les for les in old.lessons if les.id not in new_lessons)
    offsets, content, moved = [], [], []
    for lesson in new.lessons:
        before = old_lessons.get(lesson.id)
        if before is None:
            continue
        if before.day != lesson.day:
            offsets.append(OffsetChange(lesson.id, before.day, lesson.day))
        changed = tuple(f for f in _CONTENT_FIELDS if getattr(before, f) != getattr(lesson, f))
        if changed:
            content.append(ContentChange(lesson.id, changed))
        if before.phase_id != lesson.phase_id:
            moved.append(PhaseMove(lesson.id, before.phase_id, lesson.phase_id))
    renames = []
    for gone in removed:
        for new_lesson in added:
            because = tuple(
                reason
                for reason, same in (
                    ("same template", gone.template == new_lesson.template),
                    ("same subject", gone.subject == new_lesson.subject),
                    ("same day", gone.day == new_lesson.day),
                )
                if same
            )
            if because:
                renames.append(Rename(gone.id, new_lesson.id, because))
    settings = tuple(
        SettingChange(name, _setting_text(name, a), _setting_text(name, b))
        for name in _TIMING_FIELDS
        if (a := getattr(old.course, name)) != (b := getattr(new.course, name))
    )
    kept_old = [les.id for les in old.lessons if les.id in new_lessons]
    kept_new = [les.id for les in new.lessons if les.id in old_lessons]
    reordered = tuple(a for a, b in zip(kept_new, kept_old, strict=True) if a != b)
    return ScheduleDiff(
        added,
        removed,
        tuple(offsets),
        tuple(content),
        tuple(moved),
        tuple(renames),
        settings,
        reordered,
    )


# --- The people -------------------------------------------------------------------------------


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
            "removed": {k: {"were_still_to_get": v} for k, v in self.removed_pending.items()},
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


def _timing(schedule: Schedule) -> tuple[Any, ...]:
    return tuple(getattr(schedule.course, name) for name in _TIMING_FIELDS)


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
        result.removed_pending[lesson.id] = 0
    for change in diff.offsets:
        result.offset_pending[change.lesson_id] = 0
        result.offset_shifts[change.lesson_id] = Shifts()
    for rename in diff.renames:
        result.rename_again[(rename.old_id, rename.new_id)] = 0
    plans = (_Plans(old, now), _Plans(new, now))
    days = ({les.id: les.day for les in old.lessons}, {les.id: les.day for les in new.lessons})
    same_timing = _timing(old) == _timing(new)

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
        line = (
            f"{rename.old_id} -> {rename.new_id} looks like a rename ({', '.join(rename.because)}):"
            " an id change is a delete plus an add"
        )
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


def report_lines(diff: ScheduleDiff, found: Impact | None) -> list[str]:
    """The diff and its impact as text, one finding a line."""
    lines = []
    if diff.empty:
        lines.append("no changes to lessons, their days or the course's timing")
    for lesson in diff.added:
        flag = ", backfill" if lesson.backfill else ""
        lines.append(f"+ added    {lesson.id} (day {lesson.day}, phase {lesson.phase_id}{flag})")
    for lesson in diff.removed:
        lines.append(f"- removed  {lesson.id} (day {lesson.day}): never sent from now on")
    for change in diff.offsets:
        delta = change.new_day - change.old_day
        lines.append(
            f"~ offset   {change.lesson_id}: day {change.old_day} -> day "
            f"{change.new_day} ({delta:+d} days)"
        )
    for content in diff.content:
        lines.append(f"~ content  {content.lesson_id}: {', '.join(content.fields)}")
    for move in diff.moved:
        lines.append(f"> moved    {move.lesson_id}: phase {move.old_phase} -> {move.new_phase}")
    for setting in diff.settings:
        lines.append(f"~ course   {setting.name}: {setting.old} -> {setting.new}")
    if diff.reordered:
        lines.append(f"~ order    {', '.join(diff.reordered)} now come in another order")
    if found is not None:
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
            lines.append(
                f"  {lesson.id}: {found.removed_pending[lesson.id]} were still to get"
                " it and now will not"
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
    notes = warnings(diff, found)
    if notes:
        lines.append("")
        lines.extend(f"warning: {note}" for note in notes)
    return lines


def to_json(diff: ScheduleDiff, found: Impact | None) -> dict[str, Any]:
    """The diff and its impact as plain data (``course diff --json``)."""
    return {
        "added": [
            {
                "lesson_id": les.id,
                "day": les.day,
                "phase_id": les.phase_id,
                "backfill": les.backfill,
            }
            for les in diff.added
        ],
        "removed": [{"lesson_id": les.id, "day": les.day} for les in diff.removed],
        "offsets": [
            {"lesson_id": c.lesson_id, "old_day": c.old_day, "new_day": c.new_day}
            for c in diff.offsets
        ],
        "content": [{"lesson_id": c.lesson_id, "fields": list(c.fields)} for c in diff.content],
        "moved": [
            {"lesson_id": m.lesson_id, "old_phase": m.old_phase, "new_phase": m.new_phase}
            for m in diff.moved
        ],
        "renames": [
            {"old_id": r.old_id, "new_id": r.new_id, "because": list(r.because)}
            for r in diff.renames
        ],
        "settings": [{"name": s.name, "old": s.old, "new": s.new} for s in diff.settings],
        "reordered": list(diff.reordered),
        "impact": found.to_dict() if found is not None else None,
        "warnings": warnings(diff, found),
    }
