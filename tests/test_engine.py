"""The engine against a real Redis: claims, ticks, deliveries, pauses and failures."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest

from course import engine
from course.engine.tick import _plan
from course.mail.render import Renderer
from course.runtime import ScheduleHolder
from course.store import DuplicateSubscriber, Store
from course.subscribers.lifecycle import enrol, pause, resume, unsubscribe
from course.testing.sendgrid_standin import Reply, SendGridStandIn
from course.tokens import subscriber_links
from course.transport import OutboxTransport, SendGridTransport

NY = ZoneInfo("America/New_York")


def local(y, m, d, h=8, minute=0, tz=NY) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=tz)


class Harness:
    """Ticks and delivers in this process, recording what each tick handed out."""

    def __init__(self, store: Store, schedule, transport):
        self.store = store
        self.schedule = schedule
        self.renderer = Renderer(schedule)
        self.transport = transport
        self.queued: list[tuple[list, datetime]] = []

    def links(self, sub_id):
        return subscriber_links("https://course.example", "secret", sub_id)

    def enqueue(self, items, now):
        self.queued.append((items, now))

    def tick(self, now: datetime, deliver: bool = True) -> engine.TickResult:
        result = engine.tick(self.store, self.schedule, now, self.enqueue)
        if deliver:
            self.deliver_queued()
        return result

    def deliver_queued(self) -> engine.DeliverResult:
        total = engine.DeliverResult()
        queued, self.queued = self.queued, []
        for items, now in queued:
            outcome = engine.deliver(
                self.store, self.renderer, self.transport, items, now, self.links
            )
            total.sent += outcome.sent
            total.failed += outcome.failed
            total.retrying += outcome.retrying
            total.skipped += outcome.skipped
        return total

    def sent(self, sub_id) -> list[tuple[str, datetime]]:
        entries = [e for e in self.store.ledger(sub_id).values() if e.state == "sent"]
        number = {lesson.id: lesson.number for lesson in self.schedule.lessons}
        return [  # two sends in one instant (two a day) are listed in course order
            (e.lesson_id, datetime.fromtimestamp(e.at, UTC).astimezone(NY))
            for e in sorted(entries, key=lambda e: (e.at, number.get(e.lesson_id, 0)))
        ]


@pytest.fixture
def outbox(tmp_path):
    return OutboxTransport(tmp_path / "outbox")


@pytest.fixture
def harness(store, schedule, outbox):
    return Harness(store, schedule, outbox)


def test_day_zero_lesson_is_due_at_confirmation_and_sent_by_the_next_tick(harness, store, schedule):
    start = local(2026, 3, 2, 14, 30)
    sub = enrol(store, schedule, "a@example.com", "Ann", "America/New_York", start)
    assert store.due_score(sub.id) == start.timestamp()
    result = harness.tick(start)
    assert result.claimed == 1
    assert harness.sent(sub.id) == [("hello", start)]
    emails = list((harness.transport.directory).glob("*.eml"))
    assert len(emails) == 1
    raw = emails[0].read_bytes()
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["List-Unsubscribe"].startswith("<https://course.example/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Written raw on one line (about 100 columns), as mailbox providers read it: not folded
    # into an RFC 2047 encoded-word, which they would not decode.
    header = f"List-Unsubscribe: {msg['List-Unsubscribe']}"
    assert len(header) > 78 and header in raw.decode("ascii").splitlines()


def test_whole_course_arrives_in_order_at_the_send_hour(harness, store, schedule):
    start = local(2026, 3, 2, 14, 30)
    sub = enrol(store, schedule, "a@example.com", None, "America/New_York", start)
    now = start
    for _ in range(20):
        due = store.next_due()
        if due is None:
            break
        now = datetime.fromtimestamp(due, UTC)
        harness.tick(now)
    assert harness.sent(sub.id) == [
        ("hello", start),
        ("second", local(2026, 3, 4)),
        ("third", local(2026, 3, 5)),
        ("fourth", local(2026, 3, 6)),
    ]
    assert store.get(sub.id).status == "completed"
    assert store.next_due() is None


def test_the_same_tick_twice_changes_nothing(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    assert harness.tick(start).claimed == 1
    again = harness.tick(start)
    assert again.claimed == 0 and again.batches == 0
    assert [lesson for lesson, _ in harness.sent(sub.id)] == ["hello"]


def test_a_tick_reads_only_what_is_due(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    for i in range(30):
        enrol(store, schedule, f"later{i}@example.com", None, None, start + timedelta(days=1))
    enrol(store, schedule, "now@example.com", None, None, start)
    seen = []
    original = store.get_many
    store.get_many = lambda ids: seen.extend(ids) or original(ids)
    assert harness.tick(start).claimed == 1
    assert len(seen) == 1


def test_two_ticks_racing_claim_each_lesson_once(store, schedule, outbox):
    start = local(2026, 3, 2, 9)
    subs = [enrol(store, schedule, f"r{i}@example.com", None, None, start) for i in range(200)]
    harnesses = [Harness(store, schedule, outbox) for _ in range(4)]
    barrier = threading.Barrier(len(harnesses))

    def run(h):
        barrier.wait()
        h.tick(start, deliver=False)

    threads = [threading.Thread(target=run, args=(h,)) for h in harnesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [item for h in harnesses for items, _ in h.queued for item in items]
    assert sorted(handed) == sorted((s.id, "hello") for s in subs)
    # Two workers given the same batches: each email still goes out once.
    batches = [batch for h in harnesses for batch in h.queued]
    first, second = harnesses[0], harnesses[1]
    first.queued, second.queued = list(batches), list(batches)
    workers = [threading.Thread(target=h.deliver_queued) for h in (first, second)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert len(list(outbox.directory.glob("*.eml"))) == 200


def test_a_redelivered_batch_sends_nothing_twice(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    subs = [enrol(store, schedule, f"x{i}@example.com", None, None, start) for i in range(5)]
    harness.tick(start, deliver=False)
    batch = list(harness.queued)
    harness.deliver_queued()
    harness.queued = batch  # the broker hands the same message out again
    again = harness.deliver_queued()
    assert again.sent == 0 and again.skipped == 5
    assert len(list(harness.transport.directory.glob("*.eml"))) == len(subs)


def test_catch_up_after_three_days_down_is_one_a_day_in_order(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    # Down from before lesson 2 (due Mar 4) until Mar 7 noon: three lessons overdue.
    back = local(2026, 3, 7, 12)
    assert harness.tick(back).claimed == 1
    assert harness.tick(back + timedelta(minutes=1)).claimed == 0
    for day in (8, 9):
        harness.tick(local(2026, 3, day))
    assert harness.sent(sub.id) == [
        ("hello", start),
        ("second", back),
        ("third", local(2026, 3, 8)),
        ("fourth", local(2026, 3, 9)),
    ]


def test_unsubscribe_between_tick_and_send_sends_nothing(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start, deliver=False)
    assert harness.queued
    unsubscribe(store, store.get(sub.id))
    result = harness.deliver_queued()
    assert result.sent == 0 and result.skipped == 1
    assert list(harness.transport.directory.glob("*.eml")) == []
    assert store.ledger(sub.id)["hello"].state == "skipped"
    assert harness.tick(start + timedelta(days=5)).claimed == 0


def test_pause_stops_the_clock_and_resume_shifts_what_is_left(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    paused = pause(store, store.get(sub.id), local(2026, 3, 3, 12))
    assert store.due_score(sub.id) is None
    assert harness.tick(local(2026, 3, 10)).claimed == 0
    resume(store, schedule, store.get(paused.id), local(2026, 3, 10, 12))
    # Seven days paused: lesson 2 (Mar 4 08:00) moves to Mar 11 08:00.
    assert store.due_score(sub.id) == local(2026, 3, 11).timestamp()


def test_a_timed_pause_resumes_by_itself(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    pause(store, store.get(sub.id), local(2026, 3, 3, 8), until=local(2026, 3, 10, 8))
    harness.tick(local(2026, 3, 10, 8))
    assert store.get(sub.id).status == "active"
    assert store.due_score(sub.id) == local(2026, 3, 11).timestamp()


def test_a_send_whose_worker_died_becomes_uncertain_and_is_never_resent(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start, deliver=False)
    # The worker took the entry to "sending", then was killed before reporting.
    assert store.start_send(sub.id, "hello", start.timestamp(), start.timestamp() + 900) == 1
    later = start + timedelta(seconds=engine.STALE_AFTER + 1)
    result = harness.tick(later)
    assert result.uncertain == 1
    assert store.ledger(sub.id)["hello"].state == "uncertain"
    harness.queued = [([(sub.id, "hello")], later)]
    assert harness.deliver_queued().sent == 0
    assert list(harness.transport.directory.glob("*.eml")) == []


def test_a_claim_whose_message_was_lost_is_handed_out_again(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start, deliver=False)
    harness.queued = []  # the broker lost the message before any worker saw it
    later = start + timedelta(seconds=engine.STALE_AFTER + 1)
    assert harness.tick(later).redispatched == 1
    assert [lesson for lesson, _ in harness.sent(sub.id)] == ["hello"]


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def sendgrid(store, schedule, standin):
    transport = SendGridTransport("SG.test", host=standin.url, timeout=2.0)
    yield Harness(store, schedule, transport)
    transport.close()


@pytest.fixture
def sendgrid_one_by_one(store, schedule, standin):
    """SendGrid with one request per email (COURSE_SENDGRID_BATCH=1)."""
    transport = SendGridTransport("SG.test", host=standin.url, timeout=2.0, max_group=1)
    yield Harness(store, schedule, transport)
    transport.close()


def test_a_429_then_a_202_sends_once_after_the_reset(store, schedule, standin, sendgrid):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    h = sendgrid
    standin.enqueue(Reply(status=429, reset_in=120.0))
    h.tick(start)
    entry = store.ledger(sub.id)["hello"]
    assert entry.state == "retry"
    assert len(standin.accepted) == 0
    assert h.tick(start + timedelta(seconds=60)).redispatched == 0  # before the reset
    h.tick(start + timedelta(seconds=125))
    assert store.ledger(sub.id)["hello"].state == "sent"
    assert len(standin.accepted) == 1
    assert standin.accepted[0]["personalizations"][0]["custom_args"] == {
        "subscriber_id": sub.id,
        "lesson_id": "hello",
    }


def test_a_400_is_recorded_as_failed_and_not_retried(store, schedule, standin, sendgrid):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    h = sendgrid
    standin.enqueue(Reply(status=400))
    h.tick(start)
    entry = store.ledger(sub.id)["hello"]
    assert entry.state == "failed" and entry.detail
    assert h.tick(start + timedelta(hours=2)).redispatched == 0
    assert standin.requests_seen == 1


def test_server_errors_are_retried_with_backoff_then_given_up(store, schedule, standin, sendgrid):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    h = sendgrid
    for _ in range(engine.MAX_ATTEMPTS):
        standin.enqueue(Reply(status=500))
    now = start
    h.tick(now)
    for _ in range(engine.MAX_ATTEMPTS - 1):
        now += timedelta(seconds=engine.BACKOFF_CAP + 1)
        h.tick(now)
    entry = store.ledger(sub.id)["hello"]
    assert entry.state == "failed" and entry.attempt == engine.MAX_ATTEMPTS
    assert standin.requests_seen == engine.MAX_ATTEMPTS


def test_send_stats_count_each_outcome_once_per_entry(
    store, schedule, standin, sendgrid_one_by_one
):
    sendgrid = sendgrid_one_by_one
    start = local(2026, 3, 2, 9)
    a = enrol(store, schedule, "a@example.com", None, None, start)
    enrol(store, schedule, "b@example.com", None, None, start)
    standin.enqueue(Reply(status=500), Reply(status=400))
    sendgrid.tick(start)  # one retries, the other fails for good
    assert store.send_stats("hello") == {"retried": 1, "failed": 1}
    sendgrid.tick(start + timedelta(seconds=engine.BACKOFF_CAP + 1))
    assert store.send_stats("hello") == {"retried": 1, "failed": 1, "sent": 1}
    sendgrid.tick(start + timedelta(seconds=engine.BACKOFF_CAP + 1))  # nothing due: no change
    assert store.send_stats("hello") == {"retried": 1, "failed": 1, "sent": 1}
    assert store.send_stats("second") == {}
    entry = store.ledger(a.id)["hello"]
    assert entry.state in ("sent", "failed")


def test_an_uncertain_send_settled_later_moves_between_counts(store, schedule, standin):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    transport = SendGridTransport("SG.test", host=standin.url, timeout=0.3)
    standin.enqueue(Reply(hang=True))
    try:
        Harness(store, schedule, transport).tick(start)
    finally:
        transport.close()
    assert store.send_stats("hello") == {"uncertain": 1}
    assert store.resolve_uncertain(sub.id, "hello", "sent", "sg-1", start.timestamp())
    assert store.send_stats("hello") == {"uncertain": 0, "sent": 1}


def test_an_unsubscribe_before_the_send_counts_as_skipped(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start, deliver=False)
    unsubscribe(store, sub)
    harness.deliver_queued()
    assert store.send_stats("hello") == {"skipped": 1}


def test_an_invalid_schedule_loaded_while_running_keeps_the_last_valid_one(course_path):
    holder = ScheduleHolder(course_path)
    valid, _ = holder.current()
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    schedule, renderer = holder.current()
    assert schedule is valid
    assert holder.error and "day" in holder.error
    assert renderer.compiled("second").lesson.day == 2  # the last valid compiled lessons
    course_path.write_text(course_path.read_text().replace("day: -2", "day: 1"))
    schedule, _ = holder.current()
    assert holder.error is None and schedule.lesson("second").day == 1


def test_a_send_that_gets_no_answer_is_uncertain_and_never_resent(store, schedule, standin):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    transport = SendGridTransport("SG.test", host=standin.url, timeout=0.3)
    h = Harness(store, schedule, transport)
    standin.enqueue(Reply(hang=True))
    try:
        h.tick(start)
        entry = store.ledger(sub.id)["hello"]
        assert entry.state == "uncertain" and "no answer" in entry.detail
        h.tick(start + timedelta(hours=3))
    finally:
        transport.close()
    assert standin.requests_seen == 1
    assert store.ledger(sub.id)["hello"].state == "uncertain"
    assert store.pending_count() == 0


def test_claim_refuses_when_the_subscriber_unsubscribed_after_the_tick_read_them(store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    stale, done = store.get_many([sub.id])[0]
    claim = _plan(store, schedule, start, sub.id, stale, done, engine.TickResult())
    unsubscribe(store, store.get(sub.id))
    assert store.claim_many([claim]) == [0]
    assert store.ledger(sub.id) == {}


def test_claim_refuses_when_the_subscriber_changed_after_the_tick_read_them(store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    stale, done = store.get_many([sub.id])[0]
    claim = _plan(store, schedule, start, sub.id, stale, done, engine.TickResult())
    paused = pause(store, store.get(sub.id), start)
    resume(store, schedule, paused, start + timedelta(days=3))  # active again, but moved
    assert store.claim_many([claim]) == [-1]
    assert store.ledger(sub.id) == {}


def test_a_timed_pause_set_after_the_tick_read_the_due_index_is_kept(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    until = local(2026, 3, 12, 9)
    pause(store, store.get(sub.id), local(2026, 3, 3, 9), until=until)
    # The tick had read the due index just before the pause moved the entry.
    store.redis.zadd(store.due_key(sub.id), {sub.id: local(2026, 3, 4).timestamp()})
    harness.tick(local(2026, 3, 4))
    assert store.get(sub.id).status == "paused"
    assert store.due_score(sub.id) == until.timestamp()


def test_a_late_tick_ends_a_timed_pause_at_its_end_not_at_the_tick(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    pause(store, store.get(sub.id), local(2026, 3, 3, 8), until=local(2026, 3, 5, 8))
    harness.tick(local(2026, 3, 7, 8), deliver=False)  # ticks were down for two days
    resumed = store.get(sub.id)
    assert resumed.status == "active"
    assert resumed.paused == 2 * 86400
    # Lesson 2 (Mar 4 08:00) moves by the two days paused, not four: Mar 6, now overdue.
    assert [lesson for lesson, _ in harness.sent(sub.id)] == ["hello"]


def test_two_pauses_add_up(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    s = pause(store, store.get(sub.id), local(2026, 3, 2, 12))
    s = resume(store, schedule, s, local(2026, 3, 4, 12))
    s = pause(store, s, local(2026, 3, 4, 13))
    s = resume(store, schedule, s, local(2026, 3, 7, 13))
    assert s.paused == 5 * 86400
    assert store.due_score(sub.id) == local(2026, 3, 9).timestamp()


def test_a_retry_waits_for_its_backoff(store, schedule, standin, sendgrid):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    standin.enqueue(Reply(status=500))
    sendgrid.tick(start)
    assert store.ledger(sub.id)["hello"].state == "retry"
    assert sendgrid.tick(start + timedelta(seconds=engine.BACKOFF_BASE - 5)).redispatched == 0
    assert sendgrid.tick(start + timedelta(seconds=engine.BACKOFF_BASE + 1)).redispatched == 1
    assert store.ledger(sub.id)["hello"].state == "sent"
    assert standin.requests_seen == 2


def test_a_429_holds_back_the_rest_of_the_batch_until_the_reset(
    store, schedule, standin, sendgrid_one_by_one
):
    sendgrid = sendgrid_one_by_one
    start = local(2026, 3, 2, 9)
    subs = [enrol(store, schedule, f"b{i}@example.com", None, None, start) for i in range(3)]
    standin.enqueue(Reply(status=429, reset_in=300.0))
    sendgrid.tick(start)
    assert standin.requests_seen == 1  # the other two were not thrown at a rate limit
    assert sendgrid.tick(start + timedelta(seconds=200)).redispatched == 0
    sendgrid.tick(start + timedelta(seconds=310))
    assert [store.ledger(s.id)["hello"].state for s in subs] == ["sent"] * 3
    assert standin.requests_seen == 4


def test_an_overdue_lesson_waits_for_a_sensible_hour(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start)
    night = local(2026, 3, 6, 3)  # back from downtime at 03:00 local
    assert harness.tick(night).claimed == 0
    assert store.due_score(sub.id) == local(2026, 3, 6, 8).timestamp()
    harness.tick(local(2026, 3, 6, 8))
    assert harness.sent(sub.id)[-1] == ("second", local(2026, 3, 6, 8))


@pytest.fixture
def two_a_day(tmp_path, store):
    """The small course allowing two a day, with lessons 2 and 3 both on day 2."""
    from conftest import SMALL_SCHEDULE, write_course

    from course.schedule import load_schedule

    text = SMALL_SCHEDULE.replace("max_lessons_per_day: 1", "max_lessons_per_day: 2")
    text = text.replace("id: third, day: 3", "id: third, day: 2")
    two = load_schedule(write_course(tmp_path / "two", text))
    return Harness(store, two, OutboxTransport(tmp_path / "out"))


def test_with_two_a_day_the_second_waits_for_the_first_to_be_sent(two_a_day, store):
    h = two_a_day
    start = local(2026, 3, 2, 9)
    sub = enrol(store, h.schedule, "a@example.com", None, None, start)
    h.tick(start)
    day2 = local(2026, 3, 4)
    assert h.tick(day2, deliver=False).claimed == 1  # never two on their way at once
    assert h.tick(day2, deliver=False).claimed == 0
    h.deliver_queued()
    assert h.tick(day2).claimed == 1  # the second of the day, once the first was sent
    assert h.tick(day2).claimed == 0
    assert h.sent(sub.id) == [("hello", start), ("second", day2), ("third", day2)]


def test_with_two_a_day_catching_up_is_still_one_a_day(two_a_day, store):
    h = two_a_day
    start = local(2026, 3, 2, 9)
    sub = enrol(store, h.schedule, "a@example.com", None, None, start)
    h.tick(start)
    back = local(2026, 3, 9, 10)  # down for days: three lessons overdue
    assert h.tick(back).claimed == 1
    assert h.tick(back).claimed == 0
    h.tick(local(2026, 3, 10))
    h.tick(local(2026, 3, 11))
    assert [when for _, when in h.sent(sub.id)] == [
        start,
        back,
        local(2026, 3, 10),
        local(2026, 3, 11),
    ]


def test_a_lesson_in_retry_holds_back_the_next_one(store, schedule, standin, sendgrid):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    sendgrid.tick(start)
    for _ in range(engine.MAX_ATTEMPTS):
        standin.enqueue(Reply(status=503))
    sendgrid.tick(local(2026, 3, 4))  # lesson 2 fails and waits for a retry
    assert store.ledger(sub.id)["second"].state == "retry"
    standin.clear()
    assert sendgrid.tick(local(2026, 3, 5), deliver=False).claimed == 0  # lesson 3 waits
    assert "third" not in store.ledger(sub.id)


def test_a_damaged_subscriber_is_quarantined_and_the_others_still_get_lessons(
    harness, store, schedule
):
    start = local(2026, 3, 2, 9)
    broken = enrol(store, schedule, "broken@example.com", None, None, start)
    fine = enrol(store, schedule, "fine@example.com", None, None, start)
    store.redis.hset(store.sub_key(broken.id), "z", "Not/AZone")  # tz
    result = harness.tick(start)
    assert result.claimed == 1
    assert harness.sent(fine.id) == [("hello", start)]
    assert broken.id in store.quarantined()
    assert store.due_score(broken.id) is None
    # Repaired by an operator and released: the next tick sends it.
    store.redis.hset(store.sub_key(broken.id), "z", "America/New_York")
    assert store.release(broken.id, start.timestamp())
    assert harness.tick(start + timedelta(minutes=1)).claimed == 1
    assert store.quarantined() == {}


def test_a_record_without_a_version_is_claimed_not_looped_on(harness, store, schedule):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    store.redis.hdel(store.sub_key(sub.id), "v")
    assert harness.tick(start).claimed == 1


def test_an_unsubscribed_address_can_sign_up_again_as_a_new_record(store, schedule):
    start = local(2026, 3, 2, 9)
    first = enrol(store, schedule, "a@example.com", None, None, start)
    unsubscribe(store, first)
    again = enrol(store, schedule, "a@example.com", "Ann", None, start + timedelta(days=30))
    assert again.id != first.id
    assert store.find("a@example.com").id == again.id
    assert store.get(first.id).status == "unsubscribed"
    with pytest.raises(DuplicateSubscriber):
        enrol(store, schedule, "a@example.com", None, None, start + timedelta(days=31))
    # The unsubscribe link of an email sent to the old record stops the new one too.
    unsubscribe(store, store.get(first.id))
    assert store.get(again.id).status == "unsubscribed"


def test_a_worker_without_the_claimed_lesson_retries_it_instead_of_dropping_it(
    tmp_path, harness, store, schedule
):
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    harness.tick(start, deliver=False)
    from conftest import SMALL_SCHEDULE, write_course

    from course.schedule import load_schedule

    older = load_schedule(
        write_course(tmp_path / "older", SMALL_SCHEDULE.replace("id: hello", "id: hi"))
    )
    harness.renderer = Renderer(older)  # a worker still on the previous schedule
    assert harness.deliver_queued().retrying == 1
    assert store.ledger(sub.id)["hello"].state == "retry"


def test_a_process_started_on_a_broken_file_runs_the_live_version(tmp_path, course_path, store):
    versions = store.schedule_versions()
    (course_path.parent / "templates" / "logo.png").write_bytes(b"\x89PNG\x00\xff")
    first = ScheduleHolder(course_path, versions=versions)  # the first start publishes
    assert versions.live() == first.version
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    restarted = ScheduleHolder(course_path, versions=versions)
    assert restarted.version == first.version and restarted.error is None
    assert restarted.schedule.lesson("second").day == 2
    assert "hello" in restarted.renderer.lesson_ids


def test_a_broken_file_on_an_empty_store_fails_loudly(tmp_path, course_path, store):
    from course.schedule import ScheduleError

    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    with pytest.raises(ScheduleError):
        ScheduleHolder(course_path, versions=store.schedule_versions())
    assert store.schedule_versions().live() is None  # an invalid course never goes live


def test_a_store_from_before_versions_adopts_its_kept_snapshot_when_the_file_is_broken(
    tmp_path, course_path, store
):
    from course.schedule.bundle import course_files, read_files
    from course.schedule.load import load_schedule

    kept = read_files(course_files(load_schedule(course_path)))
    store.redis.hset(store.snapshot_key, mapping=kept)  # as the old ScheduleSnapshot kept it
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    holder = ScheduleHolder(course_path, versions=store.schedule_versions(),
                            legacy=store.legacy_snapshot)  # fmt: skip
    assert holder.schedule.lesson("second").day == 2
    assert store.schedule_versions().live_since().kind == "first-start"


def test_a_redis_restart_between_claim_and_send_loses_nothing_and_sends_once(tmp_path, course_path):
    import redis as redis_lib

    from course.schedule import load_schedule
    from course.store.embedded import ensure_embedded_redis, stop_embedded_redis

    var = tmp_path / "own-redis"
    schedule = load_schedule(course_path)
    try:
        client = redis_lib.Redis.from_url(ensure_embedded_redis(var), decode_responses=True)
        store = Store(client)
        h = Harness(store, schedule, OutboxTransport(tmp_path / "out"))
        start = local(2026, 3, 2, 9)
        subs = [enrol(store, schedule, f"r{i}@example.com", None, None, start) for i in range(5)]
        h.tick(start, deliver=False)
        stop_embedded_redis(var)  # a clean restart: the AOF holds every claim
        ensure_embedded_redis(var)
        assert h.deliver_queued().sent == 5
        assert h.tick(start).claimed == 0
        h.deliver_queued()
        assert all(store.ledger(s.id)["hello"].state == "sent" for s in subs)
        assert len(list((tmp_path / "out").glob("*.eml"))) == 5
        client.close()
    finally:
        stop_embedded_redis(var)


def test_a_start_send_run_again_by_a_retrying_client_gets_its_attempt_back(
    harness, store, schedule
):
    # redis-py may send a command again when the answer was lost; the script then finds the
    # entry already sending under this call's token and must not refuse it as someone else's.
    start = local(2026, 3, 2, 9)
    sub = enrol(store, schedule, "a@example.com", None, None, start)
    assert harness.tick(start, deliver=False).claimed == 1
    ts = start.timestamp()
    call = store._start_send_call(sub.id, "hello", ts, ts + 900)
    assert store._start_send(**call) == 1
    assert store._start_send(**call) == 1  # the same call again: still this sender's
    assert store.start_send(sub.id, "hello", ts, ts + 900) == -2  # anyone else: refused
    assert store.entry(sub.id, "hello").state == "sending"
