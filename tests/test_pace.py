"""The reader's own pace, send time and zone (Your Roadmap), against a real Redis: the rules
of a change (gentle doubles the remaining gaps, standard restores them, a new hour or zone
applies from the next slot ahead), DST, pacing, and a change racing a tick."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import Sender

from course.models.subscriber import ReaderSettings
from course.progress import with_settings
from course.store.codec import encode_subscriber
from course.subscribers.lifecycle import (
    SubscriptionError,
    change_settings,
    confirm,
    enrol,
    pause,
    unsubscribe,
)
from course.subscribers.lifecycle import resume as resume_course
from course.transport import OutboxTransport

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def local(y, m, d, h=8, minute=0, tz=NY) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=tz)


@pytest.fixture
def sender(store, schedule, tmp_path):
    return Sender(store, schedule, OutboxTransport(tmp_path / "outbox"), concurrency=1)


def tick(sender: Sender, now: datetime) -> int:
    claimed = sender.tick(now).claimed
    sender.deliver(now)
    return claimed


def run_hourly(sender: Sender, start: datetime, end: datetime) -> None:
    """Ticks every hour from ``start`` to ``end``, as beat would (every minute) at this scale."""
    now = start
    while now <= end:
        tick(sender, now)
        now += timedelta(hours=1)


def sent(store, sub_id, tz=NY) -> list[tuple[str, datetime]]:
    entries = sorted(
        (e for e in store.ledger(sub_id).values() if e.state == "sent"), key=lambda e: e.at
    )
    return [(e.lesson_id, datetime.fromtimestamp(e.at, UTC).astimezone(tz)) for e in entries]


def settings(sub, **changes) -> ReaderSettings:
    current = sub.settings
    return ReaderSettings(
        changes.get("pace", current.pace),
        changes.get("send_time", current.send_time),
        changes.get("tz", current.tz),
    )


def change(store, schedule, sub_id, now, **changes):
    sub = store.get(sub_id)
    return change_settings(store, schedule, sub, settings(sub, **changes), now)


def test_gentle_doubles_the_remaining_gaps_and_standard_restores_them(sender, store, schedule):
    # The course: day 0, 2, 3, 4. Confirmed Monday 2 March.
    sub = enrol(store, schedule, "a@example.com", None, "America/New_York", local(2026, 3, 2, 14))
    run_hourly(sender, local(2026, 3, 2, 14), local(2026, 3, 4, 12))
    assert [lesson for lesson, _ in sent(store, sub.id)] == ["hello", "second"]
    # Wednesday noon, lesson day 2 came at 08:00: gentle doubles the gap to day 3 (one day
    # becomes two) and to day 4.
    changed = change(store, schedule, sub.id, local(2026, 3, 4, 12), pace="gentle")
    assert changed.pace == "gentle"
    assert store.due_score(sub.id) == local(2026, 3, 6).timestamp()
    run_hourly(sender, local(2026, 3, 4, 13), local(2026, 3, 6, 12))
    # Friday noon, after lesson day 3: back to the written gaps from here.
    change(store, schedule, sub.id, local(2026, 3, 6, 12), pace="standard")
    assert store.due_score(sub.id) == local(2026, 3, 7).timestamp()
    run_hourly(sender, local(2026, 3, 6, 13), local(2026, 3, 9, 12))
    assert sent(store, sub.id) == [
        ("hello", local(2026, 3, 2, 14)),
        ("second", local(2026, 3, 4)),  # kept: already sent
        ("third", local(2026, 3, 6)),  # 2 days after the last one instead of 1
        ("fourth", local(2026, 3, 7)),  # the written 1 day again
    ]
    assert store.get(sub.id).status == "completed"


def test_a_gentle_reader_from_the_start_gets_every_gap_doubled(sender, store, schedule):
    sub = store.add("p@example.com", None, "America/New_York", local(2026, 3, 1).timestamp())
    change(store, schedule, sub.id, local(2026, 3, 1, 9), pace="gentle")  # before confirming
    confirm(store, schedule, store.get(sub.id), local(2026, 3, 2, 14))
    run_hourly(sender, local(2026, 3, 2, 14), local(2026, 3, 11, 12))
    assert [when.date().day for _, when in sent(store, sub.id)] == [2, 6, 8, 10]


def test_back_to_standard_late_never_sends_at_once_at_night_nor_in_a_burst(sender, store, schedule):
    sub = enrol(store, schedule, "b@example.com", None, "America/New_York", local(2026, 3, 2, 14))
    run_hourly(sender, local(2026, 3, 2, 14), local(2026, 3, 4, 12))
    change(store, schedule, sub.id, local(2026, 3, 4, 12), pace="gentle")  # day 3 on the 6th
    # Thursday 22:00: the written gap would have put day 3 on Thursday 08:00 and day 4 on
    # Friday: the next lesson comes at the next slot ahead (Friday 08:00), not now.
    at = local(2026, 3, 5, 22)
    change(store, schedule, sub.id, at, pace="standard")
    assert tick(sender, at) == 0
    assert store.due_score(sub.id) == local(2026, 3, 6).timestamp()
    run_hourly(sender, at, local(2026, 3, 9, 12))
    hours = [when.hour for _, when in sent(store, sub.id)[1:]]
    days = [when.date() for _, when in sent(store, sub.id)]
    assert hours == [8, 8, 8] and len(set(days)) == len(days)  # 08:00, one a day
    assert [lesson for lesson, _ in sent(store, sub.id)] == ["hello", "second", "third", "fourth"]


def test_a_new_zone_applies_from_the_next_slot_ahead_never_at_three_in_the_morning(
    sender, store, schedule
):
    sub = enrol(store, schedule, "c@example.com", None, "America/New_York", local(2026, 3, 2, 14))
    tick(sender, local(2026, 3, 2, 14))
    # Wednesday 06:00 in New York (11:00 in London), two hours before lesson day 2: 08:00 in
    # London has passed, so it comes at 08:00 London time on Thursday, not at once.
    at = local(2026, 3, 4, 6)
    change(store, schedule, sub.id, at, tz="Europe/London")
    assert tick(sender, local(2026, 3, 4, 8)) == 0
    assert store.due_score(sub.id) == local(2026, 3, 5, tz=LONDON).timestamp()
    run_hourly(sender, at, local(2026, 3, 8, 12))
    assert [(lesson, when.hour) for lesson, when in sent(store, sub.id, LONDON)[1:]] == [
        ("second", 8),
        ("third", 8),
        ("fourth", 8),
    ]


def test_a_send_time_of_19_00_holds_across_the_march_dst_change(sender, store, schedule):
    # Clocks in New York go forward on Sunday 8 March 2026 (EST -5 to EDT -4).
    sub = enrol(store, schedule, "d@example.com", None, "America/New_York", local(2026, 3, 5, 14))
    tick(sender, local(2026, 3, 5, 14))
    change(store, schedule, sub.id, local(2026, 3, 5, 15), send_time="19:00")
    run_hourly(sender, local(2026, 3, 5, 15), local(2026, 3, 10, 23))
    got = sent(store, sub.id)[1:]
    assert [(lesson, when.strftime("%d %H:%M")) for lesson, when in got] == [
        ("second", "07 19:00"),
        ("third", "08 19:00"),
        ("fourth", "09 19:00"),
    ]
    assert [when.astimezone(UTC).hour for _, when in got] == [0, 23, 23]  # the offset moved


def test_a_zone_change_across_the_november_dst_change_keeps_the_local_hour(sender, store, schedule):
    # Clocks go back on 25 October 2026 in London and on 1 November in New York.
    sub = enrol(store, schedule, "e@example.com", None, "Europe/London", local(2026, 10, 29, 9))
    tick(sender, local(2026, 10, 29, 9))
    change(store, schedule, sub.id, local(2026, 10, 29, 10), tz="America/New_York")
    run_hourly(sender, local(2026, 10, 29, 10), local(2026, 11, 3, 12))
    got = sent(store, sub.id)[1:]
    assert [(lesson, when.strftime("%m-%d %H:%M")) for lesson, when in got] == [
        ("second", "10-31 08:00"),
        ("third", "11-01 08:00"),
        ("fourth", "11-02 08:00"),
    ]
    assert [when.astimezone(UTC).hour for _, when in got] == [12, 13, 13]


def test_a_paused_reader_can_change_and_resume_shifts_by_the_pause_after_it(
    sender, store, schedule
):
    sub = enrol(store, schedule, "f@example.com", None, "America/New_York", local(2026, 3, 2, 14))
    run_hourly(sender, local(2026, 3, 2, 14), local(2026, 3, 4, 12))
    pause(store, store.get(sub.id), local(2026, 3, 4, 12))
    change(store, schedule, sub.id, local(2026, 3, 5, 12), pace="gentle")
    assert store.due_score(sub.id) is None  # still paused: nothing comes by itself
    # Paused a day before the change and two days after: three days later than gentle's
    # Friday 6th.
    resume_course(store, schedule, store.get(sub.id), local(2026, 3, 7, 12))
    assert store.due_score(sub.id) == local(2026, 3, 9).timestamp()


def test_nothing_changes_for_a_reader_who_left(store, schedule):
    sub = enrol(store, schedule, "g@example.com", None, None, local(2026, 3, 2, 14))
    unsubscribe(store, sub)
    with pytest.raises(SubscriptionError, match="left"):
        change(store, schedule, sub.id, local(2026, 3, 3), pace="gentle")
    assert store.get(sub.id).pace == "standard"


def test_unset_settings_cost_nothing_and_a_record_without_them_reads_as_standard(
    store, schedule, redis_client
):
    sub = enrol(store, schedule, "h@example.com", None, None, local(2026, 3, 2, 14))
    fields = set(redis_client.hkeys(store.sub_key(sub.id)))
    assert not fields & {"pc", "st", "a", "ad", "ap"}  # pace, send_time, anchor...
    assert (sub.pace, sub.send_time, sub.anchor) == ("standard", None, None)
    change(store, schedule, sub.id, local(2026, 3, 2, 15), pace="gentle", send_time="19:00")
    assert {"pc", "st"} <= set(redis_client.hkeys(store.sub_key(sub.id)))  # pace, send_time
    back = change(store, schedule, sub.id, local(2026, 3, 2, 16), pace="standard", send_time=None)
    assert back.pace == "standard" and back.send_time is None
    stored = redis_client.hgetall(store.sub_key(sub.id))
    assert "pc" not in stored and "st" not in stored
    assert encode_subscriber(back).keys() == stored.keys()


def test_the_same_settings_again_change_nothing(store, schedule):
    sub = enrol(store, schedule, "i@example.com", None, None, local(2026, 3, 2, 14))
    once = change(store, schedule, sub.id, local(2026, 3, 2, 15), pace="gentle")
    again = change(store, schedule, sub.id, local(2026, 3, 3, 15), pace="gentle")
    assert again.version == once.version
    assert with_settings(schedule, once, set(), local(2026, 3, 4), once.settings) is once


def test_a_change_racing_a_claim_reads_again_and_keeps_the_change(sender, store, schedule):
    sub = enrol(store, schedule, "j@example.com", None, None, local(2026, 3, 2, 14))
    tick(sender, local(2026, 3, 2, 14))
    stale = store.get(sub.id)  # read by the page before the tick below claims lesson day 2
    assert tick(sender, local(2026, 3, 4, 8)) == 1
    changed = change_settings(
        store, schedule, stale, settings(stale, pace="gentle"), local(2026, 3, 4, 8, 1)
    )
    assert changed.pace == "gentle" and changed.last_lesson == "second"
    assert store.due_score(sub.id) == local(2026, 3, 6).timestamp()  # from day 2, doubled


def test_a_tick_racing_a_change_plans_again_with_the_new_settings(sender, store, schedule):
    sub = enrol(store, schedule, "k@example.com", None, None, local(2026, 3, 2, 14))
    tick(sender, local(2026, 3, 2, 14))
    original = store.get_many

    def read_then_change(ids):
        found = original(ids)  # the tick has read the record: now the reader moves to 19:00
        store.get_many = original
        change(store, schedule, sub.id, local(2026, 3, 4, 8), send_time="19:00")
        return found

    store.get_many = read_then_change
    assert sender.tick(local(2026, 3, 4, 8)).claimed == 0  # its claim was refused, replanned
    assert store.due_score(sub.id) == local(2026, 3, 4, 19).timestamp()
    assert tick(sender, local(2026, 3, 4, 19)) == 1


def test_changes_racing_ticks_send_nothing_twice_and_lose_no_change(store, schedule, tmp_path):
    start = local(2026, 3, 2, 14)
    subs = [enrol(store, schedule, f"r{i}@example.com", None, None, start) for i in range(40)]
    senders = [
        Sender(store, schedule, OutboxTransport(tmp_path / "outbox"), concurrency=1)
        for _ in range(3)
    ]
    senders[0].tick(start)
    senders[0].deliver(start)
    at = local(2026, 3, 4, 8)
    barrier = threading.Barrier(len(senders) + 1)
    errors: list[Exception] = []

    def ticks(s):
        barrier.wait()
        s.tick(at)

    def changes():
        barrier.wait()
        for sub in subs:
            try:
                change(store, schedule, sub.id, at, pace="gentle", send_time="09:30")
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=ticks, args=(s,)) for s in senders]
    threads.append(threading.Thread(target=changes))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    handed = [item for s in senders for batch in s.batches for item in batch]
    assert len(handed) == len(set(handed))  # each (subscriber, lesson) claimed once
    for s in senders:
        s.deliver(at)
    for sub in subs:
        now = store.get(sub.id)
        assert (now.pace, now.send_time) == ("gentle", "09:30")  # no change lost
        ledger = store.ledger(sub.id)
        # Whoever won, what is due next follows the new settings from the last one claimed.
        anchor = {"second": local(2026, 3, 4), "hello": local(2026, 3, 2)}[now.last_lesson]
        gap = {"second": 2, "hello": 4}[now.last_lesson]
        expected = datetime.combine(anchor.date() + timedelta(days=gap), datetime.min.time())
        assert store.due_score(sub.id) == expected.replace(hour=9, minute=30, tzinfo=NY).timestamp()
        assert sum(1 for e in ledger.values() if e.state == "sent") == len(ledger)
    outbox = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(outbox) == sum(len(store.ledger(s.id)) for s in subs)
