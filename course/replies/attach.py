"""Attaching an inbound email to the reader who wrote it, and to the lesson it answers.

**Who.** The reply belongs to the subscriber whose address is the header From (normalised
as the store keeps addresses). The SMTP envelope's sender is not used to find them: mailing
lists and forwarders rewrite it, while the From is what the reader's mail program wrote.
Either can be forged: anyone can send an email to the course's inbound address that claims
to come from a reader. What that allows is a stranger adding a note to someone's record,
shown to the admin as that reader's reply (never mailed to anyone, never acted on). To
tell them apart, each reply keeps SendGrid's SPF and DKIM results and whether they vouch for
the From's domain (:attr:`course.replies.inbound.InboundMail.verified`); the admin pages
show an unverified reply as such.

**Which lesson.** Every lesson email's Message-ID is ``<{subscriber id}.{lesson id}@{the
sender's domain}>`` (:mod:`course.mail.render`); a reply names it in In-Reply-To or
References. The latest such id that is ours (our sending domain, this reader's own record, a
lesson the schedule has) names the lesson; a forged one can at most point at another of
the sender's lessons.

**Strangers.** An email from an address that is not a subscriber's (or was erased) is
dropped and counted, never kept: it is a non-subscriber's personal data, with no record to
export or erase it with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from course.mail.addresses import ascii_address
from course.models.reply import Reply
from course.models.schedule import CONFIRMATION_ID, Schedule
from course.replies.inbound import InboundMail
from course.replies.text import reply_text
from course.store import Store

KEPT, UNKNOWN_SENDER, DUPLICATE = "kept", "unknown_sender", "duplicate"


@dataclass(frozen=True)
class Received:
    """What became of one inbound email: ``outcome`` is :data:`KEPT`, :data:`UNKNOWN_SENDER`
    or :data:`DUPLICATE`; the reader and the lesson when known."""

    outcome: str
    subscriber_id: str = ""
    lesson_id: str = ""
    reply: Reply | None = None


def answered_lesson(mail: InboundMail, sub_id: str, schedule: Schedule) -> str:
    """The lesson the reply answers ("" none known), from the Message-IDs it names."""
    domain = ascii_address(schedule.course.from_email).rpartition("@")[2].lower()
    lessons = {email.id for email in schedule.emails}
    for message_id in mail.references:
        local, _, at = message_id.rpartition("@")
        parts = local.split(".")
        if at.lower() != domain or len(parts) < 2 or parts[0] != sub_id:
            continue
        if parts[1] in lessons and (len(parts) == 2 or parts[1] == CONFIRMATION_ID):
            return parts[1]
    return ""


def receive(store: Store, schedule: Schedule, mail: InboundMail, now: datetime) -> Received:
    """Keep ``mail`` as a reply of the subscriber it comes from (see the module's words);
    nothing is ever sent in answer."""
    sub = store.find(mail.sender)
    if sub is None:
        return Received(UNKNOWN_SENDER)
    text, trimmed = reply_text(mail.text, mail.html)
    reply = Reply(
        id=secrets.token_hex(6),
        at=round(now.timestamp(), 3),
        subject=mail.subject,
        text=text,
        lesson_id=answered_lesson(mail, sub.id, schedule),
        trimmed=trimmed,
        verified=mail.verified,
        spf=mail.spf,
        dkim=mail.dkim,
        attachments=mail.attachments,
    )
    kept = store.add_reply(sub.id, reply, mail.message_id)
    if kept == 0:  # erased between the lookup and the write: nothing is kept
        return Received(UNKNOWN_SENDER)
    if kept < 0:
        return Received(DUPLICATE, sub.id, reply.lesson_id)
    return Received(KEPT, sub.id, reply.lesson_id, reply)
