"""Check-ins, against the tests' real Redis through FastAPI's TestClient: lessons sent by the
engine through the outbox, then the links in those emails fetched as a link scanner would
(nothing changes) and clicked as a reader would (one answer per lesson, the latest wins); the
schedule's ``checkin`` flag and its weekly default; export and erase."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SMALL_SCHEDULE, write_course
from fastapi.testclient import TestClient

from course import engine
from course.mail.render import Renderer
from course.models.checkin import CheckIn
from course.schedule import ScheduleError, load_schedule
from course.subscribers.checkin import check_in
from course.subscribers.lifecycle import enrol, pause, unsubscribe
from course.subscribers.privacy import erase, export_data
from course.tokens import make_token, subscriber_links
from course.transport import OutboxTransport
from course.web import create_app

SECRET = "test-secret"  # the settings fixture's
BASE = "https://course.example"
# The small course, with a check-in on "hello" and "third", and "fourth" as the flare plan.
CHECKIN_SCHEDULE = (
    SMALL_SCHEDULE.replace(
        "template: lessons/hello.md}", "template: lessons/hello.md, checkin: true}"
    )
    .replace("template: lessons/third.md}", "template: lessons/third.md, checkin: true}")
    .replace("{id: fourth,", "{id: flare-plan,")
)


@pytest.fixture
def course_path(tmp_path) -> Path:
    return write_course(tmp_path / "course", CHECKIN_SCHEDULE)


@dataclass
class Reader:
    client: TestClient
    store: object
    schedule: object
    outbox: Path
    sub_id: str
    start: datetime

    def send_due(self, now: datetime) -> list[EmailMessage]:
        """One tick at ``now`` and delivery of what it claimed; every email sent so far."""
        batches: list = []
        engine.tick(self.store, self.schedule, now, lambda items, _: batches.append(items))
        links = lambda sub_id: subscriber_links(BASE, SECRET, sub_id)  # noqa: E731
        for batch in batches:
            engine.deliver(self.store, Renderer(self.schedule), OutboxTransport(self.outbox),
                           batch, now, links)  # fmt: skip
        return emails(self.outbox)

    def send_all(self) -> list[EmailMessage]:
        """Every lesson of the course, each a minute after it falls due (at 08:00 in the
        reader's zone: a tick at a fixed hour after ``start`` could fall outside the lateness
        grace, whatever the hour the test runs at)."""
        sent = self.send_due(self.start + timedelta(minutes=1))
        while (due := self.store.due_score(self.sub_id)) is not None:
            sent = self.send_due(datetime.fromtimestamp(due, UTC) + timedelta(minutes=1))
        return sent


def emails(outbox: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


def parts(message: EmailMessage) -> tuple[str, str]:
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def checkin_links(message: EmailMessage) -> dict[str, str]:
    """answer -> path of the email's check-in links (the text part's; the HTML's must match)."""
    text, html = parts(message)
    found = {m.group(2): m.group(1) for m in re.finditer(r"(\S+/checkin/[a-z-]+/([a-z]+))", text)}
    for url in found.values():
        assert f'href="{url}"' in html
    return {answer: url[len(BASE) :] for answer, url in found.items()}


def every_link(messages: list[EmailMessage]) -> set[str]:
    """Every URL of ours in every part and header of every email, as a scanner finds them."""
    urls: set[str] = set()
    for message in messages:
        text, html = parts(message)
        urls |= set(re.findall(r"https://course\.example[^\s\"<>]*", text + html))
        urls |= set(re.findall(r"https://course\.example[^\s\"<>]*", message["List-Unsubscribe"]))
    return {url.replace("&amp;", "&") for url in urls}


def everything(client) -> dict[str, object]:
    """Every key of the database with its type, content and expiry."""
    out: dict[str, object] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "hash":
            value: object = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = client.get(key)
        out[key] = (kind, value, client.ttl(key) > 0)
    return out


@pytest.fixture
def reader(settings, store, schedule, tmp_path) -> Reader:
    """Ann, who confirmed a minute ago."""
    app = create_app(settings, send_task=lambda *a, **k: None)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    sub = enrol(store, schedule, "ann@example.com", "Ann", "America/New_York", start, source="web")
    with TestClient(app) as client:
        yield Reader(client, store, schedule, tmp_path / "sent", sub.id, start)


# -- the schedule ------------------------------------------------------------------------------


def test_a_lesson_that_asks_carries_the_three_links_in_both_parts(reader):
    hello, second, third, plan = reader.send_all()
    links = checkin_links(hello)
    token = make_token(SECRET, reader.sub_id, "me")
    assert links == {a: f"/me/{token}/checkin/hello/{a}" for a in ("flare", "same", "better")}
    assert "How has this week been?" in parts(hello)[0]
    assert "How has this week been?" in parts(hello)[1]
    assert set(checkin_links(third)) == {"flare", "same", "better"}
    for message in (second, plan):
        assert checkin_links(message) == {}
        assert "How has this week been?" not in "".join(parts(message))


def _schedule(tmp_path: Path, lessons: str) -> Path:
    text = SMALL_SCHEDULE.split("phases:")[0] + "phases:\n  - id: only\n    title: Only\n"
    text += "    lessons:\n" + lessons
    return write_course(tmp_path, text)


def _lesson(lesson_id: str, day: int, extra: str = "") -> str:
    return (f"      - {{id: {lesson_id}, day: {day}, subject: S, preheader: P, "
            f"template: lessons/hello.md{extra}}}\n")  # fmt: skip


def test_by_default_the_first_lesson_of_each_week_after_the_first_asks(tmp_path):
    days = {"a": 0, "b": 3, "c": 7, "d": 9, "e": 13, "f": 15, "g": 29}
    path = _schedule(tmp_path, "".join(_lesson(i, d) for i, d in days.items()))
    asking = [lesson.id for lesson in load_schedule(path).lessons if lesson.checkin]
    assert asking == ["c", "f", "g"]


def test_any_checkin_in_the_schedule_turns_the_default_off(tmp_path):
    lessons = _lesson("a", 0) + _lesson("b", 3, ", checkin: true") + _lesson("c", 7)
    lessons += _lesson("d", 14, ", checkin: false")
    path = _schedule(tmp_path, lessons)
    assert [lesson.id for lesson in load_schedule(path).lessons if lesson.checkin] == ["b"]
    # Only false anywhere: no lesson asks.
    path = _schedule(tmp_path / "none", _lesson("a", 0) + _lesson("c", 7, ", checkin: false"))
    assert not any(lesson.checkin for lesson in load_schedule(path).lessons)


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]", "null"])
def test_a_bad_checkin_value_is_an_error_with_file_and_line(tmp_path, value):
    path = _schedule(tmp_path, _lesson("a", 0) + _lesson("b", 7, f", checkin: {value}"))
    with pytest.raises(ScheduleError) as caught:
        load_schedule(path)
    line = path.read_text().splitlines().index(_lesson("b", 7, f", checkin: {value}")[:-1]) + 1
    assert str(caught.value) == (
        f"{path}:{line}: phases[0].lessons[1].checkin: must be true or false"
    )


# -- link scanners -----------------------------------------------------------------------------


def test_a_link_scanner_fetching_every_link_of_every_email_changes_nothing(reader, redis_client):
    messages = reader.send_all()
    urls = every_link(messages)
    assert sum("/checkin/" in url for url in urls) == 6  # two lessons ask, three answers each
    reader.client.get("/")  # the app's own start-up writes (its schedule's status) come first
    before = everything(redis_client)

    for url in sorted(urls):
        for method in ("GET", "HEAD"):
            answer = reader.client.request(method, url[len(BASE) :], follow_redirects=True)
            assert answer.status_code in (200, 405), (method, url, answer.status_code)

    assert everything(redis_client) == before
    assert reader.store.checkins(reader.sub_id) == []


def test_the_check_in_page_shows_the_answer_and_one_button_that_records_it(reader):
    hello = reader.send_due(reader.start)[0]
    path = checkin_links(hello)["flare"]

    page = reader.client.get(path)

    assert page.status_code == 200
    assert "You chose: <strong>A flare</strong>" in page.text
    assert f'<form method="post" action="{path}" id="checkin-form">' in page.text
    assert page.text.count("<button") == 1
    # The script submits only for a person: a visible page, no automation.
    assert 'document.visibilityState !== "visible"' in page.text
    assert "navigator.webdriver" in page.text and "form.submit()" in page.text
    assert page.headers["cache-control"] == "private, no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert reader.store.checkins(reader.sub_id) == []


# -- recording ---------------------------------------------------------------------------------


def test_one_post_records_one_check_in_with_the_lesson_and_the_time(reader, redis_client):
    hello = reader.send_due(reader.start)[0]
    before = datetime.now(UTC).timestamp()

    page = reader.client.post(checkin_links(hello)["same"])

    assert page.status_code == 200
    assert "<h1>Thank you</h1>" in page.text and "“About the same”" in page.text
    (checkin,) = reader.store.checkins(reader.sub_id)
    assert (checkin.lesson_id, checkin.answer) == ("hello", "same")
    assert before - 1 <= checkin.at <= datetime.now(UTC).timestamp()
    assert reader.store.checkin_counts(["hello", "third"]) == {"hello": {"same": 1}, "third": {}}
    assert reader.store.checkin_readers() == {"first": 1, "*": 1}
    # Nothing else of the reader changed.
    assert reader.store.get(reader.sub_id).status == "active"


def test_a_second_answer_replaces_the_first(reader):
    hello = reader.send_due(reader.start)[0]
    links = checkin_links(hello)

    reader.client.post(links["flare"])
    reader.client.post(links["better"])
    reader.client.post(links["better"])  # a replay changes nothing but the time

    assert [(c.lesson_id, c.answer) for c in reader.store.checkins(reader.sub_id)] == [
        ("hello", "better")
    ]
    assert reader.store.checkin_counts(["hello"]) == {"hello": {"better": 1}}
    assert reader.store.checkin_readers() == {"first": 1, "*": 1}


def test_counts_per_lesson_and_answer_and_readers_per_phase(store, schedule):
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    ids = [
        enrol(store, schedule, f"r{n}@example.com", None, "UTC", start, source="web").id
        for n in range(4)
    ]
    hello, third = schedule.lesson("hello"), schedule.lesson("third")
    answers = [(0, hello, "flare"), (1, hello, "flare"), (2, hello, "better"),
               (0, third, "same"), (3, third, "same"), (3, third, "better")]  # fmt: skip
    for n, lesson, answer in answers:
        assert check_in(store, schedule, ids[n], lesson, answer, start)

    assert store.checkin_counts(["hello", "third", "second"]) == {
        "hello": {"flare": 2, "better": 1},
        "third": {"same": 1, "better": 1},  # reader 3 changed their mind
        "second": {},
    }
    assert store.checkin_readers() == {"first": 3, "last": 2, "*": 4}


def test_a_flare_offers_the_pause_and_the_flare_plan_once_it_was_sent(reader):
    hello = reader.send_due(reader.start)[0]
    token = make_token(SECRET, reader.sub_id, "me")

    page = reader.client.post(checkin_links(hello)["flare"])

    pause_token = make_token(SECRET, reader.sub_id, "pause")
    assert f'<a class="button" href="/pause/{pause_token}">Pause the course</a>' in page.text
    assert f'<a href="/me/{token}">your Roadmap</a>' in page.text  # no flare plan yet
    assert "/lessons/flare-plan" not in page.text
    # A paused reader is not offered the pause again.
    pause(reader.store, reader.store.get(reader.sub_id), datetime.now(UTC), None)
    page = reader.client.post(checkin_links(hello)["flare"])
    assert "Your course is paused" in page.text and "/pause/" not in page.text


def test_the_flare_page_links_the_flare_plan_lesson_once_it_was_sent(reader):
    third = reader.send_all()[2]
    token = make_token(SECRET, reader.sub_id, "me")

    page = reader.client.post(checkin_links(third)["flare"])

    assert f'<a href="/me/{token}/lessons/flare-plan">Read your flare plan</a>' in page.text
    assert reader.client.get(f"/me/{token}/lessons/flare-plan").status_code == 200
    assert "/pause/" not in page.text  # completed: nothing left to pause


@pytest.mark.parametrize("how", ["unsubscribed", "complained", "erased"])
def test_a_reader_who_left_records_nothing(reader, redis_client, how):
    hello = reader.send_due(reader.start)[0]
    links = checkin_links(hello)
    sub = reader.store.get(reader.sub_id)
    if how == "erased":
        erase(reader.store, sub.email, datetime.now(UTC))
    else:
        unsubscribe(reader.store, sub, how)

    for method in ("GET", "POST"):
        page = reader.client.request(method, links["flare"])
        assert page.status_code == 200
        assert "<h1>You have left the course</h1>" in page.text
        assert "Ann" not in page.text and "Pause" not in page.text
    assert not redis_client.exists(f"hr:checkin:{reader.sub_id}")
    assert reader.store.checkin_counts(["hello"]) == {"hello": {}}


def test_the_store_refuses_a_check_in_once_the_reader_left(store, schedule):
    """The status is checked inside the script, with the write: a check-in racing an
    unsubscribe or an erase never lands after it."""
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    sub = enrol(store, schedule, "bo@example.com", None, "UTC", start, source="web")
    pending = enrol(store, schedule, "cy@example.com", None, "UTC", start, confirmed=False)
    unsubscribe(store, sub, "bounced")
    checkin = CheckIn("hello", "flare", start.timestamp())
    assert store.record_checkin(sub.id, checkin, "first", ["hello"]) == (False, "bounced")
    assert store.record_checkin(pending.id, checkin, "first", ["hello"]) == (False, "pending")
    assert store.record_checkin("nobody", checkin, "first", ["hello"]) == (False, "")
    assert store.checkin_counts(["hello"]) == {"hello": {}}
    assert store.checkin_readers() == {}


def test_links_that_are_not_valid_are_404_and_record_nothing(reader, redis_client):
    hello = reader.send_due(reader.start)[0]
    good = make_token(SECRET, reader.sub_id, "me")
    bad_paths = [
        f"/me/{good}/checkin/hello/awful",  # not an answer
        f"/me/{good}/checkin/hello/FLARE",
        f"/me/{good}/checkin/second/flare",  # not sent yet
        f"/me/{good}/checkin/confirmation/flare",
        f"/me/{good}/checkin/nope/flare",
        f"/me/{make_token('other-key', reader.sub_id, 'me')}/checkin/hello/flare",
        f"/me/{make_token(SECRET, reader.sub_id, 'pause')}/checkin/hello/flare",
        f"/me/{good[:-4]}/checkin/hello/flare",
        f"/me/{make_token(SECRET, 'preview', 'me')}/checkin/hello/flare",
        f"/me/{'x' * 5000}/checkin/hello/flare",
    ]
    for path in bad_paths:
        for method in ("GET", "POST"):
            page = reader.client.request(method, path)
            assert page.status_code == 404, (method, path, page.status_code)
            assert "not valid" in page.text
    assert reader.store.checkins(reader.sub_id) == []
    assert checkin_links(hello)  # the real ones are there


def test_export_has_the_check_ins_and_erase_deletes_them(reader, redis_client):
    hello = reader.send_due(reader.start)[0]
    reader.client.post(checkin_links(hello)["better"])
    now = datetime.now(UTC)

    (record,) = export_data(reader.store, "ann@example.com", now)["records"]
    (row,) = record["checkins"]
    assert row["lesson_id"] == "hello" and row["answer"] == "better"
    assert datetime.fromisoformat(row["at"]) <= now

    erase(reader.store, "ann@example.com", now)
    assert not redis_client.exists(f"hr:checkin:{reader.sub_id}")
    assert reader.store.checkins(reader.sub_id) == []
    assert not [key for key in redis_client.scan_iter() if reader.sub_id in key]
