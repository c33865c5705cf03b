"""The sending engine: what a tick claims and what a worker does with a claimed lesson.

The engine works on the interfaces it is given (a :class:`~course.store.Store`, a schedule,
a renderer, a transport, an ``enqueue`` callable) and takes ``now`` as a parameter; Celery
and the CLI are thin edges around it.

At most once: a tick *claims* a lesson for a subscriber with one atomic script (only while
the subscriber is active and the lesson is not in their ledger yet), which also moves the
due index forward. A worker moves a claimed entry to ``sending`` with a second atomic step
that checks the subscriber may still be mailed (unsubscribe wins), then hands the email to
the provider. An entry left in ``sending`` by a worker that died is marked ``uncertain`` by
a later tick, never sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime

from course.logs import log_event
from course.mail.grouping import EmailGroup, Member, Tags, group_emails
from course.mail.render import Recipient, Renderer
from course.models.email import Email
from course.models.subscriber import (
    LedgerEntry,
    Subscriber,
    due_at,
    next_lesson,
    progress_after,
    to_instant,
)
from course.schedule import Lesson, Schedule
from course.store import Claim, Outcome, Store, StoreError
from course.subscribers.lifecycle import SubscriptionError, resume
from course.timeline import DAY0_GRACE, LATE_GRACE, catch_up, local_date
from course.transport import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    Transport,
    UncertainSendError,
)

log = logging.getLogger("course.engine")

STALE_AFTER = 15 * 60  # seconds before an unfinished claim or send is looked at again
BATCH_SIZE = 50  # deliveries handed to a worker per task
MAX_ATTEMPTS = 8
RACE_ROUNDS = 5  # reads of a subscriber who keeps changing under a tick, before it waits
BACKOFF_BASE = 30.0  # seconds; doubles per attempt
BACKOFF_CAP = 3600.0
# Why Store.start_send refused an entry, by its answer.
SKIP_REASONS = {
    0: "no longer in the ledger",
    -1: "suppressed (unsubscribed, bounced or complained)",
    -2: "sent or being sent by another worker",
}

Item = tuple[str, str]  # (subscriber id, lesson id)
Enqueue = Callable[[list[Item], datetime], None]
LinkMaker = Callable[[str], dict[str, str]]


@dataclass
class TickResult:
    due: int = 0  # subscribers the due index gave this tick
    claimed: int = 0
    redispatched: int = 0
    uncertain: int = 0
    completed: int = 0
    batches: int = 0
    duration: float = 0.0  # seconds


@dataclass
class DeliverResult:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    uncertain: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def _log(level: int, event: str, **fields: object) -> None:
    """One line per event, readable as text, its fields kept for a structured formatter."""
    log_event(log, level, event, **fields)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 30 s, 60 s, 120 s ... capped at 1 h."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))


def _batches(items: list[Item], size: int) -> Iterable[list[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def tick(
    store: Store,
    schedule: Schedule,
    now: datetime,
    enqueue: Enqueue,
    batch_size: int = BATCH_SIZE,
    chunk: int = 1000,
    timer: Callable[[], float] = time.perf_counter,
) -> TickResult:
    """Claim everything due by ``now`` and hand it to workers in batches.

    State-based: a missed tick only delays, a repeated one finds nothing left to claim.
    Its cost grows with the number of due entries, not the number of subscribers. At most
    one lesson per subscriber is on its way at a time, so lessons go out in order.
    ``timer`` measures how long it took (recorded in Redis for the metrics).
    """
    started = timer()
    result = TickResult()
    ts = now.timestamp()

    def hand_out(work: list[Item]) -> None:
        for batch in _batches(work, batch_size):
            enqueue(batch, now)
            result.batches += 1

    swept = _sweep_pending(store, ts, result)
    result.redispatched = len(swept)
    hand_out(swept)

    # One pass over what is due now: with one lesson per subscriber on its way at a time,
    # nobody can be claimed twice in a tick. Only subscribers who changed between the read
    # and the claim are read again, a few times at most.
    ids = store.all_due_ids(ts)
    result.due = len(ids)
    for _ in range(RACE_ROUNDS):
        raced: list[str] = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            claims = []
            for sub_id, (sub, done) in zip(part, store.get_many(part), strict=True):
                try:
                    claim = _plan(store, schedule, now, sub_id, sub, done, result)
                except StoreError:
                    raise  # Redis trouble is not the record's fault
                except Exception as exc:  # one broken record must not stop everyone else
                    store.quarantine(sub_id, f"{type(exc).__name__}: {exc}")
                    _log(logging.ERROR, "quarantine", subscriber=sub_id, reason=str(exc))
                    continue
                if claim is not None:
                    claims.append(claim)
            work = []
            for claim, outcome in zip(claims, store.claim_many(claims), strict=True):
                if outcome == 1:
                    work.append(claim.item)
                    result.claimed += 1
                    _log(logging.INFO, "claim", subscriber=claim.sub_id, lesson=claim.lesson_id)
                elif outcome == -1:
                    raced.append(claim.sub_id)
            hand_out(work)
        if not raced:
            break
        ids = raced
    result.duration = timer() - started
    store.record_tick(now, result.duration, result.due, result.claimed)
    _log(logging.INFO, "tick", now=now.isoformat(),
         **{**result.__dict__, "duration": round(result.duration, 6)})  # fmt: skip
    return result


def _plan(
    store: Store,
    schedule: Schedule,
    now: datetime,
    sub_id: str,
    sub: Subscriber | None,
    done: set[str],
    result: TickResult,
) -> Claim | None:
    """The claim to try for one due subscriber, or None after fixing their index entry."""
    ts = now.timestamp()
    if sub is None:
        store.drop_due(sub_id)
        return None
    if sub.status == "paused" and sub.paused_until:
        if sub.paused_until > ts:  # read before a pause was set: keep its resume time
            store.update(sub.id, {}, sub.paused_until, sub.version)
        else:  # a timed flare pause ends by itself, counted to its end, not to this tick
            with suppress(SubscriptionError):
                resume(store, schedule, sub, to_instant(sub.paused_until))
        return None
    if sub.status != "active":  # not mailable: drop from the index unless it changed
        store.update(sub.id, {}, None, sub.version)
        return None
    upcoming = next_send(schedule, sub, done, now)
    if upcoming is None:
        store.update(sub.id, {"status": "completed"}, None, sub.version)
        result.completed += 1
        return None
    lesson, nominal, due = upcoming
    zone = sub.zone
    if due > now:  # not yet (an edit, or an overdue lesson waiting for a sensible hour)
        store.update(sub.id, {}, due.timestamp(), sub.version)
        return None
    after = progress_after(sub, lesson, now)
    if local_date(nominal, zone) < local_date(now, zone):
        # Catching up after downtime: one a day, even when the course allows more.
        after = replace(after, sent_that_day=schedule.course.max_lessons_per_day)
    following = next_lesson(schedule, after, done | {lesson.id})
    next_due = due_at(schedule, after, following).timestamp() if following else None
    return Claim(
        sub_id=sub.id,
        lesson_id=lesson.id,
        version=sub.version,
        now=ts,
        next_due=next_due,
        sent_that_day=after.sent_that_day,
        lesson_day=lesson.day,
        deadline=ts + STALE_AFTER,
        previous=sub.last_lesson,
    )


def next_send(
    schedule: Schedule, sub: Subscriber, done: set[str], now: datetime
) -> tuple[Lesson, datetime, datetime] | None:
    """What a tick at ``now`` would do next for an active ``sub`` whose ledger holds ``done``:
    ``(lesson, nominal due, due)``, where ``due`` is when it may go out (an overdue lesson
    waits for a sensible hour); None when no lesson is left. Pure: ``course diff`` predicts
    with it too."""
    lesson = next_lesson(schedule, sub, done)
    if lesson is None:
        return None
    nominal = due_at(schedule, sub, lesson)
    grace = DAY0_GRACE if lesson.day == 0 else LATE_GRACE
    return lesson, nominal, catch_up(nominal, now, schedule.course, sub.zone, grace)


def _sweep_pending(store: Store, ts: float, result: TickResult) -> list[Item]:
    """Unfinished ledger entries whose time has come: retries and stale claims go out
    again; a send that never reported back becomes ``uncertain``."""
    work: list[Item] = []
    for sub_id, lesson_id in store.pending_due(ts, limit=100_000):
        entry = store.entry(sub_id, lesson_id)
        if entry is None:
            if store.get(sub_id) is None:  # erased on request: leave no ledger behind
                store.drop_pending(sub_id, lesson_id)
            else:
                skipped = LedgerEntry(lesson_id, "skipped", ts, 0, "missing")
                store.finish(sub_id, skipped, None, ("",))
            continue
        if entry.state in ("claimed", "retry"):
            work.append((sub_id, lesson_id))
        elif entry.state == "sending":
            uncertain = LedgerEntry(
                lesson_id, "uncertain", ts, entry.attempt, "no report from worker"
            )
            if store.finish(sub_id, uncertain, None, ("sending",)):
                result.uncertain += 1
                _log(logging.WARNING, "uncertain", subscriber=sub_id, lesson=lesson_id,
                     reason="no report from the worker")  # fmt: skip
    store.touch_pending(work, ts + STALE_AFTER)
    return work


def deliver(
    store: Store,
    renderer: Renderer,
    transport: Transport,
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
    if max_group > 1 and len(items) > 1:
        work = _requests(store, renderer, max_group, items, links)
    else:
        work = list(items)

    def alone(item: Item) -> Sent:
        return _deliver_one(store, renderer, transport, item, now, links, clock, hold)

    def one(job: Item | tuple[str, EmailGroup]) -> list[Sent]:
        try:
            if isinstance(job[1], EmailGroup):
                return _deliver_group(store, transport, job, now, clock, hold, alone)
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

    def check(self, store: Store, items: list[Item]) -> list[Sent] | None:
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


def _recipient(sub: Subscriber, links: LinkMaker) -> Recipient:
    return Recipient(
        subscriber_id=sub.id, email=sub.email, first_name=sub.first_name, **links(sub.id)
    )


def _requests(
    store: Store, renderer: Renderer, max_group: int, items: list[Item], links: LinkMaker
) -> list[Item | tuple[str, EmailGroup]]:
    """The batch as requests: ``(lesson, group)`` for emails that can share one, and the
    items the one-by-one path must handle (it says why each cannot go: erased, a lesson this
    worker does not know, an email that does not render)."""
    singles: list[Item | tuple[str, EmailGroup]] = []
    by_lesson: dict[str, list[tuple[Recipient, Email]]] = {}
    for item, sub in zip(items, store.get_each([i[0] for i in items]), strict=True):
        lesson_id = item[1]
        if sub is None or lesson_id not in renderer.lesson_ids:
            singles.append(item)
            continue
        recipient = _recipient(sub, links)
        try:
            email = renderer.render(lesson_id, recipient)
        except Exception:  # recorded as a failure, with its reason, by the one-by-one path
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
    store: Store,
    transport: Transport,
    job: tuple[str, EmailGroup],
    now: datetime,
    clock: Callable[[], datetime] | None,
    hold: _Hold,
    alone: Callable[[Item], Sent],
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
        outcomes += _send_group(store, transport, lesson_id, started, attempts, ts, hold, alone)
    return outcomes


def _send_group(
    store: Store,
    transport: Transport,
    lesson_id: str,
    group: EmailGroup,
    attempts: list[int],
    ts: float,
    hold: _Hold,
    alone: Callable[[Item], Sent],
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
    store.finish_many([record for record, _ in recorded])
    return [result for _, result in recorded]


def _deliver_one(
    store: Store,
    renderer: Renderer,
    transport: Transport,
    item: Item,
    now: datetime,
    links: LinkMaker,
    clock: Callable[[], datetime] | None,
    hold: _Hold,
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
    try:
        if lesson_id not in renderer.lesson_ids:
            # Claimed by a tick with a newer schedule than this worker has (a rolling
            # deploy): wait for it rather than drop it.
            raise TransientSendError(f"lesson {lesson_id!r} is not in this worker's schedule")
        sent = transport.send(renderer.render(lesson_id, _recipient(sub, links)))
    except Exception as exc:  # sorted by _outcome: retry, uncertain, failed
        error = exc
    record, result = _outcome(sub_id, lesson_id, attempt, ts, hold, sent, error)
    store.finish(*record)
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
