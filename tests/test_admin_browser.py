"""The admin page in headless Chromium at phone width: sign in, look a subscriber up with the
keyboard, pause, resume, unsubscribe, look at the gallery, erase another subscriber; then the
erased address signs up again in the public form and a real tick sends it nothing.
Screenshots of every page go to var/test-artifacts/ (test output, not committed)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from conftest import free_port

from course import engine
from course.mail.render import Renderer
from course.models.reply import Reply
from course.subscribers.lifecycle import enrol
from course.tokens import subscriber_links
from course.transport import OutboxTransport
from course.web import create_app

PHONE = {"width": 375, "height": 812}
TOKEN = "admin-token-for-the-browser-test-42"


@pytest.fixture
def served(settings, store):
    """The web app with the admin page on, served by uvicorn on a port of its own."""
    app = create_app(settings.with_(admin_token=TOKEN), send_task=lambda *a, **k: None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_admin_signs_in_and_pauses_resumes_unsubscribes_and_erases(
    browser, served, store, schedule, settings, artifacts, axe
):
    base = served
    now = datetime.now(UTC)
    ann = enrol(store, schedule, "ann@example.com", "Ann", "Europe/Berlin", now,
                source="web", consent="2026-01-web-1|203.0.113.9")  # fmt: skip
    bo = enrol(store, schedule, "bo@example.com", "Bo", "Asia/Tokyo", now)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()

    def shot(name: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        axe(page, name)

    def status() -> str:
        return page.locator("#status").inner_text()

    page.goto(f"{base}/admin")
    page.get_by_role("heading", name="Admin sign-in").wait_for()  # sent to sign in
    page.get_by_label("Admin token").fill("not-the-token-at-all")
    page.keyboard.press("Enter")
    assert page.locator("[role=alert]").inner_text() == "That is not the admin token."
    shot("01-sign-in-refused")
    page.get_by_label("Admin token").fill(TOKEN)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Admin", exact=True).wait_for()
    shot("02-overview")

    # The keyboard alone reaches the lookup field and submits it.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "email":
            break
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type("Ann@Example.com")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="ann@example.com").wait_for()
    assert status() == "active" and page.url == f"{base}/admin/subscribers/{ann.id}"
    assert "203.0.113.9" in page.locator("#consent").inner_text()
    assert page.locator("#lesson-hello .state").inner_text() == "due"
    shot("03-subscriber")

    page.get_by_role("button", name="Pause 1 week").click()
    page.get_by_role("status").wait_for()
    assert status() == "paused" and "until" in page.locator("#paused").inner_text()
    assert store.get(ann.id).status == "paused"
    shot("04-paused")

    page.get_by_role("button", name="Resume now").click()
    page.get_by_text("Resumed: the remaining lessons").wait_for()
    assert status() == "active" and store.get(ann.id).status == "active"
    shot("05-resumed")

    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_text("Unsubscribed: nothing more").wait_for()
    assert status() == "unsubscribed" and store.get(ann.id).status == "unsubscribed"
    assert page.get_by_role("button", name="Unsubscribe").count() == 0
    shot("06-unsubscribed")

    page.get_by_role("link", name="Stats").first.click()
    page.get_by_role("heading", name="Stats").wait_for()
    assert page.locator('b[data-status="unsubscribed"]').inner_text() == "1"
    shot("07-stats")

    # The gallery: an email in a sandboxed frame, and its text.
    page.get_by_role("link", name="Every email").click()
    page.get_by_role("link", name="Hello").click()
    frame = page.frame_locator("iframe.email")
    frame.locator("text=breathe out slowly").first.wait_for()
    shot("08-gallery-email")

    # Erase Bo: a confirmation step, then nothing is left.
    page.goto(f"{base}/admin")
    page.get_by_label("Email address").fill("bo@example.com")
    page.get_by_role("button", name="Look up").click()
    page.get_by_role("link", name="Erase all data…").click()
    page.get_by_role("heading", name="Erase bo@example.com?").wait_for()
    shot("09-erase-confirm")
    page.get_by_role("button", name="Erase for good").click()  # not ticked: asked again
    page.get_by_text("Tick the box to confirm.").wait_for()
    assert store.get(bo.id) is not None
    page.get_by_label("Yes, erase everything held about bo@example.com").check()
    page.get_by_role("button", name="Erase for good").click()
    page.get_by_role("heading", name="Erased").wait_for()
    assert store.get(bo.id) is None and store.is_erased("bo@example.com")
    shot("10-erased")
    context.close()

    # Bo signs up again in the public form: the usual answer, nothing recorded or sent.
    visitor = browser.new_page(viewport=PHONE)
    visitor.goto(f"{base}/")
    visitor.get_by_label("Email address").fill("bo@example.com")
    visitor.get_by_role("button", name="Send me the lessons").click()
    visitor.get_by_role("heading", name="Check your inbox").wait_for()
    visitor.close()
    assert store.find("bo@example.com") is None

    items: list[tuple[str, str]] = []
    later = now + timedelta(days=30)
    engine.tick(store, schedule, later, lambda batch, when: items.extend(batch))
    links = lambda sub_id: subscriber_links(settings.base_url, settings.secret_key, sub_id)  # noqa: E731
    sent = engine.deliver(
        store, Renderer(schedule), OutboxTransport(settings.outbox_dir), items, later, links
    )
    assert [i for i in items if i[0] == bo.id] == [] and sent.sent == 0
    delivered = list(settings.outbox_dir.glob("*.eml")) if settings.outbox_dir.exists() else []
    assert [p for p in delivered if "bo@example.com" in p.read_text()] == []


def test_admin_pages_follow_dark_mode(browser, served):
    page = browser.new_page(viewport=PHONE, color_scheme="dark")
    page.goto(f"{served}/admin/login")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(27, 26, 25)"
    page.close()


def test_replies_show_as_plain_text_on_a_phone_in_light_and_dark(
    browser, served, store, schedule, artifacts, axe
):
    ann = enrol(store, schedule, "ann@example.com", "Ann", "Europe/Berlin", datetime.now(UTC))
    hostile = "<img src=x onerror=\"document.title='owned'\">Thank you. The exhale helped."
    store.add_reply(ann.id, Reply("r1", time.time() - 60, "Re: Hello", hostile, "hello",
                                  trimmed=True, verified=True, spf="pass",
                                  dkim="{@example.com : pass}", attachments=1))  # fmt: skip
    store.add_reply(ann.id, Reply("r2", time.time(), "<b>forged?</b>", "Not really Ann " * 40,
                                  spf="fail", dkim="none"))  # fmt: skip
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=PHONE, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{served}/admin/login")
        page.get_by_label("Admin token").fill(TOKEN)
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Admin", exact=True).wait_for()
        page.get_by_role("link", name="Replies").first.click()
        page.get_by_role("heading", name="Replies", exact=True).wait_for()
        text = page.locator("#reply-r1 pre.text").inner_text()
        assert text.startswith("<img src=x") and page.title() != "owned"
        assert page.locator("#reply-r2 .unverified").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(artifacts / f"replies-{scheme}.png"), full_page=True)
        axe(page, f"replies-{scheme}")
        page.get_by_role("link", name="ann@example.com").first.click()
        page.get_by_role("heading", name="Replies").wait_for()
        assert page.locator("#reply-r1 pre.text").inner_text() == text
        page.screenshot(path=str(artifacts / f"subscriber-replies-{scheme}.png"), full_page=True)
        axe(page, f"subscriber-replies-{scheme}")
        context.close()
