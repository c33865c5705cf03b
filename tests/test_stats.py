"""Course stats: counts per lesson from the ledger, the provider's events and exits; the
funnel; subscribers by status; the formatters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from conftest import cli_runner, course_env, db_url, publish_course

from course import engine
from course.mail.render import Renderer
from course.models.reply import Reply
from course.reports.stats import Counts, collect
from course.reports.stats_html import funnel_svg, html_report
from course.reports.stats_json import to_json
from course.reports.stats_table import table_rows
from course.runtime import ScheduleHolder
from course.settings import Settings
from course.store import Store
from course.subscribers.checkin import check_in
from course.subscribers.confirmation import send_confirmation
from course.subscribers.lifecycle import enrol, unsubscribe
from course.tokens import subscriber_links
from course.transport import OutboxTransport
from course.web.webhook import handle_events

NY = ZoneInfo("America/New_York")
START = datetime(2026, 3, 2, 8, 0, tzinfo=NY)


def run_tick(store, schedule, outbox, now: datetime) -> None:
    renderer = Renderer(schedule)

    def links(sub_id):
        return subscriber_links("https://course.example", "secret", sub_id)

    def enqueue(items, when):
        engine.deliver(store, renderer, outbox, items, when, links)

    engine.tick(store, schedule, now, enqueue)


def prepare_course(store, schedule, outbox) -> None:
    """Three readers get the first two lessons and check in (one changes her answer); one
    unsubscribes after the second (twice), one hard-bounces on it; Cy replies to the first
    (SendGrid posting it twice) and Ana writes once without quoting a lesson; a pending signup
    unsubscribes before any lesson; a lesson since removed from the schedule has counts."""
    ana = enrol(store, schedule, "ana@example.com", "Ana", None, START)
    ben = enrol(store, schedule, "ben@example.com", "Ben", None, START)
    cy = enrol(store, schedule, "cy@example.com", "Cy", None, START)
    pending = enrol(store, schedule, "dee@example.com", None, None, START, confirmed=False)
    settings = Settings(base_url="https://course.example", secret_key="secret")
    assert send_confirmation(store, Renderer(schedule), outbox, settings, pending.id).sent
    run_tick(store, schedule, outbox, START + timedelta(minutes=1))
    run_tick(store, schedule, outbox, START + timedelta(days=2, minutes=1))
    # Check-ins: Ana and Ben answer "hello" (Ana changes her mind), Cy answers "second".
    when = START + timedelta(days=2, minutes=30)
    for sub, lesson_id, answer in [(ana, "hello", "same"), (ana, "hello", "flare"),
                                   (ben, "hello", "better"), (cy, "second", "flare")]:  # fmt: skip
        assert check_in(store, schedule, sub.id, schedule.lesson(lesson_id), answer, when)
    at = when.timestamp()
    to_hello = Reply("r-cy", at, "Re: Hello", "Thank you", lesson_id="hello")
    assert [store.add_reply(cy.id, to_hello, "<cy-1@mail.example>") for _ in "12"] == [1, -1]
    assert store.add_reply(ana.id, Reply("r-ana", at, "Hi", "A question"), "<ana-1@mail.example>")
    now = (START + timedelta(days=2, hours=1)).timestamp()
    events = [
        {"event": "delivered", "subscriber_id": s.id, "lesson_id": "hello", "email": s.email}
        for s in (ana, ben)
    ] + [
        {"event": "open", "subscriber_id": ana.id, "lesson_id": "hello", "email": ana.email},
        {"event": "open", "subscriber_id": ana.id, "lesson_id": "hello", "email": ana.email},
        {"event": "click", "subscriber_id": ana.id, "lesson_id": "hello", "email": ana.email},
        {"event": "bounce", "subscriber_id": ben.id, "lesson_id": "second", "email": ben.email},
    ]
    handle_events(store, schedule, events, now)
    unsubscribe(store, store.get(ana.id))
    unsubscribe(store, store.get(ana.id))  # a second click changes nothing
    unsubscribe(store, store.get(pending.id))
    # A lesson of an earlier schedule, since removed, with its figures.
    store.redis.sadd(store.scheduled_lessons_key, "old-lesson")
    store.redis.hset(store.send_stats_key("old-lesson"), mapping={"sent": 7, "failed": 1})


@pytest.fixture
def course_run(store, schedule, tmp_path):
    prepare_course(store, schedule, OutboxTransport(tmp_path / "outbox"))


def test_collect_counts_each_lesson_from_ledger_events_and_exits(store, schedule, course_run):
    stats = collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC))
    hello, second, third, _ = [lesson for phase in stats.phases for lesson in phase.lessons]
    assert (hello.counts.sent, hello.counts.delivered) == (3, 2)
    assert hello.counts.clicked == 1
    assert not hasattr(hello.counts, "opened")  # opens mean nothing: never shown
    assert (hello.counts.checkins, second.counts.checkins) == (2, 1)
    assert (hello.counts.replies, second.counts.replies, stats.totals.replies) == (1, 0, 1)
    assert hello.counts.unsubscribed == 0
    assert (second.counts.sent, second.counts.bounced, second.counts.unsubscribed) == (3, 1, 1)
    assert third.counts.sent == 0
    assert stats.phases[0].counts.sent == 6
    assert stats.totals.sent == 6
    assert stats.exits_before_first == {"unsubscribed": 1}
    assert stats.confirmation.counts.sent == 1  # not in a ledger, counted when sent


def test_unsubscribe_after_a_bounce_is_not_counted_again(store, schedule, course_run):
    ben = store.find("ben@example.com")
    assert ben.status == "bounced"
    unsubscribe(store, ben)
    stats = collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC))
    assert stats.phases[0].lessons[1].counts.unsubscribed == 1


def test_collect_lists_subscribers_by_status_and_removed_lessons(store, schedule, course_run):
    stats = collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC))
    assert stats.statuses == {"pending": 0, "active": 1, "paused": 0, "completed": 0,
                              "unsubscribed": 2, "bounced": 1, "complained": 0}  # fmt: skip
    assert stats.subscribers == 4
    assert [(r.lesson_id, r.counts.sent, r.counts.failed) for r in stats.removed] == [
        ("old-lesson", 7, 1)
    ]


def test_a_lesson_removed_from_the_schedule_is_listed_apart_with_its_figures(
    store, course_path, tmp_path
):
    holder = ScheduleHolder(course_path, versions=store.schedule_versions())  # publishes
    schedule, _ = holder.current()
    outbox = OutboxTransport(tmp_path / "outbox")
    sub = enrol(store, schedule, "ana@example.com", "Ana", None, START)
    run_tick(store, schedule, outbox, START + timedelta(minutes=1))
    run_tick(store, schedule, outbox, START + timedelta(days=2, minutes=1))
    unsubscribe(store, store.get(sub.id))
    lines = course_path.read_text().splitlines(keepends=True)
    course_path.write_text("".join(line for line in lines if "id: second" not in line))
    publish_course(store, course_path)
    edited, _ = holder.current()
    assert holder.error is None and "second" not in {e.id for e in edited.emails}
    stats = collect(store, edited, datetime(2026, 3, 5, tzinfo=UTC))
    [removed] = stats.removed
    assert (removed.lesson_id, removed.counts.sent, removed.counts.unsubscribed) == ("second", 1, 1)
    assert [s.lesson_id for s in stats.funnel] == ["hello", "third", "fourth"]


def test_a_store_from_before_the_lesson_set_is_scanned_for_removed_lessons(store, schedule):
    store.count_lesson_event("retired", "delivered")
    store.redis.hset(store.send_stats_key("older"), "sent", 2)
    stats = collect(store, schedule, datetime(2026, 3, 5, tzinfo=UTC))
    assert [(r.lesson_id, r.counts.sent, r.counts.delivered) for r in stats.removed] == [
        ("older", 2, 0), ("retired", 0, 1)
    ]  # fmt: skip


def test_an_empty_store_gives_zeros_and_an_empty_funnel_without_dividing_by_zero(store, schedule):
    stats = collect(store, schedule, datetime(2026, 3, 5, tzinfo=UTC))
    assert stats.totals == Counts() and stats.subscribers == 0 and stats.removed == ()
    assert [(s.sent, s.share) for s in stats.funnel] == [(0, None)] * 4
    assert all(cell == "0" for row in table_rows(stats) for cell in row.cells)
    assert "no process has reported a schedule in the last 3 minutes" in html_report(stats)
    assert to_json(stats)["totals"]["sent"] == 0


def test_funnel_is_the_sent_count_of_each_lesson_in_course_order(store, schedule, course_run):
    stats = collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC))
    assert [(s.lesson_id, s.sent, s.share) for s in stats.funnel] == [
        ("hello", 3, 1.0), ("second", 3, 1.0), ("third", 0, 0.0), ("fourth", 0, 0.0)
    ]  # fmt: skip
    svg = funnel_svg(stats)
    assert svg.startswith("<svg") and svg.count('class="bar"') == 4


def test_table_rows_give_phase_subtotals_then_lessons_with_rates(store, schedule, course_run):
    rows = table_rows(collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC)))
    assert [(r.kind, r.label) for r in rows] == [
        ("phase", "Phase 1: First phase"), ("lesson", "hello"), ("lesson", "second"),
        ("phase", "Phase 2: Last phase"), ("lesson", "third"), ("lesson", "fourth"),
        ("total", "Course total"), ("confirmation", "confirmation"),
    ]  # fmt: skip
    hello = rows[1].cells  # sent, delivered, check-ins, replies, unsub. after, clicks
    assert hello[:6] == ["3", "2 (67%)", "2 (67%)", "1 (33%)", "0", "1 (33%)"]


def test_json_and_html_carry_the_same_figures(store, schedule, course_run):
    stats = collect(store, schedule, datetime(2026, 3, 4, 12, tzinfo=UTC))
    data = to_json(stats)
    second = data["phases"][0]["lessons"][1]
    assert (second["sent"], second["bounced"], second["unsubscribed"]) == (3, 1, 1)
    first_lesson = data["phases"][0]["lessons"][0]
    assert (first_lesson["replies"], first_lesson["rates"]["replies"], second["replies"]) == (
        1, 0.3333, 0)  # fmt: skip
    assert data["totals"]["replies"] == 1 and "replies" in data["notes"]
    assert data["subscribers"]["by_status"]["bounced"] == 1
    assert data["removed_lessons"][0]["lesson_id"] == "old-lesson"
    assert "opened" not in second and "opened" in data["notes"]
    checkins = data["checkins"]
    assert checkins["readers"] == 3
    first = checkins["phases"][0]
    assert (first["readers"], first["answers"]) == (3, {"flare": 2, "same": 0, "better": 1})
    hello = first["lessons"][0]
    assert hello == {"lesson_id": "hello", "asks": False, "sent": 3, "readers": 2,
                     "answers": {"flare": 1, "same": 0, "better": 1},
                     "shares": {"flare": 0.5, "same": 0.0, "better": 0.5}}  # fmt: skip
    assert checkins["phases"][1] == {"phase_id": "last", "readers": 0, "lessons": [],
                                     "answers": {"flare": 0, "same": 0, "better": 0},
                                     "shares": {}}  # fmt: skip
    page = html_report(stats)
    assert "<svg" in page and "old-lesson" in page and "Removed lessons" in page
    assert '<svg class="checkins"' in page and "Readers who answered any check-in: 3" in page
    assert '<tr class="lesson"><th scope="row">hello</th><td>2 (67% of sent)</td>' in page
    assert "<th>replies</th>" in page
    assert "<td>2 (67%)</td><td>1 (33%)</td><td>0</td>" in page  # check-ins, replies, unsub.
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


# -- the command --------------------------------------------------------------------------------

STATS_DB = 10  # the stats command's tests own this database of the tests' server


@pytest.fixture
def cli(tmp_path, course_path, redis_url, schedule, monkeypatch, capsys):
    """``course ARGS`` on a database this module owns, prepared like course_run: in this
    process through the command's own entry point (exit status, output), or in a subprocess
    of its own with ``subprocess=True``."""
    url = db_url(redis_url, STATS_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    prepare_course(Store(client), schedule, OutboxTransport(tmp_path / "outbox"))
    env = course_env(url, course_path, tmp_path)

    yield cli_runner(env, monkeypatch, capsys)
    client.flushdb()
    client.close()


def test_stats_command_prints_the_table_funnel_statuses_and_schedule(cli):
    result = cli("stats", subprocess=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Phase 1: First phase" in out and "unsub. after" in out
    hello = next(line for line in out.splitlines() if "│   hello" in line)
    # sent, delivered, check-ins, replies, unsub. after, clicks: no opens
    cells = [cell.strip() for cell in hello.split("│")[2:8]]
    assert cells == ["3", "2 (67%)", "2 (67%)", "1 (33%)", "0", "1 (33%)"]
    assert "clicks*" in out and "not unique people" in out
    assert "opened" not in out.split("Opens are not shown")[0]
    assert "Opens are not shown" in out
    # The check-ins: per phase and lesson, then the chart across the course.
    assert "Check-ins: “How has this week been?”" in out
    phase = next(line for line in out.splitlines() if "Phase 1: First phase" in line
                 and line.count("│") == 6)  # fmt: skip
    assert [cell.strip() for cell in phase.split("│")[2:6]] == ["3", "2 (67%)", "0 (0%)", "1 (33%)"]
    hello = [line for line in out.splitlines() if "│   hello" in line][1]
    assert [cell.strip() for cell in hello.split("│")[2:6]] == [
        "2 (67% of sent)", "1 (50%)", "0 (0%)", "1 (50%)"]  # fmt: skip
    assert "Readers who answered any check-in: 3" in out
    chart = next(line for line in out.splitlines() if line.startswith("  hello "))
    assert "█" * 15 + "░" * 15 in chart and "2 flare 50% same 0% better 50%" in chart
    assert "Removed lessons" in out and "old-lesson" in out
    assert "Left before the first lesson: 1 unsubscribed" in out
    assert "1. hello" in out and "4. fourth" in out
    assert "Subscribers: 4 (pending 0, active 1" in out
    assert "the file on disk is valid" in out


def test_stats_says_why_uncertain_sends_are_not_settled(cli, redis_url):
    from course.models.subscriber import LedgerEntry

    client = redis.Redis.from_url(db_url(redis_url, STATS_DB), decode_responses=True)
    stuck = LedgerEntry("hello", "uncertain", 1772400000.0, 1, "SendGrid sent no answer")
    assert Store(client).finish("stats-reader", stuck, None, ("",))
    client.close()
    result = cli("stats", subprocess=True)
    assert result.returncode == 0, result.stderr
    assert "Uncertain sends: 1 uncertain send(s) waiting; not settled: no signed webhook" in (
        result.stdout.replace("\n", " ")
    )
    data = json.loads(cli("stats", "--json").stdout)
    assert data["settling"]["ok"] is False and "no signed webhook" in data["settling"]["detail"]


def test_stats_json_has_every_lesson_in_schedule_order(cli):
    result = cli("stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    lessons = [lesson for phase in data["phases"] for lesson in phase["lessons"]]
    assert [lesson["lesson_id"] for lesson in lessons] == ["hello", "second", "third", "fourth"]
    assert lessons[1]["unsubscribed"] == 1 and lessons[1]["rates"]["bounced"] == 0.3333
    assert data["subscribers"] == {"total": 4, "by_status": {
        "pending": 0, "active": 1, "paused": 0, "completed": 0, "unsubscribed": 2,
        "bounced": 1, "complained": 0}}  # fmt: skip
    assert data["schedule"]["file"]["error"] is None


def test_stats_reports_an_invalid_file_on_disk_and_exits_1(cli, course_path):
    assert cli("stats", "--json").returncode == 0  # the first start publishes the files
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    result = cli("stats")
    assert result.returncode == 1
    line = f"{course_path}:15: phases[0].lessons[1].day: must be >= 0"
    assert f"the file on disk is invalid: {line}" in result.stdout
    assert result.stderr.strip().endswith(line)
    assert "Traceback" not in result.stderr
    assert "Phase 1: First phase" in result.stdout  # still reported, by the last valid one


def test_stats_html_report_fits_a_phone_and_shows_the_funnel(cli, tmp_path, browser, artifacts):
    report = tmp_path / "report" / "stats.html"
    result = cli("stats", "--html", str(report))
    assert result.returncode == 0, result.stderr
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)
        page.goto(report.as_uri())
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        funnel = page.locator("svg.funnel")
        assert funnel.is_visible()
        box = funnel.bounding_box()
        assert box["width"] > 300 and box["height"] > 100
        bars = page.locator("svg.funnel rect.bar")
        assert bars.count() == 4
        assert bars.nth(0).bounding_box()["width"] > 250  # hello: everyone, full width
        page.screenshot(path=str(artifacts / f"stats-{scheme}.png"), full_page=True)
        page.close()
