"""The double opt-in email: sent by a worker (``course.confirmation``), never by the web app.

A signup is a pending record; this email carries the link (valid for seven days) that makes
it active. Nothing else goes to a pending address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from course.mail.render import Recipient, Renderer
from course.models.schedule import CONFIRMATION_ID
from course.settings import Settings
from course.store import Store
from course.tokens import confirm_link, subscriber_links
from course.transport import Transport

log = logging.getLogger("course.confirmation")


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
    links = subscriber_links(settings.base_url, settings.secret_key, sub.id)
    recipient = Recipient.for_subscriber(sub, links)
    url = confirm_link(settings.base_url, settings.secret_key, sub.id)
    try:
        email = renderer.render_confirmation(recipient, url)
    except KeyError:
        log.error("confirmation subscriber=%s outcome=failed reason=no confirmation email "
                  "in the schedule", sub.id)  # fmt: skip
        return Outcome(False, "no confirmation email in the schedule")
    result = transport.send(email)
    store.count_send(CONFIRMATION_ID, "sent")  # not in any ledger: counted for course stats
    return Outcome(True, "sent", result.provider_message_id)
