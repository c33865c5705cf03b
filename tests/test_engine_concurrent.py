"""Delivery with several sends of a batch in flight at once (COURSE_SEND_CONCURRENCY),
against a real Redis and the SendGrid stand-in: the per-item ledger rules still hold."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import Sender

from course import engine
from course.settings import Settings, SettingsError
from course.subscribers.lifecycle import enrol, unsubscribe
from course.testing.sendgrid_standin import Reply, SendGridStandIn
from course.transport import SendGridTransport

START = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("America/New_York"))


def accepted_ids(standin: SendGridStandIn) -> list[str]:
    return [p["personalizations"][0]["custom_args"]["subscriber_id"] for p in standin.accepted]


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def transport(standin):
    # One request per email (COURSE_SENDGRID_BATCH=1): the per-email steps under concurrency.
    transport = SendGridTransport("SG.test", host=standin.url, timeout=5.0, max_group=1)
    yield transport
    transport.close()


def enrol_many(store, schedule, count: int) -> list:
    return [enrol(store, schedule, f"r{n}@example.com", None, None, START) for n in range(count)]


def test_a_concurrent_batch_sends_each_lesson_once_over_a_few_kept_alive_connections(
    store, schedule, standin, transport
):
    standin.latency = 0.02
    subs = enrol_many(store, schedule, 120)
    sender = Sender(store, schedule, transport, concurrency=8)
    assert sender.tick(START).claimed == 120
    assert sender.deliver(START).sent == 120
    assert sorted(accepted_ids(standin)) == sorted(s.id for s in subs)
    assert all(store.ledger(s.id)["hello"].state == "sent" for s in subs)
    assert 1 < standin.connections_opened <= 8  # sends overlapped, connections were reused
    assert sender.tick(START + timedelta(hours=1)).claimed == 0


def test_a_429_mid_batch_holds_back_the_items_not_started_yet(store, schedule, standin, transport):
    standin.latency = 0.3  # two requests in flight at once; the second answer is a 429
    subs = enrol_many(store, schedule, 8)
    standin.enqueue(Reply(status=202), Reply(status=429, reset_in=300.0))
    sender = Sender(store, schedule, transport, concurrency=2)
    sender.tick(START)
    result = sender.deliver(START)
    seen = standin.requests_seen
    # Only what had started when the 429 came back went out; the rest waited for the reset.
    assert seen <= 2 + 1
    assert result.sent == seen - 1 and result.retrying == 8 - result.sent
    assert sender.tick(START + timedelta(seconds=200)).redispatched == 0
    assert standin.requests_seen == seen
    assert sender.tick(START + timedelta(seconds=310)).redispatched == 8 - result.sent
    sender.deliver(START + timedelta(seconds=310))
    assert sorted(accepted_ids(standin)) == sorted(s.id for s in subs)
    assert [store.ledger(s.id)["hello"].state for s in subs] == ["sent"] * 8


def test_a_send_that_hangs_in_a_concurrent_batch_is_uncertain_and_the_rest_go_out(
    store, schedule, standin
):
    subs = enrol_many(store, schedule, 4)
    standin.enqueue(Reply(hang=True, hang_for=10.0))
    transport = SendGridTransport("SG.test", host=standin.url, timeout=0.5, max_group=1)
    sender = Sender(store, schedule, transport, concurrency=4)
    try:
        sender.tick(START)
        result = sender.deliver(START)
        assert (result.sent, result.uncertain) == (3, 1)
        [hung] = [s for s in subs if store.ledger(s.id)["hello"].state == "uncertain"]
        assert hung.id not in accepted_ids(standin)
        later = START + timedelta(seconds=engine.STALE_AFTER + 60)
        assert sender.tick(later).redispatched == 0
        sender.deliver(later)
    finally:
        transport.close()
    assert standin.requests_seen == 4  # the hung one was never sent again
    assert store.ledger(hung.id)["hello"].state == "uncertain"


def test_unsubscribe_during_a_concurrent_batch_stops_a_send_not_started_yet(
    store, schedule, standin, transport
):
    standin.latency = 1.0  # two at a time: the sixth item starts two seconds in
    subs = enrol_many(store, schedule, 6)
    sender = Sender(store, schedule, transport, concurrency=2)
    sender.tick(START)
    [batch] = sender.batches
    last = next(s for s in subs if s.id == batch[-1][0])
    outcome: list[engine.DeliverResult] = []
    delivering = threading.Thread(target=lambda: outcome.append(sender.deliver(START)))
    delivering.start()
    deadline = time.monotonic() + 30
    while standin.requests_seen == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.ledger(last.id)["hello"].state == "claimed"  # not started yet
    unsubscribe(store, store.get(last.id))
    delivering.join(60)
    assert (outcome[0].sent, outcome[0].skipped) == (5, 1)
    assert last.id not in accepted_ids(standin)
    assert sorted(accepted_ids(standin)) == sorted(s.id for s in subs if s is not last)
    assert store.ledger(last.id)["hello"].state == "skipped"


def test_send_concurrency_comes_from_the_environment_as_a_positive_whole_number():
    assert Settings.from_env({}).send_concurrency == 16
    assert Settings.from_env({"COURSE_SEND_CONCURRENCY": "4"}).send_concurrency == 4
    for bad in ("0", "many"):
        with pytest.raises(SettingsError, match="COURSE_SEND_CONCURRENCY"):
            Settings.from_env({"COURSE_SEND_CONCURRENCY": bad})
