"""``GET /metrics``: Prometheus text read from Redis at each scrape, through FastAPI's
TestClient, parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from course import engine
from course.mail.render import Renderer
from course.reports.metrics import build_registry
from course.store import Store
from course.subscribers.lifecycle import enrol, unsubscribe
from course.testing.sendgrid_standin import Reply, SendGridStandIn
from course.tokens import subscriber_links
from course.transport import SendGridTransport
from course.web import create_app

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # before the scrape's wall clock: all due


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample of an exposition by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, send_task=lambda *a, **k: None)) as client:
        yield client


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


def deliver(store: Store, schedule, standin: SendGridStandIn, batches) -> None:
    # One request per email, so that each scripted answer below meets one email.
    transport = SendGridTransport("SG.test", host=standin.url, timeout=0.5, max_group=1)
    try:
        for items, now in batches:
            engine.deliver(
                store,
                Renderer(schedule),
                transport,
                items,
                now,
                lambda sub_id: subscriber_links("https://course.example", "s", sub_id),
            )
    finally:
        transport.close()


def test_metrics_count_every_outcome_the_ledger_and_the_provider_recorded(
    client, store, schedule, standin
):
    subs = [enrol(store, schedule, f"m{i}@example.com", None, "UTC", NOW) for i in range(6)]
    batches: list = []
    ticks = iter([100.0, 100.25])  # the tick's timer: it took a quarter of a second
    result = engine.tick(store, schedule, NOW, lambda items, now: batches.append((items, now)),
                         timer=lambda: next(ticks))  # fmt: skip
    assert result.claimed == 6
    unsubscribe(store, store.get(subs[0].id))  # between the tick and the send: skipped
    # The next three requests: a 500 (retried later), a 400 (failed), no answer (uncertain).
    standin.enqueue(Reply(status=500), Reply(status=400), Reply(hang=True, hang_for=2.0))
    deliver(store, schedule, standin, batches)
    store.quarantine("broken-record", "ValueError: damaged by hand")
    late = [enrol(store, schedule, f"late{i}@example.com", None, "UTC", NOW) for i in range(2)]
    sent = [s for s in subs if store.entry(s.id, "hello").state == "sent"]

    def event(name: str, event_id: str, sub) -> dict:
        return {
            "event": name,
            "sg_event_id": event_id,
            "subscriber_id": sub.id,
            "lesson_id": "hello",
            "email": sub.email,
            "timestamp": int(NOW.timestamp()),
        }

    events = [event("delivered", f"d{i}", s) for i, s in enumerate(sent)]
    events.append(event("open", "o1", sent[0]))
    assert client.post("/webhooks/sendgrid", json=events).status_code == 200

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "course_redis_up") == 1
    emails = {o: value(found, "course_emails_total", lesson="hello", outcome=o)
              for o in ("sent", "failed", "skipped", "retried")}  # fmt: skip
    assert emails == {"sent": 2, "failed": 1, "skipped": 1, "retried": 1}
    assert value(found, "course_emails_uncertain", lesson="hello") == 1
    assert value(found, "course_emails_total", lesson="second", outcome="sent") == 0
    assert value(found, "course_provider_events_total", lesson="hello", event="delivered") == 2
    assert value(found, "course_provider_events_total", lesson="hello", event="open") == 1
    assert value(found, "course_webhook_events_total", outcome="received") == 3
    assert value(found, "course_due_subscribers") == len(subs) - 1 + len(late)
    assert value(found, "course_pending_sends") == 1  # the retry
    assert value(found, "course_quarantined_subscribers") == 1
    assert value(found, "course_subscribers") == len(subs) + len(late)
    assert value(found, "course_tick_duration_seconds_count") == 1
    assert value(found, "course_tick_duration_seconds_sum") == 0.25
    assert value(found, "course_last_tick_duration_seconds") == 0.25
    assert value(found, "course_last_tick_timestamp_seconds") == NOW.timestamp()
    assert value(found, "course_last_tick_due") == 6
    assert value(found, "course_last_tick_claimed") == 6

    # A minute after the tick (the scrape's clock): the two who signed up since are due,
    # the others' next lessons are days away; the retry's 30 s are over.
    minute_later = build_registry(store, lambda: ["hello"], lambda: NOW.timestamp() + 60)
    found = samples(generate_latest(minute_later).decode())
    assert value(found, "course_due_backlog") == len(late)
    assert value(found, "course_pending_sends_overdue") == 1


def test_every_tick_adds_its_duration_and_counts_to_redis(store, schedule):
    enrol(store, schedule, "a@example.com", None, "UTC", NOW)
    clock = iter([5.0, 5.5, 9.0, 9.125])
    enqueue = lambda items, now: None  # noqa: E731
    engine.tick(store, schedule, NOW, enqueue, timer=lambda: next(clock))
    second = engine.tick(store, schedule, NOW, enqueue, timer=lambda: next(clock))
    assert second.duration == 0.125 and second.due == 0  # claimed by the first one
    stats = store.tick_stats()
    assert stats["count"] == 2 and stats["seconds_total"] == 0.625
    assert stats["last_duration"] == 0.125 and stats["last_due"] == 0
    assert store.last_tick() == NOW.isoformat()


def test_metrics_of_a_store_whose_redis_is_down_say_so_instead_of_failing():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    registry = build_registry(Store(client), lambda: ["hello"], lambda: NOW.timestamp())
    found = samples(generate_latest(registry).decode())
    assert found == {("course_redis_up", ()): 0.0}


def test_metrics_token_is_required_when_set(settings, store):
    app = create_app(settings.with_(metrics_token="scrape-me"), send_task=lambda *a, **k: None)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        basic = client.get("/metrics", headers={"Authorization": "Basic scrape-me"})
        assert basic.status_code == 401
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert right.status_code == 200
        assert value(samples(right.text), "course_redis_up") == 1
