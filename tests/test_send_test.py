"""``course send-test``: one email to the marketer's own address through the configured
transport, marked as a test, with links that act on nobody, and no trace in Redis."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime
from email import policy
from urllib.parse import urlparse

import pytest
import redis
from aiosmtpd.controller import Controller
from conftest import cli_runner, course_env, db_url, free_port
from fastapi.testclient import TestClient

from course.schedule import load_schedule
from course.store import Store
from course.subscribers.lifecycle import enrol
from course.testing.sendgrid_standin import SendGridStandIn
from course.web import create_app
from course.web.webhook import handle_events

SEND_TEST_DB = 11  # this module owns this database of the tests' server
NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


@pytest.fixture
def db(redis_url):
    client = redis.Redis.from_url(db_url(redis_url, SEND_TEST_DB), decode_responses=True)
    client.flushdb()
    yield Store(client)
    client.flushdb()
    client.close()


@pytest.fixture
def run(tmp_path, course_path, redis_url, monkeypatch, capsys):
    """``course ARGS`` in this process (as ``python -m course`` runs it: same entry point,
    exit status and output), or in a subprocess of its own with ``subprocess=True``."""
    env = course_env(db_url(redis_url, SEND_TEST_DB), course_path, tmp_path)
    return cli_runner(env, monkeypatch, capsys)


def outbox_messages(tmp_path) -> list[email.message.EmailMessage]:
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def keys_and_values(store: Store) -> dict[str, object]:
    found = {}
    for key in store.redis.scan_iter():
        kind = store.redis.type(key)
        if kind == "zset":
            found[key] = store.redis.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = store.redis.hgetall(key) if kind == "hash" else store.redis.get(key)
    return found


def test_send_test_to_the_outbox_marks_the_subject_and_leaves_redis_untouched(
    run, tmp_path, db, schedule
):
    sub = enrol(db, schedule, "me@example.com", "Me", None, NOW)
    before = keys_and_values(db)
    result = run("send-test", "second", "--to", "me@example.com", "--name", "Robin",
                 subprocess=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sent test of second to me@example.com via outbox" in result.stdout
    [msg] = outbox_messages(tmp_path)
    assert msg["Subject"] == "[TEST] Second"
    assert msg["To"].addresses[0].addr_spec == "me@example.com"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "This is a test send of" in part and "Robin" in part
    assert "X-Course-Subscriber-Id" not in msg and msg["X-Course-Send-Test"] == "1"
    assert keys_and_values(db) == before  # no ledger entry, the due index as it was
    assert db.ledger(sub.id) == {}


def test_send_test_links_lead_to_a_page_that_changes_nothing(run, tmp_path, db, schedule, settings):
    sub = enrol(db, schedule, "me@example.com", "Me", None, NOW)
    assert run("send-test", "hello", "--to", "me@example.com").returncode == 0
    [msg] = outbox_messages(tmp_path)
    unsubscribe_url = msg["List-Unsubscribe"].strip("<>")
    app = create_app(settings.with_(redis_url=db_url(settings.redis_url, SEND_TEST_DB)),
                     send_task=print)  # fmt: skip
    with TestClient(app) as client:
        path = urlparse(unsubscribe_url).path
        answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 404 and "not valid" in answer.text
    assert db.get(sub.id).status == "active"


def test_provider_events_of_a_test_send_touch_no_subscriber_and_no_stats(db, schedule):
    sub = enrol(db, schedule, "me@example.com", "Me", None, NOW)
    events = [{"event": name, "email": "me@example.com", "send_test": "1"}
              for name in ("delivered", "open", "spamreport")]  # fmt: skip
    report = handle_events(db, schedule, events, NOW.timestamp())
    assert report.ignored == 3 and report.suppressed == 0
    assert db.get(sub.id).status == "active"
    assert db.stats_lesson_ids() == set()


def test_send_test_works_for_the_confirmation_and_the_completion(run, tmp_path, course_path):
    text = course_path.read_text() + (
        'completion:\n  subject: "You made it"\n  preheader: "The end"\n'
        "  template: lessons/fourth.md\n"
    )
    course_path.write_text(text)
    load_schedule(course_path)  # the test's own schedule is valid
    assert run("send-test", "confirmation", "--to", "me@example.com").returncode == 0
    result = run("send-test", "course-complete", "--to", "me@example.com")
    assert result.returncode == 0, result.stderr
    subjects = sorted(m["Subject"] for m in outbox_messages(tmp_path))
    assert subjects == ["[TEST] Please confirm", "[TEST] You made it"]


def test_send_test_unknown_lesson_lists_the_valid_ids_and_exits_1(run, tmp_path):
    result = run("send-test", "nope", "--to", "me@example.com")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("(lessons: confirmation, hello, second, third, fourth)")
    assert "no lesson 'nope'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outbox").exists() or outbox_messages(tmp_path) == []


def test_send_test_invalid_address_is_one_line_and_exits_1(run):
    result = run("send-test", "hello", "--to", "not-an-address")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'not-an-address' is not a valid email address" in result.stderr


class Recorder:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            (
                list(envelope.rcpt_tos),
                email.message_from_bytes(envelope.content, policy=policy.default),
            )
        )
        return "250 Message accepted for delivery"  # fmt: skip


def test_send_test_through_smtp(run):
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = run("send-test", "third", "--to", "me@example.com",
                     COURSE_TRANSPORT="smtp", SMTP_URL=f"smtp://127.0.0.1:{port}")  # fmt: skip
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    [(rcpt, msg)] = recorder.messages
    assert rcpt == ["me@example.com"] and msg["Subject"] == "[TEST] Third"


def test_send_test_through_sendgrid_sends_no_subscriber_or_lesson_id(run):
    with SendGridStandIn(api_key="SG.test") as standin:
        result = run("send-test", "fourth", "--to", "me@example.com",
                     COURSE_TRANSPORT="sendgrid", SENDGRID_API_KEY="SG.test",
                     SENDGRID_HOST=standin.url)  # fmt: skip
        payloads = standin.accepted
    assert result.returncode == 0, result.stderr
    assert "provider id" in result.stdout
    [payload] = payloads
    assert payload["subject"] == "[TEST] Fourth"
    [person] = payload["personalizations"]
    assert person["to"] == [{"email": "me@example.com", "name": "Alex"}]
    assert json.dumps(payload).count("lesson_id") == 0
    assert person["custom_args"] == {"send_test": "1"}
