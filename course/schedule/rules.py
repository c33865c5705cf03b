"""The rules a schedule file must follow: one pydantic model per part of the file, a rule per
field, and the checks that span lessons (unique ids, day 0 first, days in order).

Each rule raises a "schedule" error whose message is reported as is, at the field's line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

from course.guard import reserved_domain
from course.models.schedule import WEEKDAY_NAMES
from course.schedule.across_lessons import check_across_lessons
from course.schedule.yaml_lines import FieldPath, Tree

SUBJECT_MAX_LENGTH = 60  # what an inbox shows on a phone before cutting it off
PREHEADER_MAX_LENGTH = 110


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
EmailAddress = Annotated[str, AfterValidator(_email)]


class _Model(BaseModel):
    # strict: YAML already gives real types, so "3" is not a day and 1 is not a subject.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _SenderModel(_Model):
    name: Text
    email: EmailAddress


class _CallToActionModel(_Model):
    text: Text
    label: SingleLine
    url: Annotated[str, AfterValidator(_url)]


class _CourseModel(_Model):
    name: Text
    from_: _SenderModel = Field(alias="from")
    reply_to: EmailAddress | None = None  # defaults to the sender's address
    postal_address: Text
    send_time: Annotated[str, AfterValidator(_send_time)]
    timezone: Annotated[str, AfterValidator(_timezone)]
    weekdays: list[Annotated[str, AfterValidator(_weekday)]] = Field(
        default=list(WEEKDAY_NAMES), min_length=1
    )
    max_lessons_per_day: int = Field(default=1, ge=1)
    call_to_action: _CallToActionModel | None = None


class EmailModel(_Model):
    subject: Subject
    preheader: Preheader
    template: str

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str, info: ValidationInfo) -> str:
        templates_dir: Path = info.context["templates_dir"]
        relative = template_path(value)
        if not value.strip():
            raise _fail("must not be empty")
        if relative is None:
            raise _fail(f"must be a path inside the templates folder, got {value!r}")
        if not (templates_dir / relative).is_file():
            raise _fail(f"template not found: {templates_dir / relative}")
        return str(relative)


def template_path(value: str) -> PurePosixPath | None:
    """A ``template:`` value as a path inside the templates folder; None for an empty one
    or one that leaves the folder (absolute, ``..``, a backslash)."""
    relative = PurePosixPath(value.strip())
    if not value.strip() or relative.is_absolute() or ".." in relative.parts or "\\" in value:
        return None
    return relative


class _CompletionModel(EmailModel):
    after_days: int = Field(default=2, ge=0)  # days after the last lesson


def _winner(value: str) -> str:
    if value not in ("auto", "a", "b", "c", "d"):
        raise _fail(f"must be auto or a variant's letter (a, b, c, d), got {value!r}")
    return value


class _LessonModel(EmailModel):
    id: Slug
    # Either ``subject`` or ``subject_variants`` (``_check_subjects``); the first variant is
    # the lesson's subject where one is shown (online copy, preview, stats).
    subject: Subject | None = None  # type: ignore[assignment]
    subject_variants: list[Subject] | None = Field(default=None, min_length=2, max_length=4)
    winner: Annotated[str, AfterValidator(_winner)] | None = None
    day: int = Field(ge=0)
    backfill: bool = False
    call_to_action: bool = False
    checkin: bool = False  # left out everywhere: the weekly default (``load.checkin_lessons``)


class ChecksModel(_Model):
    """The ``checks:`` block. Its format rules take these defaults; ``null`` turns one off."""

    words: list[int] | None = Field(default=None, min_length=2, max_length=2)
    must_include: Text | None = None
    reading_grade: float | None = Field(default=8, gt=0)
    summary: SingleLine | None = "Today in one line"
    step_items: int | None = Field(default=3, ge=1)
    step_item_words: int | None = Field(default=25, ge=1)
    step_first: bool = True
    sources: bool = True
    crisis_line: SingleLine | None = None
    max_call_to_action: int | None = Field(default=1, ge=0)

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


class ScheduleModel(_Model):
    course: _CourseModel
    confirmation: EmailModel | None = None
    phases: list[_PhaseModel] = Field(min_length=1)
    completion: _CompletionModel | None = None
    checks: ChecksModel | None = None


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
    "subject_variants": "must list 2 to 4 subjects",
}


def validate(
    tree: Tree, templates_dir: Path
) -> tuple[ScheduleModel | None, list[tuple[FieldPath, int | None, str]]]:
    """The validated model (None if any field is wrong) and every problem: (path, line, message)."""
    model = None
    problems = []
    try:
        model = ScheduleModel.model_validate(tree.data, context={"templates_dir": templates_dir})
    except ValidationError as exc:
        for error in exc.errors():
            path: FieldPath = tuple(error["loc"])
            line = tree.line_of(path, missing=error["type"] == "missing")
            problems.append((path, line, _message(error)))
    problems += check_across_lessons(tree)
    return model, problems


SENDER_FIELDS: tuple[FieldPath, ...] = (("course", "from", "email"), ("course", "reply_to"))


def reserved_senders(tree: Tree) -> Iterator[tuple[FieldPath, int | None, str]]:
    """The sender fields (``from.email``, ``reply_to``) whose domain is reserved for examples
    and tests (RFC 2606/6761): fine on a laptop, refused outside dev, since no mailbox provider
    accepts mail from such a domain. Reads the raw data, so it works on a broken file too."""
    for path in SENDER_FIELDS:
        value: Any = tree.data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or "@" not in value:
            continue
        domain = value.strip().rpartition("@")[2]
        if reserved_domain(domain):
            message = (
                f"{domain!r} is a reserved domain (RFC 2606/6761) that no mailbox provider "
                "accepts mail from; send from the course's own domain"
            )
            yield path, tree.line_of(path), message


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "schedule":
        return error["ctx"]["message"]
    if kind == "too_short":
        names = [part for part in error["loc"] if isinstance(part, str)]
        return _EMPTY_LIST_MESSAGES.get(names[-1] if names else "", "must not be empty")
    if kind == "too_long" and error["loc"][-1:] == ("words",):
        return "must be [min, max]"
    if kind == "too_long" and error["loc"][-1:] == ("subject_variants",):
        return _EMPTY_LIST_MESSAGES["subject_variants"]
    if kind == "greater_than_equal":
        return f"must be >= {error['ctx']['ge']}"
    if kind == "model_type" and not error["loc"]:
        return "the schedule must be a mapping with 'course' and 'phases'"
    return _TYPE_MESSAGES.get(kind, error["msg"])
