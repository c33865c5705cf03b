"""The REST API's request and response bodies (Pydantic), which ``/openapi.json`` describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from course.web.roadmap_form import TIME_PATTERN

Pace = Literal["standard", "gentle"]
SEND_TIME = Field(None, pattern=f"^{TIME_PATTERN}$", description="local time lessons arrive, HH:MM")
ZONE = Field(None, max_length=64, description="IANA time zone, e.g. Europe/Berlin")
NAME = Field(None, max_length=80, description="a first name (letters; at most three words)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewSubscriber(Strict):
    """A signup. Without ``confirmed`` it is the signup form's double opt-in: a confirmation
    email, nothing else until it is confirmed. ``confirmed: true`` (a write token, with
    ``consent_source``) enrols the address as active at once, as an import does."""

    email: str = Field(max_length=254, json_schema_extra={"format": "email"})
    first_name: str | None = NAME
    timezone: str | None = ZONE
    pace: Pace | None = None
    send_time: str | None = SEND_TIME
    confirmed: bool = False
    consent_source: str | None = Field(
        None, max_length=200, description="where they gave consent (required with confirmed)"
    )


class SubscriberChange(Strict):
    """Fields to change; a field left out keeps its value (``first_name: ""`` clears it)."""

    first_name: str | None = NAME
    timezone: str | None = ZONE
    pace: Pace | None = None
    send_time: str | None = SEND_TIME


class Pause(Strict):
    until: datetime | None = Field(
        None, description="resume by itself then (ISO 8601 with offset); none: until resumed"
    )


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str


class NextLesson(BaseModel):
    lesson_id: str
    send_at: str


class LessonState(BaseModel):
    model_config = ConfigDict(extra="allow")

    lesson_id: str
    phase_id: str
    state: str
    day: int | None = None
    at: str | None = None
    due_at: str | None = None
    attempt: int | None = None
    detail: str | None = None


class SubscriberOut(BaseModel):
    """What ``course subscribers show --json`` prints for one subscriber."""

    model_config = ConfigDict(extra="allow")

    id: str
    email: str
    first_name: str | None
    status: str
    timezone: str
    pace: str
    send_time: str
    next_lesson: NextLesson | None
    created_at: str | None
    started_at: str | None
    paused_seconds: float
    paused_until: str | None
    source: str | None
    consent: dict[str, Any]
    lessons: list[LessonState]


class LedgerEntryOut(BaseModel):
    lesson_id: str
    state: str = Field(description="sending, sent, failed, skipped, uncertain, ...")
    at: str
    attempt: int
    detail: str


class SampleReader(BaseModel):
    id: str
    email: str = Field(description="masked: a…@example.com")
    status: str


class SegmentCountOut(BaseModel):
    expression: str
    count: int
    total: int = Field(description="readers looked at")
    sample: list[SampleReader]


class NewBroadcast(Strict):
    """A draft broadcast, as ``course broadcast create`` makes it; nothing is sent until
    ``POST /api/v1/broadcasts/{id}/send``."""

    template: str = Field(max_length=200, description="a file of templates/broadcasts/, "
                          "e.g. broadcasts/program-open.md")  # fmt: skip
    subject: str = Field(max_length=1000, description="the email's subject: one line")
    to: str = Field(max_length=2000, description="the segment, e.g. 'status:completed'")
    at_local: str | None = Field(None, max_length=5, description="HH:MM in each reader's own "
                                 "zone; none: at once")  # fmt: skip
    include_paused: bool = Field(False, description="also readers who paused the course")


class BroadcastCounts(BaseModel):
    """As ``course broadcast status --json``: the ledger's outcomes and the provider's events."""

    model_config = ConfigDict(extra="allow")

    claimed: int = Field(description="recipients claimed (each reader once)")
    sent: int
    failed: int
    uncertain: int
    skipped: int = Field(description="unsubscribed or suppressed before their send, or cancelled")
    waiting: int = Field(description="claimed, not sent yet")
    retried: int
    click: int
    unsubscribe: int


class BroadcastOut(BaseModel):
    """What ``course broadcast status --json`` prints."""

    id: str
    status: Literal["draft", "sending", "sent", "cancelled"]
    subject: str
    template: str
    to: str
    at_local: str | None
    include_paused: bool
    created: str
    sent_at: str | None
    counts: BroadcastCounts


class SendOut(BaseModel):
    """What one send did: a second send (or one after the last claim) claims nobody."""

    broadcast: BroadcastOut
    matched: int = Field(description="readers the segment chose who may be mailed")
    claimed: int = Field(description="claimed by this request")
    already: int = Field(description="claimed before (an earlier send)")
    refused: int = Field(description="changed status between the read and the claim")
    was_sent: bool = Field(description="sent before this request: nothing was done")
    first_at: datetime | None = Field(description="the earliest send instant claimed")
    last_at: datetime | None = Field(description="the latest send instant claimed")


class CancelOut(BaseModel):
    broadcast: BroadcastOut
    stopped: int = Field(description="claims not yet handed to the provider, now skipped")


class BroadcastTestIn(Strict):
    to: str = Field(max_length=254, json_schema_extra={"format": "email"},
                    description="where the test goes (your own address)")  # fmt: skip


class BroadcastTestOut(BaseModel):
    to: str
    subject: str = Field(description="marked [TEST]")
    provider_message_id: str | None


class ErrorOut(BaseModel):
    error: str
    field: str | None = None


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for the OpenAPI description."""
    what = {
        401: "no bearer token, or not a valid one (WWW-Authenticate: Bearer)",
        403: "a read token asked to change something",
        404: "no such subscriber or broadcast",
        409: "not possible in the subscriber's or broadcast's state",
        422: "a field is not valid (named in field)",
        429: "too many requests for this token (Retry-After)",
        502: "the email provider did not take the test email",
        503: "Redis or the course is not available (Retry-After)",
    }
    return {code: {"model": ErrorOut, "description": what[code]} for code in (401, 429, *codes)}
