"""A lesson's online copy: its body as the reader's email had it, for their own page
(``GET /me/{token}/lessons/{lesson_id}``).

The body is the compiled lesson's own (:attr:`CompiledLesson.body`: the Markdown as HTML,
without the email's layout or inlined CSS) filled for the reader exactly as their email was
(first name, links), so the page can frame it in the site's look. The web app renders it
from the version of the course that was live when the email was sent
(course.schedule.past), so an edit published since does not change what the reader got.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from markupsafe import Markup

from course.mail.render import Renderer, RenderError
from course.models.email import Recipient
from course.models.schedule import CallToAction, Lesson, Schedule


@dataclass(frozen=True)
class OnlineLesson:
    """What the lesson page shows."""

    lesson: Lesson
    progress: str  # "Phase 2 of 4 · lesson 7 of 21"; "" for the completion email
    body: Markup  # the lesson's HTML, filled for the reader (escaped as in the email)
    call_to_action: CallToAction | None


def online_lesson(
    schedule: Schedule, renderer: Renderer, lesson: Lesson, recipient: Recipient
) -> OnlineLesson:
    """``lesson`` as ``recipient`` was sent it (:class:`RenderError` if it cannot be filled)."""
    compiled = renderer.compiled(lesson.id)
    try:
        body = compiled.body.render(compiled.context(recipient))
    except jinja2.TemplateError as exc:
        raise RenderError(f"{compiled.source_name}: {exc}") from None
    cta = schedule.course.call_to_action
    return OnlineLesson(
        lesson=lesson,
        progress=compiled.progress,
        body=Markup(body),  # filled by the sandboxed fill environment, which escapes values
        call_to_action=cta if cta and lesson.call_to_action else None,
    )
