"""The versions page of the admin over HTTP: every version listed newest first with the live one
and the draft; a rollback's confirmation shows the impact ``course rollback`` prints; rolling back
makes the earlier version live through the CLI's function, logged with who did it; a confirmation
drawn before someone else published is refused; the CSRF token and the due-now box are required."""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta

import test_editor
from conftest import cli_runner, course_env, publish_course
from test_admin import csrf_of

from course.schedule import load_schedule
from course.subscribers.lifecycle import enrol

editor = test_editor.editor  # the signed-in client of the admin page


def two_versions(store, course_path) -> tuple[str, str]:
    """v1 (the files), then v2 with lesson "second" moved from day 2 to day 3: v2 live."""
    v1 = publish_course(store, course_path)
    text = course_path.read_text()
    course_path.write_text(text.replace('day: 2, subject: "Second"', 'day: 3, subject: "Second"'))
    v2 = publish_course(store, course_path, "second on day 3")
    assert v1 != v2 and store.schedule_versions().live() == v2
    return v1, v2


def impact_text(page) -> str:
    found = re.search(r'<pre class="text" id="impact">(.*?)</pre>', page.text, re.S)
    assert found, page.text
    return html.unescape(found.group(1))


def test_the_list_shows_every_version_the_live_one_and_the_draft(editor, store, course_path):
    v1, v2 = two_versions(store, course_path)
    drafts = store.schedule_drafts()
    files = drafts.files(v2)
    draft = drafts.save_draft({**files, "templates/lessons/third.md": b"Hi,\n\nNew words.\n"},
                              v2, "Bo", "", datetime.now(UTC))  # fmt: skip
    page = editor.get("/admin/versions")
    assert page.status_code == 200
    assert 'href="/admin/versions"' in page.text  # in the nav
    text = " ".join(page.text.split())
    table = text[text.index('<ol class="gallery" id="versions">') :]
    assert table.index(draft) < table.index(v2) < table.index(v1)  # newest first
    assert f'<code>{v2}</code> <span class="state">live</span>' in text
    assert f'<code>{draft}</code> <span class="state">draft</span>' in text
    assert "second on day 3" in text and "tests" in text
    assert text.count("Roll back to this version") == 1  # only v1: not the live one, not the draft
    assert f'href="/admin/versions/{v1}/rollback"' in text
    assert "never live" in text  # the draft was never live
    assert "default-src 'none'" in page.headers["content-security-policy"]
    forced = editor.post(f"/admin/versions/{draft}/rollback",
                         data={"csrf": csrf_of(page), "live": v2, "author": "X"})  # fmt: skip
    assert forced.status_code == 409 and "this version is the draft" in forced.text
    assert drafts.live() == v2 and drafts.draft().id == draft


def test_the_confirmation_shows_what_course_rollback_prints(
    editor, store, course_path, tmp_path, redis_url, monkeypatch, capsys
):
    v1, v2 = two_versions(store, course_path)
    schedule = load_schedule(course_path)
    for n in range(3):  # started a day ago: "second" is their next lesson
        enrol(store, schedule, f"r{n}@example.com", None, "UTC",
              datetime.now(UTC) - timedelta(days=1))  # fmt: skip
    page = editor.get(f"/admin/versions/{v1}/rollback")
    assert page.status_code == 200
    shown = impact_text(page).strip().splitlines()
    assert "second: applies to 3 who have not had it" in "\n".join(shown)
    assert "~ file     schedule.yaml" in shown
    cli = cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)
    printed = cli("rollback", v1)  # no terminal and no --yes: prints the change, changes nothing
    assert printed.returncode == 1 and store.schedule_versions().live() == v2
    lines = printed.stdout.splitlines()
    assert lines[0] == f"{v2} (live) -> {v1} (rollback)"
    instant = re.compile(r"\d{4}-\d\d-\d\dT[\d:.+]+")  # each counts at its own now
    assert [instant.sub("NOW", x) for x in lines[1:]] == [instant.sub("NOW", x) for x in shown]
    assert editor.get(f"/admin/versions/{v2}/rollback").text.count("nothing to roll back") == 1
    assert editor.get("/admin/versions/ffffffffffff/rollback").status_code == 404
    assert editor.get("/admin/versions/schedule:live/rollback").status_code == 404


def test_rolling_back_makes_the_version_live_and_is_logged(editor, store, course_path, caplog):
    caplog.set_level(logging.INFO, logger="course.web.admin")
    v1, v2 = two_versions(store, course_path)
    page = editor.get(f"/admin/versions/{v1}/rollback")
    data = {"csrf": csrf_of(page), "live": v2, "message": "day 2 was better"}
    nameless = editor.post(f"/admin/versions/{v1}/rollback", data=data)
    assert nameless.status_code == 422 and store.schedule_versions().live() == v2
    done = editor.post(f"/admin/versions/{v1}/rollback", data={**data, "author": "Ann"})
    assert done.status_code == 200, done.text
    assert f"Version {v1} is live again" in done.text
    versions = store.schedule_versions()
    since = versions.live_since()
    assert versions.live() == v1
    assert (since.author, since.message, since.kind) == ("Ann", "day 2 was better", "rollback")
    assert "schedule_rolled_back" in caplog.text and "via=admin" in caplog.text
    assert "author=Ann" in caplog.text and f"previous={v2}" in caplog.text
    listed = " ".join(editor.get("/admin/versions").text.split())
    assert f'<code>{v1}</code> <span class="state">live</span>' in listed
    assert f'href="/admin/versions/{v2}/rollback"' in listed  # and back again, if need be


def test_a_stale_confirmation_is_refused(editor, store, course_path):
    v1, v2 = two_versions(store, course_path)
    page = editor.get(f"/admin/versions/{v1}/rollback")  # drawn over v2
    data = {"csrf": csrf_of(page), "live": v2, "author": "Ann"}
    text = course_path.read_text()
    course_path.write_text(text.replace('subject: "Second"', 'subject: "Second, v3"'))
    v3 = publish_course(store, course_path)  # someone published meanwhile
    refused = editor.post(f"/admin/versions/{v1}/rollback", data=data)
    assert refused.status_code == 409
    assert f"a version was published since this page was drawn (live is now {v3})" in refused.text
    assert store.schedule_versions().live() == v3
    assert f'name="live" value="{v3}"' in refused.text  # drawn again over v3, to look again
    assert 'value="Ann"' in refused.text


def test_the_csrf_token_is_required(editor, store, course_path):
    v1, v2 = two_versions(store, course_path)
    data = {"live": v2, "author": "Mallory"}
    assert editor.post(f"/admin/versions/{v1}/rollback", data=data).status_code == 403
    forged = editor.post(f"/admin/versions/{v1}/rollback", data={**data, "csrf": "wrong"})
    assert forged.status_code == 403 and store.schedule_versions().live() == v2


def test_a_rollback_removing_a_lesson_due_now_needs_the_box(editor, store, course_path):
    drafts = store.schedule_drafts()
    live = publish_course(store, course_path)
    files = drafts.files(live)
    kept = "".join(x for x in files["schedule.yaml"].decode().splitlines(True)
                   if "id: hello" not in x).replace("day: 2", "day: 0")  # fmt: skip
    old, _ = drafts.save({**files, "schedule.yaml": kept.encode()}, "Bo", "", datetime.now(UTC))
    enrol(store, load_schedule(course_path), "due@example.com", None, "UTC",
          datetime.now(UTC) - timedelta(minutes=5))  # fmt: skip
    page = editor.get(f"/admin/versions/{old}/rollback")
    assert "hello: 1 were still to get it and now will not; 1 were due for it" in page.text
    assert 'name="confirm"' in page.text
    data = {"csrf": csrf_of(page), "live": live, "author": "Ann"}
    refused = editor.post(f"/admin/versions/{old}/rollback", data=data)
    assert refused.status_code == 422 and "tick the box" in refused.text
    assert drafts.live() == live
    done = editor.post(f"/admin/versions/{old}/rollback", data={**data, "confirm": "yes"})
    assert done.status_code == 200 and drafts.live() == old
