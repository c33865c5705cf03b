"""Claim rules and delivery outcomes against both ledgers behind the engine's port.

Each test runs twice: on the in-memory ledger (:mod:`course.testing.ledger`, fast and pure)
and on the real Redis store. Both must give the same answers; the end-to-end real-Redis
tests stay in tests/test_engine.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from course import engine
from course.engine.tick import _plan
from course.mail.render import Renderer
from course.models.email import Email
from course.subscribers.lifecycle import enrol, pause, unsubscribe
from course.testing.ledger import MemoryLedger
from course.tokens import subscriber_links
from course.transport import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)

NY = ZoneInfo("America/New_York")
START = datetime(2026, 3, 2, 9, tzinfo=NY)


@pytest.fixture
def renderer(schedule) -> Renderer:
    return Renderer(schedule)


@pytest.fixture(params=["memory", "redis"])
def ledger(request) -> engine.LedgerStore:
    if request.param == "memory":
        return MemoryLedger()
    return request.getfixturevalue("store")


class Scripted:
    """A messenger that answers each send with the next scripted answer (then accepts)."""

    max_group = 1

    def __init__(self, *answers: SendResult | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[Email] = []

    def send(self, email: Email) -> SendResult:
        self.sent.append(email)
        answer = self.answers.pop(0) if self.answers else SendResult(f"msg-{len(self.sent)}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    def send_group(self, group):  # max_group 1: never called
        raise AssertionError("no groups")


def links(sub_id: str) -> dict[str, str]:
    return subscriber_links("https://course.example", "secret", sub_id)


def tick(ledger, schedule, now: datetime) -> tuple[engine.TickResult, list[engine.Item]]:
    items: list[engine.Item] = []
    result = engine.tick(ledger, schedule, now, lambda batch, _: items.extend(batch))
    return result, items


def deliver(ledger, renderer, messenger, items, now: datetime) -> engine.DeliverResult:
    return engine.deliver(ledger, renderer, messenger, items, now, links)


def new_subscriber(ledger, schedule, address: str = "a@example.com"):
    return enrol(ledger, schedule, address, "Ann", "America/New_York", START)


# Claim rules


def test_a_due_subscriber_is_claimed_once_and_a_repeated_tick_finds_nothing(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    first, items = tick(ledger, schedule, START)
    assert (first.due, first.claimed, items) == (1, 1, [(sub.id, "hello")])
    again, more = tick(ledger, schedule, START)
    assert (again.claimed, more) == (0, [])
    assert ledger.entry(sub.id, "hello").state == "claimed"


def test_nothing_is_claimed_before_it_is_due(ledger, schedule):
    new_subscriber(ledger, schedule)
    result, items = tick(ledger, schedule, START - timedelta(minutes=1))
    assert (result.due, result.claimed, items) == (0, 0, [])


def test_a_paused_or_unsubscribed_subscriber_is_not_claimed(ledger, schedule):
    paused = new_subscriber(ledger, schedule, "p@example.com")
    pause(ledger, paused, START)
    gone = new_subscriber(ledger, schedule, "u@example.com")
    unsubscribe(ledger, gone)
    result, items = tick(ledger, schedule, START + timedelta(days=5))
    assert (result.claimed, items) == (0, [])
    assert ledger.ledger(paused.id) == {} and ledger.ledger(gone.id) == {}


def test_a_claim_on_a_version_that_moved_on_is_refused(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    stale, done = ledger.get_many([sub.id])[0]
    claim = _plan(ledger, schedule, START, sub.id, stale, done, engine.TickResult())
    ledger.update(sub.id, {"first_name": "Anne"})
    assert ledger.claim_many([claim]) == [-1]
    assert ledger.ledger(sub.id) == {}


def test_a_claim_after_an_unsubscribe_is_refused(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    stale, done = ledger.get_many([sub.id])[0]
    claim = _plan(ledger, schedule, START, sub.id, stale, done, engine.TickResult())
    unsubscribe(ledger, ledger.get(sub.id))
    assert ledger.claim_many([claim]) == [0]


def test_a_lesson_already_in_the_ledger_is_not_claimed_again(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    fresh, done = ledger.get_many([sub.id])[0]
    claim = _plan(ledger, schedule, START, sub.id, fresh, done, engine.TickResult())
    assert ledger.claim_many([claim]) == [1]
    again = claim._replace(version=ledger.get(sub.id).version)
    assert ledger.claim_many([again]) == [-2]


def test_the_next_lesson_waits_while_the_one_before_is_on_its_way(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    tick(ledger, schedule, START)  # hello claimed, never delivered
    later = datetime(2026, 3, 4, 8, tzinfo=NY)
    current, done = ledger.get_many([sub.id])[0]
    claim = _plan(ledger, schedule, later, sub.id, current, done, engine.TickResult())
    assert claim.lesson_id == "second" and claim.previous == "hello"
    assert ledger.claim_many([claim]) == [-3]


def test_after_downtime_overdue_lessons_catch_up_one_a_day_in_order(ledger, schedule, renderer):
    sub = new_subscriber(ledger, schedule)
    messenger = Scripted()
    _, items = tick(ledger, schedule, START)
    deliver(ledger, renderer, messenger, items, START)
    back = datetime(2026, 3, 7, 12, tzinfo=NY)  # second, third and fourth are overdue
    claimed = []
    for now in (back, back + timedelta(minutes=1), datetime(2026, 3, 8, 8, tzinfo=NY),
                datetime(2026, 3, 9, 8, tzinfo=NY)):  # fmt: skip
        _, items = tick(ledger, schedule, now)
        claimed.append([lesson for _, lesson in items])
        deliver(ledger, renderer, messenger, items, now)
    assert claimed == [["second"], [], ["third"], ["fourth"]]
    assert ledger.get(sub.id).status == "completed"


# Delivery outcomes


def claimed_one(ledger, schedule):
    sub = new_subscriber(ledger, schedule)
    _, items = tick(ledger, schedule, START)
    return sub, items


def test_a_send_the_provider_accepts_is_recorded_as_sent(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    messenger = Scripted(SendResult("abc"))
    result = deliver(ledger, renderer, messenger, items, START)
    assert (result.sent, result.errors) == (1, [])
    entry = ledger.entry(sub.id, "hello")
    # Settled: the provider's message id is not kept (layout 5; only a re-sent entry keeps it).
    assert (entry.state, entry.attempt, entry.detail) == ("sent", 1, "")
    assert messenger.sent[0].to_email == "a@example.com"
    assert ledger.pending_due(START.timestamp() + 10**6) == []


def test_a_transient_failure_is_retried_after_its_backoff(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    result = deliver(ledger, renderer, Scripted(TransientSendError("503")), items, START)
    assert result.retrying == 1
    entry = ledger.entry(sub.id, "hello")
    assert (entry.state, entry.attempt, entry.detail) == ("retry", 1, "503")
    ts = START.timestamp()
    assert ledger.pending_due(ts + engine.backoff(1) - 1) == []
    assert ledger.pending_due(ts + engine.backoff(1)) == [(sub.id, "hello")]


def test_a_transient_failure_gives_up_after_max_attempts(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    failures = [TransientSendError("503")] * engine.MAX_ATTEMPTS
    messenger = Scripted(*failures)
    now = START
    for _ in range(engine.MAX_ATTEMPTS):
        deliver(ledger, renderer, messenger, items, now)
        now += timedelta(seconds=engine.BACKOFF_CAP + 1)
        _, items = tick(ledger, schedule, now)
    entry = ledger.entry(sub.id, "hello")
    assert (entry.state, entry.attempt) == ("failed", engine.MAX_ATTEMPTS)
    assert len(messenger.sent) == engine.MAX_ATTEMPTS


def test_a_permanent_refusal_fails_at_once(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    result = deliver(ledger, renderer, Scripted(PermanentSendError("bad address")), items, START)
    assert result.failed == 1
    entry = ledger.entry(sub.id, "hello")
    assert (entry.state, entry.detail) == ("failed", "bad address")
    assert tick(ledger, schedule, START + timedelta(hours=2))[1] == []


def test_a_send_with_an_unknown_outcome_is_uncertain_and_not_resent(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    messenger = Scripted(UncertainSendError("no answer"))
    assert deliver(ledger, renderer, messenger, items, START).uncertain == 1
    assert ledger.entry(sub.id, "hello").state == "uncertain"
    assert deliver(ledger, renderer, messenger, items, START).skipped == 1
    assert len(messenger.sent) == 1


def test_an_unexpected_error_fails_the_entry_and_says_why(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    result = deliver(ledger, renderer, Scripted(ValueError("boom")), items, START)
    assert result.failed == 1
    assert result.errors == [f"{sub.id}/hello: ValueError: boom"]
    assert ledger.entry(sub.id, "hello").state == "failed"


def test_unsubscribe_between_tick_and_send_sends_nothing(ledger, schedule, renderer):
    sub, items = claimed_one(ledger, schedule)
    unsubscribe(ledger, ledger.get(sub.id))
    messenger = Scripted()
    assert deliver(ledger, renderer, messenger, items, START).skipped == 1
    assert messenger.sent == []
    entry = ledger.entry(sub.id, "hello")
    assert (entry.state, entry.detail) == ("skipped", "unsubscribed")


def test_a_batch_delivered_twice_sends_once(ledger, schedule, renderer):
    _, items = claimed_one(ledger, schedule)
    messenger = Scripted()
    assert deliver(ledger, renderer, messenger, items, START).sent == 1
    assert deliver(ledger, renderer, messenger, items, START).skipped == 1
    assert len(messenger.sent) == 1


def test_a_send_whose_worker_died_becomes_uncertain(ledger, schedule):
    sub, _ = claimed_one(ledger, schedule)
    ts = START.timestamp()
    assert ledger.start_send(sub.id, "hello", ts, ts + engine.STALE_AFTER) == 1
    later = START + timedelta(seconds=engine.STALE_AFTER + 1)
    result, items = tick(ledger, schedule, later)
    assert (result.uncertain, items) == (1, [])
    assert ledger.entry(sub.id, "hello").state == "uncertain"


def test_a_claim_whose_message_was_lost_is_handed_out_again(ledger, schedule):
    sub, _ = claimed_one(ledger, schedule)  # the broker lost the batch
    later = START + timedelta(seconds=engine.STALE_AFTER + 1)
    result, items = tick(ledger, schedule, later)
    assert (result.redispatched, items) == (1, [(sub.id, "hello")])
