"""A reader's reply to one of the course's emails, as kept with their record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from course.models.subscriber import to_instant


@dataclass(frozen=True)
class Reply:
    """One reply: its words (plain text, the quote trimmed, capped), the lesson it answered
    ("" unknown) and what SendGrid's checks said of the sender. Attachments are only counted.

    ``verified`` False means the From address may have been forged: anyone can send an
    email that claims to come from a reader (see :mod:`course.replies.attach`)."""

    id: str
    at: float  # epoch seconds it arrived
    subject: str
    text: str
    lesson_id: str = ""
    trimmed: bool = False  # the quoted email below the reply was cut off
    verified: bool = False
    spf: str = ""
    dkim: str = ""
    attachments: int = 0

    @property
    def when(self) -> datetime:
        return to_instant(self.at)

    def as_dict(self) -> dict:
        return asdict(self)
