"""What every transport is: the :class:`Transport` protocol and the :class:`SendResult` a send
returns (failures are the three errors of :mod:`course.transport.errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from course.mail.grouping import EmailGroup
from course.models.email import Email


@dataclass(frozen=True)
class SendResult:
    """What the provider calls the message it accepted (file stem, Message-ID or X-Message-Id)."""

    provider_message_id: str


class Transport(Protocol):
    """Hands emails to a provider. ``send`` and ``send_group`` raise only the three errors
    of :mod:`course.transport.errors`."""

    name: str
    # Whether several threads may send at once, each request independent of the others.
    # A transport that queues its sends behind one connection (SMTP) must say False: sends
    # marked as started would wait their turn, long enough to look like a dead worker.
    concurrent: bool
    # Most emails of one lesson it takes in one request (``send_group``); 1: one at a time.
    max_group: int

    def send(self, email: Email) -> SendResult: ...

    def send_group(self, group: EmailGroup) -> SendResult:
        """Hand over every member of ``group`` in one request: accepted or refused together
        (only called when ``max_group`` is above 1)."""
        ...

    def close(self) -> None: ...
