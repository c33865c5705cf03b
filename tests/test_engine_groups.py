"""Delivery in groups: the emails of one lesson in a batch go to SendGrid as one request with
one personalization each (COURSE_SENDGRID_BATCH), against a real Redis and the stand-in.

What each recipient gets is checked the way SendGrid builds it (the stand-in's ``messages``
applies each personalization's substitutions) against the email a one-by-one send renders."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import SMALL_SCHEDULE, Sender, write_course

from course.mail.grouping import MAX_SUBSTITUTIONS_BYTES, Tags, group_emails
from course.mail.render import Recipient, Renderer
from course.schedule import load_schedule
from course.settings import Settings, SettingsError
from course.subscribers.lifecycle import enrol, unsubscribe
from course.testing.sendgrid_standin import Reply, SendGridStandIn, messages
from course.tokens import subscriber_links
from course.transport import SendGridTransport

START = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("America/New_York"))
NAMES = ["Ana", None, 'Zoë <&> "Q"', "Bob", "O'Brien", None, "Ｍｉｋａ"]


def links(sub_id: str) -> dict[str, str]:
    return subscriber_links("https://course.example", "secret", sub_id)


class GroupSender(Sender):
    """Delivers through a SendGrid transport that sends in groups (the default)."""

    def __init__(self, store, schedule, standin, timeout: float = 5.0, concurrency: int = 4):
        transport = SendGridTransport("SG.test", host=standin.url, timeout=timeout)
        super().__init__(store, schedule, transport, concurrency)

    def expected(self, sub, lesson_id: str):
        """The email a one-by-one send would have sent ``sub``."""
        return self.renderer.render(
            lesson_id, Recipient(sub.id, sub.email, sub.first_name, **links(sub.id))
        )


@pytest.fixture
def standin():
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def sender(store, schedule, standin):
    sender = GroupSender(store, schedule, standin)
    yield sender
    sender.transport.close()


def enrol_all(store, schedule, names=NAMES) -> list:
    return [
        enrol(store, schedule, f"r{n}@example.com", name, None, START)
        for n, name in enumerate(names)
    ]


def delivered(standin: SendGridStandIn) -> dict[str, object]:
    """Subscriber id -> the message SendGrid made for them, from every accepted payload."""
    out = {}
    for payload in standin.accepted:
        for message in messages(payload):
            out[message.custom_args["subscriber_id"]] = message
    return out


def assert_same_as_one_by_one(sender, subs, standin, lesson_id="hello"):
    got = delivered(standin)
    assert sorted(got) == sorted(s.id for s in subs)
    for sub in subs:
        want, message = sender.expected(sub, lesson_id), got[sub.id]
        assert message.html == want.html
        assert message.text == want.text
        assert message.subject == want.subject
        assert message.to == [
            {"email": want.to_email, "name": want.to_name} if want.to_name
            else {"email": want.to_email}
        ]  # fmt: skip
        assert message.headers == {**want.headers, "Message-ID": want.message_id}
        assert message.custom_args == want.custom_args


def test_a_batch_is_one_request_per_shared_body_and_everyone_gets_their_own_email(
    store, schedule, standin, sender
):
    subs = enrol_all(store, schedule)
    sender.tick(START)
    result = sender.deliver(START)
    assert (result.sent, result.failed, result.errors) == (len(subs), 0, [])
    # One body for those with a first name and one for those without.
    assert standin.requests_seen == 2
    assert sorted(len(p["personalizations"]) for p in standin.accepted) == [2, 5]
    assert_same_as_one_by_one(sender, subs, standin)
    for sub in subs:
        entry = store.ledger(sub.id)["hello"]
        assert entry.state == "sent" and entry.attempt == 1
        assert entry.detail == ""  # settled: the message id is not kept (layout 5)
    assert store.send_stats("hello") == {"sent": len(subs)}
    # The next lesson goes the same way, once.
    day2 = START + timedelta(days=2)
    sender.tick(day2)
    assert sender.deliver(day2).sent == len(subs)
    assert sender.tick(day2).claimed == 0


def test_a_batch_of_two_lessons_goes_out_in_concurrent_requests_each_email_once(
    store, schedule, standin, sender
):
    earlier = START - timedelta(days=2)
    ahead = [enrol(store, schedule, f"a{n}@example.com", f"A{n}" if n % 3 else None, None, earlier)
             for n in range(30)]  # fmt: skip
    sender.tick(earlier)
    assert sender.deliver(earlier).sent == 30
    standin.clear()
    new = [enrol(store, schedule, f"n{n}@example.com", f"N{n}" if n % 2 else None, None, START)
           for n in range(30)]  # fmt: skip
    assert sender.tick(START).claimed == 60  # "second" for the first 30, "hello" for the rest
    result = sender.deliver(START)
    assert (result.sent, result.failed, result.skipped) == (60, 0, 0)
    records = [(r.custom_args["subscriber_id"], r.custom_args["lesson_id"])
               for r in standin.records]  # fmt: skip
    assert sorted(records) == sorted(
        [(s.id, "second") for s in ahead] + [(s.id, "hello") for s in new]
    )
    # Batches of 50: per batch, one request per lesson and body (named or not).
    assert standin.requests_seen <= 2 * 2 * 2
    got = delivered(standin)
    for sub, lesson_id in [(s, "second") for s in ahead] + [(s, "hello") for s in new]:
        want = sender.expected(sub, lesson_id)
        assert (got[sub.id].html, got[sub.id].text) == (want.html, want.text)


def test_a_template_that_changes_the_name_sends_those_emails_alone_and_still_right(
    tmp_path, store, standin
):
    path = write_course(tmp_path / "upper", SMALL_SCHEDULE)
    hello = path.parent / "templates" / "lessons" / "hello.md"
    hello.write_text('Hi {{ (first_name or "friend")|upper }}, see {{ email }}.\n')
    schedule = load_schedule(path)
    sender = GroupSender(store, schedule, standin)
    try:
        subs = enrol_all(store, schedule)
        sender.tick(START)
        assert sender.deliver(START).sent == len(subs)
    finally:
        sender.transport.close()
    named = [s for s in subs if s.first_name]
    # The nameless share one request; each named one has a request of their own.
    assert standin.requests_seen == 1 + len(named)
    assert_same_as_one_by_one(sender, subs, standin)
    assert "ANA" in delivered(standin)[named[0].id].text


def test_a_429_retries_the_whole_group_at_the_reset_and_holds_back_the_rest(
    store, schedule, standin, sender
):
    subs = enrol_all(store, schedule)
    standin.enqueue(Reply(status=429, reset_in=300.0))
    sender.concurrency = 1  # the two requests one after the other: the second is held back
    sender.tick(START)
    result = sender.deliver(START)
    assert result.retrying == len(subs) and standin.requests_seen == 1
    assert {store.ledger(s.id)["hello"].state for s in subs} == {"retry", "claimed"}
    assert sender.tick(START + timedelta(seconds=200)).redispatched == 0
    sender.tick(START + timedelta(seconds=310))
    assert sender.deliver(START + timedelta(seconds=310)).sent == len(subs)
    assert standin.requests_seen == 3
    assert_same_as_one_by_one(sender, subs, standin)
    assert store.send_stats("hello")["sent"] == len(subs)


def test_a_group_refused_with_a_400_is_sent_one_by_one_to_find_the_bad_one(
    store, schedule, standin, sender
):
    subs = enrol_all(store, schedule, ["Ana", "Bob", "Cy"])
    sender.concurrency = 1
    # The group is refused, then the first alone is refused: only that one fails.
    standin.enqueue(Reply(status=400), Reply(status=400))
    sender.tick(START)
    result = sender.deliver(START)
    assert (result.sent, result.failed) == (2, 1)
    assert standin.requests_seen == 1 + 3
    failed = [s for s in subs if store.ledger(s.id)["hello"].state == "failed"]
    assert len(failed) == 1 and "SendGrid 400" in store.ledger(failed[0].id)["hello"].detail
    # Each went again as a retry of its own: attempt 2, in its one-by-one form.
    assert store.send_stats("hello") == {"sent": 2, "failed": 1, "retried": 3}
    assert {store.ledger(s.id)["hello"].attempt for s in subs} == {2}
    assert [len(p["personalizations"]) for p in standin.accepted] == [1, 1]
    assert all("substitutions" not in p["personalizations"][0] for p in standin.accepted)
    assert_same_as_one_by_one(sender, [s for s in subs if s not in failed], standin)


class UnsubscribingOnFirstSend(SendGridTransport):
    """Unsubscribes ``victim`` as the first email alone goes out."""

    def __init__(self, *args, store, victim, **kwargs):
        super().__init__(*args, **kwargs)
        self.store, self.victim, self.calls = store, victim, 0

    def send(self, email):
        self.calls += 1
        if self.calls == 1:
            unsubscribe(self.store, self.store.get(self.victim))
        return super().send(email)


def test_after_a_400_each_member_is_started_again_so_an_unsubscribe_meanwhile_wins(
    store, schedule, standin, sender
):
    subs = enrol_all(store, schedule, ["Ana", "Bob", "Cy"])
    sender.concurrency = 1
    sender.tick(START)
    order = [item[0] for item in sender.batches[0]]
    victim = order[-1]  # the last to go alone
    sender.transport.close()
    sender.transport = UnsubscribingOnFirstSend(
        "SG.test", host=standin.url, timeout=5.0, store=store, victim=victim
    )
    standin.enqueue(Reply(status=400))
    result = sender.deliver(START)
    assert (result.sent, result.skipped) == (2, 1)
    assert victim not in delivered(standin)
    assert store.ledger(victim)["hello"].state == "skipped"
    assert len(subs) == 3


def test_after_a_400_a_429_for_one_member_holds_back_the_others(store, schedule, standin, sender):
    subs = enrol_all(store, schedule, ["Ana", "Bob", "Cy"])
    sender.concurrency = 1
    standin.enqueue(Reply(status=400), Reply(status=429, reset_in=300.0))
    sender.tick(START)
    assert sender.deliver(START).retrying == 3
    assert standin.requests_seen == 2  # the group, then the first alone; the rest held back
    later = START + timedelta(seconds=310)
    sender.tick(later)
    assert sender.deliver(later).sent == 3
    assert {store.ledger(s.id)["hello"].state for s in subs} == {"sent"}


def test_a_group_with_no_answer_is_uncertain_for_every_member_and_never_sent_again(
    store, schedule, standin
):
    sender = GroupSender(store, schedule, standin, timeout=0.5)
    try:
        subs = enrol_all(store, schedule, ["Ana", "Bob", "Cy"])
        standin.enqueue(Reply(hang=True, hang_for=3.0))
        sender.tick(START)
        assert sender.deliver(START).uncertain == 3
        assert {store.ledger(s.id)["hello"].state for s in subs} == {"uncertain"}
        sender.tick(START + timedelta(hours=3))
        sender.deliver(START + timedelta(hours=3))
    finally:
        sender.transport.close()
    assert standin.requests_seen == 1 and store.send_stats("hello") == {"uncertain": 3}


def test_someone_who_unsubscribes_before_the_request_is_left_out_of_the_group(
    store, schedule, standin, sender
):
    subs = enrol_all(store, schedule, ["Ana", "Bob", "Cy"])
    sender.tick(START)
    unsubscribe(store, subs[1])
    result = sender.deliver(START)
    assert (result.sent, result.skipped) == (2, 1)
    assert [len(p["personalizations"]) for p in standin.accepted] == [2]
    assert subs[1].id not in delivered(standin)
    assert store.ledger(subs[1].id)["hello"].state == "skipped"


# -- the grouping itself (pure) ----------------------------------------------------------------


def recipients(renderer, people):
    pairs = []
    for n, name in enumerate(people):
        recipient = Recipient(f"id{n}", f"p{n}@example.com", name, **links(f"id{n}"))
        pairs.append((recipient, renderer.render("hello", recipient)))
    return pairs


def test_groups_respect_the_size_limit_and_keep_every_member_once(schedule):
    renderer = Renderer(schedule)
    pairs = recipients(renderer, ["Ana"] * 5)
    groups = group_emails(renderer.compiled("hello"), Tags(), pairs, max_size=2)
    assert [len(g.members) for g in groups] == [2, 2, 1]
    assert [m.subscriber_id for g in groups for m in g.members] == [f"id{n}" for n in range(5)]


def test_a_name_too_long_for_substitutions_or_holding_a_tag_goes_alone(schedule):
    renderer = Renderer(schedule)
    tags = Tags()
    long_name = "A" * (MAX_SUBSTITUTIONS_BYTES // 2)
    pairs = recipients(renderer, ["Ana", long_name, f"x{tags.prefix}0h-", "Bob"])
    groups = group_emails(renderer.compiled("hello"), tags, pairs)
    assert [[m.subscriber_id for m in g.members] for g in groups] == [
        ["id0", "id3"], ["id1"], ["id2"],
    ]  # fmt: skip
    alone = groups[1]
    assert alone.members[0].substitutions == {} and long_name in alone.html


def test_an_address_twice_in_a_batch_goes_in_a_request_of_its_own(schedule):
    # SendGrid refuses a request that holds an address twice (two records of one person).
    renderer = Renderer(schedule)
    pairs = recipients(renderer, ["Ana", "Ana", "Bob"])
    twin = Recipient("twin", "P0@example.com", "Ana", **links("twin"))
    pairs.append((twin, renderer.render("hello", twin)))
    groups = group_emails(renderer.compiled("hello"), Tags(), pairs)
    assert [[m.subscriber_id for m in g.members] for g in groups] == [
        ["id0", "id1", "id2"], ["twin"],
    ]  # fmt: skip


def test_a_template_that_cannot_take_a_tag_sends_everyone_alone(tmp_path):
    path = write_course(tmp_path / "split", SMALL_SCHEDULE)
    hello = path.parent / "templates" / "lessons" / "hello.md"
    hello.write_text("Your pause page: {{ pause_url.split('.')[1] }}.\n")
    renderer = Renderer(load_schedule(path))
    pairs = recipients(renderer, ["Ana", None])
    groups = group_emails(renderer.compiled("hello"), Tags(), pairs)
    assert [len(g.members) for g in groups] == [1, 1]
    assert [g.html for g in groups] == [email.html for _, email in pairs]


def test_sendgrid_batch_setting():
    base: dict[str, str] = {}
    assert Settings.from_env(base).sendgrid_batch == 1000
    assert Settings.from_env({**base, "COURSE_SENDGRID_BATCH": "1"}).sendgrid_batch == 1
    for bad in ("0", "1001", "many"):
        with pytest.raises(SettingsError, match="COURSE_SENDGRID_BATCH"):
            Settings.from_env({**base, "COURSE_SENDGRID_BATCH": bad})


def test_a_stored_address_that_needs_smtputf8_fails_alone_and_the_group_still_goes_whole(
    store, schedule, standin, sender
):
    """Stored before signup refused it: its send fails with the reason, once, without a
    request; the others' group is not refused or split because of it."""
    subs = enrol_all(store, schedule)
    jorg = enrol(store, schedule, "jörg@example.org", "Jörg", None, START)
    sender.tick(START)
    result = sender.deliver(START)
    assert (result.sent, result.failed) == (len(subs), 1)
    assert standin.requests_seen == 2  # the same two requests as without Jörg
    assert_same_as_one_by_one(sender, subs, standin)
    entry = store.ledger(jorg.id)["hello"]
    assert entry.state == "failed" and entry.attempt == 1
    assert entry.detail == (
        "'jörg@example.org': a non-ASCII name before the @ needs SMTPUTF8, which the course "
        "does not use (SendGrid does not offer it)"
    )
