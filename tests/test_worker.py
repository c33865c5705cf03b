"""End to end with a real Celery worker process (never eager mode) on a real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import redis
from conftest import course_env, db_url, publish_course, start_worker
from fastapi.testclient import TestClient

from course import engine
from course.local.supervise import stop_all
from course.schedule import load_schedule
from course.settings import Settings
from course.store import Store
from course.subscribers.lifecycle import enrol, unsubscribe
from course.tasks import create_app, enqueuer
from course.web import create_app as create_web_app

WORKER_DB = 7  # the worker tests own this database of the tests' server


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory, redis_url, make_course):
    folder = tmp_path_factory.mktemp("worker")
    schedule_path = make_course(folder / "course")
    url = db_url(redis_url, WORKER_DB)
    redis.Redis.from_url(url).flushdb()
    env = course_env(url, schedule_path, folder)
    app = create_app(Settings.from_env(env), url)
    proc = start_worker(env, folder / "worker.log", app)
    yield {"app": app, "url": url, "outbox": folder / "outbox", "schedule": schedule_path,
           "proc": proc}  # fmt: skip
    stop_all({"worker": proc})
    app.close()


@pytest.fixture
def world(worker_env):
    client = redis.Redis.from_url(worker_env["url"], decode_responses=True)
    for key in client.scan_iter("hr:*"):
        client.delete(key)
    for eml in worker_env["outbox"].glob("*.eml"):
        eml.unlink()
    yield {**worker_env, "store": Store(client),
           "schedule_obj": load_schedule(worker_env["schedule"])}  # fmt: skip
    client.close()


def wait_drained(store: Store, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while store.pending_count():
        assert proc.poll() is None, "worker died"
        assert time.monotonic() < deadline, "deliveries did not finish"
        time.sleep(0.02)


def outbox(world) -> list:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(world["outbox"].glob("*.eml"))
    ]


def test_worker_delivers_what_a_tick_claims_and_a_second_tick_sends_nothing(world):
    store, schedule = world["store"], world["schedule_obj"]
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    for i in range(3):
        enrol(store, schedule, f"w{i}@example.com", f"W{i}", "Europe/Paris", now)
    enqueue = enqueuer(world["app"])
    assert engine.tick(store, schedule, now, enqueue).claimed == 3
    wait_drained(store, world["proc"])
    assert engine.tick(store, schedule, now, enqueue).claimed == 0
    messages = outbox(world)
    assert sorted(str(m["To"]) for m in messages) == [f"W{i} <w{i}@example.com>" for i in range(3)]
    for msg in messages:
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for sub_id in store.iter_ids():
        assert store.ledger(sub_id)["hello"].state == "sent"


def test_the_same_batch_delivered_four_times_by_racing_processes_sends_once(world):
    store, schedule = world["store"], world["schedule_obj"]
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    subs = [enrol(store, schedule, f"r{i}@example.com", None, None, now) for i in range(20)]
    batches: list = []
    engine.tick(store, schedule, now, lambda items, when: batches.append((items, when)))
    enqueue = enqueuer(world["app"])
    for _ in range(4):  # a redelivered message, a second beat, another worker...
        for items, when in batches:
            enqueue(items, when)
    wait_drained(store, world["proc"])
    time.sleep(0.5)  # let any duplicate message finish being refused
    assert len(outbox(world)) == len(subs)


def test_unsubscribed_after_the_tick_gets_nothing_from_the_worker(world):
    store, schedule = world["store"], world["schedule_obj"]
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    keep = enrol(store, schedule, "keep@example.com", None, None, now)
    leave = enrol(store, schedule, "leave@example.com", None, None, now)
    batches: list = []
    engine.tick(store, schedule, now, lambda items, when: batches.append((items, when)))
    unsubscribe(store, store.get(leave.id))
    enqueue = enqueuer(world["app"])
    for items, when in batches:
        enqueue(items, when)
    wait_drained(store, world["proc"])
    assert [str(m["To"]) for m in outbox(world)] == ["keep@example.com"]
    assert store.ledger(leave.id)["hello"].state == "skipped"
    assert store.ledger(keep.id)["hello"].state == "sent"
    later = now + timedelta(days=10)
    assert engine.tick(store, schedule, later, enqueue).claimed == 1  # one a day
    wait_drained(store, world["proc"])
    assert store.ledger(leave.id).keys() == {"hello"}
    assert store.ledger(keep.id)["second"].state == "sent"


def test_an_invalid_file_saved_while_running_changes_nothing_and_the_worker_keeps_sending(world):
    store, schedule = world["store"], world["schedule_obj"]
    path = world["schedule"]
    good = path.read_text()
    # Published here: an earlier test's flush may have emptied the store the worker shares.
    live = publish_course(store, path, "the good files")
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    enrol(store, schedule, "first@example.com", None, None, now)
    enqueue = enqueuer(world["app"])
    engine.tick(store, schedule, now, enqueue)
    wait_drained(store, world["proc"])
    try:
        path.write_text(good.replace('subject: "Second"', 'subject: ""'))  # invalid
        later = now + timedelta(minutes=5)
        enrol(store, schedule, "second@example.com", None, None, later)
        assert engine.tick(store, schedule, later, enqueue).claimed == 1
        wait_drained(store, world["proc"])
    finally:
        path.write_text(good)
    got = sorted(str(m["To"]) for m in outbox(world))
    details = [(str(m["To"]), m["X-Course-Lesson-Id"], m["Date"]) for m in outbox(world)]
    assert got == [
        "first@example.com",
        "second@example.com",
    ], details
    log = (path.parent.parent / "worker.log").read_text()
    assert "invalid schedule" not in log  # the worker runs the published version, not the file
    assert store.schedule_versions().live() == live  # saving the invalid file published nothing


def wait_for(check, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, "worker died"
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.05)


def test_a_web_signup_is_done_by_the_worker_and_its_log_names_no_address(world):
    """The web only queues ``course.signup``; the worker stores the pending record and sends
    the confirmation (through ``course.confirmation``), a second signup of the address sends
    it again, and a signup of someone already in sends nothing. The worker's log follows
    each by subscriber id and masked address, never the address itself."""
    store, schedule = world["store"], world["schedule_obj"]
    enrol(store, schedule, "kim.known@example.com", "Kim", "UTC", datetime.now(UTC))
    settings = Settings.from_env(course_env(world["url"], world["schedule"], world["outbox"]))
    log_path = world["schedule"].parent.parent / "worker.log"
    log_before = len(log_path.read_bytes())
    with TestClient(create_web_app(settings)) as client:  # its real Celery enqueue
        form = {"first_name": "Pat", "timezone": "Europe/Paris"}
        for address in ("pat.private@example.com", "kim.known@example.com"):
            assert client.post("/subscribe", data={"email": address, **form}).status_code == 200
        wait_for(lambda: len(outbox(world)) == 1, world["proc"])
        sub = store.find("pat.private@example.com")
        assert sub.status == "pending" and sub.tz == "Europe/Paris"
        assert sub.consent_record["source"] == "web"
        again = client.post("/subscribe", data={"email": "pat.private@example.com"})
        assert again.status_code == 200
        wait_for(lambda: len(outbox(world)) == 2, world["proc"])
    assert [str(m["To"]) for m in outbox(world)] == ["Pat <pat.private@example.com>"] * 2
    wait_for(lambda: b"outcome=resent" in log_path.read_bytes()[log_before:], world["proc"])
    log = log_path.read_bytes()[log_before:].decode()
    assert "outcome=new" in log and "outcome=known" in log
    assert "pat.private" not in log and "kim.known" not in log
    # Celery logs each message's kwargs as its kwargsrepr says: the masked address.
    assert "'email': 'p\\u2026@example.com'" in log and "'ip': '\\u2026'" in log


def test_an_api_signup_is_the_double_opt_in_and_the_worker_sends_its_confirmation(world):
    """``POST /api/v1/subscribers`` queues the form's ``course.signup`` (with the pace and
    send time the API may give); the worker stores the pending record with them and sends
    the confirmation email, and nothing else."""
    token = "crm-token-" + "t" * 30
    env = course_env(world["url"], world["schedule"], world["outbox"],
                     COURSE_API_TOKENS=f"crm:write:{token}")  # fmt: skip
    with TestClient(create_web_app(Settings.from_env(env))) as client:
        answer = client.post(
            "/api/v1/subscribers",
            json={"email": "api.reader@example.com", "first_name": "Api", "pace": "gentle",
                  "send_time": "19:15", "timezone": "Asia/Tokyo"},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert answer.status_code == 202
        wait_for(lambda: len(outbox(world)) == 1, world["proc"])
    (message,) = outbox(world)
    assert str(message["To"]) == "Api <api.reader@example.com>"
    assert message["Subject"] == "Please confirm"
    sub = world["store"].find("api.reader@example.com")
    assert (sub.status, sub.pace, sub.send_time, sub.tz) == ("pending", "gentle", "19:15",
                                                             "Asia/Tokyo")  # fmt: skip
    assert sub.consent_record["text_version"] == "api:crm"


def test_a_signup_the_store_refuses_is_retried_with_backoff_and_logs_no_address(world):
    """A Redis error in the signup task (here: a key of the wrong type, as a damaged store
    would answer) is retried later, as the delivery tasks are; nothing is lost or logged
    with the address. (Last in this module: the retry is due after the module's worker.)"""
    store = world["store"]
    store.require_layout()  # a store of this release, then damaged:
    bucket = store.email_key("rita.retry@example.com")
    store.redis.set(bucket, "not a hash")  # find() now fails with WRONGTYPE
    settings = Settings.from_env(course_env(world["url"], world["schedule"], world["outbox"]))
    log_path = world["schedule"].parent.parent / "worker.log"
    log_before = len(log_path.read_bytes())
    with TestClient(create_web_app(settings)) as client:
        answer = client.post("/subscribe", data={"email": "rita.retry@example.com"})
        assert answer.status_code == 200

    def retry_received() -> bool:  # the worker takes the retry's message at once, holds it
        log = log_path.read_bytes()[log_before:]
        return b"outcome=retry" in log and log.count(b'"name": "course.signup"') >= 3

    wait_for(retry_received, world["proc"])
    log = log_path.read_bytes()[log_before:].decode()
    assert "signup outcome=retry attempt=1 wait=30 reason=ResponseError" in log
    # The retry is a message of its own: it must carry the masked kwargsrepr too.
    assert "rita.retry" not in log and "'email': 'r\\u2026@example.com'" in log
    assert outbox(world) == []


def test_beat_schedules_retention_daily_and_a_worker_runs_it(world):
    """``course.retention`` is in beat's schedule once a day; a worker process runs it: the
    reader who left 25 months ago is erased, the address kept as its suppression hash."""
    from course.subscribers.retention import months_before
    from course.task_names import RETENTION_TASK

    entry = world["app"].conf.beat_schedule["retention"]
    assert entry["task"] == RETENTION_TASK
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {17}
    store, schedule = world["store"], world["schedule_obj"]
    now = datetime.now(UTC)
    sub = enrol(store, schedule, "ret.gone@example.com", None, "UTC", now - timedelta(days=800))
    unsubscribe(store, sub, now=months_before(now, 25))
    kept = enrol(store, schedule, "ret.kept@example.com", None, "UTC", now - timedelta(days=800))
    unsubscribe(store, kept, now=months_before(now, 23))
    world["app"].send_task(RETENTION_TASK, kwargs={"now": now.isoformat()})
    wait_for(lambda: store.retention_stats().get("last_at"), world["proc"])
    assert store.get(sub.id) is None and store.is_erased("ret.gone@example.com")
    assert store.get(kept.id).status == "unsubscribed"


def test_a_subject_experiment_in_the_worker_splits_readers_and_the_tick_task_picks_a_winner(
    world,
):
    from test_variants import SUBJECTS, experiment, own_letter

    from course.task_names import TICK_TASK

    store, path, proc = world["store"], world["schedule"], world["proc"]
    good = path.read_text()
    try:
        path.write_text(experiment())
        publish_course(store, path, "a subject experiment")
        schedule = load_schedule(path)
        now = datetime(2026, 5, 4, 12, tzinfo=UTC)
        subs = [enrol(store, schedule, f"x{i}@example.com", None, None, now) for i in range(8)]
        enqueue = enqueuer(world["app"])
        assert engine.tick(store, schedule, now, enqueue).claimed == 8
        wait_drained(store, proc)
        subjects = {str(m["To"]): str(m["Subject"]) for m in outbox(world)}
        assert subjects == {s.email: SUBJECTS[own_letter(s.id)] for s in subs}
        sent = store.variant_counts(["hello"])["hello"]
        assert sum(c["sent"] for c in sent.values()) == 8
        # b clearly ahead with enough sends: the worker's tick task decides, once
        store.count_variant_sends("hello", 2, None, ["a"] * 600 + ["b"] * 600)
        for letter, clicks in (("a", 10), ("b", 60)):
            for i in range(clicks):
                store.count_variant_click("hello", letter, f"{letter}-{i}")
        later = now + timedelta(hours=1)
        world["app"].send_task(TICK_TASK, kwargs={"now": later.isoformat()})
        wait_for(lambda: "hello" in store.experiment_winners(), proc)
        assert store.experiment_winners()["hello"].variant == "b"
        for eml in world["outbox"].glob("*.eml"):
            eml.unlink()
        for i in range(4):
            enrol(store, schedule, f"y{i}@example.com", None, None, later)
        assert engine.tick(store, schedule, later, enqueue).claimed == 4
        wait_drained(store, proc)
        assert {str(m["Subject"]) for m in outbox(world)} == {SUBJECTS["b"]}
    finally:
        path.write_text(good)
        publish_course(store, path, "the course again")


def test_signups_and_confirmations_have_a_queue_of_their_own(worker_env):
    """A backlog of lesson batches never waits in front of a new reader's confirmation."""
    from course import task_names as t

    app = worker_env["app"]
    names = (t.SIGNUP_TASK, t.CONFIRMATION_TASK, t.DELIVER_TASK, t.TICK_TASK, t.WEBHOOK_TASK)
    queues = [app.amqp.router.route({}, name)["queue"].name for name in names]
    assert queues == ["signups", "signups", "celery", "celery", "webhooks"]
    assert {q.name for q in app.conf.task_queues} == {"celery", "signups", "webhooks"}
