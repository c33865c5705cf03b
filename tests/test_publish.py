"""Publish, don't save: ``course publish`` validates the working files, prints the diff against
the live version and its impact, and publishes only through the gate; ``course versions`` and
``course rollback``; the first start, ``COURSE_PUBLISH_ON_START`` and the store's versions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import cli_runner, course_env, db_url, publish_course
from test_schedule_diff import EDITED, NOW, brute_force, prepare

from course.schedule import load_schedule
from course.schedule.diff import compare
from course.schedule.reload import ScheduleHolder
from course.store import Store
from course.store.versions import StaleLive
from course.subscribers.lifecycle import enrol

PUBLISH_DB = 15  # this module owns this database of the tests' server
EXTRA = "Hi,\n\n**One small step for today:** rest.\n"


@pytest.fixture
def world(tmp_path, course_path, redis_url, monkeypatch, capsys):
    url = db_url(redis_url, PUBLISH_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    env = course_env(url, course_path, tmp_path, COURSE_PUBLISHER="ann")
    yield {"store": Store(client), "path": course_path,
           "cli": cli_runner(env, monkeypatch, capsys)}  # fmt: skip
    client.flushdb()
    client.close()


def edit_subject(path, subject: str) -> None:
    text = path.read_text()
    path.write_text(re.sub(r'subject: "Second[^"]*"', f'subject: "{subject}"', text))


def test_publish_refuses_an_invalid_course_and_nothing_goes_live(world):
    world["path"].write_text(world["path"].read_text().replace("day: 2", "day: -2"))
    result = world["cli"]("publish", "--yes")
    assert result.returncode == 1
    assert "phases[0].lessons[1].day: must be >= 0" in result.stderr
    assert "not published: 1 problem(s)" in result.stderr
    assert world["store"].schedule_versions().live() is None


def test_publish_shows_the_change_asks_and_publishes_with_its_author_and_message(world):
    cli, versions = world["cli"], world["store"].schedule_versions()
    first = cli("publish", "--yes", "-m", "first")
    assert first.returncode == 0, first.stderr
    assert "no version is live yet" in first.stdout
    v1 = versions.live()
    assert f"published {v1} by ann" in first.stdout

    again = cli("publish", "--yes")  # the same files: the same version
    assert again.returncode == 0 and f"nothing changed: the working files are version {v1}" in (
        again.stdout
    )
    assert len(versions.all()) == 1

    edit_subject(world["path"], "Second, better")
    refused = cli("publish")  # no terminal to ask: refused without --yes
    assert refused.returncode == 1 and "confirm with --yes" in refused.stderr
    assert versions.live() == v1
    assert f"{v1} (live) -> " in refused.stdout
    assert "~ content  second: subject\n~ file     schedule.yaml" in refused.stdout

    done = cli("publish", "--yes", "--message", "a better \x1b[31msubject", "--author", "bo")
    assert done.returncode == 0, done.stderr
    v2 = versions.live()
    assert v2 != v1 and versions.info(v2).author == "bo"
    assert versions.info(v2).message == "a better [31msubject"  # no escape reaches a terminal
    assert [e.id for e in versions.history()] == [v1, v2]

    listed = cli("versions", "--json")
    assert [(v["id"], v["live"]) for v in json.loads(listed.stdout)] == [
        (v2, True),
        (v1, False),
    ]
    stats = cli("stats")
    assert f"live: version {v2} since" in stats.stdout and "by bo [publish]" in stats.stdout


def test_a_removed_lesson_someone_is_due_for_within_the_hour_needs_yes(world):
    store, path = world["store"], world["path"]
    publish_course(store, path)
    schedule = load_schedule(path)
    enrol(store, schedule, "due@example.com", None, "UTC", datetime.now(UTC) - timedelta(minutes=5))
    kept = "".join(x for x in path.read_text().splitlines(True) if "id: hello" not in x)
    path.write_text(kept.replace("day: 2", "day: 0"))  # the first lesson is day 0

    refused = world["cli"]("publish")
    assert refused.returncode == 1
    assert "hello: 1 were still to get it and now will not; 1 were due for it" in refused.stdout
    assert "removes lessons people are due for now: hello (1 due" in refused.stdout
    assert "needs --yes" in refused.stderr
    assert world["cli"]("publish", "--yes").returncode == 0


def test_the_diff_printed_before_publishing_matches_a_brute_force_count(world, tmp_path):
    store, path = world["store"], world["path"]
    old = load_schedule(path)
    publish_course(store, path)
    prepare(store, old, 200)
    path.write_text(EDITED)
    (path.parent / "templates" / "lessons" / "extra.md").write_text(EXTRA)
    new = load_schedule(path)
    expected = brute_force(store, old, new, compare(old, new))

    result = world["cli"]("publish", "--yes", "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    for lesson, (get, skip) in expected["added"].items():
        assert f"  {lesson}: {get} will get it, {skip} will not" in result.stdout
    for lesson, pending in expected["removed"].items():
        assert f"  {lesson}: {pending} were still to get it and now will not" in result.stdout
    assert "+ file     templates/lessons/extra.md" in result.stdout


def test_rollback_publishes_the_previous_version_through_the_same_gate(world):
    cli, versions = world["cli"], world["store"].schedule_versions()
    v1 = publish_course(world["store"], world["path"])
    edit_subject(world["path"], "Second, v2")
    v2 = publish_course(world["store"], world["path"])
    assert cli("rollback").returncode == 1  # no terminal: --yes needed
    result = cli("rollback", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"{v2} (live) -> {v1} (rollback)" in result.stdout
    assert versions.live() == v1 and versions.live_since().kind == "rollback"
    assert cli("rollback", v2[:6], "--yes").returncode == 0 and versions.live() == v2
    assert cli("rollback", "ffff0000").returncode == 2  # an unknown version: usage
    # the instants each was live, for rendering a lesson as it was sent
    log = versions.history()
    assert [e.id for e in log] == [v1, v2, v1, v2]
    assert versions.live_at(log[2].at + timedelta(microseconds=1)) == v1
    assert versions.live_at(log[0].at - timedelta(seconds=1)) is None


def test_the_first_start_publishes_and_later_starts_follow_the_live_version(world):
    store, path = world["store"], world["path"]
    versions = store.schedule_versions()
    holder = ScheduleHolder(path, versions=versions, publisher="worker")
    assert versions.live() == holder.version and versions.live_since().kind == "first-start"
    edit_subject(path, "Second, edited")
    restarted = ScheduleHolder(path, versions=versions)
    assert restarted.version == holder.version  # a saved file is not published by a start
    assert restarted.schedule.lesson("second").subject == "Second"
    on_start = ScheduleHolder(path, versions=versions, publish_on_start=True)
    assert on_start.version != holder.version == versions.history()[0].id
    assert on_start.schedule.lesson("second").subject == "Second, edited"
    assert versions.live_since().kind == "on-start"
    again = ScheduleHolder(path, versions=versions, publish_on_start=True)
    assert len(versions.history()) == 2 and again.version == on_start.version  # no flip-flop


def test_publish_on_start_comes_from_the_environment(tmp_path, course_path):
    from course.settings import Settings, SettingsError

    assert Settings.from_env({"COURSE_PUBLISH_ON_START": "1"}).publish_on_start
    assert not Settings.from_env({}).publish_on_start
    with pytest.raises(SettingsError, match="COURSE_PUBLISH_ON_START"):
        Settings.from_env({"COURSE_PUBLISH_ON_START": "maybe"})
    assert Settings.from_env({"COURSE_PUBLISHER": "ann", "USER": "x"}).publisher == "ann"


def test_a_version_that_fails_to_load_keeps_the_last_good_one_running(world):
    store, path = world["store"], world["path"]
    versions = store.schedule_versions()
    holder = ScheduleHolder(path, versions=versions)
    good = holder.version
    files = versions.files(good)
    files["schedule.yaml"] = files["schedule.yaml"].replace(b"day: 2", b"day: -2")
    bad, _ = versions.save(files, "mallory", "bypassed the gate", datetime.now(UTC))
    versions.publish(bad, good, "mallory", "", datetime.now(UTC))
    schedule, _ = holder.current()
    assert holder.version == good and schedule.lesson("second").day == 2
    assert holder.error.startswith(f"version {bad}: schedule.yaml:")
    assert holder.status()["version"] == good


def test_publishing_over_a_stale_live_version_is_refused(world):
    versions = world["store"].schedule_versions()
    v1 = publish_course(world["store"], world["path"])
    files = versions.files(v1)
    files["templates/lessons/hello.md"] = b"changed"
    other, new = versions.save(files, "bo", "draft", datetime.now(UTC), parent=v1)
    assert new and versions.info(other).parent == v1
    versions.publish(other, v1, "bo", "", datetime.now(UTC))
    with pytest.raises(StaleLive):
        versions.publish(v1, v1, "ann", "", datetime.now(UTC))  # ann read v1 as live
    assert versions.live() == other
