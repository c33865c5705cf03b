"""Logs: one JSON object per line for every engine event, from a real worker process too."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import course_env, db_url, start_worker

from course import engine
from course.local.supervise import stop_all
from course.logs import AccessFields, JsonLines, log_event
from course.schedule import load_schedule
from course.settings import Settings, SettingsError
from course.store import Store
from course.subscribers.lifecycle import enrol, unsubscribe
from course.tasks import create_app, enqueuer
from course.web.access_log import RedactTokens

LOGS_DB = 11  # this module owns this database of the tests' server


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger of this test's own that writes through ``formatter`` to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(out)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_an_event_is_one_json_line_with_time_level_role_and_its_fields():
    logger, out = capture(JsonLines(role="worker"))
    log_event(logger, logging.WARNING, "retry", subscriber="ab12", lesson="welcome",
              attempt=2, wait=60, reason="SendGrid 503")  # fmt: skip
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert list(record)[:6] == ["time", "level", "event", "role", "logger", "message"]
    assert datetime.fromisoformat(record["time"]).tzinfo is not None
    assert record["level"] == "WARNING" and record["event"] == "retry"
    assert record["role"] == "worker" and record["logger"] == logger.name
    assert {k: record[k] for k in ("subscriber", "lesson", "attempt", "wait", "reason")} == {
        "subscriber": "ab12", "lesson": "welcome", "attempt": 2, "wait": 60,
        "reason": "SendGrid 503"}  # fmt: skip
    assert record["message"] == "retry subscriber=ab12 lesson=welcome attempt=2 wait=60 " + (
        "reason=SendGrid 503"
    )


def test_a_plain_log_line_and_an_exception_are_json_too():
    logger, out = capture(JsonLines(role="beat"))
    logger.info("beat: Starting...")
    try:
        raise ValueError("broken record")
    except ValueError:
        logger.exception("failure subscriber=%s", "x1")
    plain, failure = (json.loads(line) for line in out.getvalue().splitlines())
    assert plain["event"] == "log" and plain["message"] == "beat: Starting..."
    assert plain["role"] == "beat"
    assert failure["level"] == "ERROR" and "ValueError: broken record" in failure["exc_info"]


def test_a_field_never_hides_the_lines_own_keys():
    logger, out = capture(JsonLines(role="web"))
    log_event(logger, logging.INFO, "signup", time="sneaky", role="other", outcome="new")
    record = json.loads(out.getvalue())
    assert (record["role"], record["outcome"]) == ("web", "new")
    assert datetime.fromisoformat(record["time"]).year >= 2026


def test_the_access_log_is_an_http_event_without_the_token():
    args = ("1.2.3.4:5", "POST", "/unsubscribe/abc.def", "1.1", 200)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    assert RedactTokens().filter(record) and AccessFields().filter(record)  # logger, handler
    line = json.loads(JsonLines(role="web").format(record))
    assert line["event"] == "http" and line["role"] == "web"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/unsubscribe/<token>", 200)
    assert "abc.def" not in json.dumps(line)


def test_text_format_keeps_the_event_and_key_value_line():
    logger, out = capture(logging.Formatter("%(levelname)s %(message)s"))
    log_event(logger, logging.INFO, "claim", subscriber="s1", lesson="welcome")
    assert out.getvalue() == "INFO claim subscriber=s1 lesson=welcome\n"


def test_log_format_setting_is_json_by_default_and_refuses_others():
    assert Settings.from_env({}).log_format == "json"
    assert Settings.from_env({"COURSE_LOG_FORMAT": "Text"}).log_format == "text"
    with pytest.raises(SettingsError, match="COURSE_LOG_FORMAT: 'xml' is not one of: json, text"):
        Settings.from_env({"COURSE_LOG_FORMAT": "xml"})


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_for(condition, proc, log_path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_process_logs_every_event_of_a_tick_and_its_sends_as_json(
    tmp_path, redis_url, course_path
):
    url = db_url(redis_url, LOGS_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    store, schedule = Store(client), load_schedule(course_path)
    env = course_env(url, course_path, tmp_path)  # COURSE_LOG_FORMAT unset: json
    app = create_app(Settings.from_env(env), url)
    log_path = tmp_path / "worker.log"
    proc = start_worker(env, log_path, app)
    try:
        now = datetime(2026, 5, 4, 12, tzinfo=UTC)
        stays = enrol(store, schedule, "stays@example.com", None, "UTC", now)
        leaves = enrol(store, schedule, "leaves@example.com", None, "UTC", now)
        batches: list = []
        engine.tick(store, schedule, now, lambda items, when: batches.append((items, when)))
        unsubscribe(store, store.get(leaves.id))  # after the claim: the worker skips it
        for items, when in batches:
            enqueuer(app)(items, when)
        wait_for(lambda: store.pending_count() == 0, proc, log_path)
        # The worker's own tick, three days on: the next lesson of the one who stayed.
        app.send_task("course.tick", args=[(now + timedelta(days=3)).isoformat()])
        wait_for(lambda: getattr(store.entry(stays.id, "second"), "state", "") == "sent",
                 proc, log_path)  # fmt: skip
    finally:
        stop_all({"worker": proc})
        app.close()
        client.flushdb()
        client.close()
    records = json_lines(log_path.read_text())
    assert records and all(r["role"] == "worker" for r in records)
    by_event: dict[str, list[dict]] = {}
    for record in records:
        by_event.setdefault(record["event"], []).append(record)
    (tick,) = by_event["tick"]
    assert (tick["due"], tick["claimed"]) == (1, 1) and tick["duration"] >= 0
    assert tick["now"] == (now + timedelta(days=3)).isoformat()
    assert {(r["subscriber"], r["lesson"]) for r in by_event["claim"]} == {(stays.id, "second")}
    assert {(r["subscriber"], r["lesson"]) for r in by_event["send"]} == {
        (stays.id, "hello"), (stays.id, "second")}  # fmt: skip
    assert all(r["message_id"] and r["attempt"] == 1 for r in by_event["send"])
    (skip,) = by_event["skip"]
    assert (skip["subscriber"], skip["lesson"]) == (leaves.id, "hello")
    assert skip["reason"].startswith("suppressed")
