"""What ``course validate``, ``course publish`` and the admin editor check before a course
may go live (the schedule, every template it names, the content rules, the page overrides),
and what a change does to the people in the course, counted over the store."""

from __future__ import annotations

from pathlib import Path

from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule import ScheduleError, load_schedule
from course.schedule.load import named_templates


def check_course(path: Path) -> tuple[Schedule | None, list[str]]:
    """The schedule (None if it has mistakes) and every problem of it and of its templates:
    a template is checked whenever the schedule names it, valid or not."""
    from course.mail.checks import check_content
    from course.mail.template_checks import check_templates
    from course.web.pages import check_pages

    try:
        schedule: Schedule | None = load_schedule(path)
    except ScheduleError as exc:
        schedule, problems = None, [str(problem) for problem in exc.problems]
        if not Path(path).is_file():
            return None, problems  # no file: no templates to look for
    else:
        problems = []
    folder = Path(path).parent
    templates_dir = folder / "templates"

    def display(file: Path) -> str:  # as Schedule.display names a file
        return str(file.relative_to(folder)) if file.is_relative_to(folder) else str(file)

    named = [(e.template, e.kind) for e in schedule.emails] if schedule else named_templates(path)
    template_problems = check_templates(templates_dir, named, display)
    problems += template_problems
    if schedule is not None and not template_problems:
        try:
            problems += check_content(schedule, Renderer(schedule))
        except RenderError as exc:  # what only the whole compiled email shows
            problems.append(str(exc))
    return schedule, problems + check_pages(templates_dir, display)


def measure_change(store, old: Schedule, new: Schedule, now, subscribers: bool = True):
    """The lesson-level changes from ``old`` to ``new`` and, counted over the store at
    ``now``, what they do to the people in the course (None when nobody's lessons or send
    times can change, or without ``subscribers``)."""
    from course.reports.impact import impact
    from course.schedule.diff import compare

    changes = compare(old, new)
    if not (subscribers and changes.timing):
        return changes, None
    return changes, impact(changes, old, new, scan(store), now)


measure = measure_change


def scan(store, chunk: int = 1000):
    """Every subscriber with their ledger's lesson ids, read a pipelined chunk at a time."""
    ids: list[str] = []
    for sub_id in store.iter_ids(batch=chunk):
        ids.append(sub_id)
        if len(ids) >= chunk:
            yield from store.get_many(ids)
            ids = []
    if ids:
        yield from store.get_many(ids)
