"""The tick: claim everything due by ``now`` and hand it to workers in batches.

A tick reads the due index, plans each due subscriber's next lesson with the pure rules of
:mod:`course.progress` (pauses ending, catch-up one a day after downtime, completion), and
*claims* it with one atomic step of the ledger (only while the subscriber is active and the
lesson is not in their ledger yet), which also moves the due index forward. Unfinished
entries whose time has come go out again (retries, stale claims); a send left in ``sending``
by a worker that died becomes ``uncertain``. Given a settling window (a signed webhook is
configured), the tick also settles uncertain sends (:mod:`course.engine.settle`): one whose
provider never had it, as later sends' events prove, is claimed again, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from course.engine.ports import Enqueue, Item, LedgerStore
from course.engine.settle import settle_uncertain
from course.logs import log_event
from course.models.ledger import Claim
from course.models.schedule import Schedule
from course.models.subscriber import LedgerEntry, Subscriber, to_instant
from course.progress import due_at, next_lesson, next_send, progress_after
from course.subscribers.lifecycle import SubscriptionError, resume
from course.timeline import local_date

log = logging.getLogger("course.engine")
# One line per event, readable as text, its fields kept for a structured formatter.
_log = partial(log_event, log)

STALE_AFTER = 15 * 60  # seconds before an unfinished claim or send is looked at again
# Claimed lessons handed to one ``course.deliver`` task. Not SendGrid's grouping of one
# lesson's emails into one request: that is course.mail.grouping and the transport's max_group.
TASK_BATCH_SIZE = 50
RACE_ROUNDS = 5  # reads of a subscriber who keeps changing under a tick, before it waits


@dataclass
class TickResult:
    due: int = 0  # subscribers the due index gave this tick
    claimed: int = 0
    redispatched: int = 0
    uncertain: int = 0
    resent: int = 0  # uncertain sends claimed again by the settling
    completed: int = 0
    batches: int = 0
    duration: float = 0.0  # seconds


def _batches(items: list[Item], size: int) -> Iterable[list[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def tick(
    store: LedgerStore,
    schedule: Schedule,
    now: datetime,
    enqueue: Enqueue,
    batch_size: int = TASK_BATCH_SIZE,
    chunk: int = 1000,
    timer: Callable[[], float] = time.perf_counter,
    settle_window: float | None = None,
) -> TickResult:
    """Claim everything due by ``now`` and hand it to workers in batches.

    State-based: a missed tick only delays, a repeated one finds nothing left to claim.
    Its cost grows with the number of due entries, not the number of subscribers. At most
    one lesson per subscriber is on its way at a time, so lessons go out in order.
    ``timer`` measures how long it took (recorded in Redis for the metrics).
    ``settle_window`` (seconds; None: no webhook, nothing is re-sent) turns on the settling
    of uncertain sends.
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
    if settle_window is not None:
        resend, _ = settle_uncertain(store, ts, settle_window, STALE_AFTER)
        result.resent = len(resend)
        hand_out(resend)

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
                except store.Error:
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
    store: LedgerStore,
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


def _sweep_pending(store: LedgerStore, ts: float, result: TickResult) -> list[Item]:
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
            # The instant of the send is kept: the settling compares it with the sends
            # whose events have arrived (course.store.settle).
            uncertain = LedgerEntry(
                lesson_id, "uncertain", entry.at, entry.attempt, "no report from worker"
            )
            if store.finish(sub_id, uncertain, None, ("sending",)):
                result.uncertain += 1
                _log(logging.WARNING, "uncertain", subscriber=sub_id, lesson=lesson_id,
                     reason="no report from the worker")  # fmt: skip
    store.touch_pending(work, ts + STALE_AFTER)
    return work
