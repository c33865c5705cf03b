"""The double opt-in email: sent by a worker (``course.confirmation``), never by the web app.

A signup is a pending record; this email carries the link (valid for seven days) that makes
it active. Nothing else goes to a pending address.
"""

from __future__ import annotations

import html
import logging
import secrets
from dataclasses import dataclass

from course.message import Email
from course.render import Recipient, Renderer
from course.settings import Settings
from course.store import Store
from course.tokens import confirm_link, subscriber_links
from course.transport import Transport

log = logging.getLogger("course.confirmation")


def confirmation_email(renderer: Renderer, recipient: Recipient, confirm_url: str) -> Email:
    """The confirmation email for ``recipient`` (the one place it is made)."""
    return _standin_confirmation(renderer, recipient, confirm_url)


def _standin_confirmation(renderer: Renderer, recipient: Recipient, confirm_url: str) -> Email:
    """TEMPORARY stand-in until ``Renderer.render_confirmation`` lands from main."""
    course = renderer._schedule.course
    name = recipient.first_name or "there"
    text = (
        f"Hi {name},\n\nPlease confirm that you want {course.name}: {confirm_url}\n\n"
        "The link works for seven days. If you did not sign up, ignore this email and "
        "nothing more will come.\n"
    )
    body = (
        f"<p>Hi {html.escape(name)},</p><p>Please confirm that you want "
        f'{html.escape(course.name)}: <a href="{html.escape(confirm_url)}">confirm my '
        "subscription</a>.</p><p>The link works for seven days. If you did not sign up, "
        "ignore this email and nothing more will come.</p>"
    )
    domain = course.from_email.rpartition("@")[2]
    return Email(
        to_email=recipient.email,
        to_name=recipient.first_name,
        from_email=course.from_email,
        from_name=course.from_name,
        reply_to=course.reply_to,
        subject=f"Please confirm: {course.name}",
        text=text,
        html=f"<!DOCTYPE html><html><body>{body}</body></html>",
        message_id=f"<{recipient.subscriber_id}.confirm.{secrets.token_hex(4)}@{domain}>",
        custom_args={"subscriber_id": recipient.subscriber_id},
    )


@dataclass(frozen=True)
class Outcome:
    sent: bool
    reason: str  # "sent", or why not: "unknown", "not pending"
    provider_message_id: str = ""


def send_confirmation(
    store: Store, renderer: Renderer, transport: Transport, settings: Settings, sub_id: str
) -> Outcome:
    """Send the confirmation email to a pending subscriber; anyone else gets nothing.

    Transport errors propagate (the task retries transient ones)."""
    sub = store.get(sub_id)
    if sub is None:
        return Outcome(False, "unknown")
    if sub.status != "pending":
        return Outcome(False, "not pending")
    recipient = Recipient(
        subscriber_id=sub.id,
        email=sub.email,
        first_name=sub.first_name,
        **subscriber_links(settings.base_url, settings.secret_key, sub.id),
    )
    url = confirm_link(settings.base_url, settings.secret_key, sub.id)
    result = transport.send(confirmation_email(renderer, recipient, url))
    return Outcome(True, "sent", result.provider_message_id)
