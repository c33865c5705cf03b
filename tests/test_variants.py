"""Subject experiments end to end against a real Redis and the SendGrid stand-in: each reader
gets their variant's subject (or the winner's), sends, clicks, check-ins and unsubscribes are
counted per variant, and ``winner: auto`` decides once, logged."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import SMALL_SCHEDULE, Sender, write_course

from course import engine
from course.engine.experiments import evaluate_experiments, evaluate_hourly
from course.experiments import MIN_SAMPLE, variant_for
from course.schedule import load_schedule
from course.store.variants import Winner
from course.subscribers.checkin import check_in
from course.subscribers.lifecycle import enrol, unsubscribe
from course.testing.sendgrid_standin import SendGridStandIn, messages
from course.transport import SendGridTransport
from course.web.webhook import handle_events

START = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("America/New_York"))
HELLO = '      - {id: hello, day: 0, subject: "Hello", preheader: "Start here", template: lessons/hello.md}\n'  # noqa: E501
SUBJECTS = {"a": "Hello, and welcome", "b": "Your pain is real, and it can change"}


def experiment(winner: str = "auto") -> str:
    assert SMALL_SCHEDULE.count(HELLO) == 1
    line = (
        f'      - {{id: hello, day: 0, subject_variants: ["{SUBJECTS["a"]}", "{SUBJECTS["b"]}"], '
        f'winner: {winner}, preheader: "Start here", template: lessons/hello.md}}\n'
    )
    return SMALL_SCHEDULE.replace(HELLO, line)


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def sender_for(store, tmp_path, standin):
    """Makes a sender of the experiment's course (``winner`` as given); closed after."""
    made: list[Sender] = []

    def make(winner: str = "auto", max_group: int = 1000) -> Sender:
        schedule = load_schedule(write_course(tmp_path / f"course-{winner}", experiment(winner)))
        transport = SendGridTransport("SG.test", host=standin.url, max_group=max_group)
        made.append(Sender(store, schedule, transport, concurrency=1))
        return made[-1]

    yield make
    for sender in made:
        sender.transport.close()


def enrol_many(store, schedule, count: int) -> list:
    return [enrol(store, schedule, f"r{n}@example.com", f"R{n}", None, START)
            for n in range(count)]  # fmt: skip


def received(standin) -> dict[str, object]:
    return {m.custom_args["subscriber_id"]: m for p in standin.accepted for m in messages(p)}


def own_letter(sub_id: str) -> str:
    return "ab"[variant_for(sub_id, "hello", 2)]


@pytest.mark.parametrize("max_group", [1000, 1])
def test_each_reader_gets_their_variants_subject_and_the_sends_are_counted(
    store, sender_for, standin, max_group
):
    sender = sender_for(max_group=max_group)
    subs = enrol_many(store, sender.schedule, 24)
    sender.tick(START)
    assert sender.deliver(START).sent == 24
    got = received(standin)
    letters = Counter()
    for sub in subs:
        letter = own_letter(sub.id)
        letters[letter] += 1
        assert got[sub.id].subject == SUBJECTS[letter]
        assert got[sub.id].custom_args["variant"] == letter
    assert set(letters) == {"a", "b"}  # 24 readers: both variants in use
    if max_group > 1:  # one request per subject, everyone named alike
        assert standin.requests_seen == 2
    counts = store.variant_counts(["hello", "second"])
    assert {v: c["sent"] for v, c in counts["hello"].items()} == dict(letters)
    assert "second" not in counts  # no experiment there
    assert store.variant_basis("hello") == (2, None)
    # The next lesson has no variants: no variant in its custom_args
    standin.clear()
    sender.tick(START + timedelta(days=2))
    sender.deliver(START + timedelta(days=2))
    assert all("variant" not in m.custom_args for m in received(standin).values())


def test_a_stored_winner_gives_everyone_its_subject(store, sender_for, standin):
    sender = sender_for()
    assert store.record_winner("hello", Winner("b", START.timestamp(), 0, "test"))
    assert not store.record_winner("hello", Winner("a", START.timestamp(), 1, "again"))
    assert store.experiment_winners()["hello"].variant == "b"  # never flips back
    enrol_many(store, sender.schedule, 10)
    sender.tick(START)
    sender.deliver(START)
    got = received(standin)
    assert {m.subject for m in got.values()} == {SUBJECTS["b"]}
    assert {m.custom_args["variant"] for m in got.values()} == {"b"}
    assert store.variant_counts(["hello"])["hello"] == {"b": {"sent": 10}}


def test_a_pinned_winner_is_the_only_subject(store, sender_for, standin):
    sender = sender_for(winner="a")
    enrol_many(store, sender.schedule, 10)
    sender.tick(START)
    sender.deliver(START)
    assert {m.subject for m in received(standin).values()} == {SUBJECTS["a"]}
    assert store.variant_basis("hello") == (2, "a")


def test_clicks_checkins_and_unsubscribes_are_counted_per_variant(store, sender_for):
    sender = sender_for()
    subs = enrol_many(store, sender.schedule, 12)
    sender.tick(START)
    sender.deliver(START)
    schedule = sender.schedule
    reader = subs[0]
    letter = own_letter(reader.id)
    clicks = [
        {"event": "click", "sg_event_id": f"ev{n}", "subscriber_id": reader.id,
         "lesson_id": "hello", "variant": letter, "email": reader.email}
        for n in range(3)
    ]  # fmt: skip
    handle_events(store, schedule, clicks, START.timestamp())
    handle_events(store, schedule, clicks, START.timestamp())  # redelivered: counted once
    lesson = schedule.lesson("hello")
    assert check_in(store, schedule, reader.id, lesson, "better", START)
    assert check_in(store, schedule, reader.id, lesson, "same", START)  # a change: still one
    unsubscribe(store, store.get(reader.id), now=START)
    unsubscribe(store, store.get(reader.id), now=START)  # already left: counted once
    bounced = subs[1]
    unsubscribe(store, store.get(bounced.id), "bounced", now=START)  # not an unsubscribe
    counts = store.variant_counts(["hello"])["hello"][letter]
    assert counts["clicks"] == 3 and counts["clicked"] == 1
    assert counts["checkins"] == 1 and counts["unsubscribed"] == 1
    every = store.variant_counts(["hello"])["hello"]
    assert sum(c.get("unsubscribed", 0) for c in every.values()) == 1


def test_a_reader_sent_before_the_decision_counts_under_their_own_variant(store, sender_for):
    sender = sender_for()
    subs = enrol_many(store, sender.schedule, 12)
    sender.tick(START)
    sender.deliver(START)
    reader = next(s for s in subs if own_letter(s.id) == "a")
    later = START + timedelta(days=1)
    store.record_winner("hello", Winner("b", later.timestamp(), 0, "test"))
    unsubscribe(store, store.get(reader.id), now=later)
    assert store.variant_counts(["hello"])["hello"]["a"]["unsubscribed"] == 1


def seed(store, sent: dict[str, int], clicked: dict[str, int]) -> None:
    for letter, n in sent.items():
        store.count_variant_sends("hello", 2, None, [letter] * n)
    for letter, n in clicked.items():
        for i in range(n):
            store.count_variant_click("hello", letter, f"{letter}{i}")


def test_winner_auto_waits_for_the_minimum_sample_then_decides_once(store, tmp_path, caplog):
    schedule = load_schedule(write_course(tmp_path / "course", experiment()))
    seed(store, {"a": MIN_SAMPLE, "b": MIN_SAMPLE - 1}, {"a": 10, "b": 60})
    assert evaluate_experiments(store, schedule, START) == {}
    assert store.experiment_winners() == {}
    seed(store, {"b": 1}, {})
    with caplog.at_level(logging.INFO, logger="course.experiments"):
        decisions = evaluate_experiments(store, schedule, START)
    assert decisions["hello"].winner == "b" and decisions["hello"].look == 0
    winner = store.experiment_winners()["hello"]
    assert (winner.variant, winner.at, winner.look) == ("b", START.timestamp(), 0)
    lines = [r.getMessage() for r in caplog.records if "experiment_winner" in r.getMessage()]
    assert len(lines) == 1 and "hello" in lines[0]
    # decided: not looked at again, whatever the counts say later
    seed(store, {"a": 5000, "b": 5000}, {"a": 900})
    assert evaluate_experiments(store, schedule, START + timedelta(days=9)) == {}
    assert store.experiment_winners()["hello"].variant == "b"


def test_equal_variants_take_each_look_once_and_name_no_winner(store, tmp_path):
    schedule = load_schedule(write_course(tmp_path / "course", experiment()))
    seed(store, {"a": MIN_SAMPLE, "b": MIN_SAMPLE}, {"a": 20, "b": 21})
    first = evaluate_experiments(store, schedule, START)
    assert first["hello"].winner is None and first["hello"].look == 0
    assert evaluate_experiments(store, schedule, START) == {}  # look 0 is spent
    assert store.looks_taken("hello") == 1
    assert store.experiment_winners() == {}


def test_the_hourly_turn_looks_once_an_hour(store, tmp_path):
    schedule = load_schedule(write_course(tmp_path / "course", experiment()))
    seed(store, {"a": MIN_SAMPLE, "b": MIN_SAMPLE}, {"a": 5, "b": 60})
    assert evaluate_hourly(store, schedule, START)["hello"].winner == "b"
    store.redis.delete(store.variant_winners_key, store.variant_looks_key)
    assert evaluate_hourly(store, schedule, START) == {}  # the turn is held for an hour
    plain = load_schedule(write_course(tmp_path / "plain"))
    store.redis.delete(store.variant_check_key)
    assert evaluate_hourly(store, plain, START) == {}  # no experiment: nothing claimed
    assert not store.redis.exists(store.variant_check_key)


def test_an_erase_counts_as_an_unsubscribe_of_the_readers_variant(store, sender_for):
    from course.subscribers.privacy import erase

    sender = sender_for()
    subs = enrol_many(store, sender.schedule, 6)
    sender.tick(START)
    sender.deliver(START)
    reader = subs[2]
    erase(store, reader.email, START + timedelta(hours=1), timeout=0)
    counts = store.variant_counts(["hello"])["hello"][own_letter(reader.id)]
    assert counts["unsubscribed"] == 1


def test_an_uncertain_send_settled_by_its_event_counts_as_sent(store, sender_for):
    from course.models.subscriber import LedgerEntry

    sender = sender_for()
    enrol_many(store, sender.schedule, 2)
    sender.tick(START)
    sender.deliver(START)  # both sent: the experiment's basis is known
    late = enrol(store, sender.schedule, "late@example.com", "Late", None, START)
    claimed: list = []
    engine.tick(store, sender.schedule, START, lambda items, _: claimed.extend(items))
    assert claimed == [(late.id, "hello")]
    ts = START.timestamp()
    assert store.start_send(late.id, "hello", ts, ts + 900) == 1
    store.finish(late.id, LedgerEntry("hello", "uncertain", ts, 1, "timed out"),
                 allowed=("sending",))  # fmt: skip
    letter = own_letter(late.id)
    before = store.variant_counts(["hello"])["hello"].get(letter, {}).get("sent", 0)
    event = {"event": "processed", "sg_event_id": "p1", "subscriber_id": late.id,
             "lesson_id": "hello", "variant": letter, "sg_message_id": "m1.filter"}  # fmt: skip
    assert handle_events(store, sender.schedule, [event], ts).reconciled == 1
    assert store.variant_counts(["hello"])["hello"][letter]["sent"] == before + 1
