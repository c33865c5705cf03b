"""The SendGrid Event Webhook: signatures (a key pair made here, signed as SendGrid signs),
duplicates, suppression, per-lesson counts and reconciliation of uncertain sends."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from course import engine
from course.models.subscriber import LedgerEntry
from course.settings import SettingsError
from course.subscribers.lifecycle import enrol
from course.testing.sendgrid_standin import Signer
from course.web import create_app
from course.web.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings, send_task=lambda *a, **k: None)) as test_client:
        yield test_client


@pytest.fixture
def signed_client(settings, store, signer):
    signed = settings.with_(sendgrid_webhook_public_key=signer.public_key)
    with TestClient(create_app(signed, send_task=lambda *a, **k: None)) as test_client:
        yield test_client


def post(client, events, headers=None):
    body = json.dumps(events).encode()
    return client.post(
        "/webhooks/sendgrid",
        content=body,
        headers=headers or {"Content-Type": "application/json"},
    )


def event(name: str, sub=None, lesson: str | None = "hello", n: int = 1, **extra) -> dict:
    found = {
        "event": name,
        "email": sub.email if sub else "nobody@example.com",
        "timestamp": int(time.time()),
        "sg_event_id": f"{name}-{n}-{sub.id if sub else 'x'}",
        "sg_message_id": f"msg{n}.filterdrecv-5bd68b-1-ABC.0",
    }
    if sub is not None:
        found["subscriber_id"] = sub.id
    if lesson is not None:
        found["lesson_id"] = lesson
    return {**found, **extra}


@pytest.fixture
def ann(store, schedule):
    return enrol(store, schedule, "ann@example.com", "Ann", "Europe/Berlin", datetime.now(UTC))


# -- signatures -------------------------------------------------------------------------------


def test_a_correctly_signed_batch_is_accepted(signed_client, signer, store, ann):
    body = json.dumps([event("delivered", ann)]).encode()
    answer = signed_client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body))
    assert answer.status_code == 200 and answer.json()["received"] == 1
    assert store.lesson_stats("hello") == {"delivered": 1}


def test_an_unsigned_request_is_refused_when_a_key_is_set(signed_client, store, ann):
    answer = post(signed_client, [event("unsubscribe", ann)])
    assert answer.status_code == 401
    assert store.get(ann.id).status == "active"


def test_a_bad_signature_is_refused(signed_client, signer, store, ann):
    body = json.dumps([event("spamreport", ann)]).encode()
    other = Signer().headers(body)  # signed, but not with SendGrid's key
    assert signed_client.post("/webhooks/sendgrid", content=body, headers=other).status_code == 403
    tampered = signer.headers(body.replace(b"spamreport", b"delivered"))
    tampered_answer = signed_client.post("/webhooks/sendgrid", content=body, headers=tampered)
    assert tampered_answer.status_code == 403
    garbage = {**signer.headers(body), SIGNATURE_HEADER: "not base64 at all!"}
    assert (
        signed_client.post("/webhooks/sendgrid", content=body, headers=garbage).status_code == 403
    )
    assert store.get(ann.id).status == "active" and store.lesson_stats("hello") == {}


def test_a_stale_signed_request_is_refused(signed_client, signer, store, ann):
    body = json.dumps([event("bounce", ann)]).encode()
    stale = signer.headers(body, timestamp=int(time.time()) - 11 * 60)
    assert signed_client.post("/webhooks/sendgrid", content=body, headers=stale).status_code == 403
    odd = {**signer.headers(body), TIMESTAMP_HEADER: "yesterday"}
    assert signed_client.post("/webhooks/sendgrid", content=body, headers=odd).status_code == 403
    assert store.get(ann.id).status == "active"


def test_a_key_that_is_not_one_stops_the_app_at_start(settings, store):
    with pytest.raises(SettingsError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        create_app(settings.with_(sendgrid_webhook_public_key="not-a-key"), send_task=print)


# -- events -----------------------------------------------------------------------------------


def test_duplicate_events_are_applied_once(client, store, ann):
    batch = [event("delivered", ann), event("open", ann)]
    assert post(client, batch).json()["duplicate"] == 0
    again = post(client, batch)  # SendGrid retries a batch it thinks failed
    assert again.status_code == 200 and again.json()["duplicate"] == 2
    assert store.lesson_stats("hello") == {"delivered": 1, "open": 1}
    assert store.redis.ttl(store.event_key(batch[0]["sg_event_id"])) > 6 * 24 * 3600


def test_delivered_open_and_click_are_counted_per_lesson(client, store, ann):
    batch = [
        event("delivered", ann, "hello", 1),
        event("open", ann, "hello", 2),
        event("open", ann, "hello", 3),
        event("click", ann, "hello", 4, url="https://example.com"),
        event("delivered", ann, "second", 5),
        event("delivered", ann, "confirmation", 6),
    ]
    assert post(client, batch).status_code == 200
    assert store.lesson_stats("hello") == {"delivered": 1, "open": 2, "click": 1}
    assert store.lesson_stats("second") == {"delivered": 1}
    assert store.lesson_stats("confirmation") == {"delivered": 1}
    assert store.get(ann.id).status == "active"


@pytest.mark.parametrize(
    ("name", "extra", "status"),
    [
        ("bounce", {"type": "bounce", "reason": "550 5.1.1 no such user"}, "bounced"),
        ("bounce", {"type": "blocked", "reason": "421 try later"}, "active"),
        ("dropped", {"reason": "Bounced Address"}, "bounced"),
        ("dropped", {"reason": "Spam Reporting Address"}, "complained"),
        ("spamreport", {}, "complained"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 1}, "unsubscribed"),
        ("deferred", {}, "active"),
    ],
)
def test_hard_failures_and_complaints_suppress_the_address(client, store, ann, name, extra,
                                                            status):  # fmt: skip
    assert post(client, [event(name, ann, **extra)]).status_code == 200
    assert store.get(ann.id).status == status
    if status != "active":
        assert store.due_score(ann.id) is None
    counted = "blocked" if extra.get("type") == "blocked" else name
    assert store.lesson_stats("hello") == {counted: 1}


def test_an_event_without_custom_args_finds_the_address(client, store, ann):
    bare = {"event": "spamreport", "email": "ANN@example.com", "sg_event_id": "bare-1"}
    assert post(client, [bare]).json()["suppressed"] == 1
    assert store.get(ann.id).status == "complained"


def test_an_event_naming_a_subscriber_with_another_address_is_ignored(client, store, ann):
    forged = {**event("unsubscribe", ann), "email": "mallory@example.com"}
    assert post(client, [forged]).json()["ignored"] == 1
    assert store.get(ann.id).status == "active"


def test_unknown_subscribers_lessons_and_junk_are_counted_and_ignored(client, store, ann):
    batch = [
        event("delivered", None, "hello", 1, subscriber_id="ffffffffffff"),
        event("delivered", ann, "a-lesson-long-gone", 2),
        event("bounce", None, None, 3, email="stranger@example.com"),
        "not an event",
        {"no": "event name"},
        {"event": 5},
    ]
    answer = post(client, batch)
    assert answer.status_code == 200
    assert answer.json()["received"] == 6 and answer.json()["ignored"] == 5
    stats = store.webhook_stats()
    assert stats["unknown_subscriber"] == 2 and stats["unknown_lesson"] == 1
    assert stats["invalid"] == 3 and stats["received"] == 6
    assert store.get(ann.id).status == "active"


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"event": "delivered"}', 400), (b"", 400), (b"[]", 200)],
)
def test_a_body_that_is_not_a_json_array_is_400(client, body, status):
    answer = client.post(
        "/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status


# -- reconciliation ---------------------------------------------------------------------------


def uncertain(store, schedule, sub, now) -> str:
    """Claim lesson 0 and leave it as a send that got no answer."""
    claimed: list = []
    engine.tick(store, schedule, now, lambda items, when: claimed.extend(items))
    ((sub_id, lesson_id),) = claimed
    ts = now.timestamp()
    assert store.start_send(sub_id, lesson_id, ts, ts + 900) == 1
    entry = LedgerEntry(lesson_id, "uncertain", ts, 1, "timed out")
    assert store.finish(sub_id, entry, allowed=("sending",))
    return lesson_id


def test_a_processed_event_settles_an_uncertain_send_as_sent(client, store, schedule, ann):
    lesson = uncertain(store, schedule, ann, datetime.now(UTC))
    answer = post(client, [event("processed", ann, lesson, 7)])
    assert answer.json()["reconciled"] == 1
    entry = store.entry(ann.id, lesson)
    # Settled: the message id is not kept (only a re-sent entry keeps it, layout 5).
    assert entry.state == "sent" and entry.detail == "" and entry.attempt == 1
    assert store.pending_count() == 0
    post(client, [event("delivered", ann, lesson, 8)])  # later events change nothing more
    assert store.entry(ann.id, lesson) == entry


def test_a_bounce_settles_an_uncertain_send_as_failed(client, store, schedule, ann):
    lesson = uncertain(store, schedule, ann, datetime.now(UTC))
    post(client, [event("bounce", ann, lesson, type="bounce", reason="550 unknown user")])
    entry = store.entry(ann.id, lesson)
    assert entry.state == "failed" and "550 unknown user" in entry.detail
    assert store.get(ann.id).status == "bounced"


def test_events_never_rewrite_a_settled_entry(client, store, schedule, ann):
    lesson = uncertain(store, schedule, ann, datetime.now(UTC))
    store.finish(ann.id, LedgerEntry(lesson, "sent", time.time(), 1, "known"),
                 allowed=("uncertain",))  # fmt: skip
    post(client, [event("dropped", ann, lesson, reason="Invalid")])
    assert store.entry(ann.id, lesson).state == "sent"


def test_outside_dev_unsigned_events_are_refused_when_no_key_is_set(settings, store, schedule):
    sub = enrol(store, schedule, "ann@example.com", "Ann", None, datetime.now(UTC))
    production = settings.with_(env="production")
    with TestClient(create_app(production, send_task=lambda *a, **k: None)) as client:
        answer = client.post("/webhooks/sendgrid", json=[{"event": "spamreport",
                                                          "email": "ann@example.com"}])  # fmt: skip
    assert answer.status_code == 403
    assert store.get(sub.id).status == "active"


def test_an_event_whose_handling_failed_is_handled_when_sendgrid_retries(
    client, store, schedule, monkeypatch
):
    sub = enrol(store, schedule, "ann@example.com", "Ann", None, datetime.now(UTC))
    event = {"event": "unsubscribe", "email": "ann@example.com", "sg_event_id": "ev-1"}
    real_find = store.find

    def failing_find(address):
        raise ConnectionError("killed mid-batch")

    monkeypatch.setattr("course.store.Store.find", lambda self, address: failing_find(address))
    with pytest.raises(ConnectionError):
        client.post("/webhooks/sendgrid", json=[event])
    monkeypatch.setattr("course.store.Store.find", lambda self, address: real_find(address))

    again = client.post("/webhooks/sendgrid", json=[event])
    assert again.status_code == 200 and again.json()["duplicate"] == 0
    assert store.get(sub.id).status == "unsubscribed"


# -- one bad event never costs the others -----------------------------------------------------


def test_a_bad_event_is_skipped_and_the_rest_of_the_signed_batch_is_applied(
    signed_client, signer, store, schedule, ann, caplog
):
    bob = enrol(store, schedule, "bob@example.com", "Bob", "UTC", datetime.now(UTC))
    batch = [
        event("delivered", ann, "hello", 1, email="ann\ud800@example.com"),
        {**event("open", ann, "hello", 2), "sg_event_id": "ev-\ud800"},
        event("dropped", ann, "hello\udfff", 3, reason="\ud800"),
        event("bounce", None, None, 4, email=["not", "text"], subscriber_id={"a": 1}),
        event("delivered", ann, "hello", 5, timestamp="x", sg_message_id=7),
        event("bounce", bob, "hello", 6, type="bounce", reason="550 unknown user"),
    ]
    body = json.dumps(batch).encode()  # "\ud800" goes over the wire as the escape \\ud800
    assert b"\\ud800" in body
    answer = signed_client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body))
    assert answer.status_code == 200, answer.text
    assert answer.json()["received"] == 6 and answer.json()["suppressed"] == 1
    assert store.get(bob.id).status == "bounced"
    assert store.get(ann.id).status == "active"
    assert store.lesson_stats("hello") == {"bounce": 1}  # nothing of the bad events counted
    assert store.webhook_stats()["invalid"] == 5
    skipped = [r.getMessage() for r in caplog.records if "webhook_event_skipped" in r.getMessage()]
    assert skipped[0] == "webhook_event_skipped index=0 reason=email: not valid Unicode text"
    assert len(skipped) == 5


def test_an_event_naming_an_international_domain_in_punycode_finds_the_subscriber(
    client, store, schedule
):
    """Lessons go to ``xn--`` domains (see test_transport); SendGrid's events name them so."""
    anna = enrol(store, schedule, "anna@bücher.example", "Anna", "UTC", datetime.now(UTC))
    bruno = enrol(store, schedule, "bruno@bücher.example", "Bruno", "UTC", datetime.now(UTC))
    batch = [
        event("bounce", anna, "hello", 1, email="anna@xn--bcher-kva.example", type="bounce"),
        {"event": "spamreport", "email": "Bruno@XN--BCHER-KVA.example", "sg_event_id": "s-1"},
    ]
    answer = post(client, batch)
    assert answer.status_code == 200 and answer.json()["suppressed"] == 2
    assert store.get(anna.id).status == "bounced"
    assert store.get(bruno.id).status == "complained"
