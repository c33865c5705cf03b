"""Broadcasts: one-off emails to a segment, claimed through the ledger's rules (see README,
"Broadcasts"). Here against the real Redis store, delivered in this process through the
outbox; tests/test_broadcasts_e2e.py has the Celery worker killed mid-send."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, time, timedelta
from email import policy

import pytest
from conftest import cli_runner, course_env

from course import engine
from course.broadcasts.service import (
    BroadcastError,
    cancel_broadcast,
    create_broadcast,
    prepare_batch,
    send_broadcast,
)
from course.broadcasts.timing import parse_hhmm
from course.mail.render import Renderer
from course.models.broadcast import entry_id
from course.subscribers.lifecycle import unsubscribe
from course.tokens import subscriber_links
from course.transport import OutboxTransport

NOW = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # New York moves its clocks on this day, 2:00 local
STATUSES = ("pending", "active", "paused", "completed", "unsubscribed", "bounced", "complained")
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo")
NEWS = """\
Hi {{ first_name or "there" }},

The **program** has opened. [See your Roadmap]({{ roadmap_url }}).
"""


@pytest.fixture
def templates(course_path):
    folder = course_path.parent / "templates"
    (folder / "broadcasts").mkdir(exist_ok=True)
    (folder / "broadcasts" / "news.md").write_text(NEWS)
    return folder


@pytest.fixture
def renderer(schedule):
    return Renderer(schedule)


def populate(store, per_status: int = 3) -> dict[str, list[str]]:
    """Readers of every status, across three zones: status -> ids."""
    ids: dict[str, list[str]] = {s: [] for s in STATUSES}
    for status in STATUSES:
        for n in range(per_status):
            joined = NOW.timestamp() - 86400
            sub = store.add(f"{status}{n}@example.org", "Ann", ZONES[n % 3], joined, status=status)
            ids[status].append(sub.id)
    return ids


def make(store, schedule, renderer, templates, to="status:active", **options):
    values = {"template": "broadcasts/news.md", "subject": "The program is open",
              "expression": to, "at_local": None, "include_paused": False, "now": NOW}  # fmt: skip
    return create_broadcast(store, schedule, renderer, templates, **{**values, **options})


def deliver_due(store, schedule, renderer, transport, now):
    """One tick at ``now``, its batches delivered here as a worker would."""
    totals = engine.DeliverResult()

    def links(sub_id):
        return subscriber_links("https://course.example", "test-secret", sub_id)

    def enqueue(items, when):
        items, mail = prepare_batch(store, renderer, items, when)
        outcome = engine.deliver(store, mail, transport, items, when, links)
        for name in ("sent", "failed", "retrying", "uncertain", "skipped"):
            setattr(totals, name, getattr(totals, name) + getattr(outcome, name))

    engine.tick(store, schedule, now, enqueue)
    return totals


def outbox_mail(folder) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(folder.glob("*.eml"))]  # fmt: skip


def test_a_broadcast_reaches_each_active_reader_once_and_nobody_else(
    store, schedule, renderer, templates, tmp_path
):
    ids = populate(store)
    b = make(store, schedule, renderer, templates)
    before = {i: store.get(i) for i in ids["active"]}
    due = {i: store.due_score(i) for i in ids["active"]}
    first = send_broadcast(store, schedule, b.id, NOW)
    assert (first.claimed, first.already) == (3, 0)
    assert not first.was_sent
    again = send_broadcast(store, schedule, b.id, NOW)  # sent: nothing more
    assert again.claimed == 0 and again.was_sent and store.broadcast(b.id).status == "sent"
    # A run cut short (status still sending) claims nobody twice either.
    store.set_broadcast_status(b.id, "sending", ("sent",))
    rerun = send_broadcast(store, schedule, b.id, NOW)
    assert (rerun.claimed, rerun.already) == (0, 3)
    for sub_id, sub in before.items():  # course progress untouched
        after = store.get(sub_id)
        assert (after.version, after.last_lesson, after.sent_that_day) == (
            sub.version, sub.last_lesson, sub.sent_that_day)  # fmt: skip
        assert store.due_score(sub_id) == due[sub_id]
    outbox = OutboxTransport(tmp_path / "out")
    result = deliver_due(store, schedule, renderer, outbox, NOW + timedelta(minutes=1))
    assert result.sent == 3
    sent_to = sorted(m["To"].addresses[0].addr_spec for m in outbox_mail(tmp_path / "out"))
    assert sent_to == [f"active{n}@example.org" for n in range(3)]
    assert deliver_due(store, schedule, renderer, outbox, NOW + timedelta(hours=1)).sent == 0
    counts = store.broadcast(b.id)
    assert counts.claimed == 3 and counts.counts.get("sent") == 3
    for status, members in ids.items():
        for sub_id in members:
            entry = store.entry(sub_id, entry_id(b.id))
            assert (entry is not None) == (status == "active"), (status, entry)


def test_the_email_has_the_course_footer_headers_and_one_click_unsubscribe(
    store, schedule, renderer, templates, tmp_path
):
    sub = store.add("grad@example.org", "Bea", "Europe/Berlin", NOW.timestamp(),
                    status="completed")  # fmt: skip
    b = make(store, schedule, renderer, templates, to="status:completed")
    assert send_broadcast(store, schedule, b.id, NOW).claimed == 1
    deliver_due(store, schedule, renderer, OutboxTransport(tmp_path / "out"), NOW)
    [msg] = outbox_mail(tmp_path / "out")
    assert msg["Subject"] == "The program is open"
    assert msg["List-Unsubscribe"].startswith("<https://course.example/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Course-Lesson-Id"] == f"b:{b.id}" and ":" not in msg["Message-ID"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    for part in (html, text):
        assert "Hi Bea" in part and "1 Test Street, Testville" in part
        assert "is not medical advice" in part and "Read this in your browser" not in part
    assert "<strong>program</strong>" in html
    assert store.entry(sub.id, f"b:{b.id}").state == "sent"


def test_paused_readers_only_when_asked(store, schedule, renderer, templates):
    ids = populate(store, per_status=2)
    plain = make(store, schedule, renderer, templates, to="status:paused or status:active")
    assert send_broadcast(store, schedule, plain.id, NOW).claimed == 2  # the active ones
    asked = make(store, schedule, renderer, templates, to="status:paused", include_paused=True)
    assert send_broadcast(store, schedule, asked.id, NOW).claimed == 2
    assert {s for s in ids["paused"] if store.entry(s, f"b:{asked.id}")} == set(ids["paused"])
    never = make(store, schedule, renderer, templates, to="not status:active",
                 include_paused=True)  # fmt: skip
    report = send_broadcast(store, schedule, never.id, NOW)
    assert report.claimed == 2 + 2  # paused and completed: never pending or suppressed


def test_an_unsubscribe_between_claim_and_send_wins(store, schedule, renderer, templates, tmp_path):
    ids = populate(store, per_status=2)
    b = make(store, schedule, renderer, templates)
    assert send_broadcast(store, schedule, b.id, NOW).claimed == 2
    leaving = store.get(ids["active"][0])
    unsubscribe(store, leaving, now=NOW)
    outbox = OutboxTransport(tmp_path / "out")
    result = deliver_due(store, schedule, renderer, outbox, NOW + timedelta(seconds=30))
    assert (result.sent, result.skipped) == (1, 1)
    assert [m["To"].addresses[0].addr_spec for m in outbox_mail(tmp_path / "out")] == [
        "active1@example.org"
    ]
    assert store.entry(leaving.id, f"b:{b.id}").state == "skipped"
    assert store.broadcast(b.id).counts == {"sent": 1, "skipped": 1}


def test_local_hour_in_three_zones_across_a_dst_change(store, schedule, renderer, templates):
    ny = store.add("ny@example.org", None, "America/New_York", 0, status="active")
    berlin = store.add("de@example.org", None, "Europe/Berlin", 0, status="active")
    tokyo = store.add("jp@example.org", None, "Asia/Tokyo", 0, status="completed")
    nine = make(store, schedule, renderer, templates, to="not status:paused", at_local=time(9))
    send_broadcast(store, schedule, nine.id, NOW)  # 01:00 in New York, still EST
    scores = store.pending_scores
    expected = {
        ny.id: datetime(2026, 3, 8, 13, 0, tzinfo=UTC),  # 09:00 EDT (UTC-4), the new offset
        berlin.id: datetime(2026, 3, 8, 8, 0, tzinfo=UTC),  # 09:00 CET
        tokyo.id: datetime(2026, 3, 9, 0, 0, tzinfo=UTC),  # 15:00 there now: tomorrow's 09:00
    }
    for sub_id, at in expected.items():
        assert scores(sub_id, [f"b:{nine.id}"]) == [at.timestamp()], sub_id
    gap = make(store, schedule, renderer, templates, to="tz:America/*", at_local=time(2, 30))
    send_broadcast(store, schedule, gap.id, NOW)  # 02:30 never happens there that day
    assert scores(ny.id, [f"b:{gap.id}"]) == [datetime(2026, 3, 8, 7, 0, tzinfo=UTC).timestamp()]
    # Nothing goes before its hour: a tick at 07:59 UTC hands out nobody's nine o'clock.
    early = deliver_due(store, schedule, renderer, OutboxTransport(templates / "x"),
                        datetime(2026, 3, 8, 7, 59, tzinfo=UTC))  # fmt: skip
    assert early.sent == 1  # only the 02:30-in-New-York one (07:00 UTC)
    assert store.entry(berlin.id, f"b:{nine.id}").state == "claimed"


def test_cancel_stops_what_has_not_been_handed_over(store, schedule, renderer, templates, tmp_path):
    populate(store)
    b = make(store, schedule, renderer, templates, to="status:active", at_local=time(23, 59))
    assert send_broadcast(store, schedule, b.id, NOW).claimed == 3
    assert cancel_broadcast(store, b.id, NOW) == 3
    after = store.broadcast(b.id)
    assert after.status == "cancelled" and after.counts == {"skipped": 3}
    assert store.pending_count() == 0
    later = NOW + timedelta(days=2)
    assert deliver_due(store, schedule, renderer, OutboxTransport(tmp_path / "o"), later).sent == 0
    with pytest.raises(BroadcastError, match="cancelled"):
        send_broadcast(store, schedule, b.id, NOW)


def test_a_batch_already_queued_when_cancelled_is_skipped(store, schedule, renderer, templates):
    populate(store)
    b = make(store, schedule, renderer, templates)
    send_broadcast(store, schedule, b.id, NOW)
    queued = [(s, lesson) for s, lesson in store.pending_due(NOW.timestamp())]
    store.set_broadcast_status(b.id, "cancelled", ("sent",))  # as cancel does, first step
    items, mail = prepare_batch(store, renderer, queued, NOW)
    assert items == [] and mail is renderer
    assert store.broadcast(b.id).counts == {"skipped": 3}


@pytest.mark.parametrize(
    ("options", "error", "usage"),
    [
        ({"template": "../schedule.yaml"}, "template: a .md file under templates/", True),
        ({"template": "broadcasts/none.md"}, "templates/broadcasts/none.md: cannot read", False),
        ({"template": "broadcasts/bad.md"}, "templates/broadcasts/bad.md:3: unknown", False),
        ({"expression": "status:actve"}, "segment: column 8: unknown status 'actve'", True),
        ({"subject": "two\nlines"}, "subject: one line", True),
        ({"subject": " "}, "subject: one line", True),
    ],
)
def test_create_refuses_mistakes_with_one_line(
    store, schedule, renderer, templates, options, error, usage
):
    (templates / "broadcasts" / "bad.md").write_text("Hi,\n\n{{ nobody_knows }} here.\n")
    with pytest.raises(BroadcastError) as raised:
        make(store, schedule, renderer, templates, **options)
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)
    assert raised.value.usage is usage
    assert store.broadcast_ids() == []


def test_parse_hhmm():
    assert parse_hhmm("09:30") == time(9, 30)
    for bad in ("9", "24:00", "09:60", "9:5", "nine"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_hhmm(bad)


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def course_cli(tmp_path, course_path, redis_url, store, templates, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)


def test_the_commands_from_create_to_cancel(store, course_cli, tmp_path):
    populate(store, per_status=1)
    made = course_cli("broadcast", "create", "--template", "broadcasts/news.md", "--subject",
                      "Open", "--to", "status:completed", "--at-local", "10:00")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bid = made.stdout.strip()
    assert len(bid) == 8
    shown = course_cli("broadcast", "preview", bid)
    assert shown.returncode == 0 and shown.stdout.startswith("Subject: Open\n")
    assert "Hi Alex" in shown.stdout and "Unsubscribe" in shown.stdout
    tested = course_cli("broadcast", "test", bid, "--to", "me@example.org")
    assert tested.returncode == 0, tested.stderr
    [test_mail] = outbox_mail(tmp_path / "outbox")
    assert test_mail["Subject"] == "[TEST] Open" and test_mail["X-Course-Send-Test"] == "1"
    sent = course_cli("broadcast", "send", bid)
    assert sent.returncode == 0 and sent.stdout.startswith(f"broadcast {bid}: claimed 1;")
    again = course_cli("broadcast", "send", bid)
    assert again.stdout.strip() == f"broadcast {bid}: already sent (1 recipients)"
    status = json.loads(course_cli("broadcast", "status", bid, "--json").stdout)
    assert status["status"] == "sent" and status["at_local"] == "10:00"
    assert status["counts"]["claimed"] == 1 and status["counts"]["waiting"] == 1
    listed = json.loads(course_cli("broadcast", "list", "--json").stdout)
    assert [row["id"] for row in listed] == [bid]
    stats = course_cli("stats").stdout
    assert "\nBroadcasts" in stats and f"│ {bid} sent: Open (to" in stats
    cancelled = course_cli("broadcast", "cancel", bid)
    assert cancelled.stdout.strip() == f"broadcast {bid}: cancelled; 1 waiting sends stopped"


def test_reaching_the_graduates_is_one_command(store, course_cli):
    ids = populate(store, per_status=1)
    done = course_cli("broadcast", "create", "--template", "broadcasts/news.md", "--subject",
                      "Open", "--to", "status:completed", "--send")  # fmt: skip
    assert done.returncode == 0, done.stderr
    bid, line = done.stdout.strip().splitlines()
    assert line == f"broadcast {bid}: claimed 1"
    as_json = course_cli("broadcast", "create", "--template", "broadcasts/news.md", "--subject",
                         "Again", "--to", "status:completed", "--send", "--json")  # fmt: skip
    shown = json.loads(as_json.stdout)
    assert shown["status"] == "sent" and shown["counts"]["claimed"] == 1
    (graduate,) = ids["completed"]
    assert {e for e in store.ledger(graduate) if e.startswith("b:")} == {
        f"b:{bid}", f"b:{shown['id']}"}  # fmt: skip


def test_the_commands_errors_are_one_line_with_exit_1_or_2(course_cli, templates):
    (templates / "broadcasts" / "bad.md").write_text("{% if %}\n")
    cases = [
        (["create", "--template", "broadcasts/news.md", "--subject", "S", "--to", "phase:9"], 2,
         "broadcast: segment: column 7: "),
        (["create", "--template", "broadcasts/bad.md", "--subject", "S", "--to", "status:active"],
         1, "course: templates/broadcasts/bad.md:1: "),
        (["create", "--template", "broadcasts/news.md", "--subject", "S", "--to", "status:active",
          "--at-local", "25:00"], 2, ""),
        (["status", "nothing1"], 2, "broadcast: no broadcast 'nothing1'"),
        (["send", "nothing1"], 2, "broadcast: no broadcast 'nothing1'"),
        (["cancel", "../x"], 2, "broadcast: no broadcast '../x'"),
    ]  # fmt: skip
    for args, code, start in cases:
        result = course_cli("broadcast", *args)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.startswith(start), result.stderr
        if start:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_stats_show_each_broadcast_with_its_outcomes_and_events(
    store, schedule, renderer, templates, tmp_path
):
    from course.reports.stats import collect
    from course.reports.stats_html import html_report
    from course.reports.stats_json import to_json
    from course.web.webhook import handle_events

    ids = populate(store, per_status=2)
    b = make(store, schedule, renderer, templates, to="status:active or status:completed")
    send_broadcast(store, schedule, b.id, NOW)
    unsubscribe(store, store.get(ids["completed"][0]), now=NOW)  # before their send
    deliver_due(store, schedule, renderer, OutboxTransport(tmp_path / "out"), NOW)
    reader = store.get(ids["active"][0])
    events = [
        {"event": name, "email": reader.email, "subscriber_id": reader.id,
         "lesson_id": f"b:{b.id}", "sg_event_id": f"e-{name}"}
        for name in ("delivered", "click", "unsubscribe")
    ] + [{"event": "click", "lesson_id": "b:feedbeef", "subscriber_id": reader.id,
          "email": reader.email, "sg_event_id": "e-unknown"}]  # fmt: skip
    handle_events(store, schedule, events, NOW.timestamp() + 60)
    report = collect(store, schedule, NOW + timedelta(minutes=2))
    [row] = report.broadcasts
    assert row["id"] == b.id and row["status"] == "sent"
    counts = row["counts"]
    assert (counts["claimed"], counts["sent"], counts["skipped"], counts["waiting"]) == (4, 3, 1, 0)
    assert (counts["click"], counts["unsubscribe"], counts["delivered"]) == (1, 1, 1)
    assert store.get(reader.id).status == "unsubscribed"
    assert store.webhook_stats()["unknown_lesson"] == 1  # no such broadcast: not counted
    assert not report.removed  # a broadcast is not a removed lesson
    assert to_json(report)["broadcasts"] == [row]
    page = html_report(report)
    assert "<h2>Broadcasts</h2>" in page and f"{b.id} sent: The program is open" in page


def test_course_tick_inline_delivers_a_sent_broadcast(store, course_cli, tmp_path):
    ids = populate(store, per_status=1)
    bid = course_cli("broadcast", "create", "--template", "broadcasts/news.md", "--subject",
                     "Open", "--to", "status:active").stdout.strip()  # fmt: skip
    empty = course_cli("broadcast", "create", "--template", "broadcasts/news.md", "--subject",
                       "Nobody", "--to", "status:paused").stdout.strip()  # fmt: skip
    assert course_cli("broadcast", "send", empty).stdout.startswith(f"broadcast {empty}: claimed 0")
    assert course_cli("broadcast", "send", bid).returncode == 0
    ticked = course_cli("tick", "--inline")
    assert ticked.returncode == 0 and "sent 1," in ticked.stdout, ticked.stdout
    [mail] = outbox_mail(tmp_path / "outbox")
    assert mail["To"].addresses[0].addr_spec == "active0@example.org"
    assert store.entry(ids["active"][0], f"b:{bid}").state == "sent"


class RecordedEvents:
    """An event sink that keeps what it was handed (the webhooks' own tests post them)."""

    def __init__(self):
        self.emitted: list[tuple[str, dict]] = []

    def wants(self, event_type: str) -> bool:
        return True

    def emit(self, event_type, data, now=None):
        self.emitted.append((event_type, data))

    def emit_many(self, events, now):
        self.emitted.extend(events)


def test_the_send_that_finishes_claiming_emits_broadcast_sent_once(
    store, schedule, renderer, templates
):
    populate(store)
    b = make(store, schedule, renderer, templates)
    events = RecordedEvents()
    send_broadcast(store, schedule, b.id, NOW, events=events)
    send_broadcast(store, schedule, b.id, NOW, events=events)  # already sent: no second event
    assert events.emitted == [("broadcast.sent", {"broadcast": b.id, "recipients": 3})]
