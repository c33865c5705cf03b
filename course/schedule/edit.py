"""One lesson edited in a version's files, as the admin editor does: its subject, preheader
and day rewritten on their own lines of ``schedule.yaml`` (every other line, comments
included, kept as written) and its Markdown body replaced. Pure: text in, text out.

A field written over several lines (a folded ``>-`` subject) cannot be rewritten line by
line: the result is read back and compared with what was asked, and anything else changed
is refused with a message instead of being saved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml

from course.schedule.bundle import SCHEDULE_NAME
from course.schedule.errors import ScheduleError
from course.schedule.yaml_lines import read_yaml

FIELDS = ("subject", "preheader", "day")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,6}")


class EditError(ValueError):
    """The edit cannot be made to the files (named in the message)."""


@dataclass(frozen=True)
class LessonText:
    """What the editor shows and sends back for one lesson."""

    id: str
    subject: str
    preheader: str
    day: str
    body: str
    template: str  # the body's file, ``templates/lessons/welcome.md``


def _lessons(data: object) -> list[tuple[tuple, dict]]:
    found = []
    phases = data.get("phases") if isinstance(data, dict) else None
    for i, phase in enumerate(phases if isinstance(phases, list) else []):
        lessons = phase.get("lessons") if isinstance(phase, dict) else None
        for j, lesson in enumerate(lessons if isinstance(lessons, list) else []):
            if isinstance(lesson, dict):
                found.append((("phases", i, "lessons", j), lesson))
    return found


def lesson_rows(files: dict[str, bytes]) -> list[tuple[str, str, str]]:
    """Every lesson's id, day and subject as written, valid or not (the editor's list)."""
    try:
        data = read_yaml(files.get(SCHEDULE_NAME, b"").decode(), SCHEDULE_NAME).data
    except ScheduleError:
        return []
    return [
        (str(lesson.get("id", "")), str(lesson.get("day", "")), _listed_subject(lesson))
        for _, lesson in _lessons(data)
    ]


def _listed_subject(lesson: dict) -> str:
    """The subject as written; a subject experiment's first variant (its default)."""
    variants = lesson.get("subject_variants")
    if "subject" not in lesson and isinstance(variants, list) and variants:
        return str(variants[0])
    return str(lesson.get("subject", ""))


def lesson_text(files: dict[str, bytes], lesson_id: str) -> LessonText | None:
    """The lesson ``lesson_id`` of a version's files, as the editor shows it (None if none)."""
    text = files.get(SCHEDULE_NAME, b"").decode()
    data = read_yaml(text, SCHEDULE_NAME).data
    for _, lesson in _lessons(data):
        if lesson.get("id") == lesson_id:
            template = f"templates/{lesson.get('template', '')}"
            return LessonText(
                id=lesson_id,
                subject=str(lesson.get("subject") or ""),
                preheader=str(lesson.get("preheader") or ""),
                day=str(lesson.get("day", "")),
                body=files.get(template, b"").decode(),
                template=template,
            )
    return None


def _written(name: str, value: str) -> str:
    if name == "day" and _WHOLE_NUMBER.fullmatch(value.strip()):
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def _lesson_node(root: yaml.Node, lesson_id: str) -> yaml.MappingNode | None:
    def get(node: yaml.Node, key: str) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v
        return None

    phases = get(root, "phases")
    for phase in phases.value if isinstance(phases, yaml.SequenceNode) else []:
        lessons = get(phase, "lessons")
        for lesson in lessons.value if isinstance(lessons, yaml.SequenceNode) else []:
            found = get(lesson, "id")
            if isinstance(found, yaml.ScalarNode) and found.value == lesson_id:
                return lesson
    return None


def edit_lesson(files: dict[str, bytes], edit: LessonText) -> dict[str, bytes]:
    """``files`` with the lesson ``edit.id`` changed to ``edit`` (body line endings made
    ``\\n``). Only the values' own text in ``schedule.yaml`` is rewritten (block or flow
    style alike). Raises :class:`EditError`; a value the loader will refuse (a negative day)
    is written anyway, for validation to report at its line."""
    text = files.get(SCHEDULE_NAME, b"").decode()
    try:
        tree = read_yaml(text, SCHEDULE_NAME)  # the size and depth limits first
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (ScheduleError, yaml.YAMLError) as exc:
        raise EditError(f"{SCHEDULE_NAME}: {exc}") from None
    found = [(path, lesson) for path, lesson in _lessons(tree.data) if lesson.get("id") == edit.id]
    node = _lesson_node(root, edit.id)
    if not found or node is None:
        raise EditError(f"no lesson {edit.id!r} in {SCHEDULE_NAME}")
    path, lesson = found[0]
    template = f"templates/{lesson.get('template', '')}"
    if template != edit.template or template not in files:
        raise EditError(f"{edit.id}: its body is {template}, which this version does not have")
    fields = _edited_fields(lesson, edit)
    values = {name: " ".join(getattr(edit, name).splitlines()) for name in fields}
    keys = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    edits: list[tuple[int, int, str]] = []
    for name in fields:
        written = _written(name, values[name])
        if name in keys:
            value = keys[name][1]
            if not isinstance(value, yaml.ScalarNode):
                raise EditError(f"{SCHEDULE_NAME}:{value.start_mark.line + 1}: the {name} of "
                                f"{edit.id} is not a plain value")  # fmt: skip
            start, end = value.start_mark.index, value.end_mark.index
            tail = "\n" if value.style in ("|", ">") and text[start:end].endswith("\n") else ""
            edits.append((start, end, written + tail))
        elif node.flow_style:  # {id: x, ...}: before its closing brace
            at = node.end_mark.index - 1
            edits.append((at, at, f", {name}: {written}"))
        else:  # on a line of its own under the id, indented as the id is
            id_key, id_value = keys["id"]
            at = text.find("\n", id_value.end_mark.index)
            at = len(text) if at < 0 else at + 1
            edits.append((at, at, " " * id_key.start_mark.column + f"{name}: {written}\n"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    _check_only_the_lesson_changed(tree.data, text, path, edit.id, values)
    body = edit.body.replace("\r\n", "\n").replace("\r", "\n")
    return {**files, SCHEDULE_NAME: text.encode(), template: body.encode()}


def _edited_fields(lesson: dict, edit: LessonText) -> tuple[str, ...]:
    """The fields the editor writes: a subject experiment's lesson (``subject_variants``, no
    ``subject``) keeps its variants as written while the editor's subject is left empty."""
    if "subject_variants" in lesson and "subject" not in lesson and not edit.subject.strip():
        return tuple(name for name in FIELDS if name != "subject")
    return FIELDS


def _check_only_the_lesson_changed(
    before: object, text: str, path: tuple, lesson_id: str, values: dict[str, str]
) -> None:
    try:
        after = read_yaml(text, SCHEDULE_NAME).data
    except ScheduleError:
        after = None
    expected = json.loads(json.dumps(before))
    lesson = expected["phases"][path[1]]["lessons"][path[3]]
    for name in values:
        lesson[name] = json.loads(_written(name, values[name]))
    if after is None or json.loads(json.dumps(after)) != expected:
        raise EditError(
            f"{lesson_id}: its subject, preheader or day is written over several lines in "
            f"{SCHEDULE_NAME}; write it on one line there (or export, edit and publish the files)"
        )
