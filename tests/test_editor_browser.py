"""The admin editor in headless Chromium at phone width: a lesson edited with a mistake, shown
with its file and line; fixed; previewed; saved as a draft; its impact shown; published, and the
live version is the draft. Every page is checked with axe-core; screenshots go to
var/test-artifacts/ (test output, not committed)."""

from __future__ import annotations

import test_admin_browser
from conftest import publish_course
from test_admin_browser import PHONE, TOKEN

served = test_admin_browser.served  # the app served by uvicorn, with the admin page on

BROKEN = "Hi {{ first_name or 'friend' }},\n\nBetter words.\n\n{{ nope }}\n"
FIXED = "Hi {{ first_name or 'friend' }},\n\nBetter words.\n\n**One small step:** rest.\n"


def test_a_draft_edited_with_an_error_fixed_previewed_and_published(
    browser, served, store, course_path, artifacts, axe
):
    live = publish_course(store, course_path)
    page = browser.new_context(viewport=PHONE).new_page()

    def shot(name: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        page.screenshot(path=str(artifacts / f"editor-{name}.png"), full_page=True)
        axe(page, f"editor-{name}")

    page.goto(f"{served}/admin/login")
    page.get_by_label("Admin token").fill(TOKEN)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Admin", exact=True).wait_for()
    page.get_by_role("link", name="Edit the lessons").click()
    page.get_by_role("heading", name="Edit the course").wait_for()
    shot("01-lessons")
    page.get_by_role("link", name="second", exact=True).click()
    page.get_by_role("heading", name="Edit second").wait_for()
    assert page.get_by_label("Subject").input_value() == "Second"

    page.get_by_label("Body (Markdown)").fill(BROKEN)
    page.get_by_label("Your name").fill("Ann")
    page.get_by_role("button", name="Save draft").click()
    alert = page.locator("#problems")
    alert.wait_for()
    assert "templates/lessons/second.md:5: unknown variable 'nope'" in alert.inner_text()
    assert page.get_by_label("Body (Markdown)").input_value() == BROKEN  # kept to fix
    assert store.schedule_drafts().draft() is None
    shot("02-error-at-its-line")

    page.get_by_label("Body (Markdown)").fill(FIXED)
    page.get_by_label("Day (after the reader's start)").fill("3")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("heading", name="Preview: Second").wait_for()
    frame = page.frame_locator("iframe.email")
    assert "Better words." in frame.locator("body").inner_text()
    shot("03-preview")

    page.get_by_role("button", name="Save draft").click()
    page.get_by_role("heading", name="The draft").wait_for()
    draft = store.schedule_drafts().draft()
    assert draft is not None and draft.author == "Ann"
    assert "~ file     schedule.yaml" in page.locator("#impact").inner_text()
    shot("04-draft")

    page.get_by_label("Message").fill("day 3 reads better")
    page.get_by_label("Your name").fill("Ann")
    page.get_by_role("button", name="Publish").click()
    page.get_by_role("heading", name="Published").wait_for()
    shot("05-published")
    versions = store.schedule_versions()
    assert versions.live() == draft.id != live
    assert versions.live_since().message == "day 3 reads better"


def test_the_versions_page_and_one_rollback(browser, served, store, course_path, artifacts, axe):
    first = publish_course(store, course_path)
    text = course_path.read_text()
    course_path.write_text(text.replace('subject: "Second"', 'subject: "Second, v2"'))
    second = publish_course(store, course_path, "a new subject")
    page = browser.new_context(viewport=PHONE).new_page()

    def shot(name: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        page.screenshot(path=str(artifacts / f"versions-{name}.png"), full_page=True)
        axe(page, f"versions-{name}")

    page.goto(f"{served}/admin/login")
    page.get_by_label("Admin token").fill(TOKEN)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Admin", exact=True).wait_for()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Versions").click()
    page.get_by_role("heading", name="Versions").wait_for()
    rows = page.locator("#versions > li")
    assert rows.count() == 2 and second in rows.nth(0).inner_text()
    assert "live" in rows.nth(0).inner_text()
    shot("01-list")

    page.get_by_role("link", name=f"Roll back to version {first}").click()
    page.get_by_role("heading", name=f"Roll back to {first}").wait_for()
    assert "~ file     schedule.yaml" in page.locator("#impact").inner_text()
    shot("02-confirm")

    page.get_by_label("Message").fill("the old subject was clearer")
    page.get_by_label("Your name").fill("Ann")
    page.get_by_role("button", name="Roll back").click()
    page.get_by_role("heading", name="Rolled back").wait_for()
    shot("03-rolled-back")
    versions = store.schedule_versions()
    assert versions.live() == first and versions.live_since().kind == "rollback"
    assert versions.live_since().author == "Ann"
