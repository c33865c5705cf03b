"""The reader's own pages, against the tests' real Redis through FastAPI's TestClient: a lesson
sent by the engine through the outbox, then read online from the link in that email, and the
Roadmap page (GET /me/{token}); plus the report's pace, send_time, timezone and next_lesson."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import put_entry
from fastapi.testclient import TestClient

from course import engine
from course.mail.render import Renderer
from course.mail.send_test import TEST_SUBSCRIBER_ID
from course.models.subscriber import LedgerEntry
from course.reports.roadmap import zone_name
from course.reports.subscriber import subscriber_report
from course.subscribers.lifecycle import enrol, pause, unsubscribe
from course.subscribers.privacy import erase
from course.tokens import make_token, subscriber_links
from course.transport import OutboxTransport
from course.web import create_app
from course.web.access_log import RedactTokens

SECRET = "test-secret"  # the settings fixture's
BASE = "https://course.example"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York
NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Reader:
    client: TestClient
    store: object
    schedule: object
    outbox: Path
    sub_id: str
    start: datetime  # when they confirmed

    def send_due(self, now: datetime) -> list[EmailMessage]:
        """One tick at ``now`` and delivery of what it claimed, through the outbox."""
        batches: list = []
        engine.tick(self.store, self.schedule, now, lambda items, _: batches.append(items))
        links = lambda sub_id: subscriber_links(BASE, SECRET, sub_id)  # noqa: E731
        for batch in batches:
            engine.deliver(self.store, Renderer(self.schedule), self.outbox_transport(), batch,
                           now, links)  # fmt: skip
        return emails(self.outbox)

    def outbox_transport(self) -> OutboxTransport:
        return OutboxTransport(self.outbox)


def emails(outbox: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return url[len(BASE) :]


def online_url(message: EmailMessage) -> str:
    (url,) = re.findall(r"Read this in your browser: (\S+)", text_of(message))
    return url


def roadmap_url(message: EmailMessage) -> str:
    found = re.search(r"Your Roadmap, [^\n]*\n(\S+)", text_of(message))
    assert found, text_of(message)
    return found.group(1)


class _Text(HTMLParser):
    """The visible text inside the first element with class ``css_class``."""

    def __init__(self, css_class: str):
        super().__init__()
        self.css_class, self.depth, self.parts = css_class, 0, []

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if self.depth or (self.css_class in classes and not self.parts):
            self.depth += tag not in ("br", "img", "hr", "meta", "input")

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def visible_text(html: str, css_class: str) -> str:
    parser = _Text(css_class)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def make_reader(settings, store, schedule, folder: Path, start: datetime):
    app = create_app(settings, send_task=lambda *a, **k: None)
    sub = enrol(store, schedule, "ann@example.com", "Ann", "America/New_York", start, source="web")
    with TestClient(app) as client:
        yield Reader(client, store, schedule, folder / "sent", sub.id, start)


@pytest.fixture
def reader(settings, store, schedule, tmp_path) -> Reader:
    """Ann, who confirmed just now (the pages read the real clock)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    yield from make_reader(settings, store, schedule, tmp_path, start)


@pytest.fixture
def march(settings, store, schedule, tmp_path) -> Reader:
    """Ann, who confirmed on Monday 2 March 2026 at 09:00 in New York."""
    yield from make_reader(settings, store, schedule, tmp_path, START)


def local_day(instant: datetime, days: int = 0) -> str:
    """``Wednesday 4 March``: the New York date ``days`` after ``instant``'s."""
    day = instant.astimezone(NEW_YORK).date() + timedelta(days=days)
    return f"{day:%A} {day.day} {day:%B}"


def test_reading_online_shows_exactly_the_lesson_that_was_sent(reader):
    (lesson,) = reader.send_due(reader.start)
    assert lesson["Subject"] == "Hello"
    url = online_url(lesson)
    assert url == f"{roadmap_url(lesson)}/lessons/hello"
    assert f'href="{url}"' in html_of(lesson)

    page = reader.client.get(path_of(url))

    assert page.status_code == 200
    sent_body = visible_text(html_of(lesson), "content")
    shown_body = visible_text(page.text, "lesson")
    assert sent_body.startswith("Hi Ann, This is the hello lesson.")
    assert shown_body == sent_body
    assert "<h1>Hello</h1>" in page.text and "Phase 1 of 2 · lesson 1 of 4" in page.text
    # The step is the same box online: the lesson's own block, styled by the page.
    assert '<div class="step">' in page.text and ".lesson .step {" in page.text
    assert "1. Breathe out slowly" not in page.text and "<ol>" in page.text
    assert "<script" not in page.text.lower()
    assert page.headers["cache-control"] == "private, no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_a_lesson_not_yet_sent_is_not_readable(reader, redis_client):
    (lesson,) = reader.send_due(reader.start)
    token_path = path_of(roadmap_url(lesson))
    for lesson_id in ("second", "fourth", "confirmation", "nope", "hello%2F..%2Fsecond"):
        page = reader.client.get(f"{token_path}/lessons/{lesson_id}")
        assert page.status_code == 404, lesson_id
        assert "Ann" not in page.text and "This is the" not in page.text
    # Claimed, retrying, failed or skipped never reached the reader: not readable either.
    for state in ("claimed", "retry", "failed", "skipped"):
        put_entry(reader.store, reader.sub_id, LedgerEntry("second", state, 1, 1, "x"))
        assert reader.client.get(f"{token_path}/lessons/second").status_code == 404, state


def test_the_roadmap_lists_what_came_and_says_what_comes_next_in_the_readers_zone(reader):
    (lesson,) = reader.send_due(reader.start)

    page = reader.client.get(path_of(roadmap_url(lesson)))

    assert page.status_code == 200
    html = page.text
    assert "<h1>Your Roadmap</h1>" in html
    token = path_of(roadmap_url(lesson)).split("/")[2]
    assert f'<a href="/me/{token}/lessons/hello">Hello</a>' in html
    assert f"Came on {local_day(reader.start)}" in html
    # "second" is day 2, at 08:00 New York time.
    assert f"“Second”, comes on {local_day(reader.start, 2)} at 08:00." in " ".join(html.split())
    assert "You are in phase 1: First phase." in html
    assert "New York (America/New_York). Lessons come at 08:00 your time" in html
    assert re.search(r'href="/pause/[^"]+">Pause the course</a>', html)
    assert re.search(r'href="/unsubscribe/[^"]+">Unsubscribe</a>', html)
    # The one form is the reader's settings, posted to this page (the token is its key).
    assert re.findall(r"<form[^>]*>", html) == [
        f'<form method="post" action="/me/{token}#settings" novalidate>'
    ]
    assert "ann@example.com" not in html
    assert page.headers["cache-control"] == "private, no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_a_paused_reader_sees_that_and_how_to_resume(reader):
    (lesson,) = reader.send_due(reader.start)
    sub = reader.store.get(reader.sub_id)
    until = reader.start + timedelta(days=7)
    pause(reader.store, sub, reader.start + timedelta(seconds=30), until)

    html = reader.client.get(path_of(roadmap_url(lesson))).text

    assert "Your course is paused." in html
    assert f"Nothing will be sent until {local_day(until)}" in " ".join(html.split())
    assert re.search(r'href="/resume/[^"]+">Resume the course</a>', html)
    assert "Pause the course" not in html
    assert "/lessons/hello" in html  # still readable


@pytest.mark.parametrize("how", ["unsubscribed", "bounced", "erased"])
def test_a_reader_who_left_sees_only_that_they_left(reader, how):
    (lesson,) = reader.send_due(reader.start)
    sub = reader.store.get(reader.sub_id)
    if how == "erased":
        erase(reader.store, sub.email, datetime.now(UTC))
        assert reader.store.get(sub.id) is None
    else:
        unsubscribe(reader.store, sub, how)

    for url in (roadmap_url(lesson), online_url(lesson)):
        page = reader.client.get(path_of(url))
        assert page.status_code == 200
        assert "<h1>You have left the course</h1>" in page.text
        assert "Hello" not in page.text and "/lessons/" not in page.text
        assert "Ann" not in page.text and "ann@example.com" not in page.text


def test_forged_truncated_and_other_purpose_tokens_are_not_valid(reader):
    reader.send_due(reader.start)
    good = make_token(SECRET, reader.sub_id, "me")
    bad = {
        "forged": make_token("someone-else's-key", reader.sub_id, "me"),
        "truncated": good[:-6],
        "tampered": good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:],
        "unsubscribe token": make_token(SECRET, reader.sub_id, "unsubscribe"),
        "pause token": make_token(SECRET, reader.sub_id, "pause"),
        "confirm token": make_token(SECRET, reader.sub_id, "confirm"),
        "send-test reader": make_token(SECRET, TEST_SUBSCRIBER_ID, "me"),
        "long": "x" * 5000,
        "garbage": "%F0%9F%92%A5'\"<script>",
    }
    for name, token in bad.items():
        for path in (f"/me/{token}", f"/me/{token}/lessons/hello"):
            page = reader.client.get(path)
            assert page.status_code == 404, (name, path, page.status_code)
            assert "not valid" in page.text and "Ann" not in page.text, name
    assert reader.client.get("/me/").status_code == 404
    for name, token in bad.items():
        page = reader.client.post(f"/me/{token}", data={"pace": "gentle"})
        assert page.status_code == 404, (name, page.status_code)
    assert reader.client.post(f"/me/{good}").status_code == 200  # nothing asked, nothing changed
    assert reader.store.get(reader.sub_id).pace == "standard"
    assert reader.client.get(f"/me/{good}").status_code == 200
    assert reader.store.get(reader.sub_id).status == "active"


def test_the_access_log_keeps_me_tokens_out():
    for path, shown in [
        ("/me/IjU4NDMy.abc", "/me/<token>"),
        ("/me/IjU4NDMy.abc/lessons/welcome?x=1", "/me/<token>/lessons/welcome?x=1"),
    ]:
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("1.2.3.4:5", "GET", path, "1.1", 200), None,
        )  # fmt: skip
        assert RedactTokens().filter(record)
        assert record.getMessage() == f'1.2.3.4:5 - "GET {shown} HTTP/1.1" 200'


def test_zones_are_shown_by_a_readable_name():
    assert zone_name("America/New_York") == "New York (America/New_York)"
    assert zone_name("America/Argentina/Buenos_Aires") == (
        "Buenos Aires (America/Argentina/Buenos_Aires)"
    )
    assert zone_name("UTC") == "UTC"


# -- course subscribers show --json: pace, send_time, timezone, next_lesson ----------------------


def test_the_report_says_pace_send_time_zone_and_the_next_lesson_in_the_readers_zone(march):
    march.send_due(START)
    sub = march.store.get(march.sub_id)

    report = subscriber_report(march.store, march.schedule, sub, START + timedelta(hours=1))

    assert report["pace"] == "standard"
    assert report["send_time"] == "08:00"
    assert report["timezone"] == "America/New_York"
    assert report["next_lesson"] == {
        "lesson_id": "second",
        "send_at": "2026-03-04T08:00:00-05:00",
    }


def test_the_reports_next_lesson_is_null_when_nothing_comes_by_itself(march, store, schedule):
    march.send_due(START)
    later = START + timedelta(hours=1)
    pending = enrol(store, schedule, "pat@example.com", None, "Asia/Tokyo", START, confirmed=False)
    assert subscriber_report(store, schedule, pending, later)["next_lesson"] is None

    sub = pause(store, store.get(march.sub_id), later)  # open: until they resume
    assert subscriber_report(store, schedule, sub, later)["next_lesson"] is None

    unsubscribe(store, sub)
    assert subscriber_report(store, schedule, store.get(sub.id), later)["next_lesson"] is None


def test_a_timed_pause_moves_the_reports_next_lesson_past_its_end(march, store, schedule):
    march.send_due(START)
    sub = pause(store, store.get(march.sub_id), START, START + timedelta(days=7))

    report = subscriber_report(store, schedule, sub, START + timedelta(hours=1))

    # Paused a week from day 0: "second" (day 2) moves a week later, to Wednesday 11 March
    # (after the DST change on 8 March: 08:00 is now UTC-4).
    assert report["next_lesson"] == {"lesson_id": "second", "send_at": "2026-03-11T08:00:00-04:00"}


def test_an_overdue_next_lesson_is_reported_at_the_hour_it_will_really_go(march, store, schedule):
    march.send_due(START)
    # Workers down for days: seen on Friday at 03:00 local, "second" waits for 08:00.
    friday_night = datetime(2026, 3, 6, 8, 0, tzinfo=UTC)  # 03:00 in New York
    report = subscriber_report(store, schedule, store.get(march.sub_id), friday_night)
    assert report["next_lesson"] == {"lesson_id": "second", "send_at": "2026-03-06T08:00:00-05:00"}


def test_a_sent_entry_of_a_lesson_since_removed_is_not_listed(reader, redis_client):
    (lesson,) = reader.send_due(reader.start)
    put_entry(reader.store, reader.sub_id, LedgerEntry("gone", "sent", 1))
    page = reader.client.get(path_of(roadmap_url(lesson)))
    assert "/lessons/gone" not in page.text
    assert reader.client.get(path_of(roadmap_url(lesson)) + "/lessons/gone").status_code == 404


def test_a_lesson_online_is_shown_as_the_version_live_when_it_was_sent(reader, store):
    """A lesson edited (and another removed) after it went out still reads online as the
    reader's email had it: rendered from the version live at the time of sending."""
    versions = store.schedule_versions()
    reader.client.get("/healthz")  # the first look publishes the files: version 1
    v1 = versions.live()
    sent_at = datetime.now(UTC) + timedelta(seconds=2)  # after version 1 went live
    (lesson,) = reader.send_due(sent_at)
    url = path_of(online_url(lesson))
    files = versions.files(v1)
    files["templates/lessons/hello.md"] = b"Hi {{ first_name }}, rewritten since.\n"
    v2, _ = versions.save(files, "bo", "rewrite", sent_at + timedelta(seconds=5), parent=v1)
    versions.publish(v2, v1, "bo", "rewrite", sent_at + timedelta(seconds=5))
    assert reader.client.get("/healthz").status_code == 200  # a health check looks at once
    assert reader.client.app.state.web._holder.version == v2

    page = reader.client.get(url)

    assert page.status_code == 200
    assert visible_text(page.text, "lesson") == visible_text(html_of(lesson), "content")
    assert "rewritten since" not in page.text
    # The older version was unpacked into a private folder to be shown; closing the app (its
    # shutdown) removes it.
    past = reader.client.app.state.web._past
    (folder,) = [unpacked.folder for _, _, unpacked in past._loaded.values()]
    assert folder.is_dir()
    reader.client.app.state.web.close()
    assert not folder.exists() and not past._loaded
