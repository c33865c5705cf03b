"""Workers killed with SIGKILL mid-delivery: nothing is sent twice, nothing is left hanging."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import course_env, db_url, start_worker

from course import engine
from course.local.supervise import stop_all
from course.schedule import load_schedule
from course.settings import Settings
from course.store import Store
from course.subscribers.lifecycle import enrol
from course.tasks import create_app, enqueuer
from course.testing.sendgrid_standin import SendGridStandIn

CRASH_DB = 8  # this module owns this database of the tests' server


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.02)


@pytest.fixture
def crash_env(tmp_path, redis_url, make_course):
    url = db_url(redis_url, CRASH_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    schedule_path = make_course(tmp_path / "course")
    with SendGridStandIn(api_key="SG.crash", latency=0.05) as standin:
        env = course_env(url, schedule_path, tmp_path, COURSE_TRANSPORT="sendgrid",
                         SENDGRID_API_KEY="SG.crash", SENDGRID_HOST=standin.url)  # fmt: skip
        app = create_app(Settings.from_env(env), url)
        yield {"env": env, "url": url, "client": client, "standin": standin, "app": app,
               "schedule": load_schedule(schedule_path),
               "log": tmp_path / "worker.log"}  # fmt: skip
        app.close()
    client.flushdb()
    client.close()


def test_workers_killed_mid_delivery_never_send_a_lesson_twice(crash_env):
    store = Store(crash_env["client"])
    schedule, standin = crash_env["schedule"], crash_env["standin"]
    now = datetime.now(UTC).replace(microsecond=0)
    subs = [enrol(store, schedule, f"k{i}@example.com", None, None, now) for i in range(60)]
    enqueue = enqueuer(crash_env["app"])
    worker = start_worker(crash_env["env"], crash_env["log"], crash_env["app"])
    try:
        assert engine.tick(store, schedule, now, enqueue, batch_size=5).claimed == len(subs)
        wait_for(lambda: len(standin.records) >= 10, 60, "the worker sent nothing")
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, mid-batch
        worker.wait()
        killed_at = len(standin.records)
        assert killed_at < len(subs), "the worker finished before it could be killed"

        # A new worker; the next ticks find what the dead one left behind.
        worker = start_worker(crash_env["env"], crash_env["log"], crash_env["app"])
        later = datetime.now(UTC) + timedelta(seconds=engine.STALE_AFTER + 1)
        engine.tick(store, schedule, later, enqueue, batch_size=5)
        wait_for(
            lambda: store.pending_count() == 0,
            60,
            lambda: [
                (m, store.entry(*m[0].split("|")))
                for m in store.redis.zrange(store.pending_key, 0, -1, withscores=True)
            ],
        )
    finally:
        stop_all({"worker": worker})

    # One record per accepted personalization: a request carries a batch's emails of a lesson.
    sent_to = Counter(r.custom_args["subscriber_id"] for r in standin.records)
    assert max(sent_to.values()) == 1, "a lesson was handed to SendGrid twice"
    states = Counter()
    for sub in subs:
        entry = store.ledger(sub.id)["hello"]
        states[entry.state] += 1
        if entry.state == "sent":
            assert sent_to[sub.id] == 1
        else:
            assert entry.state == "uncertain", entry  # never claimed, sending or retry forever
    assert states["sent"] + states["uncertain"] == len(subs)
    # At most one batch's sends in flight per pool process (one request for its lesson's
    # emails, or COURSE_SEND_CONCURRENCY requests of one email each).
    in_flight = min(Settings.from_env(crash_env["env"]).send_concurrency, 5)
    assert states["sent"] >= len(subs) - 2 * in_flight
