"""Tick cost over 10,000 vs 1,000,000 stored subscribers, and Redis memory per subscriber.

    .venv/bin/python bench/tick_bench.py [--total 1000000] [--due 10000] [--rounds 5]

Starts a redis-server of its own (the embedded one, under a temporary folder, with the same
settings as ``course run``: AOF, fsync always) and fills it through the store's own encoding
(``course.store.encode_subscriber``, ``course.store.entries.encode_entry``). Every stored
subscriber is the outcome of a simulated history: the real timeline functions (``due_at``,
``progress_after``) decide when each lesson went out and when the next one is due.

1. Memory, fresh: ``--total`` subscribers who just confirmed and were sent the day-0 lesson.
2. Memory, mix: ``--total`` subscribers at every stage (pending, active at any lesson,
   paused, completed, unsubscribed, bounced, complained), ``--due`` of them due at ``now``.
   Per subscriber: ``used_memory`` after minus before, divided by the count; split by key
   kind with ``MEMORY USAGE`` (every field) on samples of each kind.
3. Tick: the same ``--due`` subscribers stored alone (database 1) and inside the mix
   (database 0); ``course.engine.tick`` runs over each in turn, ``--rounds`` times, with an
   ``enqueue`` that only collects the batches. The due subscribers are written back before
   every round. Medians and their ratio are printed, the ratio last.
Targets (PRODUCT.md): tick ratio <= 2; memory <= 400 bytes per subscriber at 1,000,000.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.engine import tick  # noqa: E402
from course.models.subscriber import LedgerEntry, Subscriber  # noqa: E402
from course.progress import due_at, progress_after  # noqa: E402
from course.schedule import Schedule, load_schedule  # noqa: E402
from course.store import (  # noqa: E402
    Store,
    embedded,
    encode_subscriber,
)
from course.store.codec import EMAIL_BUCKETS  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.store.entries import encode_entry  # noqa: E402
from course.store.keys import DUE_BUCKETS  # noqa: E402
from course.timeline import LATE_GRACE  # noqa: E402

# A winter Tuesday, 13:30 UTC: 08:30 on the wall clocks of the due subscribers' zones, so
# their lesson of the day (08:00) is half an hour late: inside the grace, claimed at once.
NOW = datetime(2026, 1, 20, 13, 30, tzinfo=UTC)
DUE_ZONES = ("America/New_York", "America/Toronto", "America/Bogota", "America/Lima")
ZONES = (
    *DUE_ZONES,
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Kolkata",
)
# The share of each stage in the mix (sums to 1); "active" includes the due ones.
MIX = {
    "pending": 0.05,
    "active": 0.25,
    "paused": 0.03,
    "completed": 0.45,
    "unsubscribed": 0.19,
    "bounced": 0.02,
    "complained": 0.01,
}
FIRST_NAMES = (
    "Maria",
    "Jennifer",
    "Linda",
    "Sarah",
    "Karen",
    "Emily",
    "Ana",
    "Sophie",
    "Claire",
    "Rachel",
    "Michelle",
    "Lisa",
    "Patricia",
    "Nicole",
    "Laura",
)
PROTOTYPES = 4000  # distinct simulated histories (at most), each stamped onto many subscribers
BATCH = 500  # subscribers per loader call


@dataclass(frozen=True)
class History:
    """One simulated subscriber: the record, when each lesson went, and the due score."""

    sub: Subscriber
    sent: tuple[tuple[str, float], ...]  # (lesson id, claim epoch) in order
    due: float | None


def simulate(schedule: Schedule, sub: Subscriber, until: float) -> History:
    """Give ``sub`` every lesson that falls due by ``until``, as ticks on time would."""
    sent: list[tuple[str, float]] = []
    for lesson in schedule.lessons:
        due = due_at(schedule, sub, lesson)
        if due.timestamp() > until:
            return History(sub, tuple(sent), due.timestamp())
        at = due + timedelta(seconds=40)  # the next tick, a little after the due instant
        sub = replace(progress_after(sub, lesson, at), version=sub.version + 1)
        sent.append((lesson.id, at.timestamp()))
    return History(replace(sub, status="completed"), tuple(sent), None)


def started(tz: str, start: float, status: str = "active") -> Subscriber:
    """A confirmed subscriber (version 1: added, then confirmed)."""
    return Subscriber(
        id="",
        email="",
        first_name=None,
        tz=tz,
        status=status,
        created=start - 600,
        start=start,
        version=1,
        source="web",
        consent="v1|203.0.113.7",
    )


def due_history(schedule: Schedule, rng: random.Random) -> History:
    """A subscriber whose next lesson is due at ``NOW`` (within the grace, so claimed)."""
    tz = rng.choice(DUE_ZONES)
    if rng.random() < 0.1:  # confirmed a few minutes ago: day 0 is due
        start = NOW.timestamp() - rng.randint(60, 1800)
        return History(started(tz, start), (), start)
    lesson = rng.choice(schedule.lessons[1:])
    # Confirmed at some hour of the local date that lies ``lesson.day`` days back: this
    # lesson's slot is 08:00 today, half an hour ago.
    local_today = NOW.astimezone(started(tz, 0).zone).date()
    day = local_today - timedelta(days=lesson.day)
    confirmed = datetime(
        day.year,
        day.month,
        day.day,
        rng.randint(0, 7),
        rng.randint(0, 59),
        tzinfo=started(tz, 0).zone,
    )
    history = simulate(schedule, started(tz, confirmed.timestamp()), NOW.timestamp() - 3600)
    return history


def stopped(history: History, status: str, **changes: object) -> History:
    sub = replace(history.sub, status=status, version=history.sub.version + 1, **changes)
    return History(sub, history.sent, history.due if status == "paused" else None)


def mix_history(schedule: Schedule, kind: str, rng: random.Random) -> History:
    """A subscriber at stage ``kind``, not due at ``NOW``."""
    tz = rng.choice(ZONES)
    now = NOW.timestamp()
    length = (schedule.lessons[-1].day + 2) * 86400
    if kind == "pending":
        created = now - rng.uniform(3600, 30 * 86400)
        sub = Subscriber(
            id="",
            email="",
            first_name=None,
            tz=tz,
            status="pending",
            created=created,
            source="web",
            consent="v1|203.0.113.7",
        )
        return History(sub, (), None)
    if kind == "completed":
        history = simulate(schedule, started(tz, now - rng.uniform(length, 3 * 365 * 86400)), now)
        assert history.sub.status == "completed"
        return history
    start = now - rng.uniform(60, length - 3 * 86400)  # not finished by now
    if kind == "active":
        return simulate(schedule, started(tz, start), now)
    stop = rng.uniform(start, now)
    history = simulate(schedule, started(tz, start), stop)
    if kind == "paused":
        until = now + rng.uniform(86400, 7 * 86400) if rng.random() < 0.5 else None
        result = stopped(history, "paused", paused_at=stop, paused_until=until)
        return History(result.sub, result.sent, until)
    return stopped(history, kind)  # unsubscribed, bounced, complained


def fresh_history(schedule: Schedule, rng: random.Random) -> History:
    """Just confirmed; the day-0 lesson has gone out."""
    start = NOW.timestamp() - rng.uniform(60, 3600)
    return simulate(schedule, started(rng.choice(ZONES), start), start + 60)


# ARGV: key prefix, the record count's key, then one packed subscriber each: ``id US email
# US created US due US email bucket key US due bucket key RS field US value ... RS entry
# number US entry ...`` (US = \x1f, RS = \x1e; the values are the store's own encodings, which
# never contain either). Writes what ``Store.add``, the claim script and the due index would
# have written for them. A loader for this benchmark only.
LOAD_SCRIPT = r"""
local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
local p = ARGV[1]
for i = 3, #ARGV do
  local parts = split(ARGV[i], '\30')
  local head = split(parts[1], '\31')
  local id = head[1]
  if redis.call('EXISTS', p .. 'sub:' .. id) == 0 then redis.call('INCR', ARGV[2]) end
  redis.call('DEL', p .. 'sub:' .. id)
  redis.call('HSET', p .. 'sub:' .. id, unpack(split(parts[2], '\31')))
  redis.call('HSET', head[5], head[2], id)
  if head[4] ~= '' then redis.call('ZADD', head[6], head[4], id) end
  if parts[3] ~= '' then
    redis.call('HSET', p .. 'sub:' .. id, unpack(split(parts[3], '\31')))
  end
end
return #ARGV - 2
"""
US, RS = "\x1f", "\x1e"


class Loader:
    """Writes simulated subscribers through the store's own encoding, many per script call."""

    def __init__(self, store: Store, rng: random.Random):
        self.store = store
        self.rng = rng
        self.script = store.redis.register_script(LOAD_SCRIPT)
        self.numbers: dict[str, str] = {}  # entry id -> number, given as the claims would

    def number(self, lesson_id: str) -> str:
        return self.numbers.setdefault(lesson_id, str(len(self.numbers) + 1))

    def person(self, n: int, history: History) -> tuple[Subscriber, dict[str, str]]:
        rng = self.rng
        first = rng.choice(FIRST_NAMES) if rng.random() < 0.7 else None
        email = f"{(first or 'reader').lower()}.{n}@{rng.choice(('gmail.com', 'example.org'))}"
        sub = replace(history.sub, id=f"{n:012x}", email=email, first_name=first)
        ledger = {
            # As the finish script writes a settled send: its epoch alone (layout 7).
            lesson: encode_entry(LedgerEntry(lesson, "sent", at, 1))
            for lesson, at in history.sent
        }
        return sub, ledger

    def pack(self, sub: Subscriber, ledger: dict[str, str], due: float | None) -> str:
        head = US.join(
            (
                sub.id,
                sub.email,
                repr(sub.created),
                "" if due is None else repr(due),
                self.store.email_key(sub.email),
                self.store.due_key(sub.id),
            )
        )
        fields = US.join(chain.from_iterable(encode_subscriber(sub).items()))
        entries = US.join(f"{self.number(lesson)}{US}{value}" for lesson, value in ledger.items())
        return RS.join((head, fields, entries))

    def load(self, people: list[tuple[Subscriber, dict[str, str], float | None]]) -> None:
        pipe = self.store.redis.pipeline(transaction=False)
        packed_all = [self.pack(*person) for person in people]  # numbers given first
        store = self.store
        if self.numbers:
            pipe.hset(store.entry_numbers_key, mapping=self.numbers)
            pipe.hset(store.entry_names_key, mapping={n: i for i, n in self.numbers.items()})
        for start in range(0, len(people), BATCH):
            packed = packed_all[start : start + BATCH]
            self.script(args=[store.prefix, store.subs_count_key, *packed], client=pipe)
        pipe.execute()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def breakdown(store: Store, ids: list[str], rng: random.Random, samples: int = 2000) -> dict:
    """Bytes per subscriber by key kind: per-subscriber keys from a sample, shared keys whole."""
    client = store.redis
    picked = rng.sample(ids, min(samples, len(ids)))
    result: dict[str, float] = {}
    sizes = [client.memory_usage(store.sub_key(sub_id), samples=0) or 0 for sub_id in picked]
    result["sub hash with ledger"] = sum(sizes) / len(sizes)
    pipe = client.pipeline(transaction=False)
    for bucket in range(EMAIL_BUCKETS):
        pipe.memory_usage(store.email_bucket_key(bucket), samples=0)
    result["email buckets"] = sum(size or 0 for size in pipe.execute()) / len(ids)
    pipe = client.pipeline(transaction=False)
    for bucket in range(DUE_BUCKETS):
        pipe.memory_usage(store.due_bucket_key(bucket), samples=0)
    result["due buckets"] = sum(size or 0 for size in pipe.execute()) / len(ids)
    result["pending zset"] = (client.memory_usage(store.pending_key, samples=0) or 0) / len(ids)
    return result


def encodings(store: Store, ids: list[str], rng: random.Random) -> str:
    client = store.redis
    picked = rng.sample(ids, min(200, len(ids)))
    seen: Counter[str] = Counter()
    for sub_id in picked:
        seen[f"sub:{client.object('encoding', store.sub_key(sub_id))}"] += 1
    for bucket in rng.sample(range(EMAIL_BUCKETS), 20):
        key = store.email_bucket_key(bucket)
        if client.exists(key):
            seen[f"e:{client.object('encoding', key)}"] += 1
    for bucket in rng.sample(range(DUE_BUCKETS), 20):
        key = store.due_bucket_key(bucket)
        if client.exists(key):
            seen[f"due:{client.object('encoding', key)}"] += 1
    return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))


def report_memory(
    title: str,
    store: Store,
    before: int,
    ids: list[str],
    rng: random.Random,
    kinds: Counter[str] | None = None,
) -> float:
    after = used_memory(store.redis)
    per = (after - before) / len(ids)
    print(f"\n{title}: {len(ids):,} subscribers, used_memory +{(after - before) / 2**20:,.1f} MiB")
    if kinds:
        print("  " + ", ".join(f"{k} {v / len(ids):.0%}" for k, v in kinds.items()))
    parts = breakdown(store, ids, rng)
    for name, size in parts.items():
        print(f"  {name:<28}{size:>8.0f} B/subscriber")
    rest = per - sum(parts.values())
    print(f"  {'keyspace (dict buckets etc.)':<28}{rest:>8.0f} B/subscriber")
    print(f"  {'total (used_memory delta)':<28}{per:>8.0f} B/subscriber")
    print(f"  encodings sampled: {encodings(store, ids, rng)}")
    return per


def enable_aof(client: redis.Redis) -> float:
    """Turn AOF (fsync always, as ``course run`` has it) back on; seconds its rewrite took."""
    began = time.perf_counter()
    client.config_set("appendonly", "yes")
    while True:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return time.perf_counter() - began
        time.sleep(0.2)


def flush(client: redis.Redis) -> None:
    client.flushdb()
    client.execute_command("MEMORY", "PURGE")


def timed_tick(
    store: Store, schedule: Schedule, restore: list, loader: Loader
) -> tuple[float, float]:
    """Restore the due subscribers, then time one real tick over them (nothing delivered):
    seconds on the wall clock, and seconds Redis spent in the tick's commands (from
    ``INFO commandstats``; less disturbed by the neighbours than the wall clock)."""
    client = store.redis
    client.delete(store.pending_key)
    loader.load(restore)
    batches: list[list[tuple[str, str]]] = []
    client.config_resetstat()
    start = time.perf_counter()
    result = tick(store, schedule, NOW, lambda batch, now: batches.append(batch))
    elapsed = time.perf_counter() - start
    server = sum(stat["usec"] for stat in client.info("commandstats").values()) / 1e6
    claimed = sum(len(b) for b in batches)
    if result.claimed != len(restore) or claimed != len(restore):
        raise SystemExit(f"tick claimed {result.claimed} of {len(restore)}: the set-up is wrong")
    return elapsed, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000, help="stored subscribers")
    parser.add_argument("--due", type=int, default=10_000, help="due at now, in both cases")
    parser.add_argument("--rounds", type=int, default=5, help="ticks timed over each")
    parser.add_argument("--skip-fresh", action="store_true", help="no fresh-only population")
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        help="run this redis-server binary instead of the embedded one (e.g. a Redis 7 build "
        "with jemalloc, as in docker-compose.yml), with the same settings",
    )
    args = parser.parse_args()
    if args.due > args.total:
        parser.error("--due must not exceed --total")
    schedule = load_schedule(ROOT / "schedule.yaml")
    rng = random.Random(20260120)
    if args.redis_server:
        embedded.redis_binary = lambda: args.redis_server
    # Its own throwaway server keeps CONFIG: AOF goes off while it fills and on for the ticks.
    embedded.DISABLED_COMMANDS = tuple(c for c in embedded.DISABLED_COMMANDS if c != "CONFIG")
    var = Path(tempfile.mkdtemp(prefix="tick-bench-"))
    try:
        url = ensure_embedded_redis(var)
        base = url.rsplit("/", 1)[0]
        big = Store(redis.Redis.from_url(f"{base}/0", decode_responses=True, socket_timeout=None))
        small = Store(redis.Redis.from_url(f"{base}/1", decode_responses=True, socket_timeout=None))
        # Loading is not what is measured: no AOF while filling (it is on for the ticks).
        big.redis.config_set("appendonly", "no")
        version = big.redis.info("server")["redis_version"]
        allocator = big.redis.info("memory")["mem_allocator"]
        port = big.redis.connection_pool.connection_kwargs["port"]  # the URL holds a password
        print(f"redis-server {version} ({allocator}; port {port}, under {var})")
        print(f"now = {NOW.isoformat()}")
        print(f"schedule: {len(schedule.lessons)} lessons over {schedule.lessons[-1].day} days")
        run(args, schedule, rng, big, small)
    finally:
        pid_file = var / "redis" / "redis.pid"
        try:
            stop_embedded_redis(var, timeout=60)
        except (redis.RedisError, OSError):  # busy or gone: make sure it is gone
            if pid_file.exists():
                with suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
        shutil.rmtree(var, ignore_errors=True)


def populate(loader: Loader, histories: list[History], count: int, offset: int, pick) -> list[str]:
    """Write ``count`` subscribers, each stamped from ``pick(n)``'s history; their ids."""
    ids: list[str] = []
    # Redis runs one chunk's scripts while this process builds the next.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = None
        for start in range(0, count, 20_000):
            people = []
            for n in range(start, min(count, start + 20_000)):
                history = histories[pick(n)]
                sub, ledger = loader.person(offset + n, history)
                people.append((sub, ledger, history.due))
                ids.append(sub.id)
            if pending is not None:
                pending.result()
            pending = writer.submit(loader.load, people)
        if pending is not None:
            pending.result()
    return ids


def run(args, schedule: Schedule, rng: random.Random, big: Store, small: Store) -> None:
    began = time.perf_counter()
    kinds_of = list(MIX)
    histories = min(PROTOTYPES, max(args.total, 80))
    prototypes: dict[str, list[History]] = defaultdict(list)
    for kind, share in MIX.items():
        for _ in range(max(20, int(histories * share))):
            prototypes[kind].append(mix_history(schedule, kind, rng))
    for history in prototypes["active"] + prototypes["paused"]:  # none of them due now
        assert history.due is None or history.due > NOW.timestamp()
    due_protos = [due_history(schedule, rng) for _ in range(histories // 4)]
    for history in due_protos:
        assert (
            history.due is not None
            and NOW.timestamp() - LATE_GRACE.total_seconds() < history.due <= NOW.timestamp()
        )
    fresh_protos = [fresh_history(schedule, rng) for _ in range(histories // 4)]
    print(
        f"simulated {sum(map(len, prototypes.values())) + 2 * len(due_protos):,} histories "
        f"in {time.perf_counter() - began:.1f} s"
    )
    loader = Loader(big, rng)

    # 1. A population of fresh subscribers only.
    if not args.skip_fresh:
        flush(big.redis)
        before = used_memory(big.redis)
        began = time.perf_counter()
        ids = populate(loader, fresh_protos, args.total, 0, lambda n: n % len(fresh_protos))
        print(f"loaded {len(ids):,} fresh subscribers in {time.perf_counter() - began:.0f} s")
        fresh = report_memory("Memory, fresh (confirmed, day 0 sent)", big, before, ids, rng)
        flush(big.redis)
    else:
        fresh = float("nan")

    # 2. The mix, with the due subscribers first (the same records go into database 1).
    before = used_memory(big.redis)
    began = time.perf_counter()
    due_ids = populate(loader, due_protos, args.due, 0, lambda n: n % len(due_protos))
    weights = [MIX[k] for k in kinds_of]
    rest = args.total - args.due
    chosen = rng.choices(kinds_of, weights, k=rest)
    kinds = Counter(chosen)
    kinds["active"] += args.due
    rest_ids = populate(
        loader,
        [h for k in kinds_of for h in prototypes[k]],
        rest,
        args.due,
        _picker(kinds_of, prototypes, chosen, rng),
    )
    print(f"loaded {args.total:,} subscribers (mix) in {time.perf_counter() - began:.0f} s")
    ids = due_ids + rest_ids
    mixed = report_memory("Memory, mix", big, before, ids, rng, kinds)

    # 3. The tick: the due subscribers alone, and inside the mix.
    print(f"\nAOF on again (fsync always); its rewrite took {enable_aof(big.redis):.0f} s")
    flush(small.redis)
    small_loader = Loader(small, rng)
    restore = [(sub, ledger, due) for sub, ledger, due in _all_due(loader, due_protos, args.due)]
    assert [sub.id for sub, _, _ in restore] == due_ids
    small_loader.load(restore)
    times: dict[str, list[float]] = {"small": [], "big": []}
    redis_times: dict[str, list[float]] = {"small": [], "big": []}
    order = [("small", small, small_loader), ("big", big, loader)]
    for _ in range(args.rounds):
        order.reverse()  # each goes first in every other round
        for name, store, writer in order:
            wall, server = timed_tick(store, schedule, restore, writer)
            times[name].append(wall)
            redis_times[name].append(server)
    med_small, med_big = (statistics.median(times[k]) for k in ("small", "big"))
    print(f"\nTick claiming {args.due:,} due, {args.rounds} rounds each, interleaved (seconds):")
    for name, count in (("small", args.due), ("big", args.total)):
        walls = " ".join(f"{t:.2f}" for t in times[name])
        inside = " ".join(f"{t:.2f}" for t in redis_times[name])
        print(f"  over {count:>9,} stored: {walls}  (in Redis: {inside})")
    print(
        f"  medians {med_small:.2f} s vs {med_big:.2f} s "
        f"({med_small / args.due * 1e6:.0f} vs {med_big / args.due * 1e6:.0f} us per due); "
        f"best {min(times['big']) / min(times['small']):.2f}x; in Redis "
        f"{statistics.median(redis_times['big']) / statistics.median(redis_times['small']):.2f}x"
    )
    verdicts = [f"{name} {size:.0f} B ({'ok' if size <= 400 else 'MISSED'})"
                for name, size in (("fresh", fresh), ("mix", mixed)) if size == size]  # fmt: skip
    print(f"memory per subscriber at {args.total:,}: {', '.join(verdicts)}; target <= 400 B")
    ratio = med_big / med_small
    verdict = "ok" if ratio <= 2 else "MISSED"
    print(f"tick over {args.total:,} / over {args.due:,} = {ratio:.2f}x (target <= 2x: {verdict})")


def _picker(kinds_of, prototypes, chosen, rng):
    flat_index = {}
    offset = 0
    for k in kinds_of:
        flat_index[k] = (offset, len(prototypes[k]))
        offset += len(prototypes[k])

    def pick(n: int) -> int:
        base, size = flat_index[chosen[n]]
        return base + n % size

    return pick


def _all_due(loader: Loader, due_protos: list[History], count: int):
    """The due subscribers exactly as stored (same ids; ledgers re-read, not re-drawn)."""
    store = loader.store
    for n in range(count):
        sub_id = f"{n:012x}"
        sub = store.get(sub_id)
        raw = {lesson: encode_entry(entry) for lesson, entry in store.ledger(sub_id).items()}
        yield sub, raw, due_protos[n % len(due_protos)].due


if __name__ == "__main__":
    main()
