"""The store's layout version and ``course migrate``: a store written as the release before
layouts wrote it (its keys set directly, with redis commands) is refused until it is migrated,
then the course goes on for its subscribers with nothing sent twice or skipped."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from conftest import ROOT, cli_runner, course_env, entry_value, put_entry

from course import engine
from course.doctor.checks import layout_line
from course.mail.render import Renderer
from course.models.subscriber import LedgerEntry
from course.runtime import build_runtime
from course.store import LayoutMismatch
from course.store.layout import LAYOUT
from course.store.migrate import migrate_store
from course.subscribers.lifecycle import resume
from course.tokens import subscriber_links
from course.transport import OutboxTransport

P = "hr:"
OLDER = (
    f"course: store layout 1 is older than this release's layout {LAYOUT}: stop the workers "
    "and run `course migrate`"
)


def at(day: int, hour: int = 13, month: int = 1, year: int = 2026) -> float:
    """An epoch in January 2026 (New York is UTC-5: 13:00 UTC is the course's 08:00)."""
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


def write_subscriber(pipe, sub_id: str, email: str, status: str, start: float,
                     ledger: dict[str, str], due: float | None = None,
                     **fields) -> None:  # fmt: skip
    """One subscriber as the release before layouts wrote it: ``sub:{id}`` with the long
    field names, ``ledger:{id}`` entries ``state|epoch|attempt|detail``, the address in
    ``email``, the signup in ``subs`` and, while a lesson is due, ``due``."""
    record = {"email": email, "first_name": email.split("@")[0].title(),
              "tz": "America/New_York", "status": status, "created": int(start) - 600,
              "start": int(start), "v": 3, "source": "web", "consent": "v1|203.0.113.9",
              **fields}  # fmt: skip
    pipe.hset(f"{P}sub:{sub_id}", mapping=record)
    if ledger:
        pipe.hset(f"{P}ledger:{sub_id}", mapping=ledger)
    pipe.hset(f"{P}email", email, sub_id)
    pipe.zadd(f"{P}subs", {sub_id: start - 600})
    if due is not None:
        pipe.zadd(f"{P}due", {sub_id: due})


def write_old_store(client) -> None:
    """Six readers at different stages, on 5 January 2026 at 12:00 UTC."""
    pipe = client.pipeline()
    # a: confirmed today, day 0 sent (an entry with milliseconds, as older ones were)
    write_subscriber(pipe, "a" * 12, "ann@example.com", "active", at(5, 12),
                     {"hello": f"sent|{at(5, 12):.3f}|1|msg-a1"}, due=at(7),
                     last_sent=int(at(5, 12)), sent_that_day=1, last_lesson="hello",
                     last_day=0)  # fmt: skip
    # b: the second lesson's send ended uncertain, before the uncertain index existed
    write_subscriber(pipe, "b" * 12, "bea@example.com", "active", at(3, 12),
                     {"hello": f"sent|{int(at(3, 12))}|1|msg-b1",
                      "second": f"uncertain|{int(at(5))}|1|timeout"}, due=at(6),
                     last_sent=int(at(5)), sent_that_day=1, last_lesson="second",
                     last_day=2)  # fmt: skip
    # r: the second lesson waits for a retry (429), in the pending index
    write_subscriber(pipe, "c" * 12, "rae@example.com", "active", at(3, 12),
                     {"hello": f"sent|{int(at(3, 12))}|1|msg-r1",
                      "second": f"retry|{int(at(5))}|1|429 too many requests"}, due=at(6),
                     last_sent=int(at(5)), sent_that_day=1, last_lesson="second",
                     last_day=2)  # fmt: skip
    pipe.zadd(f"{P}pending", {f"{'c' * 12}|second": at(5, 13) + 300})
    # p: paused since the 3rd (a flare), before the second lesson
    write_subscriber(pipe, "d" * 12, "pia@example.com", "paused", at(2, 12),
                     {"hello": f"sent|{int(at(2, 12))}|1|msg-p1"}, paused_at=int(at(3, 12)),
                     last_sent=int(at(2, 12)), sent_that_day=1, last_lesson="hello",
                     last_day=0)  # fmt: skip
    # c: completed the course last year
    done = {les: f"sent|{int(at(20 + n, 13, 12, 2025))}|1|msg-c{n}"
            for n, les in enumerate(("hello", "second", "third", "fourth"))}  # fmt: skip
    write_subscriber(pipe, "e" * 12, "cal@example.com", "completed", at(20, 12, 12, 2025), done,
                     last_sent=int(at(1, 13)), last_lesson="fourth", last_day=4)  # fmt: skip
    # u: unsubscribed after the first lesson
    write_subscriber(pipe, "f" * 12, "uma@example.com", "unsubscribed", at(4, 12),
                     {"hello": f"sent|{int(at(4, 12))}|1|msg-u1"}, last_sent=int(at(4, 12)),
                     sent_that_day=1, last_lesson="hello", last_day=0)  # fmt: skip
    pipe.hset(f"{P}stats:sends:hello", mapping={"sent": 6})
    pipe.execute()


def dump(client) -> dict[str, bytes]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


class Recording(OutboxTransport):
    """The outbox transport (a real one: it writes each .eml), also noting who got what."""

    def __init__(self, directory):
        super().__init__(directory)
        self.sent: list[tuple[str, str]] = []

    def send(self, email):
        result = super().send(email)
        self.sent.append((email.to_email, email.custom_args["lesson_id"]))
        return result


@pytest.fixture
def course(redis_url, course_path, tmp_path, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)


def test_every_process_refuses_an_old_store_with_one_line(redis_client, course, settings,
                                                         course_path, tmp_path):  # fmt: skip
    write_old_store(redis_client)
    before = dump(redis_client)
    listed = course("subscribers", "list")
    assert listed.returncode == 2
    assert listed.stderr.strip() == OLDER
    assert course("tick").returncode == 2
    with pytest.raises(LayoutMismatch, match="run `course migrate`"):
        build_runtime(settings)
    env = course_env(settings.redis_url, course_path, tmp_path)
    worker = subprocess.run([sys.executable, "-c", "import worker"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert worker.returncode == 2
    assert worker.stderr.strip() == OLDER
    assert dump(redis_client) == before  # refusing changes nothing


def test_a_newer_layout_is_refused_too(redis_client, course):
    redis_client.set(f"{P}layout", LAYOUT + 1)
    listed = course("subscribers", "list")
    assert listed.returncode == 2
    assert f"store layout {LAYOUT + 1} was written by a newer release" in listed.stderr
    assert course("migrate").returncode == 2


def test_an_empty_store_is_stamped_with_this_layout(redis_client, course):
    assert course("subscribers", "list").returncode == 0
    assert redis_client.get(f"{P}layout") == str(LAYOUT)


def test_dry_run_counts_and_writes_nothing(redis_client, course):
    write_old_store(redis_client)
    before = dump(redis_client)
    dry = course("migrate", "--dry-run", "--batch", "2")
    assert dry.returncode == 0, dry.stderr
    assert "settling): 6 records read, 1 would change" in dry.stdout
    assert "small buckets): 6 records read, 6 would change" in dry.stdout
    assert "field names in every record): 6 records read, 6 would change" in dry.stdout
    assert "of the signup index): 6 records read, 9 would change" in dry.stdout
    assert "due index into small zsets): 3 records read, 3 would change" in dry.stdout
    assert "entries numbered and shorter): 6 records read, 11 would change" in dry.stdout
    assert "nothing was written" in dry.stdout
    assert dump(redis_client) == before


def test_migrated_store_goes_on_with_every_lesson_once(redis_client, course, schedule, store,
                                                      tmp_path):  # fmt: skip
    write_old_store(redis_client)
    done = course("migrate", "--batch", "2")
    assert done.returncode == 0, done.stderr
    assert f"migrated: layout 1 -> {LAYOUT}" in done.stdout
    assert redis_client.get(f"{P}layout") == str(LAYOUT)
    assert not redis_client.exists(f"{P}migrate:state")
    # The email index is in small buckets now; the one big hash is gone.
    assert not redis_client.exists(f"{P}email")
    buckets = redis_client.keys(f"{P}e:*")
    assert len(buckets) == 6 and all(redis_client.object("encoding", b) in ("ziplist", "listpack")
                                     for b in buckets)  # fmt: skip
    assert store.find("Bea@Example.com").id == "b" * 12
    # Every record's fields have their short names; the values are those written.
    bea = redis_client.hgetall(f"{P}sub:{'b' * 12}")
    assert (bea["e"], bea["s"], bea["ll"], bea["k"]) == (
        "bea@example.com", "active", "second", "v1|203.0.113.9")  # fmt: skip
    assert not {"email", "status", "last_lesson", "consent"} & set(bea)
    # No signup index any more: a count of the records instead; listing scans them.
    assert not redis_client.exists(f"{P}subs")
    assert store.count() == 6 and len(set(store.iter_ids())) == 6
    assert store.signup_order(limit=3) == ["e" * 12, "d" * 12, "b" * 12]  # Dec, 2nd, 3rd
    assert store.signup_order("completed") == ["e" * 12]
    # Each ledger is in its record now, under the entries' numbers; a settled send lost the
    # provider's message id (nothing reads it once settled) and is its epoch alone.
    assert not redis_client.keys(f"{P}ledger:*")
    numbers = redis_client.hgetall(f"{P}entries:number")
    assert set(numbers) == {"hello", "second", "third", "fourth"}
    assert sorted(numbers.values(), key=int) == ["1", "2", "3", "4"]
    assert redis_client.hgetall(f"{P}entries:name") == {n: les for les, n in numbers.items()}
    assert entry_value(store, "e" * 12, "third") == str(int(at(22, 13, 12, 2025)))
    assert entry_value(store, "c" * 12, "second") == f"retry|{int(at(5))}|1|429 too many requests"
    assert len(store.ledger("e" * 12)) == 4 and store.get("e" * 12).status == "completed"
    assert store.entry("a" * 12, "hello") == LedgerEntry("hello", "sent", at(5, 12), 1, "")
    assert store.entry("b" * 12, "second").detail == "timeout"  # uncertain: kept as it was
    # The old uncertain send is where the settling looks, at the instant of its send.
    assert store.uncertain_due(at(5)) == [("b" * 12, "second")]
    # The due index is in small zsets, each id in its own bucket with its score.
    assert not redis_client.exists(f"{P}due")
    assert store.due_score("a" * 12) == at(7) and store.due_score("c" * 12) == at(6)
    assert redis_client.zscore(store.due_key("b" * 12), "b" * 12) == at(6)
    assert store.due_count() == 3 and store.next_due() == at(6)
    assert store.due_ids(at(6)) == ["b" * 12, "c" * 12]
    assert course("migrate").stdout.strip() == f"store already at layout {LAYOUT}: nothing to do"

    transport = Recording(tmp_path / "outbox")
    renderer = Renderer(schedule)

    def links(sub_id):
        return subscriber_links("https://course.example", "secret", sub_id)

    queued: list = []
    for hour in range(0, 7 * 24):
        now = datetime.fromtimestamp(at(5, 14) + hour * 3600, UTC)
        if hour == 22:  # 6 January, noon: the paused reader resumes after three days
            resume(store, schedule, store.find("pia@example.com"), now)
        engine.tick(store, schedule, now, lambda items, _: queued.append(items))
        while queued:
            engine.deliver(store, renderer, transport, queued.pop(0), now, links)

    rest = ("second", "third", "fourth")
    expected = sorted([("ann@example.com", les) for les in rest]
                      + [("bea@example.com", les) for les in ("third", "fourth")]
                      + [("rae@example.com", les) for les in rest]
                      + [("pia@example.com", les) for les in rest])  # fmt: skip
    assert sorted(transport.sent) == expected  # once each; nothing to cal, uma or again
    for email in ("ann@example.com", "rae@example.com", "pia@example.com", "bea@example.com"):
        sub = store.find(email)
        assert sub.status == "completed"
        assert {e.state for e in store.ledger(sub.id).values()} <= {"sent", "uncertain"}
    assert store.entry("b" * 12, "second").state == "uncertain"  # no webhook: never re-sent
    assert store.find("uma@example.com").status == "unsubscribed"


def write_many(client, count: int) -> None:
    """``count`` more readers of the old layout, each with an uncertain send: enough that the
    signup index is no longer a small ziplist, and a batch is really a part of it."""
    pipe = client.pipeline()
    for n in range(count):
        write_subscriber(pipe, f"{n:012x}", f"reader{n}@example.com", "active", at(3, 12),
                         {"hello": f"uncertain|{int(at(3, 12)) + n}|1|"}, due=at(6),
                         last_sent=int(at(3, 12)), sent_that_day=1, last_lesson="hello",
                         last_day=0)  # fmt: skip
    pipe.execute()


def test_a_migration_killed_half_way_resumes_and_ends_the_same(redis_client, store, course):
    write_old_store(redis_client)
    write_many(redis_client, 300)

    class Killed(Exception):
        pass

    def kill_after_first_batch(step, seen, total):
        raise Killed

    with pytest.raises(Killed):
        migrate_store(store, 40, False, kill_after_first_batch)
    state = redis_client.hgetall(f"{P}migrate:state")
    assert state["from"] == "1" and state["cursor"] != "0"
    assert 0 < int(state["seen"]) < 306
    assert course("subscribers", "list").returncode == 2  # still layout 1 until it ends
    resumed = course("migrate", "--batch", "40")
    assert resumed.returncode == 0, resumed.stderr
    assert "layout 1 -> 2 (resumed) (" in resumed.stdout
    assert redis_client.get(f"{P}layout") == str(LAYOUT)
    indexed = dict(redis_client.zrange(f"{P}uncertain", 0, -1, withscores=True))
    expected = {f"{n:012x}|hello": at(3, 12) + n for n in range(300)}
    assert indexed == {**expected, f"{'b' * 12}|second": at(5)}


def test_the_due_index_split_killed_half_way_resumes(redis_client, store, course):
    """Step 5 -> 6 moves ``P due`` into its buckets in batches; a killed run goes on."""
    write_old_store(redis_client)
    write_many(redis_client, 300)
    redis_client.set(f"{P}layout", 5)  # only the due index matters to this step

    class Killed(Exception):
        pass

    def kill_after_first_batch(step, seen, total):
        raise Killed

    with pytest.raises(Killed):
        migrate_store(store, 40, False, kill_after_first_batch)
    state = redis_client.hgetall(f"{P}migrate:state")
    assert state["from"] == "5" and state["cursor"] != "0" and 0 < int(state["seen"]) < 303
    resumed = course("migrate", "--batch", "40")
    assert resumed.returncode == 0, resumed.stderr
    assert "layout 5 -> 6 (resumed) (" in resumed.stdout
    assert redis_client.get(f"{P}layout") == str(LAYOUT) and not redis_client.exists(f"{P}due")
    assert store.due_count() == 303 and store.due_count(at(6)) == 302
    assert all(store.due_score(f"{n:012x}") == at(6) for n in range(300))
    buckets = redis_client.keys(f"{P}due:*")
    assert all(redis_client.object("encoding", b) in ("ziplist", "listpack") for b in buckets)


def test_migrate_refuses_while_beat_runs_unless_forced(redis_client, course):
    write_old_store(redis_client)
    redis_client.set(f"{P}beat:last", time.time())
    refused = course("migrate")
    assert refused.returncode == 1
    assert "beat seen running" in refused.stderr
    assert redis_client.get(f"{P}layout") is None
    assert course("migrate", "--force").returncode == 0
    assert redis_client.get(f"{P}layout") == str(LAYOUT)


def test_doctor_says_what_layout_the_store_is_in():
    assert layout_line((LAYOUT, False), LAYOUT).ok
    assert layout_line((None, False), LAYOUT).ok
    old = layout_line((1, True), LAYOUT)
    assert not old.ok and "a migration was interrupted" in old.detail
    assert "course migrate" in (old.fix or "")
    assert not layout_line((LAYOUT + 1, False), LAYOUT).ok


def test_a_store_stamped_layout_2_moves_on_to_this_layout(redis_client, store, course):
    """A store that a release of layout 2 wrote (the version key, one email hash, long field
    names) takes only the steps after 2."""
    write_old_store(redis_client)
    redis_client.set(f"{P}layout", 2)
    done = course("migrate")
    assert done.returncode == 0, done.stderr
    assert "layout 1 -> 2" not in done.stdout and "layout 2 -> 3" in done.stdout
    assert f"migrated: layout 2 -> {LAYOUT}" in done.stdout
    assert store.find("uma@example.com").status == "unsubscribed"
    assert not redis_client.exists(f"{P}uncertain")  # step 1 -> 2 was not run again


def test_the_record_count_follows_signups_re_signups_and_erases(store):
    """Layout 5 counts the records (``P subs:count``) instead of indexing their signup."""
    ann = store.add("ann@example.com", None, "UTC", at(5))
    store.add("bea@example.com", None, "UTC", at(5, 14))
    assert store.suppress(ann.id, "unsubscribed") == 1
    again = store.add("ann@example.com", None, "UTC", at(6))  # a new record, the old kept
    assert store.count() == 3 and store.signup_order(limit=1) == [ann.id]
    assert store.signup_order("pending") == [i for i in store.signup_order() if i != ann.id]
    assert store.erase_record(again.id, "ann@example.com") >= 1
    assert store.count() == 2 and sorted(store.iter_ids()) == sorted(store.signup_order())
    assert store.signup_order(limit=1) == [ann.id]
    assert store.erase_record(ann.id, "ann@example.com") >= 1
    assert store.erase_record(ann.id, "ann@example.com") == 0  # gone: counted down once
    assert store.count() == 1 and store.status_counts() == {"pending": 1}


def test_a_sent_entry_keeps_the_message_id_only_when_the_settling_re_sent_it(store, redis_client):
    sub = store.add("ann@example.com", None, "UTC", at(5))
    for lesson in ("hello", "second", "third"):
        put_entry(store, sub.id, LedgerEntry(lesson, "sending", at(5), 1, "token"))
    redis_client.hset(f"{P}settle:proof", f"{sub.id}|second", "resent|1|0|0|")
    for lesson in ("hello", "second"):
        assert store.finish(sub.id, LedgerEntry(lesson, "sent", at(5), 1, "W3xQj5YlQy2BkqM2i9cJ9A"))
    assert store.finish(sub.id, LedgerEntry("third", "sent", at(5), 2, "W3xQj5YlQy2BkqM2i9cJ9A"))
    assert entry_value(store, sub.id, "hello") == str(int(at(5)))  # first attempt: the epoch
    assert entry_value(store, sub.id, "third") == f"sent|{int(at(5))}|2"  # a retry's attempt
    assert store.entry(sub.id, "second").detail == "W3xQj5YlQy2BkqM2i9cJ9A"
    assert store.ledger(sub.id) == {
        "hello": LedgerEntry("hello", "sent", at(5), 1),
        "second": LedgerEntry("second", "sent", at(5), 1, "W3xQj5YlQy2BkqM2i9cJ9A"),
        "third": LedgerEntry("third", "sent", at(5), 2),
    }


def test_folding_the_ledgers_killed_half_way_resumes_and_drops_orphans(redis_client, store,
                                                                       course):  # fmt: skip
    """Step 6 -> 7 folds each ``ledger:{id}`` into its record in batches; a killed run goes
    on; a ledger without a record (an outcome written after an erase) is deleted."""
    write_old_store(redis_client)
    write_many(redis_client, 300)
    migrate_store(store, 1000, False)  # to this layout, then back to 6 by hand:
    redis_client.set(f"{P}layout", 6)
    redis_client.delete(f"{P}entries:number", f"{P}entries:name")
    pipe = redis_client.pipeline()
    for key in redis_client.scan_iter(f"{P}sub:*"):
        pipe.hdel(key, *[f for f in redis_client.hkeys(key) if f.isdigit()])
    for n in range(300):
        pipe.hset(
            f"{P}ledger:{n:012x}",
            mapping={"hello": f"sent|{int(at(3, 12)) + n}|1", "second": f"claimed|{int(at(5))}|0|"},
        )
    pipe.hset(f"{P}ledger:{'9' * 12}", "hello", f"sent|{int(at(3))}|1")  # its record is gone
    pipe.execute()

    class Killed(Exception):
        pass

    def kill_after_first_batch(step, seen, total):
        if seen:
            raise Killed

    with pytest.raises(Killed):
        migrate_store(store, 40, False, kill_after_first_batch)
    state = redis_client.hgetall(f"{P}migrate:state")
    assert state["from"] == "6" and state["cursor"] != "0"
    resumed = course("migrate", "--batch", "40")
    assert resumed.returncode == 0, resumed.stderr
    assert "layout 6 -> 7 (resumed) (" in resumed.stdout
    assert redis_client.get(f"{P}layout") == str(LAYOUT) and not redis_client.keys(f"{P}ledger:*")
    assert not redis_client.exists(f"{P}sub:{'9' * 12}")  # no record made for the orphan
    assert redis_client.hgetall(f"{P}entries:number") == {"hello": "1", "second": "2"}
    for n in (0, 150, 299):
        assert store.ledger(f"{n:012x}") == {
            "hello": LedgerEntry("hello", "sent", int(at(3, 12)) + n, 1),
            "second": LedgerEntry("second", "claimed", int(at(5)), 0),
        }
    assert entry_value(store, f"{7:012x}", "hello") == str(int(at(3, 12)) + 7)
