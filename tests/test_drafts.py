"""Drafts and export: ``course versions export VERSION DIR`` writes a version's files (and
refuses a stored path that would land outside DIR); the draft the admin editor saves is a
compare-and-set on the version it was opened from, so a stale save is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from conftest import cli_runner, course_env, db_url, publish_course

from course.store import Store
from course.store.drafts import StaleDraft

DRAFTS_DB = 6  # this module owns this database of the tests' server
NOW = datetime.now(UTC)  # after the publishes of publish_course (the live log is by time)


@pytest.fixture
def world(tmp_path, course_path, redis_url, monkeypatch, capsys):
    url = db_url(redis_url, DRAFTS_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    env = course_env(url, course_path, tmp_path, COURSE_PUBLISHER="ann")
    store = Store(client)
    yield {"store": store, "path": course_path, "client": client,
           "cli": cli_runner(env, monkeypatch, capsys)}  # fmt: skip
    client.flushdb()
    client.close()


def edited(files: dict[str, bytes], old: str, new: str) -> dict[str, bytes]:
    schedule = files["schedule.yaml"].decode()
    assert old in schedule
    return {**files, "schedule.yaml": schedule.replace(old, new, 1).encode()}


def test_export_writes_the_live_version_and_the_draft_as_files(world, tmp_path):
    live = publish_course(world["store"], world["path"])
    drafts = world["store"].schedule_drafts()
    files = drafts.files(live)
    draft = drafts.save_draft(edited(files, "day: 2", "day: 3"), live, "bo", "moved", NOW)
    out = tmp_path / "out"
    result = world["cli"]("versions", "export", live[:6], str(out))
    assert result.returncode == 0, result.stderr
    assert f"exported {live}: {len(files)} file(s)" in result.stdout
    assert (out / "schedule.yaml").read_bytes() == files["schedule.yaml"]
    lessons = [n for n in files if n.startswith("templates/lessons/")]
    assert lessons and all((out / n).read_bytes() == files[n] for n in lessons)
    again = world["cli"]("versions", "export", "draft", str(out))
    assert again.returncode == 1
    assert "not empty (--force writes over the files there)" in again.stderr
    forced = world["cli"]("versions", "export", "draft", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"exported {draft}" in forced.stdout
    assert "day: 3" in (out / "schedule.yaml").read_text()
    listed = world["cli"]("versions", "--json")
    rows = {row["id"]: row for row in __import__("json").loads(listed.stdout)}
    assert rows[draft]["draft"] and not rows[draft]["live"] and rows[live]["live"]


@pytest.mark.parametrize(
    "name", ["../../escaped.txt", "/tmp/abs.txt", "templates/..\\x.txt", "templates/", "."]
)
def test_export_refuses_a_stored_path_outside_the_folder(world, tmp_path, name):
    live = publish_course(world["store"], world["path"])
    keys = world["store"].schedule_versions()
    world["client"].hset(keys.version_files_key(live), name, "owned")  # a tampered store
    out = tmp_path / "deep" / "out"
    result = world["cli"]("versions", "export", live, str(out))
    assert result.returncode == 1
    assert "not a relative path inside the course folder; nothing written" in result.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep").exists()
    assert "Traceback" not in result.stderr


def test_export_does_not_follow_a_symlink_out_of_the_folder(world, tmp_path):
    live = publish_course(world["store"], world["path"])
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "templates").symlink_to(elsewhere)
    result = world["cli"]("versions", "export", live, str(out), "--force")
    assert result.returncode == 1
    assert "leads outside" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_export_of_an_unknown_version_says_so(world, tmp_path):
    publish_course(world["store"], world["path"])
    result = world["cli"]("versions", "export", "ffffffff", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no version 'ffffffff'" in result.stderr


def test_a_stale_draft_save_is_refused_and_changes_nothing(world):
    live = publish_course(world["store"], world["path"])
    drafts = world["store"].schedule_drafts()
    files = drafts.files(live)
    first = drafts.save_draft(edited(files, "day: 2", "day: 3"), live, "ann", "", NOW)
    assert drafts.draft().id == first and drafts.draft().live == live
    # Bo opened the editor on the live version before Ann saved: his save is refused.
    bo = edited(files, "day: 4", "day: 6")
    with pytest.raises(StaleDraft, match="someone saved the draft since you opened it by ann"):
        drafts.save_draft(bo, live, "bo", "", NOW)
    assert drafts.draft().id == first
    from course.store.versions import version_id

    assert drafts.info(version_id(bo)) is None  # a refused save leaves nothing behind
    # Saving on top of the draft works, and names its parent.
    second = drafts.save_draft(edited(files, "day: 2", "day: 5"), first, "bo", "", NOW)
    assert drafts.draft().id == second and drafts.info(second).parent == first
    # A publish from the terminal since: the draft is stale, for saving and publishing.
    world["path"].write_text(world["path"].read_text().replace("day: 4", "day: 8", 1))
    now_live = publish_course(world["store"], world["path"])
    with pytest.raises(StaleDraft, match="a version was published since you opened it"):
        drafts.save_draft(edited(files, "day: 2", "day: 7"), second, "ann", "", NOW)
    with pytest.raises(StaleDraft, match="published since this draft was made"):
        drafts.publish_draft(second, "ann", "", NOW)
    assert drafts.live() == now_live
    assert drafts.discard_draft(second) and drafts.draft() is None


def test_publishing_the_draft_makes_it_live_and_clears_it(world):
    live = publish_course(world["store"], world["path"])
    drafts = world["store"].schedule_drafts()
    vid = drafts.save_draft(edited(drafts.files(live), "day: 2", "day: 3"), live, "ann", "",
                            NOW)  # fmt: skip
    with pytest.raises(StaleDraft, match="the draft changed"):
        drafts.publish_draft("0123456789ab", "ann", "", NOW, ["never-published"])
    assert not world["client"].sismember(drafts.scheduled_lessons_key, "never-published")
    drafts.publish_draft(vid, "ann", "day 3 reads better", datetime.now(UTC), ["new-one"])
    assert world["client"].sismember(drafts.scheduled_lessons_key, "new-one")
    assert drafts.live() == vid and drafts.draft() is None
    since = drafts.live_since()
    assert (since.author, since.message, since.kind) == ("ann", "day 3 reads better", "publish")
    # Saving the live files again is no draft at all.
    assert drafts.save_draft(drafts.files(vid), vid, "ann", "", NOW) is None
    assert drafts.draft() is None
