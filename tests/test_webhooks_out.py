"""Outbound webhooks (COURSE_WEBHOOKS): real receivers (HTTP servers in threads of this
process) check every signature; a real Celery worker posts the events that real state
changes emit (confirm, lessons sent up to completion, a check-in, an unsubscribe), retries a
500, drops after the last attempt with its count, and never retries a 400."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from conftest import course_env, db_url, start_worker
from fastapi.testclient import TestClient
from kombu.exceptions import OperationalError

from course import engine
from course.local.supervise import stop_all
from course.schedule import load_schedule
from course.settings import Settings, SettingsError
from course.store import Store
from course.subscribers.checkin import check_in
from course.subscribers.lifecycle import confirm, enrol, unsubscribe
from course.tasks import create_app, enqueuer
from course.web import create_app as create_web_app
from course.webhooks.delivery import GONE, run_jobs
from course.webhooks.emit import Emitter
from course.webhooks.endpoints import Endpoint
from course.webhooks.events import SIGNATURE_HEADER, new_event, sign, verify
from course.webhooks.post import Poster

WEBHOOKS_DB = 4  # this module owns this database of the tests' server
NOW = datetime(2026, 5, 4, 12, tzinfo=UTC)
DELAYS = "0.2,0.2"  # three attempts, quickly


class Receiver:
    """An HTTP server in a thread that keeps every POST (headers, body) and answers each
    with ``answer(event id, times that id was seen before)``, or sleeps ``delay`` first."""

    def __init__(self, answer: Callable[[str, int], int] = lambda _id, _n: 200):
        self.answer = answer
        self.delay = 0.0
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive: the poster reuses its connection

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event_id = self.headers.get("X-Course-Event-Id", "")
                with receiver.lock:
                    seen = sum(
                        1 for h, _ in receiver.posts if h.get("x-course-event-id") == event_id
                    )
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay)
                status = receiver.answer(event_id, seen)
                try:
                    self.send_response(status)
                    if status in (301, 302, 307, 308):
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the poster gave up waiting (a timeout test)
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/course"
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def readme_verify(secret: str, header: str, body: bytes) -> bool:
    """The README's receiver example, written out independently of course.webhooks."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected.hexdigest(), fields["v1"])


@pytest.fixture(scope="module")
def hooks(tmp_path_factory, redis_url, make_course):
    receivers = {
        "all": Receiver(),
        "flaky": Receiver(lambda _id, seen: 500 if seen == 0 else 200),
        "down": Receiver(lambda _id, _seen: 503),
        "bad": Receiver(lambda _id, _seen: 400),
    }
    wanted = {"all": ["*"], "flaky": ["subscriber.confirmed"],
              "down": ["subscriber.unsubscribed"], "bad": ["checkin.recorded"]}  # fmt: skip
    keys = {name: secrets.token_urlsafe(32) for name in receivers}
    config = [{"url": r.url, "events": wanted[name], "secret": keys[name]}
              for name, r in receivers.items()]  # fmt: skip
    folder = tmp_path_factory.mktemp("webhooks")
    schedule_path = make_course(folder / "course")
    url = db_url(redis_url, WEBHOOKS_DB)
    redis.Redis.from_url(url).flushdb()
    env = course_env(url, schedule_path, folder, COURSE_WEBHOOKS=json.dumps(config),
                     COURSE_WEBHOOK_RETRY_DELAYS=DELAYS)  # fmt: skip
    settings = Settings.from_env(env)
    app = create_app(settings, url)
    proc = start_worker(env, folder / "worker.log", app)
    yield {"app": app, "url": url, "env": env, "settings": settings, "proc": proc,
           "receivers": receivers, "keys": keys, "schedule": load_schedule(schedule_path),
           "log": folder / "worker.log"}  # fmt: skip
    stop_all({"worker": proc})
    app.close()
    for receiver in receivers.values():
        receiver.close()


@pytest.fixture
def world(hooks):
    client = redis.Redis.from_url(hooks["url"], decode_responses=True)
    for key in client.scan_iter("hr:*"):
        client.delete(key)
    for receiver in hooks["receivers"].values():
        with receiver.lock:
            receiver.posts.clear()
    store = Store(client)
    emitter = Emitter(hooks["settings"].webhooks, hooks["app"].send_task, store.count_outbound)
    yield {**hooks, "store": store, "events": emitter}
    quiet_receivers(hooks["receivers"].values())  # no retry of this test lands in the next
    client.close()


def quiet_receivers(receivers, quiet: float = 0.6) -> None:
    """Until no receiver got a post for ``quiet`` seconds (longer than a retry delay)."""
    deadline = time.monotonic() + 10
    seen = -1
    while time.monotonic() < deadline:
        count = sum(len(receiver.posts) for receiver in receivers)
        if count == seen:
            return
        seen = count
        time.sleep(quiet)


def drained(world) -> Callable[[], bool]:
    def check() -> bool:
        assert world["proc"].poll() is None, "the worker died: " + world["log"].read_text()
        return world["store"].pending_count() == 0

    return check


def test_events_after_real_state_changes_reach_the_receiver_signed(world):
    store, schedule, events = world["store"], world["schedule"], world["events"]
    receiver, secret = world["receivers"]["all"], world["keys"]["all"]
    sub = enrol(store, schedule, "reader@example.com", "Ann", "Europe/Paris", NOW, confirmed=False)
    confirm(store, schedule, sub, NOW, events)
    enqueue = enqueuer(world["app"])
    for day in (0, 10, 11, 12):  # the four lessons, one a day, the last one completes
        assert engine.tick(store, schedule, NOW + timedelta(days=day), enqueue).claimed == 1
        wait_for("the deliveries", drained(world))
    check_in(store, schedule, sub.id, schedule.lesson("hello"), "better", NOW, events)
    unsubscribe(store, store.get(sub.id), events=events)
    wait_for("eight events", lambda: len(receiver.posts) >= 8)
    time.sleep(0.3)  # nothing more comes
    kinds = [(e["type"], e["data"]) for e in receiver.events()]
    assert sorted(kinds, key=str) == sorted([
        ("subscriber.confirmed", {"subscriber": sub.id}),
        *[("lesson.sent", {"subscriber": sub.id, "lesson": lesson})
          for lesson in ("hello", "second", "third", "fourth")],
        ("subscriber.completed", {"subscriber": sub.id, "lesson": "fourth"}),
        ("checkin.recorded", {"subscriber": sub.id, "lesson": "hello", "answer": "better"}),
        ("subscriber.unsubscribed", {"subscriber": sub.id, "reason": "unsubscribed"}),
    ], key=str)  # fmt: skip
    for headers, body in receiver.posts:
        assert readme_verify(secret, headers[SIGNATURE_HEADER.lower()], body)
        assert not readme_verify(world["keys"]["flaky"], headers[SIGNATURE_HEADER.lower()], body)
        assert headers["content-type"] == "application/json"
        assert b"@" not in body and b"Ann" not in body  # ids only, no personal data
    ids = [e["id"] for e in receiver.events()]
    assert len(set(ids)) == len(ids)
    confirmed = next(e for e in receiver.events() if e["type"] == "subscriber.confirmed")
    assert datetime.fromisoformat(confirmed["created"].replace("Z", "+00:00")) == NOW
    assert store.outbound_stats()[receiver.host] == {"sent": 8}


def test_a_500_is_retried_then_accepted_with_the_same_id_and_counted(world):
    store, schedule, events = world["store"], world["schedule"], world["events"]
    flaky = world["receivers"]["flaky"]
    sub = enrol(store, schedule, "again@example.com", None, None, NOW, confirmed=False)
    confirm(store, schedule, sub, NOW, events)
    wait_for("the retry", lambda: len(flaky.posts) >= 2)
    first, second = flaky.posts[:2]
    assert first[1] == second[1]  # the same body, so the same event id
    assert json.loads(second[1])["type"] == "subscriber.confirmed"
    assert readme_verify(world["keys"]["flaky"], second[0]["x-course-signature"], second[1])
    wait_for("the counts", lambda: store.outbound_stats().get(flaky.host, {}).get("sent"))
    time.sleep(0.5)  # longer than a retry delay: nothing more comes
    assert len(flaky.posts) == 2
    assert store.outbound_stats()[flaky.host] == {"failed": 1, "sent": 1}


def test_an_endpoint_that_keeps_failing_is_dropped_after_the_last_attempt_with_a_metric(
    world,
):
    store, schedule, events = world["store"], world["schedule"], world["events"]
    down = world["receivers"]["down"]
    sub = enrol(store, schedule, "leaving@example.com", None, None, NOW)
    unsubscribe(store, sub, events=events)
    unsubscribe(store, store.get(sub.id), events=events)  # already out: no second event
    wait_for("the drop", lambda: store.outbound_stats().get(down.host, {}).get("dropped"))
    time.sleep(0.5)
    assert len(down.posts) == 3  # the first attempt and the two retries of DELAYS
    assert len({body for _, body in down.posts}) == 1
    assert store.outbound_stats()[down.host] == {"failed": 3, "dropped": 1}
    settings = world["settings"].with_(redis_url=world["url"])
    with TestClient(create_web_app(settings, send_task=lambda *a, **k: None)) as client:
        text = client.get("/metrics").text
    assert f'course_webhooks_out_total{{host="{down.host}",outcome="dropped"}} 1.0' in text
    assert f'course_webhooks_out_total{{host="{down.host}",outcome="failed"}} 3.0' in text
    shown = subprocess.run([sys.executable, "-m", "course", "stats"], env=world["env"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"{down.host}: 0 sent, 3 failed attempts" in shown.stdout
    assert "1 dropped after the last attempt" in shown.stdout
    assert "/hooks/course" not in shown.stdout  # the host only, never the path
    assert "/hooks/course" not in world["log"].read_text()  # nor in Celery's log of messages


def test_a_400_is_refused_once_and_never_retried(world):
    store, schedule, events = world["store"], world["schedule"], world["events"]
    bad = world["receivers"]["bad"]
    sub = enrol(store, schedule, "checking@example.com", None, None, NOW)
    assert check_in(store, schedule, sub.id, schedule.lesson("hello"), "flare", NOW, events)
    wait_for("the refusal", lambda: store.outbound_stats().get(bad.host, {}).get("refused"))
    time.sleep(0.6)  # three retry delays: no retry came
    assert len(bad.posts) == 1
    assert store.outbound_stats()[bad.host] == {"refused": 1}


def test_a_broker_that_is_down_never_fails_the_change_and_is_counted(world):
    store, schedule = world["store"], world["schedule"]

    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("Error 111 connecting to broker")

    events = Emitter(world["settings"].webhooks, broken, store.count_outbound)
    sub = enrol(store, schedule, "calm@example.com", None, None, NOW, confirmed=False)
    assert confirm(store, schedule, sub, NOW, events).status == "active"
    flaky, everything = world["receivers"]["flaky"], world["receivers"]["all"]
    stats = store.outbound_stats()
    assert stats[flaky.host] == {"unqueued": 1} and stats[everything.host] == {"unqueued": 1}


# The run of the task on its own: the same receivers, no worker.


def endpoint(receiver: Receiver | str, secret: str = "s" * 32) -> Endpoint:
    url = receiver if isinstance(receiver, str) else receiver.url
    return Endpoint(url, frozenset({"*"}), secret)


GONE_URL = "https://gone.example.org/hook?token=abc"


def test_a_slow_endpoint_costs_one_timeout_per_run_and_the_rest_waits_for_the_retry():
    slow, fine = Receiver(), Receiver()
    slow.delay = 1.0
    try:
        targets = (endpoint(slow), endpoint(fine))
        jobs = [[t.key, new_event("lesson.sent", {"n": i}, NOW).as_dict()]
                for i in range(5) for t in targets]  # fmt: skip
        poster = Poster(timeout=0.2)
        began = time.monotonic()
        run = run_jobs(jobs, targets, 1, (1.0,), poster.post)
        poster.close()
        assert time.monotonic() - began < 1.0
        assert len(slow.posts) == 1 and len(fine.posts) == 5
        assert [key for key, _ in run.retry] == [targets[0].key] * 5 and run.delay == 1.0
        assert run.counts == {(slow.host, "failed"): 1, (fine.host, "sent"): 5}
        last = run_jobs(run.retry, targets, 2, (1.0,), poster.post)
        poster.close()
        assert last.retry == [] and last.counts[(slow.host, "dropped")] == 5
    finally:
        slow.close()
        fine.close()


def test_a_run_out_of_time_leaves_the_untried_events_for_a_new_message_at_the_same_attempt():
    slowish = Receiver()
    slowish.delay = 0.15
    try:
        target = endpoint(slowish)
        jobs = [[target.key, new_event("lesson.sent", {"n": i}, NOW).as_dict()] for i in range(6)]
        poster = Poster(timeout=2)
        run = run_jobs(jobs, (target,), 3, (1.0, 1.0), poster.post, budget=0.2)
        poster.close()
        tried = len(slowish.posts)
        assert 1 <= tried < 6 and run.counts == {(slowish.host, "sent"): tried}
        assert run.later == jobs[tried:] and run.retry == []
    finally:
        slowish.close()


def test_a_redirect_is_not_followed_and_an_endpoint_no_longer_configured_is_dropped():
    moved = Receiver(lambda _id, _seen: 302)
    try:
        event = new_event("lesson.sent", {"subscriber": "x"}, NOW).as_dict()
        jobs = [[endpoint(moved).key, event], [endpoint(GONE_URL).key, event]]
        poster = Poster(timeout=1)
        run = run_jobs(jobs, (endpoint(moved),), 1, (1.0,), poster.post)
        poster.close()
        assert len(moved.posts) == 1 and run.retry == []
        assert run.counts == {(moved.host, "refused"): 1, (GONE, "dropped"): 1}
    finally:
        moved.close()


# Signatures and settings (pure)


def test_a_signature_verifies_and_a_changed_body_another_secret_or_an_old_one_does_not():
    body = b'{"id":"evt_1","type":"lesson.sent"}'
    header = sign("k" * 32, 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=")
    assert verify("k" * 32, header, body, now=1_800_000_100)
    assert not verify("k" * 32, header, body + b" ", now=1_800_000_100)
    assert not verify("j" * 32, header, body, now=1_800_000_100)
    assert not verify("k" * 32, header, body, now=1_800_000_301)  # a replay, too late
    assert not verify("k" * 32, "garbage", body, now=1_800_000_000)


GOOD = {"url": "https://hooks.example.org/c", "events": ["*"], "secret": "x" * 32}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "COURSE_WEBHOOKS: not JSON"),
        ('{"url": "https://a.org"}', "COURSE_WEBHOOKS: expected a JSON list of endpoints"),
        (json.dumps([{**GOOD, "url": "ftp://a.org"}]),
         "COURSE_WEBHOOKS: endpoint 1: url: expected http(s)://host/..."),
        (json.dumps([GOOD, {**GOOD, "url": "https://b.org", "events": ["lesson.opened"]}]),
         "COURSE_WEBHOOKS: endpoint 2: events: unknown event 'lesson.opened'"),
        (json.dumps([{"url": "https://a.org", "events": ["*"]}]),
         "COURSE_WEBHOOKS: endpoint 1: secret: required"),
        (json.dumps([GOOD, GOOD]), "COURSE_WEBHOOKS: the same url is listed twice"),
        (json.dumps([{**GOOD, "url": "https://u:p@a.org"}]),
         "COURSE_WEBHOOKS: endpoint 1: url: no user or password in it"),
    ],
)  # fmt: skip
def test_a_bad_webhook_setting_is_one_line_naming_the_endpoint_and_field(value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"COURSE_WEBHOOKS": value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and GOOD["secret"] not in str(caught.value)


def test_bad_retry_delays_are_refused():
    with pytest.raises(SettingsError, match="COURSE_WEBHOOK_RETRY_DELAYS: not a number"):
        Settings.from_env({"COURSE_WEBHOOK_RETRY_DELAYS": "60,soon"})
    with pytest.raises(SettingsError, match="from 0 to 3000 seconds"):
        Settings.from_env({"COURSE_WEBHOOK_RETRY_DELAYS": "60,7200"})
    assert Settings.from_env({"COURSE_WEBHOOK_RETRY_DELAYS": "1,2.5"}).webhook_delays == (1, 2.5)


def test_production_wants_https_and_long_secrets_for_webhooks():
    env = {"COURSE_ENV": "production", "COURSE_SECRET_KEY": "k" * 40,
           "COURSE_BASE_URL": "https://course.healing.org"}  # fmt: skip
    for endpoint_config, problem in (
        ({**GOOD, "url": "http://hooks.example.org/c"}, "url must be https outside dev"),
        ({**GOOD, "secret": "short"}, "secret has 5 characters; at least 32"),
    ):
        with pytest.raises(SettingsError, match=problem):
            Settings.from_env({**env, "COURSE_WEBHOOKS": json.dumps([endpoint_config])})
    assert Settings.from_env({**env, "COURSE_WEBHOOKS": json.dumps([GOOD])}).webhooks


def test_a_command_with_a_bad_setting_says_so_in_one_line_and_exits_2(tmp_path, course_path):
    env = course_env("redis://127.0.0.1:1/0", course_path, tmp_path, COURSE_WEBHOOKS="[1]")
    result = subprocess.run([sys.executable, "-m", "course", "stats"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "course: COURSE_WEBHOOKS: endpoint 1: expected an object with url, events and secret"
    ]


# The web app's changes, queued through its task sender (no worker needed to see them)


def test_the_web_app_emits_unsubscribes_bounces_and_sends_that_events_settled(
    settings, store, schedule
):
    from course.models.subscriber import LedgerEntry
    from course.tokens import subscriber_links

    hook = Endpoint("https://hooks.example.org/course", frozenset({"*"}), "s" * 32)
    queued: list[dict] = []

    def send_task(name: str, *args: object, **kwargs: object) -> None:
        if name == "course.webhook":
            assert kwargs["queue"] == "webhooks"
            queued.extend(event for _, event in kwargs["args"][0])

    now = datetime.now(UTC)
    ann = enrol(store, schedule, "ann@example.com", "Ann", None, now)
    bob = enrol(store, schedule, "bob@example.com", "Bob", None, now)
    cat = enrol(store, schedule, "cat@example.com", "Cat", None, now)
    claimed: list = []
    later = now + timedelta(minutes=1)  # the day-0 lessons are due
    engine.tick(store, schedule, later, lambda items, when: claimed.extend(items))
    assert (ann.id, "hello") in claimed
    ts = later.timestamp()
    assert store.start_send(ann.id, "hello", ts, ts + 900) == 1  # sent, no answer came
    assert store.finish(ann.id, LedgerEntry("hello", "uncertain", ts, 1, "timed out"))
    app = create_web_app(settings.with_(webhooks=(hook,)), send_task=send_task)
    with TestClient(app) as client:
        events = [
            {"event": "processed", "email": ann.email, "subscriber_id": ann.id,
             "lesson_id": "hello", "sg_event_id": "p1", "sg_message_id": "m1.x",
             "timestamp": int(ts)},
            {"event": "bounce", "type": "bounce", "email": bob.email, "subscriber_id": bob.id,
             "sg_event_id": "b1", "timestamp": int(ts), "reason": "550 unknown user"},
        ]  # fmt: skip
        assert client.post("/webhooks/sendgrid", json=events).json()["reconciled"] == 1
        link = subscriber_links(settings.base_url, settings.secret_key, cat.id)["unsubscribe_url"]
        path = "/" + link.split("/", 3)[3]
        one_click = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200
        client.post(path, data={"List-Unsubscribe": "One-Click"})  # again: no second event
    assert sorted((e["type"], e["data"]["subscriber"]) for e in queued) == sorted([
        ("lesson.sent", ann.id), ("subscriber.bounced", bob.id),
        ("subscriber.unsubscribed", cat.id),
    ])  # fmt: skip
