"""The course schedule: ``schedule.yaml`` loaded into a validated, immutable model.

Pure: reads only the schedule file and checks that the lesson template files exist.

Every mistake in the file is reported at once, one line each, with the file, line and field::

    schedule.yaml:14: phases[1].lessons[2].day: must be >= 0

How: ``yaml.compose`` keeps each node's line, so the YAML is turned into plain data together with a
map from field path to line; pydantic models check each field, a second pass checks what spans
lessons (unique ids, day order), and both kinds of problem are mapped back to lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SUBJECT_MAX_LENGTH = 60  # what an inbox shows on a phone before cutting it off
PREHEADER_MAX_LENGTH = 110
COMPLETION_ID = "course-complete"
CONFIRMATION_ID = "confirmation"
LESSON, COMPLETION, CONFIRMATION = "lesson", "completion", "confirmation"  # kinds of email


@dataclass(frozen=True)
class Lesson:
    id: str
    day: int  # offset in days from the local date of the subscriber's start
    subject: str
    preheader: str
    template: str  # path relative to the templates directory, e.g. "lessons/welcome.md"
    phase_id: str
    number: int  # 1-based position in the whole course
    backfill: bool = False  # sent even to subscribers already past it (schedule edits)
    call_to_action: bool = False  # shows the course's call-to-action box
    kind: str = LESSON  # LESSON, COMPLETION (after the last lesson) or CONFIRMATION (opt-in)


@dataclass(frozen=True)
class Phase:
    id: str
    title: str
    number: int  # 1-based
    lessons: tuple[Lesson, ...]


@dataclass(frozen=True)
class CourseSettings:
    name: str
    from_email: str
    from_name: str
    reply_to: str
    postal_address: str
    send_time: time  # local wall-clock time of day for lessons after day 0
    timezone: ZoneInfo  # default zone for subscribers who did not give one
    weekdays: frozenset[int]  # allowed send days, 0 = Monday ... 6 = Sunday
    max_lessons_per_day: int = 1
    call_to_action: CallToAction | None = None


@dataclass(frozen=True)
class CallToAction:
    """The box that points to the structured program, on lessons that ask for it."""

    text: str
    label: str
    url: str


@dataclass(frozen=True)
class ContentChecks:
    """What ``course validate`` checks in the text of every lesson (both optional)."""

    min_words: int | None = None
    max_words: int | None = None
    must_include: str | None = None  # e.g. "One small step for today"


@dataclass(frozen=True)
class Schedule:
    course: CourseSettings
    phases: tuple[Phase, ...]
    path: Path
    templates_dir: Path
    confirmation: Lesson | None = None  # the double opt-in email, sent before the course
    completion: Lesson | None = None  # "you have finished", sent after the last lesson
    checks: ContentChecks = ContentChecks()

    @property
    def lessons(self) -> tuple[Lesson, ...]:
        """Everything sent on the course clock, in order: the lessons, then the completion."""
        taught = tuple(lesson for phase in self.phases for lesson in phase.lessons)
        return (*taught, self.completion) if self.completion else taught

    @property
    def lesson_count(self) -> int:
        """How many lessons the course teaches (the completion email is not one)."""
        return sum(len(phase.lessons) for phase in self.phases)

    @property
    def emails(self) -> tuple[Lesson, ...]:
        """Every email the course can send: the confirmation, the lessons, the completion."""
        return (self.confirmation, *self.lessons) if self.confirmation else self.lessons

    def lesson(self, lesson_id: str) -> Lesson:
        for lesson in self.emails:
            if lesson.id == lesson_id:
                return lesson
        raise KeyError(lesson_id)

    def display(self, path: Path) -> str:
        """``path`` as the marketer knows it: relative to the schedule file's folder."""
        try:
            return str(path.relative_to(self.path.parent))
        except ValueError:
            return str(path)

    def template_name(self, lesson: Lesson) -> str:
        """A lesson's template file as error messages name it (``templates/lessons/x.md``)."""
        return self.display(self.templates_dir / lesson.template)

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise KeyError(phase_id)


# --- Errors -------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One thing wrong with a schedule file; ``line`` is 1-based, None when there is none."""

    file: str
    line: int | None
    field: str  # dotted path such as ``phases[1].lessons[2].day``; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ScheduleError(Exception):
    """The schedule cannot be used. ``problems`` holds every problem found, sorted by line.

    ``str(err)`` is one line per problem, e.g.
    ``schedule.yaml:14: phases[1].lessons[2].day: must be >= 0``.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=lambda problem: problem.line or 0)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[list[Problem]]]:
        # Keeps it picklable (Celery, multiprocessing) despite the custom __init__.
        return (type(self), (self.problems,))


# --- Loading ------------------------------------------------------------------------------------


def load_schedule(path: Path | str, templates_dir: Path | None = None) -> Schedule:
    """Read and validate a schedule file.

    ``templates_dir`` defaults to the ``templates`` folder beside the file. Errors name the file
    as ``path`` was given. Raises :class:`ScheduleError` for a missing or unreadable file and for
    every problem in its content.
    """
    filename = str(path)
    path = Path(path)
    if templates_dir is None:
        templates_dir = path.parent / "templates"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScheduleError([Problem(filename, None, "", "file not found")]) from None
    except UnicodeDecodeError:
        raise ScheduleError([Problem(filename, None, "", "not valid UTF-8 text")]) from None
    except OSError as exc:
        problem = Problem(filename, None, "", f"cannot read the file: {exc.strerror}")
        raise ScheduleError([problem]) from None
    return parse_schedule(text, filename, templates_dir, path=path)


def parse_schedule(
    text: str, filename: str, templates_dir: Path, *, path: Path | None = None
) -> Schedule:
    """Validate the schedule YAML in ``text``; ``filename`` names it in error messages.

    ``Schedule.path`` is ``path`` if given, else ``Path(filename)``. Raises :class:`ScheduleError`.
    """
    tree = _read_yaml(text, filename)
    model, found = _validate(tree, templates_dir)
    found = tree.problems + found
    if found or model is None:
        raise ScheduleError(
            Problem(filename, line, _dotted(p), message) for p, line, message in found
        )
    return _build(model, path if path is not None else Path(filename), templates_dir)


# --- YAML with line numbers ---------------------------------------------------------------------

FieldPath = tuple[str | int, ...]

# Fields taken as the text the author typed, so that `id: no`, `name: 2024` or an unquoted
# `send_time: 8:00` (a YAML 1.1 base-60 integer, 480) are not silently turned into other types.
_TEXT_FIELDS = {
    ("course", "name"),
    ("course", "from", "name"),
    ("course", "from", "email"),
    ("course", "reply_to"),
    ("course", "postal_address"),
    ("course", "send_time"),
    ("course", "timezone"),
    ("course", "weekdays", int),
    ("phases", int, "id"),
    ("phases", int, "title"),
    ("phases", int, "lessons", int, "id"),
    ("phases", int, "lessons", int, "subject"),
    ("phases", int, "lessons", int, "preheader"),
    ("phases", int, "lessons", int, "template"),
    ("course", "call_to_action", "text"),
    ("course", "call_to_action", "label"),
    ("course", "call_to_action", "url"),
    ("confirmation", "subject"),
    ("confirmation", "preheader"),
    ("confirmation", "template"),
    ("completion", "subject"),
    ("completion", "preheader"),
    ("completion", "template"),
    ("checks", "must_include"),
}
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass
class _Tree:
    """The YAML as plain data, plus the line where each field was written."""

    data: Any = None
    # The line of each mapping key and each sequence item, by path; () is the document.
    lines: dict[FieldPath, int] = field(default_factory=dict)
    # Problems met while reading (duplicate keys...): (path, line, message).
    problems: list[tuple[FieldPath, int | None, str]] = field(default_factory=list)

    def line_of(self, path: FieldPath, missing: bool = False) -> int | None:
        """The line to report for ``path``; a missing field is reported at its parent."""
        if missing:
            path = path[:-1]
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)


def _read_yaml(text: str, filename: str) -> _Tree:
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters right away
    except yaml.YAMLError as exc:
        raise ScheduleError([_syntax_problem(exc, filename, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ScheduleError([Problem(filename, 1, "", "the file is empty")])
        tree = _Tree(lines={(): root.start_mark.line + 1})
        tree.data = _to_python(root, (), loader, tree, frozenset())
        return tree
    except yaml.YAMLError as exc:
        raise ScheduleError([_syntax_problem(exc, filename, text)]) from None
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.YAMLError, filename: str, text: str) -> Problem:
    line = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or str(exc).splitlines()[0]
        context, start = exc.context or "", exc.context_mark
        if what.startswith("but ") and context:  # "expected a single document..., but found..."
            what = f"{context}, {what}"
        # An unclosed bracket or quote is noticed lines after it was opened: name both lines.
        # (A block context is only the enclosing list or mapping, which would mislead.)
        elif ("flow" in context or "scalar" in context) and start and start.line + 1 != line:
            what += f" ({context} started at line {start.line + 1})"
    else:
        what = str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
    return Problem(filename, line, "", f"YAML syntax error: {what}")


def _to_python(
    node: yaml.Node, path: FieldPath, loader: yaml.SafeLoader, tree: _Tree, parents: frozenset[int]
) -> Any:
    if id(node) in parents:  # `&a [*a]` would otherwise recurse forever
        tree.problems.append((path, node.start_mark.line + 1, "an alias refers to itself"))
        return None
    if isinstance(node, yaml.ScalarNode):
        shape = tuple(int if isinstance(part, int) else part for part in path)
        if shape in _TEXT_FIELDS and node.style is None:
            return "" if node.tag == _NULL_TAG else node.value
        return loader.construct_object(node)
    parents = parents | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            tree.lines[(*path, index)] = item.start_mark.line + 1
            items.append(_to_python(item, (*path, index), loader, tree, parents))
        return items
    first_seen: dict[str, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            tree.problems.append((path, line, "a key must be plain text"))
        elif key_node.value in first_seen:
            message = f"duplicate key (first at line {first_seen[key_node.value]})"
            tree.problems.append(((*path, key_node.value), line, message))
        else:
            first_seen[key_node.value] = line
    loader.flatten_mapping(node)  # applies `<<: *defaults`; explicit keys follow and win
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            tree.lines[(*path, key_node.value)] = key_node.start_mark.line + 1
            mapping[key_node.value] = _to_python(
                value_node, (*path, key_node.value), loader, tree, parents
            )
    return mapping


def _dotted(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


# --- Field rules --------------------------------------------------------------------------------
# Each raises a "schedule" error whose message is reported as is.


def _fail(message: str) -> PydanticCustomError:
    # The message travels in the context so braces in user text are never taken as placeholders.
    return PydanticCustomError("schedule", "{message}", {"message": message})


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise _fail("must not be empty")
    return value


def _single_line(value: str) -> str:
    value = value.strip()
    if "\n" in value or "\r" in value:
        raise _fail("must be a single line")
    return value


def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
        raise _fail(f"must be a lowercase slug (a-z, 0-9 and '-'), got {value!r}")
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+", value):
        raise _fail(f"must be an email address, got {value!r}")
    return value


def _subject(value: str) -> str:
    value = _single_line(_text(value))
    if len(value) > SUBJECT_MAX_LENGTH:
        raise _fail(f"must be at most {SUBJECT_MAX_LENGTH} characters, got {len(value)}")
    return value


def _preheader(value: str) -> str:
    value = _single_line(value)
    if len(value) > PREHEADER_MAX_LENGTH:
        raise _fail(f"must be at most {PREHEADER_MAX_LENGTH} characters, got {len(value)}")
    return value


def _url(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise _fail(f"must be an http(s) URL, got {value!r}")
    return value


def _send_time(value: str) -> str:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise _fail(f"must be a time of day as HH:MM (24-hour clock), got {value!r}")
    return value.strip()


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _fail(f"unknown time zone {value!r}") from None
    return value


def _weekday(value: str) -> str:
    if value.lower() not in WEEKDAY_NAMES:
        raise _fail(f"must be one of {', '.join(WEEKDAY_NAMES)}, got {value!r}")
    return value.lower()


Text = Annotated[str, AfterValidator(_text)]
SingleLine = Annotated[str, AfterValidator(_text), AfterValidator(_single_line)]
Subject = Annotated[str, AfterValidator(_subject)]
Preheader = Annotated[str, AfterValidator(_preheader)]
Slug = Annotated[str, AfterValidator(_slug)]
Email = Annotated[str, AfterValidator(_email)]


class _Model(BaseModel):
    # strict: YAML already gives real types, so "3" is not a day and 1 is not a subject.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _SenderModel(_Model):
    name: Text
    email: Email


class _CallToActionModel(_Model):
    text: Text
    label: SingleLine
    url: Annotated[str, AfterValidator(_url)]


class _CourseModel(_Model):
    name: Text
    from_: _SenderModel = Field(alias="from")
    reply_to: Email | None = None  # defaults to the sender's address
    postal_address: Text
    send_time: Annotated[str, AfterValidator(_send_time)]
    timezone: Annotated[str, AfterValidator(_timezone)]
    weekdays: list[Annotated[str, AfterValidator(_weekday)]] = Field(
        default=list(WEEKDAY_NAMES), min_length=1
    )
    max_lessons_per_day: int = Field(default=1, ge=1)
    call_to_action: _CallToActionModel | None = None


class _EmailModel(_Model):
    subject: Subject
    preheader: Preheader
    template: str

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str, info: ValidationInfo) -> str:
        templates_dir: Path = info.context["templates_dir"]
        relative = PurePosixPath(value.strip())
        if not value.strip():
            raise _fail("must not be empty")
        if relative.is_absolute() or ".." in relative.parts or "\\" in value:
            raise _fail(f"must be a path inside the templates folder, got {value!r}")
        if not (templates_dir / relative).is_file():
            raise _fail(f"template not found: {templates_dir / relative}")
        return str(relative)


class _CompletionModel(_EmailModel):
    after_days: int = Field(default=2, ge=0)  # days after the last lesson


class _LessonModel(_EmailModel):
    id: Slug
    day: int = Field(ge=0)
    backfill: bool = False
    call_to_action: bool = False


class _ChecksModel(_Model):
    words: list[int] | None = Field(default=None, min_length=2, max_length=2)
    must_include: Text | None = None

    @field_validator("words")
    @classmethod
    def _range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not 0 <= value[0] <= value[1]:
            raise _fail(f"must be [min, max] with 0 <= min <= max, got {value}")
        return value


class _PhaseModel(_Model):
    id: Slug
    title: SingleLine
    lessons: list[_LessonModel] = Field(min_length=1)


class _ScheduleModel(_Model):
    course: _CourseModel
    confirmation: _EmailModel | None = None
    phases: list[_PhaseModel] = Field(min_length=1)
    completion: _CompletionModel | None = None
    checks: _ChecksModel | None = None


_TYPE_MESSAGES = {
    "missing": "required field missing",
    "extra_forbidden": "unknown field",
    "string_type": "must be text",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a mapping of fields",
    "dict_type": "must be a mapping of fields",
}
_EMPTY_LIST_MESSAGES = {
    "phases": "must list at least one phase",
    "lessons": "must list at least one lesson",
    "weekdays": "must list at least one day",
    "words": "must be [min, max]",
}


def _validate(
    tree: _Tree, templates_dir: Path
) -> tuple[_ScheduleModel | None, list[tuple[FieldPath, int | None, str]]]:
    """The validated model (None if any field is wrong) and every problem: (path, line, message)."""
    model = None
    problems = []
    try:
        model = _ScheduleModel.model_validate(tree.data, context={"templates_dir": templates_dir})
    except ValidationError as exc:
        for error in exc.errors():
            path: FieldPath = tuple(error["loc"])
            line = tree.line_of(path, missing=error["type"] == "missing")
            problems.append((path, line, _message(error)))
    problems += _check_across_lessons(tree)
    return model, problems


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "schedule":
        return error["ctx"]["message"]
    if kind == "too_short":
        names = [part for part in error["loc"] if isinstance(part, str)]
        return _EMPTY_LIST_MESSAGES.get(names[-1] if names else "", "must not be empty")
    if kind == "too_long" and error["loc"][-1:] == ("words",):
        return "must be [min, max]"
    if kind == "greater_than_equal":
        return f"must be >= {error['ctx']['ge']}"
    if kind == "model_type" and not error["loc"]:
        return "the schedule must be a mapping with 'course' and 'phases'"
    return _TYPE_MESSAGES.get(kind, error["msg"])


def _check_across_lessons(tree: _Tree) -> Iterator[tuple[FieldPath, int | None, str]]:
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
            name = repr(lesson_id) if isinstance(lesson_id, str) else _dotted(path)
            previous = (name, day)


def _unique(
    tree: _Tree, item: dict[str, Any], path: FieldPath, kind: str, seen: dict[str, int | None]
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


# --- The model --------------------------------------------------------------------------------


def _build(model: _ScheduleModel, path: Path, templates_dir: Path) -> Schedule:
    settings = model.course
    hour, minute = settings.send_time.split(":")
    course = CourseSettings(
        name=settings.name,
        from_email=settings.from_.email,
        from_name=settings.from_.name,
        reply_to=settings.reply_to or settings.from_.email,
        postal_address=settings.postal_address,
        send_time=time(int(hour), int(minute)),
        timezone=ZoneInfo(settings.timezone),
        weekdays=frozenset(WEEKDAY_NAMES.index(day) for day in settings.weekdays),
        max_lessons_per_day=settings.max_lessons_per_day,
        call_to_action=(
            CallToAction(cta.text, cta.label, cta.url) if (cta := settings.call_to_action) else None
        ),
    )
    phases = []
    number = 0
    for phase_number, phase in enumerate(model.phases, start=1):
        lessons = []
        for lesson in phase.lessons:
            number += 1
            lessons.append(
                Lesson(
                    id=lesson.id,
                    day=lesson.day,
                    subject=lesson.subject,
                    preheader=lesson.preheader,
                    template=lesson.template,
                    phase_id=phase.id,
                    number=number,
                    backfill=lesson.backfill,
                    call_to_action=lesson.call_to_action,
                )
            )
        phases.append(Phase(phase.id, phase.title, phase_number, tuple(lessons)))
    last = phases[-1].lessons[-1]
    confirmation = completion = None
    if model.confirmation:
        confirmation = _email(model.confirmation, CONFIRMATION_ID, CONFIRMATION, 0, "", 0)
    if model.completion:
        day = last.day + model.completion.after_days
        completion = _email(
            model.completion, COMPLETION_ID, COMPLETION, day, last.phase_id, number + 1
        )
    checks = model.checks or _ChecksModel()
    words = checks.words or (None, None)
    return Schedule(
        course,
        tuple(phases),
        path,
        templates_dir,
        confirmation=confirmation,
        completion=completion,
        checks=ContentChecks(words[0], words[1], checks.must_include),
    )


def _email(
    model: _EmailModel, email_id: str, kind: str, day: int, phase_id: str, number: int
) -> Lesson:
    """One of the course's own emails, as a lesson the renderer and the engine understand."""
    return Lesson(
        id=email_id,
        day=day,
        subject=model.subject,
        preheader=model.preheader,
        template=model.template,
        phase_id=phase_id,
        number=number,
        kind=kind,
    )
