"""The operations on broadcasts, as the CLI, the admin pages and the API call them: each
takes the store, the schedule (and its renderer) and ``now``; none reads the clock.

- :func:`create_broadcast` checks everything before storing a draft: the template renders
  in the course's layout, the subject is one line, the segment parses.
- :func:`send_broadcast` walks the segment a page at a time and claims each recipient in
  their own ledger (``b:{id}``): at most once per reader whatever happens, so running it
  again, or after a crash mid-way, claims nobody twice. The tick's pending pass hands each
  claim to a worker when its instant comes (at once, or the reader's local hour).
- :func:`cancel_broadcast` stops what has not been handed to the provider.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, time
from pathlib import Path, PurePosixPath
from typing import Protocol

from course.broadcasts.mail import BroadcastRenderer, broadcast_lesson, compile_broadcast
from course.broadcasts.timing import reader_zone, send_instant
from course.engine.ports import Messenger
from course.mail.render import Renderer, RenderError, read_template
from course.mail.samples import sample_email
from course.mail.send_test import build_test_email
from course.models.broadcast import (
    CANCELLED,
    DRAFT,
    SENDING,
    SENT,
    Broadcast,
    ClaimCounts,
    broadcast_of,
)
from course.models.email import Email
from course.models.schedule import Schedule
from course.models.segment import Needs, ReaderFacts
from course.segments.evaluate import needs, predicate
from course.segments.language import SegmentError, parse
from course.settings import Settings
from course.transport import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from course.webhooks.events import NO_EVENTS, EventSink

MAILABLE = frozenset({"active", "completed"})
MAX_SUBJECT = 200
CANCELLED_DETAIL = "cancelled"


class BroadcastError(Exception):
    """A broadcast cannot be made or changed: one line saying why. ``usage`` marks a
    mistake in what was asked (exit status 2; HTTP 400/422) rather than a failed check."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


class NoSuchBroadcast(BroadcastError):
    def __init__(self, broadcast_id: str):
        super().__init__(f"no broadcast {broadcast_id!r}", usage=True)


class BroadcastStore(Protocol):
    """What the operations need of :class:`course.store.Store`."""

    def add_broadcast(self, b: Broadcast) -> None: ...
    def broadcast(self, broadcast_id: str) -> Broadcast | None: ...
    def broadcast_ids(self, limit: int = ...) -> list[str]: ...
    def broadcasts(self, ids: list[str]) -> list[Broadcast]: ...
    def set_broadcast_status(self, broadcast_id: str, status: str, allowed: tuple[str, ...],
                             now: float | None = ...) -> str | None: ...  # fmt: skip
    def claim_broadcast_many(self, b: Broadcast, recipients: list[tuple[str, float]],
                             now: float) -> ClaimCounts: ...  # fmt: skip
    def broadcast_waiting(self, broadcast_id: str) -> list[tuple[str, str]]: ...
    def skip_entries(self, items: list[tuple[str, str]], now: float, why: str,
                     batch: int = ...) -> int: ...  # fmt: skip
    def reader_facts(self, needs: Needs, batch: int = ...) -> Iterator[list[ReaderFacts]]: ...


# -- create -----------------------------------------------------------------------------------


def template_choices(templates_dir: Path) -> list[str]:
    """The broadcast templates on disk (``broadcasts/*.md``), as ``--template`` takes them."""
    folder = templates_dir / "broadcasts"
    return sorted(f"broadcasts/{p.name}" for p in folder.glob("*.md")) if folder.is_dir() else []


def read_broadcast_template(templates_dir: Path, template: str) -> str:
    """The text of ``template`` (relative to the templates folder, a ``.md`` file inside it)."""
    rel = PurePosixPath(template.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or rel.suffix != ".md" or not rel.parts:
        raise BroadcastError(f"template: a .md file under templates/ is expected: {template!r}",
                             usage=True)  # fmt: skip
    try:
        return read_template(templates_dir / rel, f"templates/{rel}")
    except RenderError as exc:
        raise BroadcastError(str(exc)) from None


def create_broadcast(
    store: BroadcastStore,
    schedule: Schedule,
    renderer: Renderer,
    templates_dir: Path,
    *,
    template: str,
    subject: str,
    expression: str,
    at_local: time | None,
    include_paused: bool,
    now: datetime,
) -> Broadcast:
    """Check and store a new draft broadcast; :class:`BroadcastError` says what is wrong."""
    subject = subject.strip()
    if not subject or "\n" in subject or "\r" in subject or len(subject) > MAX_SUBJECT:
        raise BroadcastError(f"subject: one line of 1 to {MAX_SUBJECT} characters", usage=True)
    try:
        parse(expression, schedule)
    except SegmentError as exc:
        raise BroadcastError(f"segment: {exc}", usage=True) from None
    source = read_broadcast_template(templates_dir, template)
    b = Broadcast(id=secrets.token_hex(4), template=str(PurePosixPath(template)),
                  subject=subject, source=source, expression=expression.strip(),
                  at_local=at_local, include_paused=include_paused, status=DRAFT,
                  created=now.timestamp())  # fmt: skip
    try:
        compile_broadcast(renderer, b)
    except RenderError as exc:
        raise BroadcastError(str(exc)) from None
    store.add_broadcast(b)
    return b


def get_broadcast(store: BroadcastStore, broadcast_id: str) -> Broadcast:
    found = store.broadcast(broadcast_id) if broadcast_id.isalnum() else None
    if found is None:
        raise NoSuchBroadcast(broadcast_id)
    return found


def list_broadcasts(store: BroadcastStore, limit: int = 200) -> list[Broadcast]:
    """The newest broadcasts first, with their counts."""
    return store.broadcasts(store.broadcast_ids(limit))


# -- preview and test -------------------------------------------------------------------------


def preview_email(
    store: BroadcastStore, renderer: Renderer, settings: Settings, broadcast_id: str,
    first_name: str | None,
) -> Email:  # fmt: skip
    """The broadcast's email as a sample reader gets it (links signed for nobody)."""
    b = get_broadcast(store, broadcast_id)
    try:
        mail = BroadcastRenderer(renderer, [b], strict=True)
    except RenderError as exc:
        raise BroadcastError(str(exc)) from None
    return sample_email(mail, settings, broadcast_lesson(b), first_name or "")


def send_test_email(
    store: BroadcastStore, renderer: Renderer, settings: Settings, transport: Messenger,
    broadcast_id: str, address: str, first_name: str | None,
) -> tuple[Email, SendResult]:  # fmt: skip
    """Send the broadcast once to ``address`` as ``course send-test`` does a lesson: subject
    marked [TEST], links that act on nobody, no subscriber or ledger touched."""
    b = get_broadcast(store, broadcast_id)
    try:
        mail = BroadcastRenderer(renderer, [b], strict=True)
    except RenderError as exc:
        raise BroadcastError(str(exc)) from None
    email = build_test_email(mail, settings, broadcast_lesson(b), address, first_name)  # type: ignore[arg-type]
    try:
        return email, transport.send(email)
    except (TransientSendError, PermanentSendError, UncertainSendError) as exc:
        raise BroadcastError(f"{settings.transport}: not sent: {exc.reason}") from None


# -- send -------------------------------------------------------------------------------------


@dataclass
class SendReport:
    broadcast: Broadcast
    matched: int = 0  # readers the segment chose who may be mailed
    claimed: int = 0  # claimed by this run
    already: int = 0  # claimed before (an earlier run)
    refused: int = 0  # changed status between the read and the claim
    stopped: bool = False  # cancelled while claiming
    was_sent: bool = False  # sent before this run: nothing was done
    first_at: datetime | None = None  # the earliest and latest send instants claimed
    last_at: datetime | None = None


def send_broadcast(
    store: BroadcastStore,
    schedule: Schedule,
    broadcast_id: str,
    now: datetime,
    batch: int = 1000,
    events: EventSink = NO_EVENTS,
) -> SendReport:
    """Claim every reader the broadcast's segment chooses (see the module's docstring).
    Idempotent: a sent broadcast claims nobody more; a run cut short is finished by the next.
    The run that finishes the claiming emits ``broadcast.sent`` (once per broadcast)."""
    b = get_broadcast(store, broadcast_id)
    before = store.set_broadcast_status(b.id, SENDING, (DRAFT, SENDING), now.timestamp())
    if before == SENT:
        return SendReport(b, was_sent=True)
    if before == CANCELLED:
        raise BroadcastError(f"broadcast {b.id} was cancelled")
    try:
        node = parse(b.expression, schedule)
    except SegmentError as exc:  # the schedule changed since it was created
        raise BroadcastError(f"segment: {exc}") from None
    test = predicate(node)
    wanted = needs(node)
    if b.at_local is not None:
        wanted = replace(wanted, fields=wanted.fields | {"tz"})
    mailable = MAILABLE | {"paused"} if b.include_paused else MAILABLE
    default_zone = schedule.course.timezone
    report = SendReport(b)
    for page in store.reader_facts(wanted, batch):
        recipients = []
        for facts in page:
            if facts.status in mailable and test(facts):
                at = send_instant(now, b.at_local, reader_zone(facts.tz, default_zone))
                recipients.append((facts.id, at.timestamp()))
                report.first_at = min(report.first_at or at, at)
                report.last_at = max(report.last_at or at, at)
        report.matched += len(recipients)
        counts = store.claim_broadcast_many(b, recipients, now.timestamp())
        report.claimed += counts.claimed
        report.already += counts.already
        report.refused += counts.refused
        if counts.stopped:
            report.stopped = True
            return report
    finished = store.set_broadcast_status(b.id, SENT, (SENDING,)) == SENDING
    report.broadcast = get_broadcast(store, b.id)
    if finished:  # every recipient claimed; each email goes at its own instant
        data = {"broadcast": b.id, "recipients": report.broadcast.claimed}
        events.emit("broadcast.sent", data, now)
    return report


# -- cancel -----------------------------------------------------------------------------------


def cancel_broadcast(store: BroadcastStore, broadcast_id: str, now: datetime) -> int:
    """Cancel a broadcast: nobody more is claimed, and every claim not yet handed to the
    provider (claimed, or waiting for a retry) is marked skipped. How many were stopped."""
    b = get_broadcast(store, broadcast_id)
    store.set_broadcast_status(b.id, CANCELLED, (DRAFT, SENDING, SENT, CANCELLED))
    return store.skip_entries(store.broadcast_waiting(b.id), now.timestamp(), CANCELLED_DETAIL)


def drop_cancelled(
    store: BroadcastStore, items: list[tuple[str, str]], now: datetime
) -> tuple[list[tuple[str, str]], list[Broadcast]]:
    """A delivery batch without the entries of cancelled broadcasts (marked skipped if still
    claimed), and the broadcasts it still holds, for its renderer."""
    ids = sorted({bid for _, lesson in items if (bid := broadcast_of(lesson))})
    if not ids:
        return items, []
    found = {b.id: b for b in store.broadcasts(ids)}

    def stopped(lesson: str) -> bool:
        bid = broadcast_of(lesson)
        return bid is not None and (bid not in found or found[bid].status == CANCELLED)

    gone = [(sub_id, lesson) for sub_id, lesson in items if stopped(lesson)]
    if gone:
        store.skip_entries(gone, now.timestamp(), CANCELLED_DETAIL)
    keep = [item for item in items if item not in gone]
    return keep, [b for b in found.values() if b.status != CANCELLED]


def prepare_batch(
    store: BroadcastStore, renderer: Renderer, items: list[tuple[str, str]], now: datetime
) -> tuple[list[tuple[str, str]], Renderer | BroadcastRenderer]:
    """A delivery batch as a worker hands it to the engine: without cancelled broadcasts'
    entries, and with a renderer that also knows the batch's broadcasts."""
    items, broadcasts = drop_cancelled(store, items, now)
    return items, BroadcastRenderer(renderer, broadcasts) if broadcasts else renderer
