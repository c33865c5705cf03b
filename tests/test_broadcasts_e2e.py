"""A broadcast through a real Celery worker that is SIGKILLed mid-send, with ``send`` run
twice: each active reader gets it at most once (or its send is honestly uncertain), nobody
else gets it."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import course_env, db_url, start_worker
from test_worker_crash import wait_for

from course import engine
from course.broadcasts.service import create_broadcast, send_broadcast
from course.local.supervise import stop_all
from course.mail.render import Renderer
from course.schedule import load_schedule
from course.settings import Settings
from course.store import Store
from course.tasks import create_app, enqueuer
from course.testing.sendgrid_standin import SendGridStandIn

BROADCAST_DB = 3  # this module owns this database of the tests' server
OTHERS = ("pending", "paused", "completed", "unsubscribed", "bounced", "complained")


@pytest.fixture
def crash_env(tmp_path, redis_url, make_course):
    url = db_url(redis_url, BROADCAST_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    schedule_path = make_course(tmp_path / "course")
    (schedule_path.parent / "templates" / "broadcasts").mkdir()
    (schedule_path.parent / "templates" / "broadcasts" / "news.md").write_text(
        "Hi {{ first_name or 'there' }},\n\nThe program is open.\n"
    )
    with SendGridStandIn(api_key="SG.crash", latency=0.05) as standin:
        env = course_env(url, schedule_path, tmp_path, COURSE_TRANSPORT="sendgrid",
                         SENDGRID_API_KEY="SG.crash", SENDGRID_HOST=standin.url)  # fmt: skip
        app = create_app(Settings.from_env(env), url)
        yield {"env": env, "client": client, "standin": standin, "app": app,
               "path": schedule_path, "log": tmp_path / "worker.log"}  # fmt: skip
        app.close()
    client.flushdb()
    client.close()


def test_a_worker_killed_mid_broadcast_and_send_run_twice_send_nobody_twice(crash_env):
    store = Store(crash_env["client"])
    standin, schedule = crash_env["standin"], load_schedule(crash_env["path"])
    now = datetime.now(UTC).replace(microsecond=0)
    active = [store.add(f"a{n}@example.com", None, "Europe/Berlin", 0, status="active").id
              for n in range(60)]  # fmt: skip
    for status in OTHERS:  # the segment asks for active readers only
        store.add(f"{status}@example.com", None, "Europe/Berlin", 0, status=status)
    templates = crash_env["path"].parent / "templates"
    b = create_broadcast(store, schedule, Renderer(schedule), templates,
                         template="broadcasts/news.md", subject="Open", expression="status:active",
                         at_local=None, include_paused=False, now=now)  # fmt: skip
    assert send_broadcast(store, schedule, b.id, now, batch=16).claimed == 60
    enqueue = enqueuer(crash_env["app"])
    worker = start_worker(crash_env["env"], crash_env["log"], crash_env["app"])
    try:
        assert engine.tick(store, schedule, now, enqueue, batch_size=5).redispatched == 60
        wait_for(lambda: len(standin.records) >= 10, 60, "the worker sent nothing")
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, mid-batch
        worker.wait()
        assert len(standin.records) < 60, "the worker finished before it could be killed"
        # `send` again, and as if the first run had died before it finished claiming.
        assert send_broadcast(store, schedule, b.id, now).claimed == 0
        store.set_broadcast_status(b.id, "sending", ("sent",))
        rerun = send_broadcast(store, schedule, b.id, now, batch=7)
        assert (rerun.claimed, rerun.already) == (0, 60)

        worker = start_worker(crash_env["env"], crash_env["log"], crash_env["app"])
        later = datetime.now(UTC) + timedelta(seconds=engine.STALE_AFTER + 1)
        engine.tick(store, schedule, later, enqueue, batch_size=5)
        wait_for(lambda: store.pending_count() == 0, 60, "claims left unfinished")
    finally:
        stop_all({"worker": worker})

    sent_to = Counter(r.custom_args["subscriber_id"] for r in standin.records)
    assert set(sent_to) <= set(active), "someone outside the segment got it"
    assert max(sent_to.values()) == 1, "a reader got the broadcast twice"
    assert {r.custom_args["lesson_id"] for r in standin.records} == {f"b:{b.id}"}
    states = Counter(store.entry(sub_id, f"b:{b.id}").state for sub_id in active)
    assert set(states) <= {"sent", "uncertain"} and states["sent"] >= 60 - 2 * 5, states
    for sub_id in active:
        if store.entry(sub_id, f"b:{b.id}").state == "sent":
            assert sent_to[sub_id] == 1
    counts = store.broadcast(b.id).counts
    assert counts["sent"] == states["sent"] and counts.get("uncertain", 0) == states["uncertain"]
