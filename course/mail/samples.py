"""Rendering for people to look at: one email, or a gallery of them all, for a sample reader."""

from __future__ import annotations

import html
import os
from pathlib import Path

from course.mail.checks import sample_email as render_sample
from course.mail.render import Recipient, Renderer
from course.models.email import Email
from course.schedule import CONFIRMATION, LESSON, Lesson, Schedule
from course.settings import Settings
from course.tokens import subscriber_links

SAMPLE_ID = "preview"


def sample_recipient(settings: Settings, first_name: str) -> Recipient:
    return Recipient(
        subscriber_id=SAMPLE_ID,
        email="reader@example.com",
        first_name=first_name or None,
        **subscriber_links(settings.base_url, settings.secret_key, SAMPLE_ID),
    )


def sample_email(renderer: Renderer, settings: Settings, lesson: Lesson, first_name: str) -> Email:
    """``lesson`` (of any kind) as a sample subscriber gets it, with working-looking links."""
    return render_sample(renderer, lesson, sample_recipient(settings, first_name))


def write_gallery(
    schedule: Schedule, renderer: Renderer, settings: Settings, folder: Path, first_name: str
) -> Path:
    """Every email, HTML and text, plus an index page; returns the index's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for position, lesson in enumerate(schedule.emails):
        email = sample_email(renderer, settings, lesson, first_name)
        stem = f"{position:02d}-{lesson.id}"
        _write(folder / f"{stem}.html", email.html)
        _write(folder / f"{stem}.txt", email.text)
        rows.append(_row(schedule, lesson, stem))
    index = folder / "index.html"
    _write(index, _INDEX.format(title=html.escape(schedule.course.name), rows="\n".join(rows)))
    return index


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _row(schedule: Schedule, lesson: Lesson, stem: str) -> str:
    if lesson.kind == LESSON:
        when = f"day {lesson.day}"
        where = html.escape(schedule.phase(lesson.phase_id).title)
    elif lesson.kind == CONFIRMATION:
        when, where = "at signup", "Confirmation (double opt-in)"
    else:
        when, where = f"day {lesson.day}", "Course complete"
    cta = " · call to action" if lesson.call_to_action else ""
    return (
        f'<li><a class="subject" href="{stem}.html">{html.escape(lesson.subject)}</a>'
        f' <a class="text" href="{stem}.txt">text</a>'
        f'<span class="meta">{when} · {where}{cta} · <code>{html.escape(lesson.id)}</code></span>'
        f'<span class="preheader">{html.escape(lesson.preheader)}</span></li>'
    )


_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: every email</title>
<style>
  body {{ margin: 0; padding: 24px 16px; background: #f4f1ec; color: #2b2a28;
         font: 17px/1.5 -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; }}
  main {{ max-width: 760px; margin: 0 auto; }}
  h1 {{ font-family: Georgia, 'Times New Roman', serif; font-weight: normal; }}
  ol {{ padding-left: 28px; }}
  li {{ margin: 0 0 16px 0; }}
  a {{ color: #2f6f62; }}
  .subject {{ font-weight: bold; }}
  .text {{ font-size: 14px; margin-left: 8px; }}
  .meta, .preheader {{ display: block; font-size: 14px; color: #6b645a; }}
  .preheader {{ font-style: italic; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>Every email in the order a subscriber receives it, rendered for a sample subscriber.</p>
<ol start="0">
{rows}
</ol>
</main>
</body>
</html>
"""
