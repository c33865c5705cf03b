"""Settling uncertain sends: re-sent once when a later send's event came and none for it
within the settling window; settled as sent by its own event, however late; never re-sent
without webhook events; unsubscribe wins; a group's members settle on their own events."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from course import engine
from course.mail.render import Renderer
from course.store import Store
from course.subscribers.lifecycle import enrol, unsubscribe
from course.subscribers.privacy import erase
from course.testing.sendgrid_standin import Reply, SendGridStandIn
from course.tokens import subscriber_links
from course.transport import SendGridTransport
from course.web.webhook import handle_events

WINDOW = 1800.0
NY = ZoneInfo("America/New_York")


def local(y, m, d, h=8, minute=0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=NY)


class Loop:
    """Ticks (with the settling on) and deliveries through the SendGrid stand-in, and the
    provider's events handed to the webhook's own handler."""

    def __init__(self, store: Store, schedule, standin: SendGridStandIn, max_group: int = 1):
        self.store, self.schedule, self.standin = store, schedule, standin
        self.renderer = Renderer(schedule)
        self.transport = SendGridTransport(
            "SG.test", host=standin.url, timeout=0.3, max_group=max_group
        )
        self.queued: list[tuple[list, datetime]] = []
        self.n = 0

    def tick(self, now: datetime, window: float | None = WINDOW) -> engine.TickResult:
        """A tick, and the deliveries it queued, done at once."""
        result = self.claim(now, window)
        self.deliver_queued()
        return result

    def claim(self, now: datetime, window: float | None = WINDOW) -> engine.TickResult:
        """A tick whose deliveries wait in ``queued`` (a worker has not started them yet)."""
        return engine.tick(self.store, self.schedule, now, self.queue, settle_window=window)

    def deliver_queued(self) -> list:
        """What a worker does with the queued deliveries: their results."""
        queued, self.queued = self.queued, []
        return [
            engine.deliver(self.store, self.renderer, self.transport, items, when, self.links)
            for items, when in queued
        ]

    def queue(self, items, now) -> None:
        self.queued.append((items, now))

    def links(self, sub_id):
        return subscriber_links("https://course.example", "secret", sub_id)

    def event(self, name: str, sub, lesson: str, now: datetime, message_id: str = "") -> None:
        self.n += 1
        if not message_id:
            entry = self.store.entry(sub.id, lesson)
            message_id = entry.detail if entry and entry.state == "sent" else "lost"
        raw = {"event": name, "email": sub.email, "subscriber_id": sub.id,
               "lesson_id": lesson, "sg_event_id": f"ev-{self.n}",
               "sg_message_id": f"{message_id}.filter0-1"}  # fmt: skip
        handle_events(self.store, self.schedule, [raw], now.timestamp())

    def sends_to(self, sub) -> int:
        return sum(
            1 for p in self.standin.accepted for pers in p["personalizations"]
            if pers["to"][0]["email"] == sub.email
        )  # fmt: skip

    def close(self) -> None:
        self.transport.close()


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def loop(store, schedule, standin):
    running = Loop(store, schedule, standin)
    yield running
    running.close()


def one_lost_one_sent(loop: Loop, store, schedule, start: datetime):
    """``a``'s first lesson hangs at the provider (uncertain); ``b``'s goes a minute later."""
    a = enrol(store, schedule, "a@example.com", None, None, start)
    loop.standin.enqueue(Reply(hang=True))
    loop.tick(start)
    assert store.entry(a.id, "hello").state == "uncertain"
    later = start + timedelta(minutes=1)
    b = enrol(store, schedule, "b@example.com", None, None, later)
    loop.tick(later)
    assert store.entry(b.id, "hello").state == "sent"
    return a, b, later


def test_uncertain_with_later_events_and_none_for_it_is_resent_exactly_once(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later + timedelta(seconds=5))
    armed = later + timedelta(minutes=1)
    assert loop.tick(armed).resent == 0  # the proof is recorded, the window starts
    proof = store.settle_proof(a.id, "hello")
    assert proof.startswith("armed|") and f"{b.id}|hello" in proof
    assert loop.tick(armed + timedelta(seconds=WINDOW - 1)).resent == 0
    assert loop.tick(armed + timedelta(seconds=WINDOW)).resent == 1
    entry = store.entry(a.id, "hello")
    assert entry.state == "sent"
    assert store.settle_proof(a.id, "hello").startswith("resent|")
    # the first send's event, after the re-send went: counted (a duplicate the window could
    # not prevent), never a third send
    loop.event("processed", a, "hello", armed + timedelta(seconds=WINDOW + 60), "sg-first")
    assert store.webhook_stats()["late_after_resend"] == 1
    for hours in (1, 2, 30):  # later ticks, later events for others: never a third
        loop.event("delivered", b, "hello", armed + timedelta(hours=hours))
        loop.tick(armed + timedelta(hours=hours))
    assert loop.sends_to(a) == 1 and loop.standin.requests_seen == 3  # a (hung), b, a again
    assert store.send_stats("hello") == {"sent": 2, "uncertain": 0, "resent": 1}


def test_a_resend_lost_again_is_settled_by_the_same_rule(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    now = later + timedelta(minutes=1)
    loop.tick(now)
    loop.standin.enqueue(Reply(hang=True))  # the re-send is lost too
    now += timedelta(seconds=WINDOW)
    assert loop.tick(now).resent == 1
    assert store.entry(a.id, "hello").state == "uncertain"
    assert store.settle_proof(a.id, "hello").startswith("resent|1|")
    # armed again only by an event for a send later than the re-send
    assert loop.tick(now + timedelta(hours=2)).resent == 0
    assert store.settle_proof(a.id, "hello").startswith("resent|1|")
    now += timedelta(hours=3)
    c = enrol(store, schedule, "c@example.com", None, None, now)
    loop.tick(now)
    loop.event("processed", c, "hello", now)
    now += timedelta(minutes=2)
    loop.tick(now)
    assert store.settle_proof(a.id, "hello").startswith("armed|1|")
    assert loop.tick(now + timedelta(seconds=WINDOW)).resent == 1
    assert store.entry(a.id, "hello").state == "sent"  # the third send went
    assert loop.sends_to(a) == 1 and store.settle_proof(a.id, "hello").startswith("resent|2|")


def test_after_the_last_resend_an_uncertain_entry_stays_so(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    now = later + timedelta(minutes=1)
    loop.tick(now)
    for n in range(1, 4):
        loop.standin.enqueue(Reply(hang=True))
        now += timedelta(seconds=WINDOW)
        loop.tick(now)
        if n == 3:
            break
        now += timedelta(hours=1)
        c = enrol(store, schedule, f"c{n}@example.com", None, None, now)
        loop.tick(now)
        loop.event("processed", c, "hello", now)
        now += timedelta(minutes=2)
        loop.tick(now)
    assert store.settle_proof(a.id, "hello").startswith("resent|2|")
    for hours in (1, 2, 30):
        assert loop.tick(now + timedelta(hours=hours)).resent == 0
    assert store.entry(a.id, "hello").state == "uncertain"
    assert store.uncertain_counts()[0] == 0  # out of the index: nothing left to try
    assert loop.sends_to(a) == 0


def test_its_own_late_processed_event_settles_it_sent_and_it_is_never_resent(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    armed = later + timedelta(minutes=1)
    loop.tick(armed)
    # after the window, before the tick that would claim the re-send
    loop.event("processed", a, "hello", armed + timedelta(seconds=WINDOW), "sg-a")
    assert store.entry(a.id, "hello").state == "sent"
    assert loop.tick(armed + timedelta(seconds=WINDOW)).resent == 0
    assert loop.tick(armed + timedelta(hours=5)).resent == 0
    assert loop.standin.requests_seen == 2
    assert store.send_stats("hello") == {"sent": 2, "uncertain": 0}


def test_its_event_after_the_resend_is_claimed_but_before_it_starts_stops_it(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    armed = later + timedelta(minutes=1)
    loop.tick(armed)
    # the tick claims the re-send; the first send's event comes before a worker starts it
    loop.claim(armed + timedelta(seconds=WINDOW))
    assert store.entry(a.id, "hello").state == "claimed"
    loop.event("processed", a, "hello", armed + timedelta(seconds=WINDOW + 5), "sg-a")
    assert store.entry(a.id, "hello").state == "sent"
    results = loop.deliver_queued()
    assert results and all(r.skipped == 1 and r.sent == 0 for r in results)
    loop.event("delivered", a, "hello", armed + timedelta(seconds=WINDOW + 9), "sg-a")
    assert loop.tick(armed + timedelta(hours=3)).resent == 0
    assert loop.standin.requests_seen == 2 and loop.sends_to(a) == 0


def test_without_webhook_events_nothing_is_resent(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, _, later = one_lost_one_sent(loop, store, schedule, start)
    for hours in (1, 5, 30):
        assert loop.tick(later + timedelta(hours=hours)).resent == 0
    assert store.settle_mark() == {}
    assert store.entry(a.id, "hello").state == "uncertain"
    assert store.uncertain_counts() == (1, 0)
    assert loop.standin.requests_seen == 2


def test_without_a_webhook_configured_nothing_is_resent_even_with_events(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    for hours in (1, 5, 30):
        assert loop.tick(later + timedelta(hours=hours), window=None).resent == 0
    assert store.entry(a.id, "hello").state == "uncertain"
    assert loop.standin.requests_seen == 2


def test_an_unsubscribe_before_the_resend_wins(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    armed = later + timedelta(minutes=1)
    loop.tick(armed)
    unsubscribe(store, store.get(a.id))
    assert loop.tick(armed + timedelta(seconds=WINDOW)).resent == 0
    assert store.entry(a.id, "hello").state == "uncertain"
    assert store.uncertain_counts()[0] == 0  # out of the index: nothing to look at again
    assert loop.sends_to(a) == 0 and loop.standin.requests_seen == 2


def test_an_unsubscribe_after_the_resend_is_claimed_still_wins(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    armed = later + timedelta(minutes=1)
    loop.tick(armed)
    loop.claim(armed + timedelta(seconds=WINDOW))
    unsubscribe(store, store.get(a.id))
    loop.deliver_queued()
    assert store.entry(a.id, "hello").state == "skipped"
    assert loop.sends_to(a) == 0


def test_the_members_of_a_hung_group_settle_on_their_own_events(store, schedule, standin):
    start = local(2026, 3, 2, 9)
    grouped = Loop(store, schedule, standin, max_group=10)
    try:
        subs = [enrol(store, schedule, f"{n}@example.com", None, None, start) for n in "abc"]
        standin.enqueue(Reply(hang=True))  # the one request of the group hangs
        grouped.tick(start)
        assert {store.entry(s.id, "hello").state for s in subs} == {"uncertain"}
        # SendGrid had a and b after all (the answer was lost), never c
        a, b, c = subs
        grouped.event("processed", a, "hello", start + timedelta(minutes=2), "sg-group")
        later = start + timedelta(minutes=5)
        d = enrol(store, schedule, "d@example.com", None, None, later)
        grouped.tick(later)
        grouped.event("processed", d, "hello", later + timedelta(seconds=3))
        grouped.event("delivered", b, "hello", later + timedelta(seconds=4), "sg-group")
        grouped.tick(later + timedelta(minutes=1))
        assert grouped.tick(later + timedelta(minutes=1, seconds=WINDOW)).resent == 1
        assert [store.entry(s.id, "hello").state for s in subs] == ["sent"] * 3
        assert store.settle_proof(c.id, "hello").startswith("resent|")
        assert store.settle_proof(a.id, "hello") is None
        assert grouped.sends_to(c) == 1 and grouped.sends_to(a) == 0
    finally:
        grouped.close()


def test_erasing_a_reader_removes_their_settling_records(loop, store, schedule):
    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    loop.tick(later + timedelta(minutes=1))
    assert store.settle_proof(a.id, "hello")
    erase(store, a.email, later + timedelta(hours=1))
    assert store.settle_proof(a.id, "hello") is None
    assert store.uncertain_counts() == (0, 0)


def test_an_event_while_its_worker_is_gone_settles_it_so_it_never_turns_uncertain(
    loop, store, schedule
):
    start = local(2026, 3, 2, 9)
    a = enrol(store, schedule, "a@example.com", None, None, start)
    engine.tick(store, schedule, start, loop.queue, settle_window=WINDOW)
    # a worker starts the send, the provider accepts it, the worker dies before recording it
    assert store.start_send(a.id, "hello", start.timestamp(), start.timestamp() + 900) == 1
    loop.queued.clear()
    loop.event("processed", a, "hello", start + timedelta(seconds=2), "sg-a")
    assert store.entry(a.id, "hello").state == "sent"
    b = enrol(store, schedule, "b@example.com", None, None, start + timedelta(minutes=1))
    loop.tick(start + timedelta(minutes=1))
    loop.event("processed", b, "hello", start + timedelta(minutes=1))
    for hours in (1, 2, 3):  # the sweep finds nothing sending; nothing to settle
        result = loop.tick(start + timedelta(hours=hours))
        assert result.uncertain == 0 and result.resent == 0
    assert store.entry(a.id, "hello").state == "sent"
    assert loop.sends_to(a) == 0 and store.send_stats("hello") == {"sent": 2}


def test_the_settling_window_is_read_from_the_environment_and_needs_a_signed_webhook():
    from course.settings import Settings, SettingsError

    sendgrid = {"COURSE_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": "SG.x"}
    assert Settings.from_env({}).settling_window is None  # the outbox: no events at all
    assert Settings.from_env(sendgrid).settling_window is None  # no signed webhook
    signed = {**sendgrid, "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw", "COURSE_SETTLE_WINDOW": "600"}
    assert Settings.from_env(signed).settling_window == 600.0
    assert Settings.from_env({**signed, "COURSE_SETTLE_WINDOW": ""}).settling_window == 1800.0
    with pytest.raises(SettingsError, match="COURSE_SETTLE_WINDOW: must be at least 1"):
        Settings.from_env({**signed, "COURSE_SETTLE_WINDOW": "0"})
    with pytest.raises(SettingsError, match="COURSE_SETTLE_WINDOW: not a whole number"):
        Settings.from_env({**signed, "COURSE_SETTLE_WINDOW": "30m"})


def test_retention_erasing_a_reader_who_left_removes_their_settling_records(loop, store, schedule):
    from course.subscribers.retention import run_retention

    start = local(2026, 3, 2, 9)
    a, b, later = one_lost_one_sent(loop, store, schedule, start)
    loop.event("processed", b, "hello", later)
    loop.tick(later + timedelta(minutes=1))
    assert store.settle_proof(a.id, "hello") and store.uncertain_counts() == (1, 1)
    unsubscribe(store, store.get(a.id), now=later + timedelta(minutes=2))
    result = run_retention(store, local(2028, 6, 15, 3), 24, 30)
    assert result.erased["left"] == 1 and store.get(a.id) is None
    assert store.settle_proof(a.id, "hello") is None
    assert store.uncertain_counts() == (0, 0)
    assert store.is_erased("a@example.com")
