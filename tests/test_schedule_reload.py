"""Schedule edits reach a running worker without a restart; an invalid edit is reported by
the worker (Redis), ``course stats`` and ``/healthz``, and sending goes on with the last
valid schedule. A real Celery worker process on the tests' Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import redis
from conftest import course_env, db_url, start_worker
from fastapi.testclient import TestClient

from course import engine
from course.local.supervise import stop_all
from course.reports.stats import check_disk, read_processes
from course.runtime import ScheduleStatusBoard
from course.schedule import load_schedule
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
    """A tick at ``now`` in this process; the worker delivers what it claimed."""
    store = world["store"]
    schedule = load_schedule(world["path"]) if check_disk(world["path"]).error is None else None
    engine.tick(store, schedule or world["last_valid"], now, enqueuer(world["app"]))
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


def test_schedule_edits_reach_the_running_worker_and_an_invalid_one_is_reported(world):
    store, path = world["store"], world["path"]
    original = path.read_text()
    schedule = load_schedule(path)
    world["last_valid"] = schedule
    enrol(store, schedule, "reader@example.com", "Reader", None, START)
    deliver_due(world, START)
    assert subjects(world) == ["Hello"]
    [first] = read_processes(store, datetime.now(UTC))
    assert first.role == "worker" and first.error is None
    assert first.fingerprint == check_disk(path).fingerprint

    # A valid edit: the next delivery uses it, with no restart.
    edited = original.replace('subject: "Second"', 'subject: "Second, now better"')
    path.write_text(edited)
    world["last_valid"] = load_schedule(path)
    deliver_due(world, START + timedelta(days=2))
    assert subjects(world) == ["Hello", "Second, now better"]
    [running] = read_processes(store, datetime.now(UTC))
    assert running.fingerprint == check_disk(path).fingerprint != first.fingerprint

    # An invalid edit: reported with file and line; the worker keeps the last valid schedule.
    path.write_text(edited.replace('subject: "Third"', 'subject: "Third, edited"')
                    .replace("day: 4", "day: -4"))  # fmt: skip
    line = f"{path}:20: phases[1].lessons[1].day: must be >= 0"
    deliver_due(world, START + timedelta(days=3))
    assert subjects(world) == ["Hello", "Second, now better", "Third"]
    [worker] = read_processes(store, datetime.now(UTC))
    assert worker.fingerprint == running.fingerprint
    assert worker.error == line and worker.error_at is not None
    assert "invalid schedule, still sending with the last valid one" in world["log"].read_text()

    result = subprocess.run([sys.executable, "-m", "course", "stats"], env=world["env"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert f"the file on disk is invalid: {line}" in result.stdout
    assert f"runs schedule {running.fingerprint}" in result.stdout
    assert "rejected an invalid edit" in result.stdout

    settings = Settings.from_env(world["env"]).with_(metrics_token="t" * 40)
    with TestClient(create_web_app(settings, send_task=print)) as client:  # details: the token
        health = client.get("/healthz", headers={"Authorization": f"Bearer {'t' * 40}"}).json()
    assert health["schedule"]["error"] == line  # the web app's own view of the file
    [view] = health["schedule"]["workers"]
    assert view["fingerprint"] == running.fingerprint and view["error"] == line
    assert json.dumps(health).count("must be >= 0") == 2


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
