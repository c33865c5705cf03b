"""An in-memory ledger for tests: the :class:`course.engine.ports.LedgerStore` port in dicts.

It keeps the rules of the store's Lua scripts (claim, start_send, finish, update, suppress)
so the engine's claim rules and delivery outcomes can be checked fast and side by side with
the real Redis store (tests/test_engine_rules.py). Instants are kept as the store keeps them:
whole seconds in records and ledger entries, full precision in the due and pending indexes.
Not the store: no counters or statistics, no erasure, one process only. Never imported by
product code.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import datetime

from course.models.subscriber import SUPPRESSED, LedgerEntry, Subscriber
from course.store import FINISH_FROM, Claim, DuplicateSubscriber, Outcome

_FIELDS = {f.name for f in fields(Subscriber)} - {"id", "version"}
_UNFINISHED = ("claimed", "sending", "retry")


def _whole(changes: dict[str, object]) -> dict[str, object]:
    """Instants and durations as a record keeps them: whole seconds."""
    return {k: float(int(v)) if isinstance(v, float) else v for k, v in changes.items()}


class MemoryLedgerError(Exception):
    """Never raised: a dict always answers. The port's ``Error`` for this ledger."""


class MemoryLedger:
    """Subscribers, the due index, the ledger and the pending index, as plain dicts."""

    Error = MemoryLedgerError

    def __init__(self) -> None:
        self.subs: dict[str, Subscriber] = {}
        self.ledgers: dict[str, dict[str, str]] = {}  # id -> lesson -> encoded entry
        self.due: dict[str, float] = {}
        self.pending: dict[tuple[str, str], float] = {}
        self.quarantined: dict[str, str] = {}
        self.ticks: list[tuple[datetime, float, int, int]] = []
        self.variant_sends: dict[tuple[str, str], int] = {}  # (lesson, letter) -> sent

    # subscribers (add, find and suppress set tests up through course.subscribers.lifecycle;
    # the engine does not call them)
    def add(
        self, email: str, first_name: str | None, tz: str, now: float, **record: str
    ) -> Subscriber:
        """A pending subscriber (``record``: ``source``, ``consent``), as ``Store.add``."""
        if any(s.email == email and s.status not in SUPPRESSED for s in self.subs.values()):
            raise DuplicateSubscriber(email)
        sub = Subscriber(secrets.token_hex(6), email, first_name, tz, "pending",
                         float(int(now)), **record)  # fmt: skip
        self.subs[sub.id] = sub
        return sub

    def suppress(self, sub_id: str, status: str, now: float | None = None) -> int:
        """As :meth:`course.store.Store.suppress`; ``now`` (for retention) is not kept here."""
        sub = self.subs.get(sub_id)
        if sub is None:
            return -3
        if sub.status in SUPPRESSED:
            return 0
        self.subs[sub_id] = replace(sub, status=status, version=sub.version + 1)
        self.due.pop(sub_id, None)
        return 1

    def find(self, email: str) -> Subscriber | None:
        """The newest record holding the address."""
        held = [s for s in self.subs.values() if s.email == email.strip().lower()]
        return max(held, key=lambda s: s.created, default=None)

    def get(self, sub_id: str) -> Subscriber | None:
        return self.subs.get(sub_id)

    def get_many(self, sub_ids: list[str]) -> list[tuple[Subscriber | None, set[str]]]:
        return [(self.subs.get(i), set(self.ledgers.get(i, {}))) for i in sub_ids]

    def get_each(self, sub_ids: list[str]) -> list[Subscriber | None]:
        return [self.subs.get(i) for i in sub_ids]

    def update(
        self,
        sub_id: str,
        changes: dict[str, object],
        due: float | str | None = "=",
        expected_version: int | None = None,
    ) -> int:
        sub = self.subs.get(sub_id)
        if sub is None:
            return -3
        if expected_version is not None and sub.version != expected_version:
            return -1
        for name in changes:
            if name not in _FIELDS:
                raise KeyError(name)
        self.subs[sub_id] = replace(sub, **_whole(changes), version=sub.version + 1)  # type: ignore[arg-type]
        if due is None:
            self.due.pop(sub_id, None)
        elif due != "=":
            self.due[sub_id] = float(due)
        return 1

    def quarantine(self, sub_id: str, reason: str) -> None:
        self.quarantined[sub_id] = reason
        self.due.pop(sub_id, None)

    # the due index and the ledger
    def all_due_ids(self, now: float, page: int = 10_000) -> list[str]:
        return [i for i, at in sorted(self.due.items(), key=lambda d: (d[1], d[0])) if at <= now]

    def drop_due(self, sub_id: str) -> None:
        self.due.pop(sub_id, None)

    def due_score(self, sub_id: str) -> float | None:
        return self.due.get(sub_id)

    def ledger(self, sub_id: str) -> dict[str, LedgerEntry]:
        raw = self.ledgers.get(sub_id, {})
        return {lesson: LedgerEntry.decode(lesson, text) for lesson, text in raw.items()}

    def entry(self, sub_id: str, lesson_id: str) -> LedgerEntry | None:
        raw = self.ledgers.get(sub_id, {}).get(lesson_id)
        return LedgerEntry.decode(lesson_id, raw) if raw else None

    def _write(self, sub_id: str, entry: LedgerEntry) -> None:
        self.ledgers.setdefault(sub_id, {})[entry.lesson_id] = entry.encode()

    def claim_many(self, claims: Iterable[Claim]) -> list[int]:
        return [self._claim(claim) for claim in claims]

    def _claim(self, c: Claim) -> int:
        """1 claimed, 0 not active, -1 version moved on, -2 lesson already in the ledger,
        -3 the previous lesson is still on its way (as the store's claim script)."""
        sub = self.subs.get(c.sub_id)
        if sub is None or sub.status != "active":
            return 0
        if sub.version != c.version:
            return -1
        previous = self.entry(c.sub_id, c.previous) if c.previous else None
        if previous is not None and previous.state in _UNFINISHED:
            return -3
        if self.entry(c.sub_id, c.lesson_id) is not None:
            return -2
        self._write(c.sub_id, LedgerEntry(c.lesson_id, "claimed", c.now, 0))
        changes = {"last_sent": float(c.now), "sent_that_day": c.sent_that_day,
                   "last_lesson": c.lesson_id, "last_day": c.lesson_day}  # fmt: skip
        if c.next_due is None:
            changes["status"] = "completed"
            self.due.pop(c.sub_id, None)
        else:
            self.due[c.sub_id] = c.next_due
        self.subs[c.sub_id] = replace(sub, **_whole(changes), version=sub.version + 1)  # type: ignore[arg-type]
        self.pending[c.item] = c.deadline
        return 1

    def start_send(self, sub_id: str, lesson_id: str, now: float, stale_at: float) -> int:
        """The attempt (>= 1); 0 no such entry, -1 subscriber suppressed (entry skipped),
        -2 entry in another state (as the store's start-send script)."""
        entry = self.entry(sub_id, lesson_id)
        if entry is None:
            return 0
        if entry.state not in ("claimed", "retry"):
            return -2
        sub = self.subs.get(sub_id)
        if sub is None or sub.status not in ("active", "completed", "paused"):
            why = sub.status if sub is not None else "erased"
            self._write(sub_id, LedgerEntry(lesson_id, "skipped", now, entry.attempt, why))
            self.pending.pop((sub_id, lesson_id), None)
            return -1
        attempt = entry.attempt + 1
        self._write(sub_id, LedgerEntry(lesson_id, "sending", now, attempt))
        self.pending[(sub_id, lesson_id)] = stale_at
        return attempt

    def start_send_many(
        self, items: list[tuple[str, str]], now: float, stale_at: float
    ) -> list[int]:
        return [self.start_send(s, les, now, stale_at) for s, les in items]

    def finish(
        self,
        sub_id: str,
        entry: LedgerEntry,
        pending_at: float | None = None,
        allowed: tuple[str, ...] = FINISH_FROM,
    ) -> bool:
        """Write ``entry`` only over one of the ``allowed`` states ("" = none yet)."""
        current = self.entry(sub_id, entry.lesson_id)
        if (current.state if current else "") not in allowed:
            return False
        if entry.state == "sent":  # a settled send keeps no message id (no re-sends here)
            entry = replace(entry, detail="")
        self._write(sub_id, entry)
        if pending_at is None:
            self.pending.pop((sub_id, entry.lesson_id), None)
        else:
            self.pending[(sub_id, entry.lesson_id)] = pending_at
        return True

    def finish_many(self, outcomes: list[Outcome]) -> list[bool]:
        return [self.finish(*outcome) for outcome in outcomes]

    # unfinished entries
    def pending_due(self, now: float, limit: int = 1000) -> list[tuple[str, str]]:
        found = sorted((at, f"{s}|{les}") for (s, les), at in self.pending.items() if at <= now)
        return [tuple(name.split("|", 1)) for _, name in found[:limit]]  # type: ignore[misc]

    def pending_count(self) -> int:
        return len(self.pending)

    def drop_pending(self, sub_id: str, lesson_id: str) -> None:
        self.pending.pop((sub_id, lesson_id), None)

    def touch_pending(self, items: list[tuple[str, str]], at: float) -> None:
        for item in items:
            if item in self.pending:  # only those still pending, as ZADD XX
                self.pending[item] = at

    def record_tick(self, now: datetime, duration: float, due: int, claimed: int) -> None:
        self.ticks.append((now, duration, due, claimed))

    def variant_basis(self, lesson_id: str) -> tuple[int, str | None]:
        return 0, None  # no reader counts per variant in memory

    def experiment_winners(self) -> dict[str, object]:
        return {}  # no ``winner: auto`` decisions in memory

    def count_variant_sends(
        self, lesson_id: str, n: int, pin: str | None, letters: Iterable[str]
    ) -> None:
        for letter in letters:
            key = (lesson_id, letter)
            self.variant_sends[key] = self.variant_sends.get(key, 0) + 1
