"""The ``course`` command as a user runs it: output, exit status, one-line errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import redis
from conftest import cli_runner, course_env, db_url

from course.store import Store
from course.subscribers.lifecycle import enrol
from course.testing.sendgrid_standin import SendGridStandIn

CLI_DB = 5  # the CLI tests own this database of the tests' server


@pytest.fixture
def run(tmp_path, course_path, redis_url, monkeypatch, capsys):
    """``course ARGS`` through its entry point in this process (exit status and output as a
    user sees them), or as ``python -m course`` in a process of its own with
    ``subprocess=True``."""
    url = db_url(redis_url, CLI_DB)
    redis.Redis.from_url(url).flushdb()
    yield cli_runner(course_env(url, course_path, tmp_path), monkeypatch, capsys)
    redis.Redis.from_url(url).flushdb()


def test_validate_passes_on_a_good_schedule(run):
    result = run("validate", subprocess=True)  # as a user starts it: python -m course
    assert result.returncode == 0, result.stderr
    assert "2 phases, 4 lessons, 5 emails checked" in result.stdout


def test_validate_names_file_line_and_field_and_exits_1(run, course_path):
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{course_path}:15: phases[0].lessons[1].day: must be >= 0",
        "course: 1 problem(s) in the course's content",
    ]
    assert "Traceback" not in result.stderr


def test_validate_reports_the_schedules_and_the_templates_problems_in_one_run(run, course_path):
    """A template mistake used to show only once the schedule was fixed: now both at once,
    for every template an entry names, broken entry or not, and the layouts and pages."""
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    lessons = course_path.parent / "templates" / "lessons"
    (lessons / "second.md").write_text("Hi,\n\n{% if %}\n")  # its own entry is the broken one
    (lessons / "fourth.md").write_text("Hi {{ nmae }},\n")
    pages = course_path.parent / "templates" / "web"
    pages.mkdir()
    (pages / "invalid_link.html.j2").write_text("<p>\n{{ 1 + }}\n")
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{course_path}:15: phases[0].lessons[1].day: must be >= 0",
        "templates/lessons/second.md:3: Expected an expression, got 'end of statement block'",
        "templates/lessons/fourth.md:1: unknown variable 'nmae' (known: email, first_name, "
        "pause_url, progress, roadmap_url, unsubscribe_url)",
        "templates/web/invalid_link.html.j2:2: unexpected 'end of print statement'",
        "course: 4 problem(s) in the course's content",
    ]


def test_validate_reports_every_broken_template_of_a_valid_schedule(run, course_path):
    lessons = course_path.parent / "templates" / "lessons"
    (lessons / "hello.md").write_text("Hi,\n\n{{ 1/0 }}\n")
    (lessons / "third.md").write_text("{% for %}\n")
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "templates/lessons/hello.md:3: ZeroDivisionError: division by zero",
        "templates/lessons/third.md:1: Expected an expression, got 'end of statement block'",
        "course: 2 problem(s) in the course's content",
    ]


def test_validate_refuses_a_yaml_alias_bomb_at_once_with_one_line(run, course_path):
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    course_path.write_text(bomb)

    started = time.monotonic()
    result = run("validate")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{course_path}:6: this value expands to more than 100,000 YAML values "
        "(each alias repeats what it names); a schedule needs a few thousand",
        "course: 1 problem(s) in the course's content",
    ]
    assert time.monotonic() - started < 15  # a cap, start-up included; it took 40 s and 3 GB


def test_validate_shipped_schedule(run):
    result = run("validate", "--schedule", "schedule.yaml")
    assert result.returncode == 0, result.stderr


def test_unknown_option_is_a_usage_error(run):
    result = run("timeline", "--bogus")
    assert result.returncode == 2


def test_timeline_json_contract(run):
    result = run("timeline", "--signup", "2026-03-06T23:30:00-05:00", "--tz",
                 "America/New_York", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["lesson_id"] for r in rows] == ["hello", "second", "third", "fourth"]
    assert set(rows[0]) == {"lesson_id", "phase_id", "send_at"}
    assert rows[0]["send_at"] == "2026-03-06T23:30:00-05:00"
    # Day 2 falls on the first day of daylight saving time: 08:00 local, offset -04:00.
    assert rows[1]["send_at"] == "2026-03-08T08:00:00-04:00"
    for row in rows:
        assert datetime.fromisoformat(row["send_at"]).utcoffset() is not None


def test_timeline_bad_zone_is_one_line(run):
    result = run("timeline", "--signup", "2026-03-06T10:00:00Z", "--tz", "Mars/Olympus")
    assert result.returncode == 2
    assert "unknown time zone 'Mars/Olympus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_subscribers_add_show_list_unsubscribe(run):
    added = run("subscribers", "add", "Ann@Example.com", "--name", "Ann", "--tz", "Europe/Berlin",
                "--start", "2026-04-01T10:00:00Z")  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = run("subscribers", "add", "ann@example.com")
    assert again.returncode == 1 and "already subscribed" in again.stderr

    shown = run("subscribers", "show", "ann@example.com", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["email"] == "ann@example.com" and data["status"] == "active"
    assert [le["lesson_id"] for le in data["lessons"]] == ["hello", "second", "third", "fourth"]
    assert data["lessons"][0]["state"] == "due"

    ticked = run("tick", "--now", "2026-04-01T10:00:30Z", "--inline")
    assert ticked.returncode == 0, ticked.stderr
    assert "claimed 1" in ticked.stdout and "sent 1" in ticked.stdout
    data = json.loads(run("subscribers", "show", "ann@example.com", "--json").stdout)
    assert data["lessons"][0]["state"] == "sent"
    assert data["lessons"][1] == {
        "lesson_id": "second", "phase_id": "first", "day": 2, "state": "due",
        "due_at": "2026-04-03T06:00:00+00:00",
    }  # fmt: skip

    listed = run("subscribers", "list", "--json")
    assert [s["email"] for s in json.loads(listed.stdout)] == ["ann@example.com"]

    gone = run("subscribers", "unsubscribe", "ann@example.com")
    assert gone.returncode == 0 and "unsubscribed" in gone.stdout
    later = run("tick", "--now", "2026-04-10T10:00:00Z", "--inline")
    assert "claimed 0" in later.stdout
    data = json.loads(run("subscribers", "show", "ann@example.com", "--json").stdout)
    assert data["status"] == "unsubscribed"
    # Someone who left has no "waiting" or "due" next lesson: nothing more goes to them.
    assert [le["state"] for le in data["lessons"]] == ["sent"] + 3 * [
        "not to be sent (unsubscribed)"
    ]
    assert not any("due_at" in le for le in data["lessons"])
    table = run("subscribers", "show", "ann@example.com").stdout
    assert "waiting" not in table and "not yet" not in table and "not to be sent" in table


def test_tick_inline_stamps_each_send_when_it_starts(run, redis_url, schedule):
    store = Store(redis.Redis.from_url(db_url(redis_url, CLI_DB), decode_responses=True))
    start = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
    subs = [enrol(store, schedule, f"s{n}@example.com", None, None, start) for n in range(3)]
    with SendGridStandIn(api_key="SG.test", latency=1.1) as standin:  # each send takes 1.1 s
        # One request per email (no groups), one at a time: three sends, one after another.
        ticked = run("tick", "--now", "2026-04-01T10:00:30Z", "--inline", subprocess=True,
                     COURSE_TRANSPORT="sendgrid", SENDGRID_API_KEY="SG.test",
                     SENDGRID_HOST=standin.url, COURSE_SENDGRID_BATCH="1",
                     COURSE_SEND_CONCURRENCY="1")  # fmt: skip
    assert ticked.returncode == 0, ticked.stderr
    assert "sent 3" in ticked.stdout
    stamps = sorted(store.ledger(sub.id)["hello"].at for sub in subs)
    tick_at = datetime(2026, 4, 1, 10, 0, 30, tzinfo=UTC).timestamp()
    # The first send starts at the tick's instant, each later one when the one before is done.
    assert stamps[0] == tick_at
    assert stamps[1] >= stamps[0] + 1 and stamps[2] >= stamps[1] + 1
    assert stamps[2] < tick_at + 10
    store.redis.close()


def test_subscribers_add_rejects_a_bad_address_and_zone(run):
    bad = run("subscribers", "add", "not-an-address")
    assert bad.returncode == 1 and "not a valid email address" in bad.stderr
    jorg = run("subscribers", "add", "jörg@example.org")
    assert jorg.returncode == 1 and jorg.stderr == (
        "course: 'jörg@example.org' cannot be mailed: a non-ASCII name before the @ needs "
        "SMTPUTF8, which the course does not use (SendGrid does not offer it)\n"
    )
    zone = run("subscribers", "add", "b@example.com", "--tz", "Nowhere/Land")
    assert zone.returncode == 2 and "unknown time zone" in zone.stderr


def test_subscribers_add_checks_the_name_as_the_web_form_does(run):
    for name in ("Ann\r\nBcc: x@example.org", "visit evil.example", "<b>Ann</b>"):
        result = run("subscribers", "add", "n@example.com", "--name", name)
        assert result.returncode == 2, result.stdout
        assert "Invalid value for --name: not a first name" in result.stderr
        assert "Traceback" not in result.stderr
    assert run("subscribers", "show", "n@example.com").returncode == 1  # nothing stored
    fine = run("subscribers", "add", "n@example.com", "--name", "  Anne-Marie  O'Neil ")
    assert fine.returncode == 0, fine.stderr
    shown = run("subscribers", "show", "n@example.com", "--json")
    assert json.loads(shown.stdout)["first_name"] == "Anne-Marie O'Neil"


def test_show_unknown_subscriber_exits_1(run):
    result = run("subscribers", "show", "nobody@example.com")
    assert result.returncode == 1
    assert result.stderr.strip() == "course: nobody@example.com: no such subscriber"


def test_preview_prints_the_text_part_and_writes_html(run, tmp_path):
    text = run("preview", "second")
    assert text.returncode == 0, text.stderr
    assert "Subject: Second" in text.stdout and "Hi Alex" in text.stdout
    out = tmp_path / "second.html"
    written = run("preview", "second", "--out", str(out))
    assert written.returncode == 0 and "<html" in out.read_text()
    missing = run("preview", "nope")
    assert missing.returncode == 2 and "no lesson 'nope'" in missing.stderr
    confirmation = run("preview", "confirmation")
    assert confirmation.returncode == 0 and "/confirm/" in confirmation.stdout
    assert run("preview").returncode == 2
    assert run("preview", "second", "--all").returncode == 2


def test_preview_all_writes_the_small_course_gallery(run, tmp_path):
    result = run("preview", "--all", "--out", str(tmp_path / "g"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("5 emails: ")
    assert len(list((tmp_path / "g").glob("*.html"))) == 6  # five emails and the index


def test_bad_transport_setting_is_a_usage_error(run):
    result = run("validate", COURSE_TRANSPORT="carrier-pigeon")
    assert result.returncode == 2
    assert "COURSE_TRANSPORT" in result.stderr and "Traceback" not in result.stderr


def test_redis_that_cannot_be_reached_is_one_line_not_a_traceback(run):
    result = run("subscribers", "list", subprocess=True, REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_out_of_range_values_are_usage_errors(run):
    far = run("timeline", "--signup", "9999-12-30T00:00:00Z")
    assert far.returncode == 2 and "out of range" in far.stderr
    added = run("subscribers", "add", "p@example.com")
    assert added.returncode == 0, added.stderr
    long = run("subscribers", "pause", "p@example.com", "--days", "99999999")
    assert long.returncode == 2 and "Traceback" not in long.stderr


def test_pause_and_resume_from_the_command_line(run):
    run("subscribers", "add", "p@example.com", "--start", "2026-03-02T14:00:00Z")
    paused = run("subscribers", "pause", "p@example.com", "--days", "7",
                 "--now", "2026-03-03T14:00:00Z")  # fmt: skip
    assert paused.returncode == 0, paused.stderr
    # Seven days on the subscriber's wall clock, across the start of daylight saving time.
    assert "paused until 2026-03-10T09:00:00-04:00" in paused.stdout
    shown = json.loads(run("subscribers", "show", "p@example.com", "--json").stdout)
    assert shown["status"] == "paused"
    again = run("subscribers", "pause", "p@example.com")
    assert again.returncode == 1 and "cannot pause a subscriber who is paused" in again.stderr
    resumed = run("subscribers", "resume", "p@example.com", "--now", "2026-03-05T14:00:00Z")
    assert resumed.returncode == 0 and "active" in resumed.stdout


def test_quarantine_lists_and_releases(run, redis_url):
    added = run("subscribers", "add", "q@example.com")
    assert added.returncode == 0, added.stderr
    client = redis.Redis.from_url(db_url(redis_url, CLI_DB), decode_responses=True)
    sub_id = client.hget(Store(client).email_key("q@example.com"), "q@example.com")
    client.hset("hr:quarantine", sub_id, "ValueError: damaged")
    listed = run("subscribers", "quarantine")
    assert "q@example.com" in listed.stdout and "1 in quarantine" in listed.stdout
    released = run("subscribers", "quarantine", "--release", sub_id)
    assert released.returncode == 0 and "released 1" in released.stdout
    missing = run("subscribers", "quarantine", "--release", "nope")
    assert missing.returncode == 1 and "not in quarantine" in missing.stderr
    client.close()
