"""The delivery: what a worker does with a batch of claimed lessons.

For each claimed (subscriber, lesson): ``start_send`` moves the entry to ``sending`` in one
atomic step that checks the subscriber may still be mailed (unsubscribe wins), the email is
rendered and handed to the provider, and the outcome is recorded: ``sent``; ``retry`` with
backoff for a transient failure (up to ``MAX_ATTEMPTS``); ``uncertain`` when the provider may
have it; ``failed`` for a permanent refusal or a bug. Emails of one lesson that can share a
request go as a group when the messenger takes groups (SendGrid's personalizations).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial

from course.engine.experiments import count_variant_sends, experiment_winners
from course.engine.ports import Item, LedgerStore, LinkMaker, Messenger
from course.engine.tick import STALE_AFTER
from course.logs import log_event
from course.mail.addresses import needs_smtputf8
from course.mail.grouping import EmailGroup, Member, Tags, group_emails
from course.mail.render import Recipient, Renderer
from course.models.email import Email
from course.models.ledger import Outcome
from course.models.subscriber import LedgerEntry
from course.transport import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)

log = logging.getLogger("course.engine")
# One line per event, readable as text, its fields kept for a structured formatter.
_log = partial(log_event, log)

MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0  # seconds; doubles per attempt
BACKOFF_CAP = 3600.0
# Why Store.start_send refused an entry, by its answer.
SKIP_REASONS = {
    0: "no longer in the ledger",
    -1: "suppressed (unsubscribed, bounced or complained)",
    -2: "sent or being sent by another worker",
}


@dataclass
class DeliverResult:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    uncertain: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 30 s, 60 s, 120 s ... capped at 1 h."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))


def deliver(
    store: LedgerStore,
    renderer: Renderer,
    transport: Messenger,
    items: list[Item],
    now: datetime,
    links: LinkMaker,
    clock: Callable[[], datetime] | None = None,
    concurrency: int = 1,
) -> DeliverResult:
    """Send each claimed (subscriber, lesson) of a batch, recording every outcome.

    Each send is stamped with ``now``, or ``clock()`` when that is later: a long batch
    sets each entry's stale deadline from when that entry really started.

    A transport that takes several emails per request (``max_group`` above 1: SendGrid's
    personalizations) gets the batch's emails of one lesson in as few requests as their
    content allows (see :mod:`course.mail.grouping`); every other email, and every email for a
    transport without groups, is one request.

    With ``concurrency`` above 1, up to that many requests of the batch are in flight at once
    (a provider API answers in tens of milliseconds; one at a time, a worker mostly waits).
    Each email keeps its own steps: ``start_send`` right before its request (unsubscribe
    wins), its outcome recorded when its request's answer comes. Requests start in order
    (groups, by their first member's place in the batch, then emails alone); a 429 holds back
    every request not started yet, and one that raises an unexpected error (Redis gone) stops
    the rest from starting: they stay claimed for a later tick.
    """
    hold = _Hold()
    work: list[Item | tuple[str, EmailGroup]]
    max_group = getattr(transport, "max_group", 1)  # a transport of one's own may not say
    decided = experiment_winners(store, renderer)
    if max_group > 1 and len(items) > 1:
        work = _requests(store, renderer, max_group, items, links, decided)
    else:
        work = list(items)

    def counted(lesson_id: str, emails: list[Email]) -> None:
        count_variant_sends(store, renderer, lesson_id, emails)

    def alone(item: Item) -> Sent:
        return _deliver_one(store, renderer, transport, item, now, links, clock, hold, decided)

    def one(job: Item | tuple[str, EmailGroup]) -> list[Sent]:
        try:
            if isinstance(job[1], EmailGroup):
                return _deliver_group(store, transport, job, now, clock, hold, alone, counted)
            return [alone(job)]
        except BaseException:
            hold.broken = True  # whatever has not started stays claimed
            raise

    if concurrency <= 1 or len(work) <= 1:
        outcomes = [one(job) for job in work]
    else:
        with ThreadPoolExecutor(min(concurrency, len(work)), "deliver") as pool:
            outcomes = [future.result() for future in [pool.submit(one, j) for j in work]]
    result = DeliverResult()
    for outcome, error in (sent for job in outcomes for sent in job):
        setattr(result, outcome, getattr(result, outcome) + 1)
        if error:
            result.errors.append(error)
    return result


Sent = tuple[str, str | None]  # the DeliverResult field an email counts under, an error line
SENT: Sent = ("sent", None)
# The substitution tags of shared bodies (made at import: the processes of a worker's pool
# share them, which is harmless, as a tag only has to be unlike any lesson's own text).
TAGS = Tags()


@dataclass
class _Hold:
    """What the requests of one batch tell those that have not started yet."""

    until: float | None = None  # set by a 429: the provider asked us to wait
    broken: bool = False  # a request failed in a way that stops the batch
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_until(self, at: float) -> None:
        with self.lock:
            self.until = at if self.until is None else max(self.until, at)

    def check(self, store: LedgerStore, items: list[Item]) -> list[Sent] | None:
        """Raise when the batch is broken; when it is held back, keep ``items`` pending until
        the provider's time and count them as retrying; None: go ahead."""
        if self.broken:
            raise RuntimeError("an earlier request of the batch failed")
        if self.until is None:
            return None
        store.touch_pending(items, self.until)
        return [("retrying", None)] * len(items)


def _stamp(now: datetime, clock: Callable[[], datetime] | None) -> float:
    return max(now, clock()).timestamp() if clock else now.timestamp()


def _requests(
    store: LedgerStore,
    renderer: Renderer,
    max_group: int,
    items: list[Item],
    links: LinkMaker,
    decided: dict[str, str],
) -> list[Item | tuple[str, EmailGroup]]:
    """The batch as requests: ``(lesson, group)`` for emails that can share one, and the
    items the one-by-one path must handle (it says why each cannot go: erased, a lesson this
    worker does not know, an email that does not render, an address that needs SMTPUTF8)."""
    singles: list[Item | tuple[str, EmailGroup]] = []
    by_lesson: dict[str, list[tuple[Recipient, Email]]] = {}
    for item, sub in zip(items, store.get_each([i[0] for i in items]), strict=True):
        lesson_id = item[1]
        if sub is None or lesson_id not in renderer.lesson_ids:
            singles.append(item)
            continue
        recipient = Recipient.for_subscriber(sub, links(sub.id))
        try:
            email = renderer.render(lesson_id, recipient, decided.get(lesson_id))
        except Exception:  # recorded as a failure, with its reason, by the one-by-one path
            singles.append(item)
            continue
        if needs_smtputf8(email.to_email):  # refused alone, so its group is not refused
            singles.append(item)
            continue
        by_lesson.setdefault(lesson_id, []).append((recipient, email))
    groups: list[Item | tuple[str, EmailGroup]] = [
        (lesson_id, group)
        for lesson_id, pairs in by_lesson.items()
        for group in group_emails(renderer.compiled(lesson_id), TAGS, pairs, max_group)
    ]
    return groups + singles


def _deliver_group(
    store: LedgerStore,
    transport: Messenger,
    job: tuple[str, EmailGroup],
    now: datetime,
    clock: Callable[[], datetime] | None,
    hold: _Hold,
    alone: Callable[[Item], Sent],
    counted: Callable[[str, list[Email]], None],
) -> list[Sent]:
    """Start every member of a group (those refused are skipped), then send it as one request."""
    lesson_id, group = job
    ts = _stamp(now, clock)
    items = [(member.subscriber_id, lesson_id) for member in group.members]
    held = hold.check(store, items)
    if held is not None:
        return held
    outcomes: list[Sent] = []
    live: list[tuple[Member, int]] = []
    for member, attempt in zip(
        group.members, store.start_send_many(items, ts, ts + STALE_AFTER), strict=True
    ):
        if attempt > 0:
            live.append((member, attempt))
        else:
            _log(logging.INFO, "skip", subscriber=member.subscriber_id, lesson=lesson_id,
                 reason=SKIP_REASONS.get(attempt, "not claimed"))  # fmt: skip
            outcomes.append(("skipped", None))
    if live:
        started = replace(group, members=tuple(member for member, _ in live))
        attempts = [attempt for _, attempt in live]
        outcomes += _send_group(
            store, transport, lesson_id, started, attempts, ts, hold, alone, counted
        )
    return outcomes


def _send_group(
    store: LedgerStore,
    transport: Messenger,
    lesson_id: str,
    group: EmailGroup,
    attempts: list[int],
    ts: float,
    hold: _Hold,
    alone: Callable[[Item], Sent],
    counted: Callable[[str, list[Email]], None],
) -> list[Sent]:
    """One request for a started group; every member's outcome recorded in one round trip."""
    sent: SendResult | None = None
    error: Exception | None = None
    try:
        sent = transport.send_group(group)
    except Exception as exc:  # sorted by _outcome: retry, uncertain, failed
        error = exc
    if isinstance(error, PermanentSendError) and len(group.members) > 1:
        # Refused as a whole, so none of it went. Each member goes again in a request of its
        # own (its one-by-one email), started again right before it, so an unsubscribe
        # still wins and a 429 still holds the rest back; only the refused one fails.
        detail = f"refused as a group, sent alone: {error.reason}"
        store.finish_many([
            Outcome(m.subscriber_id, LedgerEntry(lesson_id, "retry", ts, a, detail), ts,
                    ("sending",))
            for m, a in zip(group.members, attempts, strict=True)
        ])  # fmt: skip
        return [alone((member.subscriber_id, lesson_id)) for member in group.members]
    recorded = [
        _outcome(member.subscriber_id, lesson_id, attempt, ts, hold, sent, error)
        for member, attempt in zip(group.members, attempts, strict=True)
    ]
    finished = store.finish_many([record for record, _ in recorded])
    counted(lesson_id, [
        member.email
        for member, (record, _), done in zip(group.members, recorded, finished, strict=True)
        if done and record.entry.state == "sent"
    ])  # fmt: skip
    return [result for _, result in recorded]


def _deliver_one(
    store: LedgerStore,
    renderer: Renderer,
    transport: Messenger,
    item: Item,
    now: datetime,
    links: LinkMaker,
    clock: Callable[[], datetime] | None,
    hold: _Hold,
    decided: dict[str, str],
) -> Sent:
    """Send one claimed item in a request of its own."""
    sub_id, lesson_id = item
    ts = _stamp(now, clock)
    held = hold.check(store, [item])
    if held is not None:
        return held[0]
    attempt = store.start_send(sub_id, lesson_id, ts, ts + STALE_AFTER)
    if attempt <= 0:
        _log(logging.INFO, "skip", subscriber=sub_id, lesson=lesson_id,
             reason=SKIP_REASONS.get(attempt, "not claimed"))  # fmt: skip
        return "skipped", None
    sub = store.get(sub_id)
    if sub is None:
        store.finish(sub_id, LedgerEntry(lesson_id, "skipped", ts, attempt, "erased"))
        _log(logging.INFO, "skip", subscriber=sub_id, lesson=lesson_id, reason="erased")
        return "skipped", None
    sent: SendResult | None = None
    error: Exception | None = None
    email: Email | None = None
    try:
        if lesson_id not in renderer.lesson_ids:
            # Claimed by a tick with a newer schedule than this worker has (a rolling
            # deploy): wait for it rather than drop it.
            raise TransientSendError(f"lesson {lesson_id!r} is not in this worker's schedule")
        recipient = Recipient.for_subscriber(sub, links(sub.id))
        email = renderer.render(lesson_id, recipient, decided.get(lesson_id))
        sent = transport.send(email)
    except Exception as exc:  # sorted by _outcome: retry, uncertain, failed
        error = exc
    record, result = _outcome(sub_id, lesson_id, attempt, ts, hold, sent, error)
    if store.finish(*record) and email is not None and record.entry.state == "sent":
        count_variant_sends(store, renderer, lesson_id, [email])
    return result


def _outcome(
    sub_id: str,
    lesson_id: str,
    attempt: int,
    ts: float,
    hold: _Hold,
    sent: SendResult | None,
    error: Exception | None,
) -> tuple[Outcome, Sent]:
    """What to record for one started email after its request (``sent``, or the ``error``
    it raised), logged; and what it counts as."""
    if error is None and sent is not None:
        message_id = sent.provider_message_id
        _log(logging.INFO, "send", subscriber=sub_id, lesson=lesson_id, attempt=attempt,
             message_id=message_id)  # fmt: skip
        return Outcome(sub_id, LedgerEntry(lesson_id, "sent", ts, attempt, message_id)), SENT
    if isinstance(error, TransientSendError):
        if attempt >= MAX_ATTEMPTS:
            reason = f"gave up after {attempt} attempts: {error.reason}"
            _log(logging.ERROR, "failure", subscriber=sub_id, lesson=lesson_id, reason=reason)
            gave_up = LedgerEntry(lesson_id, "failed", ts, attempt, reason)
            return Outcome(sub_id, gave_up), ("failed", None)
        wait = max(error.retry_after or 0.0, backoff(attempt))
        if error.retry_after is not None:  # before it is recorded: no other request starts
            hold.wait_until(ts + error.retry_after)  # the provider's time, not this backoff
        _log(logging.WARNING, "retry", subscriber=sub_id, lesson=lesson_id,
             attempt=attempt, wait=round(wait), reason=error.reason)  # fmt: skip
        # Only from sending: an entry a tick already called uncertain stays so (the next
        # lesson may have gone meanwhile; this one must not follow it).
        retry = LedgerEntry(lesson_id, "retry", ts, attempt, error.reason)
        return Outcome(sub_id, retry, ts + wait, ("sending",)), ("retrying", None)
    if isinstance(error, UncertainSendError):
        _log(logging.WARNING, "uncertain", subscriber=sub_id, lesson=lesson_id,
             reason=error.reason)  # fmt: skip
        uncertain = LedgerEntry(lesson_id, "uncertain", ts, attempt, error.reason)
        return Outcome(sub_id, uncertain), ("uncertain", None)
    if isinstance(error, PermanentSendError):
        reason = error.reason
        _log(logging.ERROR, "failure", subscriber=sub_id, lesson=lesson_id, reason=reason)
    else:  # a render or transport bug must not leave the entry sending
        reason = f"{type(error).__name__}: {error}"
        log.error("failure subscriber=%s lesson=%s", sub_id, lesson_id, exc_info=error,
                  extra={"event": "failure",
                         "fields": {"subscriber": sub_id, "lesson": lesson_id,
                                    "reason": reason}})  # fmt: skip
    failed = LedgerEntry(lesson_id, "failed", ts, attempt, reason)
    return Outcome(sub_id, failed), ("failed", f"{sub_id}/{lesson_id}: {reason}")
