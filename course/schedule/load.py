"""Loading ``schedule.yaml``: the file read, validated and built into a frozen :class:`Schedule`.

Pure: reads only the schedule file and checks that the lesson template files exist.

Every mistake in the file is reported at once, one line each, with the file, line and field::

    schedule.yaml:14: phases[1].lessons[2].day: must be >= 0

How: the YAML is read with the line of every field (``yaml_lines``); pydantic models check each
field and a second pass checks what spans lessons (``rules``); both kinds of problem are mapped
back to lines.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

from course.models.schedule import (
    COMPLETION,
    COMPLETION_ID,
    CONFIRMATION,
    CONFIRMATION_ID,
    LESSON,
    WEEKDAY_NAMES,
    CallToAction,
    ContentChecks,
    CourseSettings,
    Lesson,
    Phase,
    Schedule,
)
from course.schedule.errors import Problem, ScheduleError
from course.schedule.rules import (
    ChecksModel,
    EmailModel,
    ScheduleModel,
    reserved_senders,
    template_path,
    validate,
)
from course.schedule.yaml_limits import MAX_FILE_BYTES
from course.schedule.yaml_lines import dotted, read_yaml


def load_schedule(
    path: Path | str, templates_dir: Path | None = None, *, reserved_sender: bool = True
) -> Schedule:
    """Read and validate a schedule file.

    ``templates_dir`` defaults to the ``templates`` folder beside the file. Errors name the file
    as ``path`` was given. Raises :class:`ScheduleError` for a missing or unreadable file and for
    every problem in its content; with ``reserved_sender=False`` (outside dev) also for a
    sender on a domain reserved for examples and tests (``rules.reserved_senders``).
    """
    filename = str(path)
    path = Path(path)
    if templates_dir is None:
        templates_dir = path.parent / "templates"
    text = read_schedule_text(path, filename)
    return parse_schedule(text, filename, templates_dir, path=path, reserved_sender=reserved_sender)


def read_schedule_text(path: Path, filename: str) -> str:
    """The schedule file's text, at most one character over the size limit; raises
    :class:`ScheduleError` (one problem) for a missing, unreadable or non-UTF-8 file."""
    try:
        with path.open(encoding="utf-8") as file:
            # One character more than the limit allows is enough to refuse the file (in
            # ``read_yaml``) without reading all of a huge one, or an endless one like /dev/zero.
            text = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScheduleError([Problem(filename, None, "", "file not found")]) from None
    except UnicodeDecodeError:
        raise ScheduleError([Problem(filename, None, "", "not valid UTF-8 text")]) from None
    except OSError as exc:
        problem = Problem(filename, None, "", f"cannot read the file: {exc.strerror}")
        raise ScheduleError([problem]) from None
    return text


def parse_schedule(
    text: str,
    filename: str,
    templates_dir: Path,
    *,
    path: Path | None = None,
    reserved_sender: bool = True,
) -> Schedule:
    """Validate the schedule YAML in ``text``; ``filename`` names it in error messages.

    ``Schedule.path`` is ``path`` if given, else ``Path(filename)``. Raises :class:`ScheduleError`.
    """
    tree = read_yaml(text, filename)
    model, found = validate(tree, templates_dir)
    found = tree.problems + found
    if not reserved_sender:
        found += reserved_senders(tree)
    if found or model is None:
        raise ScheduleError(
            Problem(filename, line, dotted(p), message) for p, line, message in found
        )
    return _build(model, path if path is not None else Path(filename), templates_dir)


def _build(model: ScheduleModel, path: Path, templates_dir: Path) -> Schedule:
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
    asking = checkin_lessons(model)
    for phase_number, phase in enumerate(model.phases, start=1):
        lessons = []
        for lesson in phase.lessons:
            number += 1
            lessons.append(
                Lesson(
                    id=lesson.id,
                    day=lesson.day,
                    subject=lesson.subject or (lesson.subject_variants or [""])[0],
                    preheader=lesson.preheader,
                    template=lesson.template,
                    phase_id=phase.id,
                    number=number,
                    backfill=lesson.backfill,
                    call_to_action=lesson.call_to_action,
                    checkin=lesson.id in asking,
                    subject_variants=tuple(lesson.subject_variants or ()),
                    winner=lesson.winner,
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
    checks = _content_checks(model.checks)
    return Schedule(
        course,
        tuple(phases),
        path,
        templates_dir,
        confirmation=confirmation,
        completion=completion,
        checks=checks,
    )


def _content_checks(model: ChecksModel | None) -> ContentChecks:
    if model is None:
        return ContentChecks()  # no `checks:` block: none of them
    words = model.words or (None, None)
    return ContentChecks(
        min_words=words[0],
        max_words=words[1],
        must_include=model.must_include,
        reading_grade=model.reading_grade,
        summary=model.summary,
        step_items=model.step_items,
        step_item_words=model.step_item_words,
        step_first=model.step_first,
        sources=model.sources,
        crisis_line=model.crisis_line,
        max_call_to_action=model.max_call_to_action,
    )


CHECKIN_WEEK = 7  # days: the default asks once per week of the course


def checkin_lessons(model: ScheduleModel) -> frozenset[str]:
    """The lessons that ask "How has this week been?".

    When any lesson sets ``checkin`` (true or false), exactly those with ``checkin: true``
    ask. Otherwise the default: the first lesson of each week of the course after the first
    (days 7-13, 14-20, ...), so a reader is asked once a week about the week behind them
    and never on day 0, when there is no week behind them yet."""
    lessons = [lesson for phase in model.phases for lesson in phase.lessons]
    if any("checkin" in lesson.model_fields_set for lesson in lessons):
        return frozenset(lesson.id for lesson in lessons if lesson.checkin)
    asking: dict[int, str] = {}
    for lesson in lessons:
        week = lesson.day // CHECKIN_WEEK
        if week >= 1:
            asking.setdefault(week, lesson.id)
    return frozenset(asking.values())


def _email(
    model: EmailModel, email_id: str, kind: str, day: int, phase_id: str, number: int
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


def sender_problems(path: Path | str) -> list[Problem]:
    """The sender fields of a schedule file on a reserved domain, with their lines; none when
    the file cannot be read as YAML (loading it reports that)."""
    filename = str(path)
    try:
        tree = read_yaml(read_schedule_text(Path(path), filename), filename)
    except ScheduleError:
        return []
    return [
        Problem(filename, line, dotted(p), message) for p, line, message in reserved_senders(tree)
    ]


def named_templates(path: Path | str) -> list[tuple[str, str]]:
    """The templates a schedule file names, as (path inside the templates folder, kind of
    email), in course order, for every entry that parsed far enough to name one: what
    ``course validate`` still checks when the schedule itself has mistakes. Paths that would
    leave the templates folder are left out; none when the file is not YAML at all."""
    filename = str(path)
    try:
        data = read_yaml(read_schedule_text(Path(path), filename), filename).data
    except ScheduleError:
        return []
    data = data if isinstance(data, dict) else {}
    entries: list[tuple[object, str]] = [(data.get("confirmation"), CONFIRMATION)]
    phases = data.get("phases")
    for phase in phases if isinstance(phases, list) else []:
        lessons = phase.get("lessons") if isinstance(phase, dict) else None
        if isinstance(lessons, list):
            entries += [(lesson, LESSON) for lesson in lessons]
    entries.append((data.get("completion"), COMPLETION))
    found: list[tuple[str, str]] = []
    for entry, kind in entries:
        template = entry.get("template") if isinstance(entry, dict) else None
        relative = template_path(template) if isinstance(template, str) else None
        if relative is not None and (str(relative), kind) not in found:
            found.append((str(relative), kind))
    return found
