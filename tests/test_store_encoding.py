"""How the store encodes a subscriber and a ledger entry, and that records written by
earlier versions (long field names, milliseconds, empty fields stored) still read and still
work once `course migrate` has moved them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import entry_value

from course import engine
from course.models.subscriber import LedgerEntry
from course.store import encode_subscriber
from course.store.codec import STORED_NAMES
from course.store.migrate import migrate_store
from course.subscribers.lifecycle import enrol, pause, resume, unsubscribe

START = datetime(2026, 3, 2, 19, 30, 0, 250_000, tzinfo=UTC)  # 14:30:00.25 in New York

# A confirmed subscriber as the store wrote it before whole seconds and unset fields left
# out: every field present, "" for unset, epochs with milliseconds.
OLD_RECORD = {
    "email": "old@example.com",
    "first_name": "",
    "tz": "America/New_York",
    "status": "active",
    "created": "1772479500.250",
    "start": "1772479800.250",
    "paused": "0.000",
    "paused_at": "",
    "paused_until": "",
    "last_sent": "1772479830.125",
    "sent_that_day": "1",
    "last_lesson": "hello",
    "last_day": "0",
    "v": "2",
    "source": "cli",
    "consent": "",
}
OLD_ENTRY = "sent|1772479830.125|1|W3xQj5YlQy2BkqM2i9cJ9A"


def write_old(store, sub_id: str = "0123456789ab") -> str:
    """The record as that version wrote it (layout 1: no layout key, one email hash), then
    moved to this release's layout as ``course migrate`` does."""
    store.redis.hset(store.sub_key(sub_id), mapping=OLD_RECORD)
    store.redis.hset(store.legacy_ledger_key(sub_id), "hello", OLD_ENTRY)
    store.redis.hset(store.legacy_email_key, OLD_RECORD["email"], sub_id)
    store.redis.zadd(store.subs_key, {sub_id: 1772479500.25})
    store.redis.zadd(store.due_key(sub_id), {sub_id: 1772629200.0})  # "second": 2026-03-04 08:00 NY
    migrate_store(store, 100, dry_run=False)
    return sub_id


def hash_fields(*names: str) -> set[str]:
    """The hash fields of these subscriber fields."""
    return {STORED_NAMES[name] for name in names}


def test_old_record_with_milliseconds_and_empty_fields_decodes_as_before(store):
    sub = store.get(write_old(store))
    assert (sub.email, sub.first_name, sub.status, sub.version) == (
        "old@example.com", None, "active", 2)  # fmt: skip
    assert sub.created == 1772479500.25 and sub.start == 1772479800.25
    assert sub.last_sent == 1772479830.125 and sub.paused == 0.0
    assert sub.paused_at is None and sub.paused_until is None
    assert (sub.sent_that_day, sub.last_lesson, sub.last_day) == (1, "hello", 0)
    # Migrated to layout 5, the settled entry lost the provider's message id; folded into the
    # record at layout 7, it is its epoch alone, in whole seconds like every new entry.
    assert store.ledger(sub.id) == {"hello": LedgerEntry("hello", "sent", 1772479830, 1)}
    assert entry_value(store, sub.id, "hello") == "1772479830"
    assert not store.redis.exists(store.legacy_ledger_key(sub.id))
    assert LedgerEntry.decode("hello", OLD_ENTRY) == LedgerEntry(
        "hello", "sent", 1772479830.125, 1, "W3xQj5YlQy2BkqM2i9cJ9A"
    )


def test_old_record_gets_its_next_lesson_then_unsubscribes(store, schedule):
    sub_id = write_old(store)
    now = datetime(2026, 3, 4, 13, 0, 30, tzinfo=UTC)  # 08:00:30 in New York
    queued = []
    result = engine.tick(store, schedule, now, lambda items, at: queued.append(items))
    assert result.claimed == 1 and queued == [[(sub_id, "second")]]
    sub = store.get(sub_id)
    assert (sub.last_lesson, sub.version, sub.last_sent) == ("second", 3, now.timestamp())
    assert store.entry(sub_id, "second") == LedgerEntry("second", "claimed", now.timestamp())
    assert store.entry(sub_id, "hello").at == 1772479830  # as the migration left it
    unsubscribe(store, sub)
    assert store.get(sub_id).status == "unsubscribed" and store.due_score(sub_id) is None
    assert store.start_send(sub_id, "second", now.timestamp() + 5, now.timestamp() + 900) == -1


def test_unset_fields_are_not_stored_and_instants_are_whole_seconds(store, schedule):
    sub = enrol(store, schedule, "new@example.com", None, "America/New_York", START)
    raw = store.redis.hgetall(store.sub_key(sub.id))
    assert set(raw) == hash_fields("email", "tz", "status", "created", "start", "version", "source")
    assert raw["c"] == raw["t"] == str(int(START.timestamp()))  # created, start
    assert store.get(sub.id).start == int(START.timestamp())  # the fraction is dropped
    assert store.due_score(sub.id) == START.timestamp()  # scores keep their precision

    engine.tick(store, schedule, START, lambda items, at: None)
    assert entry_value(store, sub.id, "hello") == f"claimed|{int(START.timestamp())}|0|"
    claimed = store.get(sub.id)
    assert claimed.last_sent == int(START.timestamp()) and claimed.sent_that_day == 1


def test_pause_fields_come_and_go(store, schedule):
    sub = enrol(store, schedule, "p@example.com", "Pat", "America/New_York", START)
    later = START + timedelta(days=1, seconds=0.5)
    paused = pause(store, sub, later, until=later + timedelta(days=3))
    raw = store.redis.hgetall(store.sub_key(sub.id))
    assert raw["pa"] == str(int(later.timestamp())) and "pu" in raw  # paused_at, _until
    resumed = resume(store, schedule, paused, later + timedelta(days=2))
    raw = store.redis.hgetall(store.sub_key(sub.id))
    assert not hash_fields("paused_at", "paused_until") & set(raw)
    assert resumed.paused == 2 * 86400 and raw["p"] == str(2 * 86400)
    assert resumed.status == "active"


def test_encode_subscriber_leaves_out_exactly_what_decodes_to_the_default(store, schedule):
    sub = enrol(store, schedule, "e@example.com", "Eve", "Europe/Berlin", START)
    stored = store.get(sub.id)
    fields = encode_subscriber(stored)
    assert not hash_fields("paused", "sent_that_day", "paused_at") & set(fields)
    assert fields["v"] == "1" and fields["n"] == "Eve"  # version, first_name
    store.redis.delete(store.sub_key(sub.id))
    store.redis.hset(store.sub_key(sub.id), mapping=fields)
    assert store.get(sub.id) == stored


def test_ledger_entry_encodes_whole_seconds_and_reads_milliseconds():
    entry = LedgerEntry("hello", "sent", 1772479830.875, 2, "id|with|bars")
    assert entry.encode() == "sent|1772479830|2|id|with|bars"
    assert LedgerEntry.decode("hello", entry.encode()) == LedgerEntry(
        "hello", "sent", 1772479830.0, 2, "id|with|bars"
    )
    assert LedgerEntry.decode("hello", OLD_ENTRY).at == 1772479830.125
