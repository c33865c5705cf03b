"""The editor of the admin page over HTTP: open a lesson, save it with a mistake (shown with its
file and line, nothing saved), fix it, preview, save a draft, see what publishing changes, publish,
and the live version is the draft; a stale save refused; text escaped; CSRF required."""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import publish_course
from fastapi.testclient import TestClient
from test_admin import TOKEN, csrf_of

from course.schedule import load_schedule
from course.subscribers.lifecycle import enrol
from course.web import create_app


@pytest.fixture
def editor(settings, store):
    """A signed-in client of the admin page."""
    app = create_app(settings.with_(admin_token=TOKEN), send_task=lambda *a, **k: None)
    with TestClient(app) as client:
        answer = client.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
        assert answer.status_code == 303
        yield client


BROKEN = "Hi {{ first_name }},\n\nThis is better.\n\n{{ nope }} and a step.\n"
FIXED = "Hi {{ first_name or 'friend' }},\n\nThis is better.\n\n**One small step:** rest.\n"


def lesson_form(client, lesson_id: str) -> dict[str, str]:
    page = client.get(f"/admin/editor/lesson/{lesson_id}")
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    for name in ("subject", "preheader", "day", "author"):
        found = re.search(rf'id="{name}" name="{name}" value="([^"]*)"', page.text)
        fields[name] = html.unescape(found.group(1))
    body = re.search(r'<textarea id="body" name="body"[^>]*>(.*?)</textarea>', page.text, re.S)
    fields["body"] = html.unescape(body.group(1))
    return fields


def test_edit_save_with_an_error_fix_preview_save_and_publish(editor, store, course_path, settings,
                                                               caplog):  # fmt: skip
    client = editor
    caplog.set_level(logging.INFO, logger="course.web.admin")
    live = publish_course(store, course_path)
    listed = client.get("/admin/editor")
    assert listed.status_code == 200 and 'href="/admin/editor/lesson/second"' in listed.text
    form = lesson_form(client, "second")
    assert (form["subject"], form["day"], form["base"]) == ("Second", "2", live)
    assert "This is the **second** lesson." in form["body"]

    broken = client.post("/admin/editor/lesson/second",
                         data={**form, "body": BROKEN, "author": "Ann",
                               "action": "save"})  # fmt: skip
    assert broken.status_code == 422
    assert "templates/lessons/second.md:5: unknown variable &#39;nope&#39;" in broken.text
    assert "line 5: {{ nope }} and a step." in broken.text
    assert store.schedule_drafts().draft() is None and store.schedule_versions().live() == live
    assert html.escape(BROKEN, quote=False) in broken.text  # the marketer's text is kept

    moved = {**form, "body": FIXED, "day": "3", "subject": "Second, better", "author": "Ann"}
    preview = client.post("/admin/editor/lesson/second", data={**moved, "action": "preview"})
    assert preview.status_code == 200, preview.text
    assert "Preview: Second, better" in preview.text and "srcdoc=" in preview.text
    assert store.schedule_drafts().draft() is None  # a preview saves nothing
    tested = client.post("/admin/editor/lesson/second",
                         data={**moved, "action": "test", "address": "me@example.com"})  # fmt: skip
    assert "A test of second was sent to me@example.com." in tested.text
    sent = [p.read_text(errors="replace") for p in settings.outbox_dir.rglob("*") if p.is_file()]
    assert any("[TEST] Second, better" in text and "This is better." in text for text in sent)
    bad = client.post("/admin/editor/lesson/second",
                      data={**moved, "action": "test", "address": "not an address"})  # fmt: skip
    assert "Your address:" in bad.text

    saved = client.post("/admin/editor/lesson/second", data={**moved, "action": "save"},
                        follow_redirects=False)  # fmt: skip
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/editor/draft"
    draft = store.schedule_drafts().draft()
    assert draft is not None and draft.live == live and draft.author == "Ann"
    assert (
        'day: 3, subject: "Second, better"'
        in store.schedule_versions().files(draft.id)["schedule.yaml"].decode()
    )
    assert "draft_saved" in caplog.text and "author=Ann" in caplog.text
    for shown in (client.get("/admin"), client.get("/admin/stats")):
        assert f"{draft.id}" in shown.text and "saved by Ann" in " ".join(shown.text.split())

    page = client.get("/admin/editor/draft")
    assert page.status_code == 200
    assert "~ file     schedule.yaml" in page.text and "second" in page.text
    csrf = csrf_of(page)
    nameless = client.post("/admin/editor/draft/publish",
                           data={"csrf": csrf, "draft": draft.id, "message": "m"})  # fmt: skip
    assert nameless.status_code == 422 and store.schedule_versions().live() == live
    published = client.post("/admin/editor/draft/publish",
                            data={"csrf": csrf, "draft": draft.id, "author": "Ann",
                                  "message": "day 3 reads better"})  # fmt: skip
    assert published.status_code == 200, published.text
    assert f"Version {draft.id} is live" in published.text
    versions = store.schedule_versions()
    assert versions.live() == draft.id and store.schedule_drafts().draft() is None
    since = versions.live_since()
    assert (since.author, since.message) == ("Ann", "day 3 reads better")
    assert "schedule_published" in caplog.text and "via=admin" in caplog.text


def test_a_stale_save_is_refused_with_a_clear_message(editor, store, course_path):
    client = editor
    live = publish_course(store, course_path)
    ann = lesson_form(client, "second")
    bo = lesson_form(client, "third")  # opened before Ann saved
    first = client.post("/admin/editor/lesson/second",
                        data={**ann, "day": "3", "author": "Ann", "action": "save"},
                        follow_redirects=False)  # fmt: skip
    assert first.status_code == 303
    second = client.post("/admin/editor/lesson/third",
                         data={**bo, "subject": "Bo's", "author": "Bo",
                               "action": "save"})  # fmt: skip
    assert second.status_code == 409
    assert "someone saved the draft since you opened it by Ann" in second.text
    draft = store.schedule_drafts().draft()
    assert draft.author == "Ann" and draft.live == live
    # Opened again, the form starts from the draft and saves on top of it.
    again = lesson_form(client, "third")
    assert again["base"] == draft.id
    third = client.post("/admin/editor/lesson/third",
                        data={**again, "subject": "Bo's", "author": "Bo", "action": "save"},
                        follow_redirects=False)  # fmt: skip
    assert third.status_code == 303
    assert store.schedule_drafts().info(store.schedule_drafts().draft().id).parent == draft.id


def test_the_editor_escapes_text_and_wants_its_csrf_token(editor, store, course_path):
    client = editor
    publish_course(store, course_path)
    form = lesson_form(client, "second")
    attack = '"><script>alert(1)</script>'
    page = client.post("/admin/editor/lesson/second",
                       data={**form, "subject": attack, "action": "preview"})  # fmt: skip
    assert "<script>alert(1)</script>" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    forged = client.post("/admin/editor/lesson/second",
                         data={**form, "csrf": "wrong", "author": "X",
                               "action": "save"})  # fmt: skip
    assert forged.status_code == 403 and store.schedule_drafts().draft() is None
    assert client.get("/admin/editor/lesson/nope").status_code == 404
    other = {**form, "base": "schedule:live", "author": "X", "action": "save"}
    assert client.post("/admin/editor/lesson/second", data=other).status_code == 404


def test_publishing_a_draft_that_removes_a_lesson_due_now_needs_the_box(editor, store,
                                                                        course_path):  # fmt: skip
    client = editor
    live = publish_course(store, course_path)
    schedule = load_schedule(course_path)
    enrol(store, schedule, "due@example.com", None, "UTC", datetime.now(UTC) - timedelta(minutes=5))
    drafts = store.schedule_drafts()
    files = drafts.files(live)
    text = files["schedule.yaml"].decode()
    kept = "".join(x for x in text.splitlines(True) if "id: hello" not in x)
    vid = drafts.save_draft({**files, "schedule.yaml": kept.replace("day: 2", "day: 0").encode()},
                            live, "Bo", "", datetime.now(UTC))  # fmt: skip
    page = client.get("/admin/editor/draft")
    assert "hello: 1 were still to get it and now will not; 1 were due for it" in page.text
    assert 'name="confirm"' in page.text
    data = {"csrf": csrf_of(page), "draft": vid, "author": "Ann", "message": "drop hello"}
    refused = client.post("/admin/editor/draft/publish", data=data)
    assert refused.status_code == 422 and "tick the box" in refused.text
    assert drafts.live() == live
    done = client.post("/admin/editor/draft/publish", data={**data, "confirm": "yes"})
    assert done.status_code == 200 and drafts.live() == vid


def test_an_invalid_draft_is_never_published(editor, store, course_path):
    client = editor
    live = publish_course(store, course_path)
    drafts = store.schedule_drafts()
    files = drafts.files(live)
    bad = {**files, "templates/lessons/third.md": b"Hi {{ nobody }}\n"}
    vid = drafts.save_draft(bad, live, "Bo", "", datetime.now(UTC))  # the store does not check
    page = client.get("/admin/editor/draft")
    assert "templates/lessons/third.md:1: unknown variable" in html.unescape(page.text)
    assert "/admin/editor/draft/publish" not in page.text
    listed = client.get("/admin/editor")  # still listed, to be fixed
    assert 'href="/admin/editor/lesson/third"' in listed.text and "unknown variable" in listed.text
    forced = client.post("/admin/editor/draft/publish",
                         data={"csrf": csrf_of(page), "draft": vid, "author": "Bo"})  # fmt: skip
    assert forced.status_code == 422 and drafts.live() == live
