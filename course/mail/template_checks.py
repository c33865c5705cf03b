"""Every template of a course checked on its own, for ``course validate``.

The renderer stops at a course's first template mistake, which is right for a worker loading a
schedule. ``validate`` wants them all at once, and wants them even when the schedule file has
mistakes of its own: so each layout and each lesson or email template is checked by itself
(syntax, unsafe access, unknown variables, a trial fill), one line per template with file and
line. Pure: reads only the template files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from course.mail.environments import fill_environment
from course.mail.render import HTML_LAYOUT, TEXT_LAYOUT, read_template
from course.mail.trial import check_layout, check_source
from course.mail.variables import RenderError

# The progress line a trial fill shows: its value never changes what a check finds.
TRIAL_PROGRESS = "Phase 1 of 1 · lesson 1 of 1"


def check_templates(
    templates_dir: Path, named: Iterable[tuple[str, str]], display: Callable[[Path], str] = str
) -> list[str]:
    """The first mistake of each layout and of each template in ``named`` ((path inside
    ``templates_dir``, kind of email) pairs), one line each, layouts first. A named template
    that is not there is left to the schedule's own check ("template not found")."""
    fill_html = fill_environment(autoescape=True)
    fill_text = fill_environment(autoescape=False)
    problems = []
    for layout, env in ((HTML_LAYOUT, fill_html), (TEXT_LAYOUT, fill_text)):
        path = templates_dir / layout
        try:
            check_layout(display(path), read_template(path, display(path)), env)
        except RenderError as exc:
            problems.append(str(exc))
    for template, kind in dict.fromkeys(named):
        path = templates_dir / template
        if not path.is_file():
            continue
        try:
            source = read_template(path, display(path))
            check_source(display(path), source, fill_html, kind, TRIAL_PROGRESS)
        except RenderError as exc:
            problems.append(str(exc))
    return problems
