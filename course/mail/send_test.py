"""``course send-test``: one email of the course, sent to a marketer's own address.

The email is the lesson exactly as a subscriber gets it, except that:

- its subject starts with ``[TEST] `` and a note at the top says it is a test;
- its unsubscribe, pause and confirm links carry a signed token for ``TEST_SUBSCRIBER_ID``,
  which no subscriber can have (real ids are 12 hex digits): they open the site's "this
  link is not valid" page and change nothing;
- it carries no subscriber or lesson id for the provider to echo, only ``send_test``, so
  its events are not counted in the course's stats nor applied to any subscriber.

Nothing here reads or writes Redis: a test send never touches a ledger or the due index.
"""

from __future__ import annotations

import dataclasses
import html
import re
import secrets

from course.mail.render import Renderer
from course.mail.samples import render_sample, signed_recipient
from course.models.email import Email
from course.models.schedule import Lesson
from course.settings import Settings
from course.tokens import confirm_link

TEST_SUBSCRIBER_ID = "send-test"
SUBJECT_PREFIX = "[TEST] "
NOTE = (
    "This is a test send of “{lesson}”. Its unsubscribe and pause links lead to a page "
    "that changes nothing; no subscriber's course is affected."
)
_BODY_OPEN = re.compile(r"<body[^>]*>", re.IGNORECASE)


def build_test_email(
    renderer: Renderer, settings: Settings, lesson: Lesson, address: str, first_name: str | None
) -> Email:
    """``lesson`` (any kind: a lesson, the confirmation, the completion) for ``address``,
    marked as a test and with links that act on nobody."""
    recipient = signed_recipient(settings, TEST_SUBSCRIBER_ID, first_name, address)
    confirm_url = confirm_link(settings.base_url, settings.secret_key, TEST_SUBSCRIBER_ID)
    email = render_sample(renderer, lesson, recipient, confirm_url)
    note = NOTE.format(lesson=lesson.id)
    domain = email.from_email.rpartition("@")[2] or "localhost"
    return dataclasses.replace(
        email,
        subject=SUBJECT_PREFIX + email.subject,
        text=f"[{note}]\n\n{email.text}",
        html=_with_banner(email.html, note),
        message_id=f"<{TEST_SUBSCRIBER_ID}.{lesson.id.replace(':', '-')}."
        f"{secrets.token_hex(6)}@{domain}>",
        custom_args={"send_test": "1"},
    )


def _with_banner(page: str, note: str) -> str:
    banner = (
        '<div style="margin:0;padding:10px 16px;background:#fff3cd;color:#5c4400;'
        f'font:14px/1.4 Arial,sans-serif;border-bottom:1px solid #e0c46c">{html.escape(note)}</div>'
    )
    found = _BODY_OPEN.search(page)
    if found is None:
        return banner + page
    return page[: found.end()] + banner + page[found.end() :]
