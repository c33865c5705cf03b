"""Retention: personal data is kept no longer than the policy says (GDPR Art. 5(1)(e)).

A reader who completed the course or left it (unsubscribed, bounced, complained) more than
``months`` calendar months ago is erased: the record, its ledger, its replies and every index
entry of it (the same Lua erase as an erasure request). One who *left* keeps exactly what an
erasure request keeps, the address's suppression hash, so the address is never mailed again,
and a later signup gets the usual neutral answer. One who *completed* keeps nothing: they
never asked not to be mailed, the course is over, and the same address may sign up again as
a new reader. A signup never confirmed is deleted ``pending_days`` days after it was made,
with no hash (that person never consented to anything).

Only a record's own time counts: a reader who left and signed up again later keeps their
new record (and the old one leaves no hash while the new one holds the address).

The run reads two indexes, never every record: each record enters them when its status
changes (:mod:`course.store.retention`), so its cost grows with the records whose time is up.
Records made before those indexes existed are indexed once, by the first run (a pass over
every record, in batches; resumed by the next run if it is cut short); those who had left by
then are counted from that pass, since when they left was not stored. A run holds a lock,
so a second beat's run at the same time does nothing; every erase checks again, in the same
step, that the record's time is still up, so running twice erases nothing twice.
"""

from __future__ import annotations

import calendar
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from course.store import Store, suppression_hash

BATCH = 500  # records per round trip
LOCK_SECONDS = 3600  # a run that takes longer stops and leaves the rest to the next one
MAX_STALLS = 3  # batches in a row in which nothing changed (records being changed meanwhile)


@dataclass
class RetentionRun:
    """What one run did (or, dry, would do)."""

    dry_run: bool = False
    busy: bool = False  # another run held the lock: this one did nothing
    erased: dict[str, int] = field(default_factory=lambda: {"left": 0, "completed": 0})
    expired: int = 0  # signups never confirmed, deleted
    dropped: int = 0  # index entries of records that had changed or gone
    batches: int = 0
    indexed: int = 0  # older records indexed by the one-time pass
    backfill_done: bool = True
    more: bool = False  # stopped at the time limit; the next run goes on
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.erased.values()) + self.expired


def months_before(now: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (the month's last day when
    that month is shorter)."""
    index = now.year * 12 + now.month - 1 - months
    year, month = divmod(index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def cutoffs(now: datetime, months: int, pending_days: int) -> tuple[float, float]:
    """(ended before this: erased, signed up before this unconfirmed: deleted) as epochs."""
    ended = months_before(now, months).timestamp()
    return ended, (now - timedelta(days=pending_days)).timestamp()


def _reason(status: str) -> str:
    return "completed" if status == "completed" else "left"


def run_retention(
    store: Store,
    now: datetime,
    months: int,
    pending_days: int,
    dry_run: bool = False,
    batch: int = BATCH,
    clock: Callable[[], float] = time.monotonic,
    limit: float = LOCK_SECONDS - 60,
) -> RetentionRun:
    """Erase every record whose time is up under the policy, in batches. Idempotent."""
    run = RetentionRun(dry_run=dry_run)
    started = clock()
    ended_cut, pending_cut = cutoffs(now, months, pending_days)
    if dry_run:
        run.backfill_done = store.backfill_done()
        _count(store, run, "ended", ended_cut, batch)
        _count(store, run, "pending", pending_cut, batch)
        run.seconds = clock() - started
        return run
    token = secrets.token_hex(8)
    if not store.take_retention_lock(token, LOCK_SECONDS):
        run.busy = True
        return run
    try:
        deadline = started + limit
        done = store.backfill_done()
        while not done and clock() < deadline:
            added, done = store.backfill_step(now.timestamp(), batch)
            run.indexed += added
        run.backfill_done = done
        for kind, cut in (("ended", ended_cut), ("pending", pending_cut)):
            _erase(store, run, kind, cut, batch, lambda: clock() < deadline)
        run.more = not done or clock() >= deadline
        run.seconds = clock() - started
        store.record_retention_run(now.timestamp(), run.total, run.seconds)
    finally:
        store.release_retention_lock(token)
    return run


def _erase(
    store: Store,
    run: RetentionRun,
    kind: str,
    cutoff: float,
    batch: int,
    in_time: Callable[[], bool],
) -> None:
    stalls = 0
    while stalls < MAX_STALLS and in_time():
        ids = store.retention_candidates(kind, cutoff, batch)
        if not ids:
            return
        run.batches += 1
        facts = store.retention_facts(ids)
        items = [
            (sub_id, address, status, suppression_hash(address) if address else "")
            for sub_id, (status, address) in zip(ids, facts, strict=True)
        ]
        outcomes = store.retire_many(kind, cutoff, items)
        progress = False
        for (_, _, status, _), outcome in zip(items, outcomes, strict=True):
            if outcome >= 0:
                progress = True
                if kind == "pending":
                    run.expired += 1
                else:
                    run.erased[_reason(status)] += 1
            elif outcome in (-2, -3):
                progress = True
                run.dropped += 1
        stalls = 0 if progress else stalls + 1


def _count(store: Store, run: RetentionRun, kind: str, cutoff: float, batch: int) -> None:
    """A dry run: what the ``kind`` index holds whose time is up, read only."""
    offset = 0
    while ids := store.retention_candidates(kind, cutoff, batch, offset):
        run.batches += 1
        for status, _ in store.retention_facts(ids):
            if kind == "pending":
                run.expired += status == "pending"
            elif status in ("completed", "unsubscribed", "bounced", "complained"):
                run.erased[_reason(status)] += 1
        offset += len(ids)
