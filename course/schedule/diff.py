"""What a changed schedule does to the lessons: :func:`compare` two loaded
:class:`~course.schedule.Schedule` objects into a :class:`ScheduleDiff`, and describe it in
lines of text and plain data (pure). What it does to the people already in the course is
:mod:`course.reports.impact`, which builds the ``course diff`` report from both.

Invariant 6 is what it reports against: lessons have stable ids; a lesson added behind a
subscriber's position is skipped for them (forward-only) unless it is marked ``backfill``; a
removed lesson is never sent; a changed offset applies to everyone who has not had that lesson.
An id change is therefore a delete plus an add, which is why probable renames are warned about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from course.schedule import Lesson, Schedule

_CONTENT_FIELDS = (
    "subject",
    "subject_variants",
    "winner",
    "preheader",
    "template",
    "call_to_action",
    "backfill",
    "checkin",
)
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
    # which of subject, subject_variants, winner, preheader, template, call_to_action,
    # backfill, checkin
    fields: tuple[str, ...]


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


def course_timing(schedule: Schedule) -> tuple[Any, ...]:
    """The course settings that time every send (send time, weekdays, max per day)."""
    return tuple(getattr(schedule.course, name) for name in _TIMING_FIELDS)


# --- Describing it ----------------------------------------------------------------------------


def rename_warning(rename: Rename) -> str:
    """Why a probable rename deserves a second look, in words."""
    return (
        f"{rename.old_id} -> {rename.new_id} looks like a rename ({', '.join(rename.because)}):"
        " an id change is a delete plus an add"
    )


def change_lines(diff: ScheduleDiff) -> list[str]:
    """The changes to the lessons and the course's timing as text, one a line."""
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
    return lines


def changes_json(diff: ScheduleDiff) -> dict[str, Any]:
    """The changes as plain data (the first keys of ``course diff --json``)."""
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
    }


def changed_files(old: dict[str, bytes], new: dict[str, bytes]) -> list[str]:
    """The files one version adds (``+``), removes (``-``) and changes (``~``) against another
    (relative path -> bytes), one line each, as publish, rollback and the admin print them."""
    lines = [f"+ file     {name}" for name in sorted(new.keys() - old.keys())]
    lines += [f"- file     {name}" for name in sorted(old.keys() - new.keys())]
    lines += [
        f"~ file     {name}" for name in sorted(old.keys() & new.keys()) if old[name] != new[name]
    ]
    return lines
