"""Retention on a real Redis: who is erased, when, what stays behind, in batches, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import cli_runner, course_env
from test_engine import Harness

from course.models.subscriber import Subscriber
from course.settings import Settings, SettingsError
from course.store import ErasedAddress
from course.subscribers.lifecycle import enrol, unsubscribe
from course.subscribers.retention import months_before, run_retention
from course.transport import OutboxTransport

NOW = datetime(2028, 6, 15, 3, 17, tzinfo=UTC)


def months_ago(months: int) -> datetime:
    return months_before(NOW, months)


def run(store, **options):
    return run_retention(store, NOW, 24, 30, **options)


def left(store, schedule, address: str, at: datetime, status: str = "unsubscribed"):
    sub = enrol(store, schedule, address, "Sam", "UTC", at - timedelta(days=10))
    return unsubscribe(store, sub, status, now=at)


def completed(store, schedule, tmp_path, address: str, at: datetime):
    """A reader who went through the whole course, their last lesson sent at ``at``."""
    harness = Harness(store, schedule, OutboxTransport(tmp_path / "outbox"))
    start = at - timedelta(days=4)
    sub = enrol(store, schedule, address, None, "UTC", start)
    for day in range(5):
        harness.tick(start + timedelta(days=day, hours=12))
    assert store.get(sub.id).status == "completed"
    return store.get(sub.id)


def test_months_before_keeps_the_day_or_takes_the_months_last():
    assert months_before(datetime(2028, 3, 31, tzinfo=UTC), 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert months_before(datetime(2028, 6, 15, tzinfo=UTC), 24) == datetime(2026, 6, 15, tzinfo=UTC)


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_a_reader_who_left_25_months_ago_is_erased_and_stays_suppressed(store, schedule, status):
    sub = left(store, schedule, "gone@example.com", months_ago(25), status)
    result = run(store)
    assert result.erased == {"left": 1, "completed": 0}
    assert store.get(sub.id) is None and store.ledger(sub.id) == {}
    assert store.find("gone@example.com") is None
    assert store.is_erased("gone@example.com")
    with pytest.raises(ErasedAddress):  # a new signup is refused, as after an erasure request
        enrol(store, schedule, "gone@example.com", "Sam", "UTC", NOW)


def test_a_reader_who_left_23_months_ago_is_kept(store, schedule):
    sub = left(store, schedule, "recent@example.com", months_ago(23))
    assert run(store).total == 0
    assert store.get(sub.id).status == "unsubscribed"
    assert not store.is_erased("recent@example.com")


def test_an_unconfirmed_signup_31_days_old_is_gone_and_29_days_kept(store, schedule):
    old = enrol(store, schedule, "old@example.com", None, None, NOW - timedelta(days=31),
                confirmed=False)  # fmt: skip
    young = enrol(store, schedule, "young@example.com", None, None, NOW - timedelta(days=29),
                  confirmed=False)  # fmt: skip
    result = run(store)
    assert result.expired == 1 and result.erased == {"left": 0, "completed": 0}
    assert store.get(old.id) is None and store.find("old@example.com") is None
    assert store.get(young.id).status == "pending"
    assert not store.is_erased("old@example.com")  # never consented: no trace, may sign up
    assert enrol(store, schedule, "old@example.com", None, None, NOW).status == "active"


def test_a_confirmed_signup_is_not_expired_as_unconfirmed(store, schedule):
    sub = enrol(store, schedule, "yes@example.com", None, None, NOW - timedelta(days=40))
    assert store.retention_waiting("pending") == 0  # confirming took it out of the index
    assert run(store).total == 0 and store.get(sub.id).status == "active"


def test_a_reader_who_completed_25_months_ago_is_erased_without_a_trace(store, schedule, tmp_path):
    sub = completed(store, schedule, tmp_path, "done@example.com", months_ago(25))
    kept = completed(store, schedule, tmp_path, "later@example.com", months_ago(23))
    assert run(store).erased == {"left": 0, "completed": 1}
    assert store.get(sub.id) is None
    assert store.get(kept.id).status == "completed"
    # They never asked not to be mailed: no suppression hash, they may take the course again.
    assert not store.is_erased("done@example.com")
    assert enrol(store, schedule, "done@example.com", None, None, NOW).status == "active"


def test_a_completed_reader_who_unsubscribes_later_is_counted_from_then(store, schedule, tmp_path):
    sub = completed(store, schedule, tmp_path, "late@example.com", months_ago(30))
    unsubscribe(store, sub, now=months_ago(20))
    assert run(store).total == 0 and store.get(sub.id) is not None


def test_an_old_record_of_a_reader_who_signed_up_again_goes_alone(store, schedule):
    """Only a record's own time counts: the new record stays, and the address is not
    suppressed while the new record holds it."""
    old = left(store, schedule, "again@example.com", months_ago(26))
    new = enrol(store, schedule, "again@example.com", None, None, months_ago(2))
    assert run(store).erased["left"] == 1
    assert store.get(old.id) is None
    assert store.get(new.id).status == "active"
    assert store.find("again@example.com").id == new.id
    assert not store.is_erased("again@example.com")


def test_imported_records_are_indexed_at_their_import(store):
    """An import keeps statuses; when an imported reader left is not known: counted from
    the import (created). Active ones are in no retention index."""
    created = months_ago(25).timestamp()
    subs = [Subscriber(id=store.new_id(), email=f"{status}@example.com", first_name=None,
                       tz="UTC", status=status, created=created)
            for status in ("pending", "completed", "unsubscribed", "active")]  # fmt: skip
    assert store.add_many(subs, [None, None, None, created]) == [1, 1, 1, 1]
    result = run(store)
    assert result.erased == {"left": 1, "completed": 1} and result.expired == 1
    assert [store.get(sub.id) is None for sub in subs] == [True, True, True, False]
    assert store.is_erased("unsubscribed@example.com")


def test_the_run_goes_in_batches_and_a_second_run_finds_nothing(store, schedule):
    for i in range(5):
        left(store, schedule, f"b{i}@example.com", months_ago(25 + i))
    first = run(store, batch=2)
    assert first.erased["left"] == 5 and first.batches == 3
    second = run(store, batch=2)
    assert second.total == 0 and second.batches == 0
    assert store.retention_stats()["left"] == 5


def test_a_second_run_while_one_holds_the_lock_does_nothing(store, schedule):
    sub = left(store, schedule, "lock@example.com", months_ago(25))
    assert store.take_retention_lock("another-beat", 60)
    assert run(store).busy
    assert store.get(sub.id) is not None
    store.release_retention_lock("another-beat")
    assert run(store).total == 1


def test_a_dry_run_counts_and_changes_nothing(store, schedule, redis_client):
    left(store, schedule, "dry@example.com", months_ago(25))
    enrol(store, schedule, "p@example.com", None, None, NOW - timedelta(days=31), confirmed=False)
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter("hr:*")}
    result = run(store, dry_run=True)
    assert result.erased == {"left": 1, "completed": 0} and result.expired == 1
    after = {key: redis_client.dump(key) for key in redis_client.scan_iter("hr:*")}
    assert after == before


def test_records_made_before_the_indexes_are_indexed_once_and_then_erased(
    store, schedule, tmp_path, redis_client
):
    """A store of the release before: no retention index. The first run indexes it (those
    who had left counted from then: kept), a completed one by its last lesson (erased)."""
    gone = left(store, schedule, "before@example.com", months_ago(30))
    done = completed(store, schedule, tmp_path, "olddone@example.com", months_ago(25))
    pending = enrol(store, schedule, "oldpending@example.com", None, None,
                    NOW - timedelta(days=40), confirmed=False)  # fmt: skip
    redis_client.delete("hr:retention:ended", "hr:retention:unconfirmed")
    result = run(store, batch=2)
    assert result.indexed == 3 and result.backfill_done
    assert store.get(gone.id) is not None  # left at some unknown time: counted from now
    assert store.get(done.id) is None and store.get(pending.id) is None
    assert run(store).indexed == 0  # the pass is done once


@pytest.fixture
def course_cli(tmp_path, course_path, redis_url, store, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)


def test_cli_dry_run_then_run_and_stats_show_what_was_erased(store, schedule, course_cli):
    now = datetime.now(UTC)  # the CLI runs on the wall clock
    gone = left(store, schedule, "cli-gone@example.com", months_before(now, 25))
    enrol(store, schedule, "cli-p@example.com", None, None, now - timedelta(days=31),
          confirmed=False)  # fmt: skip
    before = course_cli("stats", "--json")
    assert json.loads(before.stdout)["retention"]["last_run_at"] is None

    dry = course_cli("retention", "run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would erase 1 who left, 0 who completed, 1 never confirmed" in dry.stdout
    assert store.get(gone.id) is not None

    done = course_cli("retention", "run")
    assert done.returncode == 0, done.stderr
    assert "erased 1 who left, 0 who completed, 1 never confirmed" in done.stdout
    assert store.get(gone.id) is None

    shown = json.loads(course_cli("stats", "--json").stdout)["retention"]
    assert shown["erased"] == {"left": 1, "completed": 0, "pending": 1}
    assert shown["last_run_erased"] == 2 and shown["last_run_at"]
    text = course_cli("stats").stdout
    assert (
        "Erased by retention: 1 who left (address kept as a hash), 0 who completed, 1 never"
        in " ".join(text.split())
    )


def test_cli_run_while_another_run_holds_the_lock_fails_with_one_line(store, course_cli):
    store.take_retention_lock("the-daily-task", 60)
    busy = course_cli("retention", "run")
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        "course: another retention run is going on (the daily task?); try again later"
    ]


def test_the_retention_settings_are_read_and_checked():
    assert Settings.from_env({}).retention_months == 24
    env = {"COURSE_RETENTION_MONTHS": "36", "COURSE_RETENTION_PENDING_DAYS": "7"}
    settings = Settings.from_env(env)
    assert (settings.retention_months, settings.retention_pending_days) == (36, 7)
    with pytest.raises(SettingsError, match="COURSE_RETENTION_MONTHS: must be at least 1"):
        Settings.from_env({"COURSE_RETENTION_MONTHS": "0"})
    with pytest.raises(SettingsError, match="COURSE_RETENTION_PENDING_DAYS: not a whole"):
        Settings.from_env({"COURSE_RETENTION_PENDING_DAYS": "a month"})
