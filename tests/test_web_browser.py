"""The whole reader journey in headless Chromium against ``course run`` on the embedded
default, in one test: sign up in the page, open the email's confirmation link and press its
button, get lesson 0 (it asks for a check-in), read it online and open Your Roadmap from its
links (light and dark), switch to the gentle pace at 19:00 there and see the next lesson move,
let a link scanner open every check-in link (nothing recorded), check in "flare" from the
email, pause from the flare page, unsubscribe with the button, and a later tick sends nothing.
Screenshots of every page at phone width go to var/test-artifacts/ (test output, not
committed), and axe-core checks every page."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import free_port

from course.store.embedded import stop_embedded_redis

PHONE = {"width": 375, "height": 812}


def wait_until(what: str, check, timeout: float = 60.0, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    output = log.read_text(errors="replace") if log and log.exists() else ""
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{output[-4000:]}")


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
            return json.load(answer)["status"] == "ok"
    except (OSError, ValueError):
        return False


def emails(outbox: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"))
    ]


def link(message: EmailMessage, base: str, purpose: str) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.findall(rf"{re.escape(base)}/{purpose}/[^\s)>\]]+", text)
    assert found, f"no {purpose} link in:\n{text}"
    return found[0]


@pytest.fixture
def course_run(tmp_path, course_path):
    """``course run`` (Redis embedded, worker, beat, web) on a port of its own."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        COURSE_VAR_DIR=str(tmp_path / "var"),
        COURSE_SCHEDULE=str(course_path),
        COURSE_OUTBOX_DIR=str(tmp_path / "outbox"),
        COURSE_BASE_URL=base,
        COURSE_TRANSPORT="outbox",
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "course", "run", "-c", "1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until("the web app", lambda: healthy(base), proc=proc, log=log)
        yield base, env, tmp_path / "outbox", log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stop_embedded_redis(tmp_path / "var")
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]


def course(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def checkin_course(course_path):
    """The small course with a check-in under its first lesson (before ``course_run`` starts)."""
    text = course_path.read_text()
    course_path.write_text(
        text.replace("template: lessons/hello.md}", "template: lessons/hello.md, checkin: true}")
    )


class Journey:
    """One reader's browser (a person's: ``navigator.webdriver`` hidden, so the check-in page
    acts as for a person), the running course, and a look at each page: it must fit 375 px,
    is kept as a screenshot and checked by axe-core."""

    def __init__(self, browser, course_run, artifacts, axe):
        self.browser, self.artifacts, self.axe = browser, artifacts, axe
        self.base, self.env, self.outbox, self.log = course_run
        self.context = browser.new_context(viewport=PHONE, timezone_id="Asia/Tokyo")
        self.context.add_init_script(
            "Object.defineProperty(navigator, 'webdriver', {get: () => false})"
        )
        self.page = self.context.new_page()

    def shot(self, name: str, page=None) -> None:
        page = page or self.page
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)
        self.axe(page, name)

    def show(self) -> dict:
        shown = course(self.env, "subscribers", "show", "robin@example.com", "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def checkins(self) -> dict:
        """The first phase's check-ins, as ``course stats --json`` reports them."""
        shown = course(self.env, "stats", "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["checkins"]["phases"][0]


def sign_up_and_confirm(journey: Journey) -> EmailMessage:
    """Sign up in the page (the browser's zone fills the hidden field), confirm from the
    email with the button; lesson 0 comes at once. Returns it."""
    page, base, outbox, log = journey.page, journey.base, journey.outbox, journey.log
    page.goto(f"{base}/")
    assert page.input_value("#timezone") == "Asia/Tokyo"
    journey.shot("01-signup")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Send me the lessons").click()
    assert page.locator("[role=alert]").inner_text() == "Please enter a valid email address."
    journey.shot("02-signup-error")
    page.get_by_label("Email address").fill("robin@example.com")
    page.get_by_label("First name").fill("Robin")
    page.keyboard.press("Enter")  # the keyboard alone is enough
    page.get_by_role("heading", name="Check your inbox").wait_for()
    journey.shot("03-check-inbox")

    # The confirmation email, from the worker, through the outbox.
    (confirmation,) = wait_until("the confirmation email", lambda: emails(outbox), log=log)
    assert confirmation["To"].addresses[0].addr_spec == "robin@example.com"
    confirm_url = link(confirmation, base, "confirm")
    page.goto(confirm_url)  # opening the link changes nothing (mail scanners open it too)
    page.get_by_role("heading", name="Start your course, Robin?").wait_for()
    journey.shot("04-confirm")
    assert journey.show()["status"] == "pending"
    page.get_by_role("button", name="Start my course").click()
    page.get_by_role("heading", name="You are in, Robin").wait_for()
    assert page.url == confirm_url  # answered in place, no redirect
    journey.shot("05-confirmed")

    # Lesson 0 at once: the app queued a tick.
    _, lesson = wait_until("lesson 0", lambda: len(emails(outbox)) >= 2 and emails(outbox),
                           log=log)  # fmt: skip
    assert lesson["Subject"] == "Hello"
    assert lesson["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert lesson["List-Unsubscribe"].strip("<>") == link(lesson, base, "unsubscribe")
    # The email itself, as a mail client shows its HTML part.
    page.set_content(lesson.get_body(("html",)).get_content())
    journey.shot("05b-lesson-email")
    return lesson


def gentle_in_the_evening(journey: Journey, lesson: EmailMessage) -> str:
    """Read the lesson online, open Your Roadmap from it, switch to gentle at 19:00 and see
    the next lesson move; both pages in dark mode too. Returns the Roadmap's address."""
    page = journey.page
    online = link(lesson, journey.base, "me")
    assert online.endswith("/lessons/hello")
    roadmap = online.removesuffix("/lessons/hello")
    page.goto(online)
    page.get_by_role("heading", name="Hello", exact=True).wait_for()
    assert "Hi Robin," in page.locator(".lesson").inner_text()
    journey.shot("06a-lesson-online")
    page.get_by_role("link", name="Your Roadmap").click()
    page.get_by_role("heading", name="Your Roadmap").wait_for()
    assert page.url == roadmap
    assert "Tokyo (Asia/Tokyo)" in page.inner_text("main")
    journey.shot("06b-roadmap")
    # A gentler pace, in the evening: the form alone, then the page says when it now comes.
    assert "at 08:00" in page.locator("#next-lesson").inner_text()
    page.get_by_label("Gentle").check()
    page.get_by_label("Time lessons arrive").fill("19:00")
    page.get_by_role("button", name="Save my settings").click()
    saved = page.locator("#saved")
    saved.wait_for()
    assert "now comes on" in saved.inner_text() and "at 19:00" in saved.inner_text()
    assert page.get_by_label("Gentle").is_checked()
    journey.shot("06c-roadmap-gentle-19")
    shown = journey.show()
    assert (shown["pace"], shown["send_time"]) == ("gentle", "19:00")
    coming = datetime.fromisoformat(shown["next_lesson"]["send_at"])
    first = datetime.fromisoformat(shown["lessons"][0]["at"]).astimezone(coming.tzinfo)
    assert coming.strftime("%H:%M %z") == "19:00 +0900"  # Tokyo's evening
    assert (coming.date() - first.date()).days == 4  # day 2, the gap doubled
    assert coming.strftime("%-d %B") in saved.inner_text()
    page.goto(roadmap)
    page.get_by_role("link", name="Hello").click()
    page.get_by_role("heading", name="Hello", exact=True).wait_for()

    dark = journey.browser.new_context(viewport=PHONE, color_scheme="dark")
    for url, name in ((roadmap, "06d-roadmap-dark"), (online, "06e-lesson-online-dark")):
        dark_page = dark.new_page()
        dark_page.goto(url)
        background = dark_page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(27, 26, 25)"
        journey.shot(name, dark_page)
    dark.close()
    return roadmap


def check_in_flare_then_pause(journey: Journey, lesson: EmailMessage) -> None:
    """A scanner's browser opens every check-in link and records nothing; without JavaScript
    one press of the button records an answer; the reader's one click on "A flare" records
    it (latest wins); the kind page offers the pause, and pausing from there works."""
    text = lesson.get_body(("plain",)).get_content()
    links = dict(re.findall(r"^(A flare|About the same|Better): (\S+)$", text, re.MULTILINE))
    assert set(links) == {"A flare", "About the same", "Better"}

    # A scanner driving a browser (navigator.webdriver) opens every link: the pages show,
    # nothing is pressed.
    scanner = journey.browser.new_context(viewport=PHONE)
    page = scanner.new_page()
    for label, url in links.items():
        page.goto(url)
        page.get_by_role("heading", name="How has this week been?").wait_for()
        page.wait_for_timeout(300)
        assert page.url == url and label in page.inner_text("main")
    journey.shot("07-checkin-page", page)
    scanner.close()
    assert journey.checkins()["readers"] == 0

    # Without JavaScript: the reader presses the one button.
    no_js = journey.browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = no_js.new_page()
    page.goto(links["About the same"])
    page.get_by_role("button", name="Save my answer").click()
    page.get_by_role("heading", name="Thank you").wait_for()
    no_js.close()
    assert journey.checkins()["answers"] == {"flare": 0, "same": 1, "better": 0}

    # The reader's own browser: one click in the email and the answer is saved.
    page = journey.page
    page.goto(links["A flare"])
    page.get_by_role("heading", name="Thank you for telling us").wait_for()
    assert page.url == links["A flare"]  # answered in place
    journey.shot("08-checked-in-flare")
    found = journey.checkins()
    assert (found["readers"], found["answers"]) == (1, {"flare": 1, "same": 0, "better": 0})

    # Pause from there.
    page.get_by_role("link", name="Pause the course").click()
    page.get_by_role("heading", name="Pause the course").wait_for()
    journey.shot("09-pause")
    page.get_by_role("button", name="Pause for a week").click()
    page.get_by_text("paused").first.wait_for()
    journey.shot("10-paused-from-checkin")
    assert journey.show()["status"] == "paused"


@pytest.mark.slow
def test_the_whole_journey_in_a_browser(browser, checkin_course, course_run, artifacts, axe):
    journey = Journey(browser, course_run, artifacts, axe)
    lesson = sign_up_and_confirm(journey)
    roadmap = gentle_in_the_evening(journey, lesson)
    check_in_flare_then_pause(journey, lesson)

    # Unsubscribe: the page, then its one button.
    page = journey.page
    unsubscribe_url = link(lesson, journey.base, "unsubscribe")
    page.goto(unsubscribe_url)
    page.get_by_role("heading", name="Unsubscribe?").wait_for()
    journey.shot("11-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert page.url == unsubscribe_url  # answered in place, no redirect
    journey.shot("12-unsubscribed")
    page.goto(roadmap)  # the Roadmap now says only that they left
    page.get_by_role("heading", name="You have left the course").wait_for()
    assert page.locator(".lessons").count() == 0
    journey.shot("13-roadmap-left")
    journey.context.close()

    dark = browser.new_page(viewport=PHONE, color_scheme="dark")
    dark.goto(f"{journey.base}/")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(27, 26, 25)"
    journey.shot("14-signup-dark", dark)  # the dark colours keep their contrast
    dark.close()

    record = journey.show()
    assert record["status"] == "unsubscribed" and record["timezone"] == "Asia/Tokyo"
    assert record["consent"]["source"] == "web" and record["consent"]["ip"] == "127.0.0.1"
    assert record["lessons"][0]["state"] == "sent"
    assert record["pace"] == "gentle" and record["send_time"] == "19:00"
    assert record["next_lesson"] is None  # left: nothing more comes
    assert journey.checkins()["answers"] == {"flare": 1, "same": 0, "better": 0}  # kept

    # Long after the whole course, a tick sends nothing more.
    later = (datetime.now(UTC) + timedelta(days=120)).isoformat()
    ticked = course(journey.env, "tick", "--now", later, "--inline")
    assert ticked.returncode == 0, ticked.stderr
    assert "claimed 0" in ticked.stdout and "sent 0" in ticked.stdout
    time.sleep(1)
    assert len(emails(journey.outbox)) == 2


def test_the_accessibility_check_finds_what_it_should(browser):
    """axe-core itself, on a page made to fail: the journeys' checks are only worth their
    silence if the checker sees an unlabelled field and text without contrast."""
    from conftest import AXE_JS, AXE_MISSING, axe_violations

    if not AXE_JS.is_file():
        pytest.skip(AXE_MISSING)
    page = browser.new_page()
    page.set_content(
        '<html lang="en"><title>t</title><main><h1>t</h1><input type="text">'
        '<p style="color:#eee;background:#fff">faint</p></main></html>'
    )
    rules = {line.split(" ", 1)[0] for line in axe_violations(page)}
    page.close()
    assert {"label", "color-contrast"} <= rules, rules
