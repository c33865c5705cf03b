"""An outgoing email, independent of how it is delivered, and the recipient it is made for.

:data:`MAIL_POLICY` writes its MIME form: Python's default policy, except that the
``List-Unsubscribe`` headers are written raw (see :class:`MailPolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from course.models.subscriber import Subscriber

# Read by mailbox providers as written: they do not decode RFC 2047 encoded-words in them.
RAW_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class MailPolicy(EmailPolicy):
    """Python's default email policy, except for :data:`RAW_HEADERS`: written as given, folded
    only at whitespace, never encoded.

    The default policy folds a header longer than 78 columns, and a word too long to fold (an
    unsubscribe URL with its signed token is about 150 characters) becomes an RFC 2047
    encoded-word (``=?utf-8?q?=3Chttps=3A//...``): Gmail and Yahoo do not decode it there, so
    the one-click unsubscribe they require is lost. Every other header (a Subject with non-ASCII
    text, names in addresses) is still encoded by the default rules.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in RAW_HEADERS and str(value).isascii():
            return self._fold_at_spaces(name, str(value))
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in RAW_HEADERS and str(value).isascii():
            return self._fold_at_spaces(name, str(value)).encode("ascii")
        return super().fold_binary(name, value)

    def _fold_at_spaces(self, name: str, value: str) -> str:
        # CR and LF never get here: storing a header with them raises ValueError.
        limit = self.max_line_length or 0
        head = f"{name}:"
        lines = [head]
        for word in value.split():
            if limit and len(lines[-1]) + 1 + len(word) > limit and lines[-1] != head:
                lines.append(f" {word}")  # a continuation line starts with whitespace
            else:
                lines[-1] += f" {word}"
        return self.linesep.join(lines) + self.linesep


MAIL_POLICY = MailPolicy()


@dataclass(frozen=True)
class Recipient:
    """Who one email goes to, with the links signed for them."""

    subscriber_id: str
    email: str
    first_name: str | None
    unsubscribe_url: str
    pause_url: str
    roadmap_url: str  # the reader's Roadmap page; ``/lessons/{id}`` under it is a lesson online

    @classmethod
    def for_subscriber(cls, sub: Subscriber, links: Mapping[str, str]) -> Recipient:
        """The recipient of an email to ``sub``, with ``links`` signed for them
        (:func:`course.tokens.subscriber_links`: ``unsubscribe_url``, ``pause_url``,
        ``roadmap_url``)."""
        return cls(subscriber_id=sub.id, email=sub.email, first_name=sub.first_name, **links)


@dataclass(frozen=True)
class Email:
    """One rendered email for one recipient.

    ``headers`` holds the extra headers every transport must carry (``Message-ID``,
    ``List-Unsubscribe``, ``List-Unsubscribe-Post``); ``custom_args`` are string values
    that SendGrid echoes back in its events (subscriber and lesson ids).
    """

    to_email: str
    from_email: str
    subject: str
    text: str
    html: str
    message_id: str
    to_name: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)

    def to_mime(self, date: float | None = None) -> EmailMessage:
        """The RFC 5322 message: text/plain first, then text/html, as alternatives; written with
        :data:`MAIL_POLICY` (``List-Unsubscribe`` raw) by ``as_bytes`` and by ``smtplib``."""
        msg = EmailMessage(policy=MAIL_POLICY)
        msg["From"] = Address(self.from_name or "", addr_spec=self.from_email)
        msg["To"] = Address(self.to_name or "", addr_spec=self.to_email)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = self.subject
        msg["Date"] = formatdate(date, usegmt=True)
        msg["Message-ID"] = self.message_id
        for name, value in self.headers.items():
            if name.lower() != "message-id":
                msg[name] = value
        for name, value in self.custom_args.items():
            msg[f"X-Course-{name.replace('_', '-').title()}"] = value
        msg.set_content(self.text, subtype="plain", charset="utf-8")
        msg.add_alternative(self.html, subtype="html", charset="utf-8")
        return msg
