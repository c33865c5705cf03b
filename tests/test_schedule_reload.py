"""Publish, don't save: a saved edit changes nothing until it is published; a published one
reaches a running worker and the web app without a restart, which report the version they run
(Redis, ``course stats``, ``/healthz``); an invalid one is never published; a rollback brings
the earlier text back for the next sends; ``--watch`` publishes every valid save. A real
Celery worker process on the tests' Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import redis
from conftest import course_env, db_url, publish_course, start_worker
from fastapi.testclient import TestClient

from course import engine
from course.local.supervise import stop_all
from course.reports.stats import read_processes
from course.runtime import ScheduleStatusBoard
from course.schedule import load_schedule
from course.schedule.bundle import load_contents
from course.schedule.publish import Watcher
from course.settings import Settings
from course.store import Store
from course.subscribers.lifecycle import enrol
from course.tasks import create_app, enqueuer
from course.web import create_app as create_web_app

RELOAD_DB = 12  # this module owns this database of the tests' server
START = datetime(2026, 5, 4, 12, tzinfo=UTC)


@pytest.fixture
def world(tmp_path, redis_url, make_course):
    schedule_path = make_course(tmp_path / "course")
    url = db_url(redis_url, RELOAD_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    env = course_env(url, schedule_path, tmp_path)
    app = create_app(Settings.from_env(env), url)
    log = tmp_path / "worker.log"
    # One child process, so that the one who delivers is the one whose report is read.
    proc = start_worker(env, log, app, children=1)
    yield {"store": Store(client), "app": app, "proc": proc, "env": env, "url": url,
           "path": schedule_path, "outbox": tmp_path / "outbox", "log": log}  # fmt: skip
    stop_all({"worker": proc})
    app.close()
    client.flushdb()
    client.close()


def deliver_due(world, now: datetime) -> None:
    """A tick at ``now`` in this process with the live version; the worker delivers."""
    store = world["store"]
    versions = store.schedule_versions()
    schedule, _, unpacked = load_contents(versions.files(versions.live()))
    engine.tick(store, schedule, now, enqueuer(world["app"]))
    unpacked.close()
    deadline = time.monotonic() + 60
    while store.pending_count():
        assert world["proc"].poll() is None, world["log"].read_text()
        assert time.monotonic() < deadline, "deliveries did not finish"
        time.sleep(0.02)


def subjects(world) -> list[str]:
    found = []
    for path in sorted(world["outbox"].glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        found.append(message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"])
    return found


def course(world, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course", *args], env=world["env"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_a_saved_edit_changes_nothing_until_published_then_reaches_the_worker_and_web(world):
    store, path = world["store"], world["path"]
    original = path.read_text()
    v1 = publish_course(store, path, "first")
    enrol(store, load_schedule(path), "reader@example.com", "Reader", None, START)
    deliver_due(world, START)
    assert subjects(world) == ["Hello"]
    [first] = read_processes(store, datetime.now(UTC))
    assert first.role == "worker" and first.version == v1 and first.error is None

    # Saved, not published: the running worker sends the live version.
    path.write_text(original.replace('subject: "Second"', 'subject: "Second, now better"'))
    deliver_due(world, START + timedelta(days=2))
    assert subjects(world) == ["Hello", "Second"]

    # Published: the worker's next task runs it, with no restart.
    path.write_text(original.replace('subject: "Third"', 'subject: "Third, now better"'))
    published = course(world, "publish", "--yes", "-m", "better third")
    assert published.returncode == 0, published.stderr
    v2 = store.schedule_versions().live()
    assert v2 != v1 and f"{v1} (live) -> {v2}" in published.stdout
    deliver_due(world, START + timedelta(days=3))
    assert subjects(world) == ["Hello", "Second", "Third, now better"]
    [running] = read_processes(store, datetime.now(UTC))
    assert running.version == v2

    # An invalid edit cannot be published; the live version keeps running.
    path.write_text(original.replace("day: 4", "day: -4"))
    refused = course(world, "publish", "--yes")
    assert refused.returncode == 1 and store.schedule_versions().live() == v2

    # Rollback: the earlier text for the next sends; nothing already sent goes again.
    rolled = course(world, "rollback", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert store.schedule_versions().live() == v1
    deliver_due(world, START + timedelta(days=4))
    deliver_due(world, START + timedelta(days=5))
    assert subjects(world) == ["Hello", "Second", "Third, now better", "Fourth"]
    stats = course(world, "stats")
    assert f"live: version {v1} since" in stats.stdout and "[rollback]" in stats.stdout
    assert f"runs version {v1}" in stats.stdout

    settings = Settings.from_env(world["env"]).with_(metrics_token="t" * 40)
    with TestClient(create_web_app(settings, send_task=print)) as client:
        health = client.get("/healthz", headers={"Authorization": f"Bearer {'t' * 40}"}).json()
        assert health["schedule"]["version"] == v1
    [view] = health["schedule"]["workers"]
    assert view["version"] == v1


def test_watch_publishes_every_valid_save_as_saving_shipped_before(world):
    store, path = world["store"], world["path"]
    original = path.read_text()
    publish_course(store, path, "first")
    watcher = Watcher(store.schedule_versions(), path, path.parent / "templates", "watcher",
                      report=lambda line: None)  # fmt: skip
    watcher.check()  # its first look: the files are the live version
    enrol(store, load_schedule(path), "reader@example.com", "Reader", None, START)
    deliver_due(world, START)

    path.write_text(original.replace('subject: "Second"', 'subject: "Second, now better"'))
    published = watcher.check()
    assert published == store.schedule_versions().live()
    assert store.schedule_versions().live_since().kind == "watch"
    deliver_due(world, START + timedelta(days=2))
    assert subjects(world) == ["Hello", "Second, now better"]

    path.write_text(original.replace("day: 4", "day: -4"))  # invalid: reported, not published
    assert watcher.check() is None and store.schedule_versions().live() == published
    deliver_due(world, START + timedelta(days=3))
    assert subjects(world) == ["Hello", "Second, now better", "Third"]


def test_a_process_reports_changes_at_once_and_otherwise_once_a_minute(redis_client, store):
    board = ScheduleStatusBoard(redis_client, store.schedule_status_key, "worker", "worker@a:1")
    state = {"fingerprint": "abc", "loaded_at": START.isoformat(), "error": None,
             "error_at": None}  # fmt: skip
    board.report(state, START)
    board.report(state, START + timedelta(seconds=30))  # nothing new: not written
    [seen] = read_processes(store, START + timedelta(seconds=30))
    assert seen.seen_at == START and seen.fingerprint == "abc" and not seen.stale
    board.report({**state, "error": "schedule.yaml:3: bad"}, START + timedelta(seconds=31))
    [changed] = read_processes(store, START + timedelta(seconds=31))
    assert changed.error == "schedule.yaml:3: bad"
    # Three missed heartbeats: stopped, and no longer listed (course stats, /healthz).
    assert [p.process for p in read_processes(store, START + timedelta(minutes=3))] == [
        "worker@a:1"
    ]
    assert read_processes(store, START + timedelta(minutes=4)) == ()
    other = ScheduleStatusBoard(redis_client, store.schedule_status_key, "beat", "beat@a:2")
    other.report(state, START + timedelta(minutes=20))
    [live] = read_processes(store, START + timedelta(minutes=20, seconds=5))
    assert live.process == "beat@a:2" and not live.stale


def test_a_process_silent_for_a_week_is_forgotten_by_the_next_report(redis_client, store):
    state = {"fingerprint": "abc", "loaded_at": START.isoformat(), "error": None,
             "error_at": None}  # fmt: skip
    ScheduleStatusBoard(redis_client, store.schedule_status_key, "worker", "old@a:1").report(
        state, START
    )
    ScheduleStatusBoard(redis_client, store.schedule_status_key, "web", "web@a:2").report(
        state, START + timedelta(days=8)
    )
    assert [p.process for p in read_processes(store, START + timedelta(days=8))] == ["web@a:2"]
