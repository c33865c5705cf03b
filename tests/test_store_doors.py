"""The store methods that replaced raw Redis calls elsewhere: admin sessions, taking a rate
hit back, counters, the erase's reads and deletes, the due index and quarantine reads, the
schedule status board, and the error type callers catch instead of redis's."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from course.store import ADDRESS_WINDOW, Store, StoreConnectionError, StoreError, connect, member

NOW = 1_772_479_800.0


def test_an_admin_session_is_held_until_it_ends_and_expires_with_its_ttl(store, redis_client):
    assert not store.admin_session_open("abc")
    store.open_admin_session("abc", 600)
    assert store.admin_session_open("abc")
    assert 0 < redis_client.ttl(store.admin_session_key("abc")) <= 600
    store.end_admin_session("abc")
    assert not store.admin_session_open("abc")


def test_unhit_gives_one_hit_back_and_keeps_the_expiry(store, redis_client):
    store.hit("admin", "1.2.3.4", 900, NOW)
    count, _ = store.hit("admin", "1.2.3.4", 900, NOW)
    assert count == 2
    store.unhit("admin", "1.2.3.4", 900, NOW)
    name = store.rate_key("admin", "1.2.3.4", 900, NOW)
    assert store.counter(name)[0] == 1
    assert 0 < redis_client.ttl(name) <= 960


def test_a_counter_reads_its_count_and_ttl_and_drops_with_the_others(store):
    name = store.rate_key("addr", "k", ADDRESS_WINDOW, NOW)
    assert store.counter(name) is None
    store.hit("addr", "k", ADDRESS_WINDOW, NOW)
    count, ttl = store.counter(name)
    assert count == 1 and 0 < ttl <= ADDRESS_WINDOW + 60
    assert store.drop_counters([name, store.rate_key("addr", "other", 60, NOW)]) == 1
    assert store.counter(name) is None
    assert store.drop_counters([]) == 0


def test_the_record_chain_reads_of_an_erase(store):
    first = store.add("a@example.com", None, "UTC", NOW)
    store.suppress(first.id, "unsubscribed")
    second = store.add("a@example.com", "Ann", "UTC", NOW + 1)
    assert store.address_holder("a@example.com") == second.id
    assert store.address_holder("nobody@example.com") == ""
    assert store.email_and_prior(second.id) == ("a@example.com", first.id)
    assert store.email_and_prior(first.id) == ("a@example.com", "")
    assert store.email_and_prior("gone") == (None, "")
    assert store.email_of(first.id) == "a@example.com" and store.email_of("gone") is None
    assert store.emails_of([first.id, "gone"]) == ["a@example.com", None]
    fields = store.raw_fields(second.id)
    assert fields["email"] == "a@example.com" and fields["prior"] == first.id
    assert store.raw_fields("gone") == {}


def test_erase_record_removes_a_record_and_every_index_entry_of_it(store):
    sub = store.add("b@example.com", None, "UTC", NOW, status="active", start=NOW, due=NOW)
    assert store.suppress_address("b@example.com") is True
    assert store.suppress_address("B@example.com ") is False  # the same address, normalised
    assert store.is_erased("b@example.com")
    store.quarantine(sub.id, "damaged")
    assert store.quarantine_reason(sub.id) == "damaged"
    assert store.erase_record(sub.id, "b@example.com") == 1  # the record (no ledger yet)
    assert store.get(sub.id) is None and store.count() == 0
    assert store.quarantine_reason(sub.id) is None
    assert store.address_holder("b@example.com") == ""


def test_drop_vanished_holder_only_drops_a_mapping_to_a_missing_record(store, redis_client):
    sub = store.add("c@example.com", None, "UTC", NOW)
    store.drop_vanished_holder("c@example.com")
    assert store.address_holder("c@example.com") == sub.id
    redis_client.delete(store.sub_key(sub.id))
    store.drop_vanished_holder("c@example.com")
    assert store.address_holder("c@example.com") == ""


def test_pending_scores_and_drop_due(store, redis_client):
    sub = store.add("d@example.com", None, "UTC", NOW, status="active", start=NOW, due=NOW)
    assert store.pending_scores(sub.id, []) == []
    redis_client.zadd(store.pending_key, {member(sub.id, "hello"): NOW + 5})
    assert store.pending_scores(sub.id, ["hello", "later"]) == [NOW + 5, None]
    assert store.due_score(sub.id) is not None
    store.drop_due(sub.id)
    assert store.due_score(sub.id) is None


def test_schedule_statuses_read_what_the_status_board_wrote(store):
    assert store.schedule_statuses() == {}
    board = store.status_board("worker", "worker@a:1")
    board.report({"fingerprint": "abc"}, datetime.now(UTC))
    [(name, text)] = store.schedule_statuses().items()
    assert name == "worker@a:1" and '"fingerprint": "abc"' in text


def test_store_errors_are_redis_errors_and_a_dead_server_raises_one(redis_url):
    assert Store.Error is StoreError is redis.RedisError
    assert StoreConnectionError is redis.ConnectionError
    store = Store(connect("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    try:
        store.ping()
    except Store.Error as exc:
        assert isinstance(exc, StoreConnectionError)
    else:
        raise AssertionError("no error from a server that is not there")
    Store(connect(redis_url)).ping()
