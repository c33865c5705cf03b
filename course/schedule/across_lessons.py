"""The rules of ``schedule.yaml`` that span fields or lessons: unique ids, day 0 first, days
in order, repeated weekdays, a lesson's subject or subject experiment. Each problem is
``(path, line, message)``, as ``course.schedule.rules.validate`` reports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from course.models.schedule import COMPLETION_ID, CONFIRMATION_ID, WEEKDAY_NAMES
from course.schedule.yaml_lines import FieldPath, Tree, dotted


def check_across_lessons(tree: Tree) -> Iterator[tuple[FieldPath, int | None, str]]:
    """What no single field can tell: unique ids, first day 0, days in order, repeated weekdays.

    Works on the raw data and skips whatever is malformed, which the models already report.
    """
    data = tree.data if isinstance(tree.data, dict) else {}
    course = data.get("course") if isinstance(data.get("course"), dict) else {}
    weekdays = course.get("weekdays")
    seen_days: set[str] = set()
    for index, day in enumerate(weekdays if isinstance(weekdays, list) else []):
        if isinstance(day, str) and day.lower() in WEEKDAY_NAMES:
            if day.lower() in seen_days:
                path = ("course", "weekdays", index)
                yield path, tree.line_of(path), f"duplicate day {day.lower()!r}"
            seen_days.add(day.lower())

    has_cta = isinstance(course.get("call_to_action"), dict)
    phases = data.get("phases")
    phase_lines: dict[str, int | None] = {}
    lesson_lines: dict[str, int | None] = {}
    previous: tuple[str, int] | None = None  # (id or path, day) of the last lesson with a valid day
    first = True
    for p_index, phase in enumerate(phases if isinstance(phases, list) else []):
        if not isinstance(phase, dict):
            continue
        yield from _unique(tree, phase, ("phases", p_index), "phase", phase_lines)
        lessons = phase.get("lessons")
        for l_index, lesson in enumerate(lessons if isinstance(lessons, list) else []):
            if not isinstance(lesson, dict):
                continue
            path = ("phases", p_index, "lessons", l_index)
            yield from _unique(tree, lesson, path, "lesson", lesson_lines)
            yield from _check_subjects(tree, lesson, path)
            if lesson.get("id") in (COMPLETION_ID, CONFIRMATION_ID):
                id_path = (*path, "id")
                message = f"{lesson['id']!r} is reserved for the course's own emails"
                yield id_path, tree.line_of(id_path), message
            if lesson.get("call_to_action") is True and not has_cta:
                cta_path = (*path, "call_to_action")
                message = "the course has no call_to_action (set course.call_to_action)"
                yield cta_path, tree.line_of(cta_path), message
            day = lesson.get("day")
            was_first, first = first, False
            if type(day) is not int or day < 0:
                continue
            day_path = (*path, "day")
            if was_first and day != 0:
                yield day_path, tree.line_of(day_path), f"the first lesson must be day 0, got {day}"
            if previous is not None and day < previous[1]:
                message = (
                    f"out of order: day {day} comes before day {previous[1]} "
                    f"of the previous lesson {previous[0]}"
                )
                yield day_path, tree.line_of(day_path), message
            lesson_id = lesson.get("id")
            name = repr(lesson_id) if isinstance(lesson_id, str) else dotted(path)
            previous = (name, day)


def _check_subjects(
    tree: Tree, lesson: dict[str, Any], path: FieldPath
) -> Iterator[tuple[FieldPath, int | None, str]]:
    """A lesson has a ``subject`` or ``subject_variants`` (not both, not neither); ``winner``
    only with variants, naming one of them; no two variants alike."""
    variants = lesson.get("subject_variants")
    if "subject" in lesson and "subject_variants" in lesson:
        where = (*path, "subject_variants")
        yield where, tree.line_of(where), "give either subject or subject_variants, not both"
    elif "subject" not in lesson and "subject_variants" not in lesson:
        where = (*path, "subject")
        yield where, tree.line_of(where, missing=True), "required field missing"
    winner = lesson.get("winner")
    if "winner" in lesson and not isinstance(variants, list):
        where = (*path, "winner")
        yield where, tree.line_of(where), "only a lesson with subject_variants has a winner"
    elif (
        isinstance(variants, list)
        and 2 <= len(variants) <= 4
        and winner in ("a", "b", "c", "d")
        and "abcd".index(winner) >= len(variants)
    ):
        where = (*path, "winner")
        last = "abcd"[len(variants) - 1]
        message = f"there is no variant {winner!r}: the {len(variants)} variants are a to {last}"
        yield where, tree.line_of(where), message
    seen: dict[str, int] = {}
    for index, subject in enumerate(variants if isinstance(variants, list) else []):
        if not isinstance(subject, str):
            continue
        key = subject.strip().casefold()
        if key in seen:
            where = (*path, "subject_variants", index)
            message = f"the same subject as variant {'abcd'[seen[key]]!r}"
            yield where, tree.line_of(where), message
        elif index < 4:
            seen[key] = index


def _unique(
    tree: Tree, item: dict[str, Any], path: FieldPath, kind: str, seen: dict[str, int | None]
) -> Iterator[tuple[FieldPath, int | None, str]]:
    item_id = item.get("id")
    if not isinstance(item_id, str):
        return
    id_path = (*path, "id")
    if item_id in seen:
        message = f"duplicate {kind} id {item_id!r} (first used at line {seen[item_id]})"
        yield id_path, tree.line_of(id_path), message
    else:
        seen[item_id] = tree.line_of(id_path)
