"""Emails for a reader who does not exist: the one place a sample recipient and a sample email
are made. The renderer's self-check, the content checks (``course validate``), the preview and
gallery (``course preview``, the admin pages) and ``course send-test`` all use it.

Also here: the gallery, every email rendered for a sample reader, for people to look at.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from course.models.email import Email, Recipient
from course.models.schedule import CONFIRMATION, LESSON, Lesson, Schedule
from course.settings import Settings
from course.tokens import subscriber_links

SAMPLE_ID = "sample"  # the content checks' reader
PREVIEW_ID = "preview"  # the reader of previews and the gallery (links signed for this id)
SAMPLE_ADDRESS = "reader@example.com"
SAMPLE_FIRST_NAME = "Alex"
# Links that look real and lead nowhere (.invalid never resolves).
SAMPLE_LINKS = {
    "unsubscribe_url": "https://course.invalid/unsubscribe/sample-token",
    "pause_url": "https://course.invalid/pause/sample-token",
    "roadmap_url": "https://course.invalid/me/sample-token",
}
SAMPLE_CONFIRM_URL = "https://course.invalid/confirm/sample-token"


class EmailRenderer(Protocol):
    """What a sample needs of :class:`course.mail.render.Renderer`."""

    def render(self, lesson_id: str, recipient: Recipient) -> Email: ...

    def render_confirmation(self, recipient: Recipient, confirm_url: str) -> Email: ...


def sample_recipient(
    subscriber_id: str = SAMPLE_ID,
    first_name: str | None = SAMPLE_FIRST_NAME,
    *,
    address: str = SAMPLE_ADDRESS,
    links: Mapping[str, str] = SAMPLE_LINKS,
) -> Recipient:
    """A reader who does not exist; ``links`` holds ``unsubscribe_url``, ``pause_url`` and
    ``roadmap_url``."""
    return Recipient(
        subscriber_id=subscriber_id,
        email=address,
        first_name=first_name or None,
        unsubscribe_url=links["unsubscribe_url"],
        pause_url=links["pause_url"],
        roadmap_url=links["roadmap_url"],
    )


SAMPLE = sample_recipient()


def signed_recipient(
    settings: Settings, subscriber_id: str, first_name: str | None, address: str = SAMPLE_ADDRESS
) -> Recipient:
    """A sample reader whose links are signed for ``subscriber_id``, so they open the site's
    own pages (an id no subscriber has makes them change nothing)."""
    links = subscriber_links(settings.base_url, settings.secret_key, subscriber_id)
    return sample_recipient(subscriber_id, first_name, address=address, links=links)


def render_sample(
    renderer: EmailRenderer,
    lesson: Lesson,
    recipient: Recipient = SAMPLE,
    confirm_url: str = SAMPLE_CONFIRM_URL,
    variant: str | None = None,
) -> Email:
    """``lesson`` (of any kind: a lesson, the confirmation, the completion) as ``recipient``
    would get it; ``confirm_url`` is the confirmation email's link. A subject experiment's
    lesson shows the subject of ``variant``, by default its first (the lesson's subject)."""
    if lesson.kind == CONFIRMATION:
        return renderer.render_confirmation(recipient, confirm_url)
    email = renderer.render(lesson.id, recipient)
    if not lesson.subject_variants:
        return email
    letter = variant or "a"
    args = {**email.custom_args, "variant": letter}
    return dataclasses.replace(email, subject=lesson.subject_for(letter), custom_args=args)


def sample_email(
    renderer: EmailRenderer,
    settings: Settings,
    lesson: Lesson,
    first_name: str,
    variant: str | None = None,
) -> Email:
    """``lesson`` (of any kind) as a sample subscriber gets it, with working-looking links
    (with the subject of ``variant`` for a subject experiment's lesson)."""
    recipient = signed_recipient(settings, PREVIEW_ID, first_name)
    return render_sample(renderer, lesson, recipient, variant=variant)


def write_gallery(
    schedule: Schedule,
    renderer: EmailRenderer,
    settings: Settings,
    folder: Path,
    first_name: str,
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
