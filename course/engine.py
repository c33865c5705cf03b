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
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

from course.render import Recipient, Renderer
from course.schedule import Schedule
from course.store import Store
from course.subscriber import (
    LedgerEntry,
    due_at,
    next_lesson,
    progress_after,
)
from course.subscriptions import SubscriptionError, resume
from course.transport import (
    PermanentSendError,
    TransientSendError,
    Transport,
    UncertainSendError,
)

log = logging.getLogger("course.engine")

STALE_AFTER = 15 * 60  # seconds before an unfinished claim or send is looked at again
BATCH_SIZE = 50  # deliveries handed to a worker per task
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30.0  # seconds; doubles per attempt
BACKOFF_CAP = 3600.0

Item = tuple[str, str]  # (subscriber id, lesson id)
Enqueue = Callable[[list[Item], datetime], None]
LinkMaker = Callable[[str], dict[str, str]]


@dataclass
class TickResult:
    claimed: int = 0
    redispatched: int = 0
    uncertain: int = 0
    completed: int = 0
    batches: int = 0


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
) -> TickResult:
    """Claim everything due by ``now`` and hand it to workers in batches.

    State-based: a missed tick only delays, a repeated one finds nothing left to claim.
    Its cost grows with the number of due entries, not the number of subscribers.
    """
    result = TickResult()
    ts = now.timestamp()
    work = _sweep_pending(store, ts, result)
    result.redispatched = len(work)

    stuck: set[str] = set()
    while True:
        ids = [i for i in store.due_ids(ts, chunk + len(stuck)) if i not in stuck][:chunk]
        if not ids:
            break
        claims, claim_subs = [], []
        for sub_id, (sub, done) in zip(ids, store.get_many(ids), strict=True):
            if sub is None:
                store.redis.zrem(store.due_key, sub_id)
                continue
            if sub.status == "paused" and sub.paused_until and sub.paused_until <= ts:
                # A timed flare pause ends by itself; if it changed meanwhile, read again.
                with suppress(SubscriptionError):
                    resume(store, schedule, sub, now)
                continue
            if sub.status != "active":  # not mailable: drop from the index unless it changed
                store.update(sub.id, {}, None, sub.version)
                continue
            lesson = next_lesson(schedule, sub, done)
            if lesson is None:
                store.update(sub.id, {"status": "completed"}, None, sub.version)
                result.completed += 1
                continue
            due = due_at(schedule, sub, lesson)
            if due > now:  # the index was ahead of the schedule (an edit): correct it
                store.update(sub.id, {}, due.timestamp(), sub.version)
                continue
            after = progress_after(sub, lesson, now)
            following = next_lesson(schedule, after, done | {lesson.id})
            next_due = due_at(schedule, after, following).timestamp() if following else None
            claims.append(
                (
                    sub.id,
                    lesson.id,
                    sub.version,
                    ts,
                    next_due,
                    after.sent_that_day,
                    lesson.day,
                    ts + STALE_AFTER,
                )
            )
            claim_subs.append((sub.id, lesson.id))
        for item, outcome in zip(claim_subs, store.claim_many(claims), strict=True):
            if outcome == 1:
                work.append(item)
                result.claimed += 1
            elif outcome != -1:  # -1: changed meanwhile, read it again; else leave it be
                stuck.add(item[0])
    for batch in _batches(work, batch_size):
        enqueue(batch, now)
        result.batches += 1
    store.set_last_tick(now.isoformat())
    log.info(
        "tick",
        extra={"event": "tick", "now": now.isoformat(), **result.__dict__},
    )
    return result


def _sweep_pending(store: Store, ts: float, result: TickResult) -> list[Item]:
    """Unfinished ledger entries whose time has come: retries and stale claims go out
    again; a send that never reported back becomes ``uncertain``."""
    work: list[Item] = []
    for sub_id, lesson_id in store.pending_due(ts, limit=100_000):
        entry = store.entry(sub_id, lesson_id)
        if entry is None:
            store.finish(sub_id, LedgerEntry(lesson_id, "skipped", ts, 0, "missing"), None, ("",))
            continue
        if entry.state in ("claimed", "retry"):
            work.append((sub_id, lesson_id))
        elif entry.state == "sending":
            uncertain = LedgerEntry(
                lesson_id, "uncertain", ts, entry.attempt, "no report from worker"
            )
            if store.finish(sub_id, uncertain, None, ("sending",)):
                result.uncertain += 1
                log.warning(
                    "send outcome unknown",
                    extra={"event": "uncertain", "subscriber": sub_id, "lesson": lesson_id},
                )
    store.touch_pending(work, ts + STALE_AFTER)
    return work


def deliver(
    store: Store,
    schedule: Schedule,
    renderer: Renderer,
    transport: Transport,
    items: list[Item],
    now: datetime,
    links: LinkMaker,
) -> DeliverResult:
    """Send each claimed (subscriber, lesson) of a batch, recording every outcome."""
    result = DeliverResult()
    ts = now.timestamp()
    paused_until: float | None = None  # set by a 429: the provider asked us to wait
    for sub_id, lesson_id in items:
        if paused_until is not None:
            store.touch_pending([(sub_id, lesson_id)], paused_until)
            result.retrying += 1
            continue
        attempt = store.start_send(sub_id, lesson_id, ts, ts + STALE_AFTER)
        if attempt <= 0:
            result.skipped += 1
            continue
        sub = store.get(sub_id)
        try:
            lesson = schedule.lesson(lesson_id)
        except KeyError:
            lesson = None
        if sub is None or lesson is None:
            why = "subscriber erased" if sub is None else "lesson removed from schedule"
            store.finish(sub_id, LedgerEntry(lesson_id, "skipped", ts, attempt, why))
            result.skipped += 1
            continue
        try:
            email = renderer.render(
                lesson_id,
                Recipient(
                    subscriber_id=sub.id,
                    email=sub.email,
                    first_name=sub.first_name,
                    **links(sub.id),
                ),
            )
            sent = transport.send(email)
        except TransientSendError as exc:
            if attempt >= MAX_ATTEMPTS:
                reason = f"gave up after {attempt} attempts: {exc.reason}"
                store.finish(sub_id, LedgerEntry(lesson_id, "failed", ts, attempt, reason))
                result.failed += 1
                continue
            wait = max(exc.retry_after or 0.0, backoff(attempt))
            retry = LedgerEntry(lesson_id, "retry", ts, attempt, exc.reason)
            store.finish(sub_id, retry, ts + wait)
            result.retrying += 1
            if exc.retry_after is not None:
                paused_until = ts + wait
            log.warning(
                "send will be retried",
                extra={
                    "event": "retry",
                    "subscriber": sub_id,
                    "lesson": lesson_id,
                    "attempt": attempt,
                    "wait": wait,
                    "reason": exc.reason,
                },
            )
        except UncertainSendError as exc:
            store.finish(sub_id, LedgerEntry(lesson_id, "uncertain", ts, attempt, exc.reason))
            result.uncertain += 1
            log.warning(
                "send outcome unknown",
                extra={"event": "uncertain", "subscriber": sub_id, "lesson": lesson_id},
            )
        except PermanentSendError as exc:
            store.finish(sub_id, LedgerEntry(lesson_id, "failed", ts, attempt, exc.reason))
            result.failed += 1
            result.errors.append(f"{sub_id}/{lesson_id}: {exc.reason}")
            log.error(
                "send failed",
                extra={"event": "failure", "subscriber": sub_id, "lesson": lesson_id},
            )
        except Exception as exc:  # a render or transport bug must not leave the entry sending
            reason = f"{type(exc).__name__}: {exc}"
            store.finish(sub_id, LedgerEntry(lesson_id, "failed", ts, attempt, reason))
            result.failed += 1
            result.errors.append(f"{sub_id}/{lesson_id}: {reason}")
            log.exception("send failed", extra={"event": "failure", "subscriber": sub_id})
        else:
            store.finish(
                sub_id, LedgerEntry(lesson_id, "sent", ts, attempt, sent.provider_message_id)
            )
            result.sent += 1
    return result
