"""Rendering for people to look at: a lesson for a sample subscriber."""

from __future__ import annotations

from course.message import Email
from course.render import Recipient, Renderer
from course.settings import Settings
from course.tokens import subscriber_links

SAMPLE_ID = "preview"


def sample_email(renderer: Renderer, settings: Settings, lesson_id: str, first_name: str) -> Email:
    recipient = Recipient(
        subscriber_id=SAMPLE_ID,
        email="reader@example.com",
        first_name=first_name or None,
        **subscriber_links(settings.base_url, settings.secret_key, SAMPLE_ID),
    )
    return renderer.render(lesson_id, recipient)
