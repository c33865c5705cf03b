"""The broadcasts pages of the admin: create (with the segment's count), look at the email,
send a test, send after a confirmation showing the count, cancel; CSRF required on every
POST; and one walk through them in headless Chromium with axe-core."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from test_admin import TOKEN, csrf_of
from test_admin_browser import PHONE, served  # noqa: F401 - the served app fixture
from test_admin_browser import TOKEN as BROWSER_TOKEN
from test_broadcasts import NEWS, populate

from course.web import create_app


@pytest.fixture
def templates(course_path):
    folder = course_path.parent / "templates" / "broadcasts"
    folder.mkdir(exist_ok=True)
    (folder / "news.md").write_text(NEWS)
    return folder


@pytest.fixture
def admin(settings, store, templates):
    app = create_app(settings.with_(admin_token=TOKEN), send_task=lambda *a, **k: None)
    with TestClient(app) as client:
        assert client.post("/admin/login", data={"token": TOKEN},
                           follow_redirects=False).status_code == 303  # fmt: skip
        yield client


def create(admin, **fields) -> str:
    page = admin.get("/admin/broadcasts")
    form = {"csrf": csrf_of(page), "template": "broadcasts/news.md", "subject": "Now open",
            "to": "status:active", "at_local": "", **fields}  # fmt: skip
    made = admin.post("/admin/broadcasts", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    return made.headers["location"].rsplit("/", 1)[1]


def test_create_count_preview_test_send_and_cancel(admin, store, tmp_path):
    populate(store, per_status=2)
    listed = admin.get("/admin/broadcasts")
    assert listed.status_code == 200 and 'href="/admin/broadcasts"' in listed.text
    assert '<option value="broadcasts/news.md"' in listed.text
    counted = admin.get("/admin/broadcasts", params={"to": "status:active or status:completed",
                                                    "subject": "<b>x</b>"})  # fmt: skip
    assert "<strong>4</strong> readers match" in counted.text
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in counted.text  # escaped, kept in the form
    bad = admin.get("/admin/broadcasts", params={"to": "status:actve"})
    assert bad.status_code == 422 and "Segment: column 8: unknown status" in bad.text

    bid = create(admin)
    page = admin.get(f"/admin/broadcasts/{bid}")
    assert page.status_code == 200 and '<dd class="state" id="status">draft</dd>' in page.text
    assert "Hi Alex" in page.text  # the plain-text part
    framed = admin.get(f"/admin/broadcasts/{bid}/html")
    assert "sandbox" in framed.headers["content-security-policy"]
    assert "<strong>program</strong>" in framed.text

    tested = admin.post(f"/admin/broadcasts/{bid}/test",
                        data={"csrf": csrf_of(page), "address": "me@example.org"})  # fmt: skip
    assert tested.status_code == 200 and "Test sent to me@example.org." in tested.text
    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert "Subject: [TEST] Now open" in eml.read_text()
    assert store.broadcast(bid).claimed == 0

    confirm = admin.get(f"/admin/broadcasts/{bid}/send")
    assert re.search(r"matches <strong>2</strong>\s+readers now", confirm.text)
    sent = admin.post(f"/admin/broadcasts/{bid}/send", data={"csrf": csrf_of(confirm)},
                      follow_redirects=False)  # fmt: skip
    assert sent.status_code == 303
    b = store.broadcast(bid)
    assert (b.status, b.claimed) == ("sent", 2)
    again = admin.post(f"/admin/broadcasts/{bid}/send", data={"csrf": csrf_of(confirm)},
                       follow_redirects=False)  # fmt: skip
    assert again.status_code == 303 and store.broadcast(bid).claimed == 2
    cancelled = admin.post(f"/admin/broadcasts/{bid}/cancel", data={"csrf": csrf_of(confirm)})
    assert '<dd class="state" id="status">cancelled</dd>' in cancelled.text
    assert store.broadcast(bid).counts == {"skipped": 2}


def test_every_post_wants_the_csrf_token(admin, store):
    populate(store, per_status=1)
    bid = create(admin)
    form = {"template": "broadcasts/news.md", "subject": "S", "to": "status:active"}
    test = {"address": "me@example.org"}
    for path, data in (("/admin/broadcasts", form), (f"/admin/broadcasts/{bid}/send", {}),
                       (f"/admin/broadcasts/{bid}/cancel", {}),
                       (f"/admin/broadcasts/{bid}/test", test)):  # fmt: skip
        for token in (None, "forged"):
            answer = admin.post(path, data={**data, **({"csrf": token} if token else {})})
            assert answer.status_code == 403, (path, token)
    assert store.broadcast_ids() == [bid]
    assert (store.broadcast(bid).status, store.broadcast(bid).claimed) == ("draft", 0)


def test_a_template_outside_the_list_and_other_mistakes_are_refused(admin, store):
    page = admin.get("/admin/broadcasts")
    base = {"csrf": csrf_of(page), "template": "broadcasts/news.md", "subject": "S",
            "to": "status:active", "at_local": ""}  # fmt: skip
    for change, message in (
        ({"template": "../schedule.yaml"}, "Template: choose one of the broadcast templates."),
        ({"template": "lessons/hello.md"}, "Template: choose one of the broadcast templates."),
        ({"at_local": "25:00"}, "Local hour: not a time of day HH:MM"),
        ({"to": "phase:9"}, "segment: column 7: "),
        ({"subject": ""}, "subject: one line"),
    ):
        answer = admin.post("/admin/broadcasts", data={**base, **change})
        assert answer.status_code == 422 and message in answer.text, (change, answer.text[-500:])
    assert store.broadcast_ids() == []
    assert admin.get("/admin/broadcasts/nothing1").status_code == 404
    assert admin.get("/admin/broadcasts/..%2Fx").status_code == 404


def test_signed_out_gets_nothing(settings, store, templates):
    app = create_app(settings.with_(admin_token=TOKEN), send_task=lambda *a, **k: None)
    with TestClient(app) as client:
        page = client.get("/admin/broadcasts", follow_redirects=False)
        assert page.status_code in (303, 401, 403)
        assert client.post("/admin/broadcasts", data={}).status_code in (401, 403, 303)


def test_the_pages_in_chromium_are_axe_clean(browser, served, store, templates, axe):  # noqa: F811
    populate(store, per_status=1)
    page = browser.new_context(viewport=PHONE).new_page()
    page.goto(f"{served}/admin/login")
    page.get_by_label("Admin token").fill(BROWSER_TOKEN)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Admin", exact=True).wait_for()
    page.goto(f"{served}/admin/broadcasts")
    page.get_by_label("Segment").fill("status:active or status:completed")
    page.get_by_role("button", name="Count readers").click()
    page.locator("#count strong").wait_for()
    assert page.locator("#count strong").inner_text() == "2"
    axe(page, "broadcasts")
    page.get_by_label("Subject").fill("The program is open")
    page.get_by_role("button", name="Create the draft").click()
    page.locator("#status").wait_for()
    assert page.locator("#status").inner_text() == "draft"
    axe(page, "broadcast")
    page.get_by_role("link", name="Send…").click()
    assert "matches 2" in " ".join(page.locator("#confirm-count").inner_text().split())
    axe(page, "broadcast-send")
    page.get_by_role("button", name="Send to these readers").click()
    page.locator("#status").wait_for()
    assert page.locator("#status").inner_text() == "sent"
    assert page.locator('[data-count="claimed"]').inner_text() == "2"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
