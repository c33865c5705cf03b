"""What the admin editor does with a version's files before it saves or publishes them: check
them as ``course publish`` does (the schedule with its file:line errors, every template on its
own, the content rules, the page overrides; the reserved sender domains outside dev), render a
lesson for the preview or a test send, and count what publishing would change for the people in
the course (the impact ``course publish`` prints)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.bundle import Unpacked, load_contents
from course.schedule.errors import ScheduleError
from course.schedule.load import sender_problems
from course.settings import Settings
from course.validation import check_course, measure_change


@dataclass
class Checked:
    """A version's files checked: its problems (one line each, ``file:line: ...``) and, when
    there are none, the schedule and its compiled templates."""

    problems: list[str]
    schedule: Schedule | None = None
    renderer: Renderer | None = None


@contextlib.contextmanager
def checked(files: dict[str, bytes], settings: Settings) -> Iterator[Checked]:
    """``files`` checked as ``course publish`` checks the working files, in a private folder
    that stays while the block runs (the renderer reads page overrides from it)."""
    dev = settings.env == "dev"
    unpacked = Unpacked(files, prefix="course-editor-")
    inside = f"{unpacked.folder}/"
    try:
        _, problems = check_course(unpacked.schedule_path)
        if not dev:
            problems += [
                f"{p} (refused outside COURSE_ENV=dev)"
                for p in sender_problems(unpacked.schedule_path)
            ]
        problems = [p.replace(inside, "") for p in problems]
        if problems:
            yield Checked(problems)
            return
        try:
            schedule, renderer, loaded = load_contents(files, reserved_sender=dev)
        except (ScheduleError, RenderError) as exc:
            yield Checked(str(exc).splitlines())
            return
        try:
            yield Checked([], schedule, renderer)
        finally:
            loaded.close()
    finally:
        unpacked.close()


@dataclass(frozen=True)
class Impact:
    """What publishing would change, as ``course publish`` prints it."""

    lines: list[str]
    removed_soon: dict[str, int]


def impact_of(store, live_files: dict[str, bytes], new: Schedule, now: datetime) -> Impact:
    """The lessons added, removed and moved from the live version to ``new``, and who is
    affected, counted over the store at ``now``."""
    from course.reports.impact import report_lines

    old, _, unpacked = load_contents(live_files, reserved_sender=False)
    try:
        changes, found = measure_change(store, old, new, now)
    finally:
        unpacked.close()
    soon = {k: n for k, n in (found.removed_soon if found else {}).items() if n}
    return Impact(report_lines(changes, found), soon)
