"""POST /me/{token}: the reader sets their pace, send time and zone on Your Roadmap."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from test_roadmap import NEW_YORK, make_reader, path_of, roadmap_url

from course.reports.subscriber import subscriber_report
from course.subscribers.lifecycle import unsubscribe
from course.subscribers.privacy import erase


@pytest.fixture
def reader(settings, store, schedule, tmp_path):
    """Ann, who confirmed a minute ago in New York (the pages read the real clock)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    yield from make_reader(settings, store, schedule, tmp_path, start)


def roadmap_path(reader) -> str:
    (lesson,) = reader.send_due(reader.start)
    return path_of(roadmap_url(lesson))


def flat(html: str) -> str:
    return " ".join(html.split())


def test_a_valid_change_is_saved_logged_and_says_when_the_next_lesson_comes(reader, caplog):
    path = roadmap_path(reader)
    caplog.set_level(logging.INFO, logger="course.web")

    page = reader.client.post(
        path, data={"pace": "gentle", "send_time": "19:00", "timezone": "Europe/London"}
    )

    assert page.status_code == 200
    sub = reader.store.get(reader.sub_id)
    assert (sub.pace, sub.send_time, sub.tz) == ("gentle", "19:00", "Europe/London")
    due = datetime.fromtimestamp(reader.store.due_score(sub.id), UTC)
    assert due.astimezone(sub.zone).strftime("%H:%M") == "19:00"
    # Lesson "second" is day 2: with the gap doubled, four days after the first lesson.
    first = reader.start.astimezone(NEW_YORK).date()  # the date it came, where Ann was then
    assert due.astimezone(sub.zone).date() == first + timedelta(days=4)
    text = flat(page.text)
    assert "Saved." in text
    day = due.astimezone(sub.zone)
    assert f"now comes on {day:%A} {day.day} {day:%B} at 19:00 (London (Europe/London))" in text
    assert "Lessons come at 19:00 your time, at the gentle pace" in text
    assert 'value="gentle" checked' in text
    line = next(r for r in caplog.records if getattr(r, "event", "") == "settings")
    assert line.fields == {
        "subscriber": sub.id, "pace": "gentle", "send_time": "19:00", "timezone": "Europe/London"
    }  # fmt: skip
    report = subscriber_report(reader.store, reader.schedule, sub, datetime.now(UTC))
    assert (report["pace"], report["send_time"], report["timezone"]) == (
        "gentle", "19:00", "Europe/London"
    )  # fmt: skip
    assert report["next_lesson"] == {"lesson_id": "second", "send_at": day.isoformat()}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pace", "fast"),
        ("send_time", "25:00"),
        ("send_time", "7pm"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "localtime"),
        ("timezone", "x" * 500),
        ("timezone", '"><script>alert(1)</script>'),
    ],
)
def test_a_field_that_is_not_valid_is_marked_and_nothing_changes(reader, field, value):
    path = roadmap_path(reader)
    before = reader.store.get(reader.sub_id)
    due = reader.store.due_score(reader.sub_id)
    data = {"pace": "gentle", "send_time": "19:00", "timezone": "Europe/London", field: value}

    page = reader.client.post(path, data=data)

    assert page.status_code == 422
    assert reader.store.get(reader.sub_id) == before  # not even the valid fields
    assert reader.store.due_score(reader.sub_id) == due
    html = page.text
    assert "Nothing was changed" in html
    assert f'id="{field}-error"' in html
    assert html.count('aria-invalid="true"') == (2 if field == "pace" else 1)  # two radios
    others = {"pace", "send_time", "timezone"} - {field}
    assert not any(f'id="{other}-error"' in html for other in others)
    assert "Saved." not in html
    assert "<script>alert" not in html  # what was typed comes back escaped


def test_left_out_or_empty_fields_keep_their_values(reader):
    path = roadmap_path(reader)
    reader.client.post(path, data={"send_time": "06:30"})
    page = reader.client.post(path, data={"pace": "", "send_time": "", "timezone": "Asia/Tokyo"})
    assert page.status_code == 200
    sub = reader.store.get(reader.sub_id)
    assert (sub.pace, sub.send_time, sub.tz) == ("standard", "06:30", "Asia/Tokyo")


def test_the_courses_own_hour_is_kept_as_the_courses(reader, redis_client):
    path = roadmap_path(reader)
    reader.client.post(path, data={"send_time": "19:00"})
    reader.client.post(path, data={"send_time": "08:00"})  # the course's send_time
    assert reader.store.get(reader.sub_id).send_time is None
    keys = redis_client.hkeys(reader.store.sub_key(reader.sub_id))
    assert "st" not in keys  # send_time


@pytest.mark.parametrize("how", ["unsubscribed", "erased"])
def test_a_reader_who_left_changes_nothing(reader, how):
    path = roadmap_path(reader)
    sub = reader.store.get(reader.sub_id)
    if how == "erased":
        erase(reader.store, sub.email, datetime.now(UTC))
    else:
        unsubscribe(reader.store, sub)

    page = reader.client.post(path, data={"pace": "gentle", "send_time": "19:00"})

    assert page.status_code == 409
    assert "<h1>You have left the course</h1>" in page.text
    assert "<form" not in page.text
    after = reader.store.get(reader.sub_id)
    assert after is None if how == "erased" else after.pace == "standard"


def test_the_form_works_as_json_and_rejects_other_bodies(reader):
    path = roadmap_path(reader)
    assert reader.client.post(path, json={"pace": "gentle"}).status_code == 200
    assert reader.store.get(reader.sub_id).pace == "gentle"
    assert reader.client.post(path, json={"pace": ["gentle"]}).status_code == 422
    page = reader.client.post(
        path, content=b"pace=standard", headers={"content-type": "text/plain"}
    )
    assert page.status_code == 415
    assert reader.store.get(reader.sub_id).pace == "gentle"


def test_the_page_suggests_the_devices_zone_with_a_small_script(reader):
    html = reader.client.get(roadmap_path(reader)).text
    assert re.search(r"<script>.*resolvedOptions\(\)\.timeZone", html, re.S)
    assert 'id="zone-suggestion" hidden' in html  # shown only by the script
    assert '<label for="timezone">' in html and '<label for="send_time">' in html
