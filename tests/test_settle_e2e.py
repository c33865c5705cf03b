"""Settling end to end: a real worker sends through the SendGrid stand-in, which hangs one
request and posts signed events for the others to the web app, served for real; the tick
re-sends the lost one once, and nobody gets a lesson twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
import uvicorn
from conftest import course_env, db_url, free_port, start_worker

from course import engine
from course.engine.settle import RECHECK_AFTER
from course.local.supervise import stop_all
from course.schedule import load_schedule
from course.settings import Settings
from course.store import Store
from course.subscribers.lifecycle import enrol
from course.tasks import create_app, enqueuer
from course.testing.sendgrid_standin import EventPoster, EventRates, Reply, SendGridStandIn
from course.web import create_app as create_web_app

SETTLE_DB = 9  # this module owns this database of the tests' server
WINDOW = 5.0  # seconds of the ticks' clock


def wait_for(predicate, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)


@pytest.fixture
def loop(tmp_path, redis_url, make_course):
    url = db_url(redis_url, SETTLE_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    schedule_path = make_course(tmp_path / "course")
    port = free_port()
    poster = EventPoster(f"http://127.0.0.1:{port}/webhooks/sendgrid",
                         EventRates(delay=0.3, deferred=0.3, seed=3))  # fmt: skip
    with SendGridStandIn(api_key="SG.settle", events=poster) as standin:
        env = course_env(url, schedule_path, tmp_path, COURSE_TRANSPORT="sendgrid",
                         SENDGRID_API_KEY="SG.settle", SENDGRID_HOST=standin.url,
                         COURSE_SENDGRID_BATCH="1", SENDGRID_WEBHOOK_PUBLIC_KEY=poster.public_key,
                         COURSE_SETTLE_WINDOW=str(int(WINDOW)))  # fmt: skip
        settings = Settings.from_env(env)
        web = create_web_app(settings, send_task=lambda *a, **k: None)
        server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port,
                                               log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, 30, "uvicorn did not start")
        app = create_app(settings, url)
        worker = start_worker(env, tmp_path / "worker.log", app)
        try:
            yield {"store": Store(client), "standin": standin, "poster": poster, "app": app,
                   "schedule": load_schedule(schedule_path), "settings": settings}  # fmt: skip
        finally:
            stop_all({"worker": worker})
            app.close()
            server.should_exit = True
            thread.join(30)
    client.flushdb()
    client.close()


def test_a_hung_send_is_resent_once_by_the_tick_while_events_flow_for_the_others(loop):
    store, standin, schedule = loop["store"], loop["standin"], loop["schedule"]
    window = loop["settings"].settling_window
    assert window == WINDOW
    enqueue = enqueuer(loop["app"])
    now = datetime.now(UTC).replace(microsecond=0)
    subs = [enrol(store, schedule, f"s{i}@example.com", None, None, now) for i in range(5)]
    standin.enqueue(Reply(hang=True, hang_for=30))  # dropped unanswered: SendGrid never had it

    def states() -> Counter:
        return Counter(store.entry(s.id, "hello").state for s in subs if store.entry(s.id, "hello"))

    assert engine.tick(store, schedule, now, enqueue, settle_window=window).claimed == 5
    wait_for(lambda: states() == Counter(sent=4, uncertain=1), 60, states)
    lost = next(s for s in subs if store.entry(s.id, "hello").state == "uncertain")

    # A later send, whose events prove the webhook flows past the lost one.
    time.sleep(1.1)  # ledger instants are whole seconds
    later = datetime.now(UTC).replace(microsecond=0)
    late = enrol(store, schedule, "late@example.com", None, None, later)
    engine.tick(store, schedule, later, enqueue, settle_window=window)
    wait_for(lambda: float(store.settle_mark().get("at", 0)) >= later.timestamp(), 30,
             lambda: (store.settle_mark(), store.entry(late.id, "hello")))  # fmt: skip

    # looked at again a minute after the last look, when the mark had not passed it yet
    armed = later + timedelta(seconds=RECHECK_AFTER + 1)
    assert engine.tick(store, schedule, armed, enqueue, settle_window=window).resent == 0
    assert store.settle_proof(lost.id, "hello").startswith("armed|")
    result = engine.tick(store, schedule, armed + timedelta(seconds=WINDOW), enqueue,
                         settle_window=window)  # fmt: skip
    assert result.resent == 1
    wait_for(
        lambda: store.entry(lost.id, "hello").state == "sent",
        30,
        lambda: store.entry(lost.id, "hello"),
    )
    for extra in (100, 200):  # more ticks: nothing more
        engine.tick(store, schedule, armed + timedelta(seconds=extra), enqueue,
                    settle_window=window)  # fmt: skip
    wait_for(lambda: loop["poster"].pending() == 0, 30, "events still waiting")
    time.sleep(0.5)

    sent_to = Counter(r.custom_args["subscriber_id"] for r in standin.records)
    assert sorted(sent_to.values()) == [1] * 6, sent_to  # everyone once, the lost one too
    assert sent_to[lost.id] == 1
    assert {store.entry(s.id, "hello").state for s in [*subs, late]} == {"sent"}
    assert store.webhook_stats().get("late_after_resend", 0) == 0
    assert store.uncertain_counts() == (0, 1)  # one proof kept: the re-send's
