"""GDPR export and erasure against the tests' real Redis: every record an address ever had,
nothing left behind after an erase, an erased address never mailed again (a real tick with
the outbox transport), and the CLI's output and exit status."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from subprocess import CompletedProcess

import pytest
import redis
from conftest import cli_runner, course_env, db_url

from course import engine
from course.mail.render import Renderer
from course.models.subscriber import LedgerEntry
from course.store import ErasedAddress, Store, suppression_hash
from course.subscribers.double_opt_in import SignupRequest, Signups
from course.subscribers.lifecycle import enrol, unsubscribe
from course.subscribers.privacy import erase, export_data, record_ids
from course.tokens import subscriber_links
from course.transport import OutboxTransport

PRIVACY_DB = 13  # the CLI tests of this module own this database of the tests' server
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def tick_and_deliver(store, schedule, settings, now):
    """One real tick, its claims delivered in-process to the outbox."""
    items: list[tuple[str, str]] = []
    engine.tick(store, schedule, now, lambda batch, when: items.extend(batch))
    transport = OutboxTransport(settings.outbox_dir)
    links = lambda sub_id: subscriber_links(settings.base_url, settings.secret_key, sub_id)  # noqa: E731
    return items, engine.deliver(store, Renderer(schedule), transport, items, now, links)


def outbox(settings) -> list:
    return sorted(settings.outbox_dir.glob("*.eml")) if settings.outbox_dir.exists() else []


def every_value(client: redis.Redis) -> str:
    """Every key name and value in the database, as one text to search."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        parts.append(key)
        if kind == "string":
            parts.append(client.get(key) or "")
        elif kind == "hash":
            parts += [f"{k}={v}" for k, v in client.hgetall(key).items()]
        elif kind == "zset":
            parts += client.zrange(key, 0, -1)
        elif kind == "set":
            parts += client.smembers(key)
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
    return "\n".join(parts)


@pytest.fixture
def history(store, schedule, settings):
    """ann@example.com took two lessons, unsubscribed, and signed up again (a new record)."""
    first = enrol(store, schedule, "ann@example.com", "Ann", "Europe/Berlin", NOW,
                  source="web", consent="2026-01-web-1|203.0.113.9")  # fmt: skip
    tick_and_deliver(store, schedule, settings, NOW)
    unsubscribe(store, first)
    later = NOW + timedelta(days=10)
    second = enrol(store, schedule, "Ann@Example.com", "Annie", "Europe/Berlin", later,
                   source="web", consent="2026-01-web-1|198.51.100.4")  # fmt: skip
    tick_and_deliver(store, schedule, settings, later)
    enrol(store, schedule, "bob@example.com", "Bob", None, NOW)  # someone else entirely
    return first, second


def test_export_holds_every_record_the_address_ever_had(store, history):
    first, second = history
    data = export_data(store, "ANN@example.com ", NOW + timedelta(days=11))
    assert data["address"] == "ann@example.com"
    assert [r["id"] for r in data["records"]] == [second.id, first.id]
    newest, oldest = data["records"]
    assert newest["current"] and not oldest["current"]
    assert oldest["status"] == "unsubscribed" and newest["status"] == "active"
    assert newest["fields"]["prior"] == first.id  # the link that finds the old record
    assert oldest["consent"] == {"at": "2026-03-02T14:00:00+00:00", "source": "web",
                                 "text_version": "2026-01-web-1", "ip": "203.0.113.9"}  # fmt: skip
    assert newest["consent"]["ip"] == "198.51.100.4"
    (entry,) = oldest["ledger"]
    assert entry["lesson_id"] == "hello" and entry["state"] == "sent"
    # The provider's message id is not kept once a send is settled (layout 5).
    assert entry["attempts"] == 1 and "provider_message_id" not in entry
    assert newest["due_at"] is not None
    assert data["erased_before"] is False
    json.dumps(data)  # plain data all the way down


def test_export_of_an_address_never_seen_is_none(store, history):
    assert export_data(store, "nobody@example.com", NOW) is None


def test_erase_leaves_no_trace_but_the_suppression_hash(store, redis_client, history):
    first, second = history
    before = every_value(redis_client)
    assert first.id in before and "ann@example.com" in before

    result = erase(store, "ann@example.com", NOW + timedelta(days=11))

    assert sorted(result.records) == sorted([first.id, second.id]) and not result.already
    left = every_value(redis_client)
    assert "ann@example.com" not in left
    assert first.id not in left and second.id not in left
    assert redis_client.smembers(store.suppressed_key) == {suppression_hash("ann@example.com")}
    assert store.find("bob@example.com") is not None  # nobody else is touched
    assert store.count() == 1
    assert export_data(store, "ann@example.com", NOW) is None


def test_erase_is_idempotent_and_suppresses_even_an_unknown_address(store):
    assert erase(store, "zed@example.com", NOW).records == []
    again = erase(store, "zed@example.com", NOW)
    assert again.already and again.records == [] and again.keys == 0
    assert store.is_erased("Zed@Example.com")


def test_an_erased_address_can_never_be_added_again(store, schedule, history):
    erase(store, "ann@example.com", NOW)
    with pytest.raises(ErasedAddress):
        enrol(store, schedule, "ann@example.com", "Ann", None, NOW + timedelta(days=20))
    assert record_ids(store, "ann@example.com") == []


def test_a_delivery_queued_before_the_erase_sends_nothing(store, schedule, settings):
    enrol(store, schedule, "cy@example.com", "Cy", None, NOW)
    items: list[tuple[str, str]] = []
    engine.tick(store, schedule, NOW, lambda batch, when: items.extend(batch))
    assert len(items) == 1  # claimed, on its way to a worker

    erase(store, "cy@example.com", NOW)
    links = lambda sub_id: subscriber_links(settings.base_url, settings.secret_key, sub_id)  # noqa: E731
    transport = OutboxTransport(settings.outbox_dir)
    result = engine.deliver(store, Renderer(schedule), transport, items, NOW, links)

    assert (result.sent, result.skipped) == (0, 1)
    assert outbox(settings) == []
    assert not store.redis.exists(store.sub_key(items[0][0]))  # not brought back


def on_its_way(store, schedule, email: str):
    """A subscriber whose day-0 lesson a worker has taken to ``sending`` just now."""
    sub = enrol(store, schedule, email, None, None, NOW)
    engine.tick(store, schedule, NOW, lambda batch, when: None)  # claimed
    assert store.start_send(sub.id, "hello", time.time(), time.time() + 900) == 1
    return sub


def test_erase_suppresses_then_waits_for_a_lesson_on_its_way(store, schedule):
    sub = on_its_way(store, schedule, "hal@example.com")
    seen: dict[str, object] = {}

    def worker() -> None:  # the send ends a second later, while the erase waits
        time.sleep(1.0)
        now_held = store.get(sub.id)  # suppressed: nothing more can start
        seen["status"] = now_held.status if now_held else "erased already"
        store.finish(sub.id, LedgerEntry("hello", "sent", time.time(), 1, "sg-1"))
        seen["finished"] = time.monotonic()

    thread = threading.Thread(target=worker)
    thread.start()
    result = erase(store, "hal@example.com", NOW)
    returned = time.monotonic()
    thread.join()

    assert seen["status"] == "unsubscribed" and returned > seen["finished"]
    assert result.records == [sub.id]
    assert store.get(sub.id) is None and not store.redis.exists(store.sub_key(sub.id))


def test_erase_goes_ahead_when_a_send_does_not_finish_in_time(store, schedule):
    sub = on_its_way(store, schedule, "ivy@example.com")  # its worker never reports back
    began = time.monotonic()
    result = erase(store, "ivy@example.com", NOW, timeout=2.0)
    took = time.monotonic() - began

    assert 1.0 <= took < 3.0  # waited (instants are whole seconds: at least 1 s of 2 here)
    assert result.records == [sub.id]
    assert store.get(sub.id) is None and store.is_erased("ivy@example.com")
    assert not store.redis.exists(store.sub_key(sub.id))


def test_erase_does_not_wait_when_nothing_is_on_its_way(store, schedule, history):
    began = time.monotonic()
    result = erase(store, "ann@example.com", NOW)
    assert time.monotonic() - began < 0.5 and result.records


def test_a_pending_entry_left_by_a_racing_erase_is_dropped_without_a_ledger(store, schedule):
    sub = enrol(store, schedule, "ed@example.com", "Ed", None, NOW)
    engine.tick(store, schedule, NOW, lambda batch, when: None)  # claimed: a pending entry
    erase(store, "ed@example.com", NOW)
    # a sweep that read the pending index just before the erase still holds this member
    store.redis.zadd(store.pending_key, {f"{sub.id}|{schedule.lessons[0].id}": NOW.timestamp()})

    engine.tick(store, schedule, NOW + timedelta(hours=1), lambda batch, when: None)

    assert not store.redis.exists(store.sub_key(sub.id))
    assert store.pending_count() == 0


def test_an_erased_address_signing_up_again_gets_nothing_sent(store, schedule, settings):
    enrol(store, schedule, "dee@example.com", "Dee", None, NOW)
    erase(store, "dee@example.com", NOW)
    sent_tasks: list[str] = []
    signups = Signups(store, settings, lambda name, **kw: sent_tasks.append(name))
    request = SignupRequest("dee@example.com", "Dee", "UTC", "192.0.2.1", NOW + timedelta(days=1),
                            "v1")  # fmt: skip

    outcome = signups.signup(request, schedule)

    assert outcome.outcome == "erased" and sent_tasks == []
    assert store.find("dee@example.com") is None
    items, result = tick_and_deliver(store, schedule, settings, NOW + timedelta(days=30))
    assert items == [] and result.sent == 0 and outbox(settings) == []


def test_records_from_before_the_prior_link_are_found_by_a_scan(store, schedule):
    old = enrol(store, schedule, "eve@example.com", "Eve", None, NOW)
    unsubscribe(store, old)
    new = enrol(store, schedule, "eve@example.com", "Eve", None, NOW + timedelta(days=3))
    store.redis.hdel(store.sub_key(new.id), "pr")  # as a record made by an older version
    assert record_ids(store, "eve@example.com") == [new.id]
    assert record_ids(store, "eve@example.com", scan=True) == [new.id, old.id]
    # The admin page erases from the record it shows, which the chain may not reach.
    result = erase(store, "eve@example.com", NOW, also=(old.id, "someone-else"))
    assert result.records == [new.id, old.id] and store.count() == 0


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, course_path, redis_url, schedule, monkeypatch, capsys):
    """``course subscribers ARGS`` through the command's entry point in this process."""
    url = db_url(redis_url, PRIVACY_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    course = cli_runner(course_env(url, course_path, tmp_path), monkeypatch, capsys)

    def run(*args: str, stdin: str | None = None) -> CompletedProcess:
        return course("subscribers", *args, stdin=stdin)

    yield run, Store(client)
    client.flushdb()
    client.close()


def test_cli_export_data_prints_json_or_writes_a_file(cli, schedule, tmp_path):
    run, store = cli
    sub = enrol(store, schedule, "fay@example.com", "Fay", "Asia/Tokyo", NOW, source="cli")
    printed = run("export-data", "fay@example.com")
    assert printed.returncode == 0, printed.stderr
    data = json.loads(printed.stdout)
    assert [r["id"] for r in data["records"]] == [sub.id]
    assert data["records"][0]["fields"]["first_name"] == "Fay"

    out = tmp_path / "export" / "fay.json"
    written = run("export-data", "fay@example.com", "--out", str(out))
    assert written.returncode == 0 and written.stdout == ""
    assert json.loads(out.read_text())["records"][0]["id"] == sub.id


def test_cli_export_data_of_an_unknown_address_exits_1(cli):
    run, _ = cli
    result = run("export-data", "ghost@example.com")
    assert result.returncode == 1
    assert result.stderr.strip() == "course: no data held for ghost@example.com"
    bad = run("export-data", "not an address")
    assert bad.returncode == 2 and "not an email address" in bad.stderr
    assert "Traceback" not in result.stderr + bad.stderr


def test_cli_finds_an_address_typed_with_a_punycode_domain(cli, schedule):
    run, store = cli
    sub = enrol(store, schedule, "ida@bücher.example", "Ida", None, NOW)
    printed = run("export-data", "Ida@xn--bcher-kva.example")
    assert printed.returncode == 0, printed.stderr
    assert [r["id"] for r in json.loads(printed.stdout)["records"]] == [sub.id]


def test_cli_erase_asks_first_then_erases_and_is_idempotent(cli, schedule):
    run, store = cli
    enrol(store, schedule, "gil@example.com", "Gil", None, NOW)

    declined = run("erase", "gil@example.com", stdin="n\n")
    assert declined.returncode == 130 and store.find("gil@example.com") is not None
    assert "Erase gil@example.com (1 record(s)) for good?" in declined.stderr

    confirmed = run("erase", "gil@example.com", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "gil@example.com: erased 1 record(s)" in confirmed.stdout
    assert store.find("gil@example.com") is None and store.is_erased("gil@example.com")

    again = run("erase", "gil@example.com", "--yes")
    assert again.returncode == 0
    assert "nothing held; already erased" in again.stdout
    gone = run("export-data", "gil@example.com")
    assert gone.returncode == 1 and "(erased on request)" in gone.stderr
    readd = run("add", "gil@example.com")
    assert readd.returncode == 1
    assert readd.stderr.strip() == (
        "course: gil@example.com: erased on request; it is never mailed again"
    )
