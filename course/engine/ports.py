"""The ports of the engine: what a tick and a delivery need from the world, and nothing more.

As listmonk's manager declares the ``Store`` and ``Messenger`` it needs and leaves the
adapters at the edge, the engine types against these Protocols, never against Redis or a
provider: :class:`LedgerStore` is the part of :class:`course.store.Store` that ``tick`` and
``deliver`` call (:class:`course.testing.ledger.MemoryLedger` is a second, in-memory one for
fast tests), and :class:`Messenger` is the transport side (every
:class:`course.transport.Transport` is one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from course.mail.grouping import EmailGroup
from course.models.email import Email
from course.models.ledger import Claim, Outcome
from course.models.subscriber import LedgerEntry, Subscriber
from course.transport import SendResult

Item = tuple[str, str]  # (subscriber id, lesson id)
Enqueue = Callable[[list[Item], datetime], None]  # hands a batch of claimed items to workers
LinkMaker = Callable[[str], dict[str, str]]  # subscriber id -> their signed links


class LedgerStore(Protocol):
    """Subscribers, the due index and the ledger, as the engine uses them.

    The rules behind ``claim_many``, ``start_send`` and ``finish`` (see the scripts in
    :mod:`course.store`) are the engine's guarantees: a claim only while the subscriber is
    active, at their version, with the lesson not yet in the ledger and the one before it
    finished; a send starts only from ``claimed`` or ``retry`` while the subscriber may still
    be mailed; an outcome replaces only the states it is allowed to.
    """

    # What it raises when it cannot answer (its server is gone): never a record's fault, so
    # a tick stops instead of quarantining the subscriber it was reading.
    Error: type[Exception]

    # subscribers
    def get(self, sub_id: str) -> Subscriber | None: ...

    def get_many(self, sub_ids: list[str]) -> list[tuple[Subscriber | None, set[str]]]: ...

    def get_each(self, sub_ids: list[str]) -> list[Subscriber | None]: ...

    def update(
        self,
        sub_id: str,
        changes: dict[str, object],
        due: float | str | None = "=",
        expected_version: int | None = None,
    ) -> int: ...

    def quarantine(self, sub_id: str, reason: str) -> None: ...

    # the due index and the ledger
    def all_due_ids(self, now: float, page: int = 10_000) -> list[str]: ...

    def drop_due(self, sub_id: str) -> None: ...

    def ledger(self, sub_id: str) -> dict[str, LedgerEntry]: ...

    def entry(self, sub_id: str, lesson_id: str) -> LedgerEntry | None: ...

    def claim_many(self, claims: Iterable[Claim]) -> list[int]: ...

    def start_send(self, sub_id: str, lesson_id: str, now: float, stale_at: float) -> int: ...

    def start_send_many(self, items: list[Item], now: float, stale_at: float) -> list[int]: ...

    def finish(
        self,
        sub_id: str,
        entry: LedgerEntry,
        pending_at: float | None = None,
        allowed: tuple[str, ...] = ...,
    ) -> bool: ...

    def finish_many(self, outcomes: list[Outcome]) -> list[bool]: ...

    # unfinished entries
    def pending_due(self, now: float, limit: int = 1000) -> list[Item]: ...

    def drop_pending(self, sub_id: str, lesson_id: str) -> None: ...

    def touch_pending(self, items: list[Item], at: float) -> None: ...

    # uncertain sends (course.store.settle): only a tick given a settling window calls these
    def uncertain_due(self, now: float, limit: int = 10_000) -> list[Item]: ...

    def settle_many(
        self, items: list[Item], now: float, window: float, stale_at: float, recheck_at: float
    ) -> list[int]: ...

    def record_tick(self, now: datetime, duration: float, due: int, claimed: int) -> None: ...

    # subject experiments (course.store.variants)
    def experiment_winners(self) -> Mapping[str, Any]: ...  # lesson -> Winner (``.variant``)

    def count_variant_sends(
        self, lesson_id: str, n: int, pin: str | None, letters: Iterable[str]
    ) -> None: ...


class ExperimentStore(Protocol):
    """What the hourly look at subject experiments needs (:mod:`course.store.variants`)."""

    def experiment_winners(self) -> Mapping[str, Any]: ...

    def variant_counts(self, lesson_ids: Iterable[str]) -> dict[str, dict[str, dict[str, int]]]: ...

    def looks_taken(self, lesson_id: str) -> int: ...

    def take_look(self, lesson_id: str, look: int) -> bool: ...

    def record_winner(self, lesson_id: str, winner: Any) -> bool: ...

    def claim_experiment_turn(self, seconds: int = 3600) -> bool: ...


class Messenger(Protocol):
    """Hands emails to a provider, raising only the three errors of :mod:`course.transport`.

    A messenger may say ``max_group``: the most emails of one lesson it takes in one
    ``send_group`` request (none, or 1: one email per request)."""

    def send(self, email: Email) -> SendResult: ...

    def send_group(self, group: EmailGroup) -> SendResult: ...
