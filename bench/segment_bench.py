"""Segment counts over 10,000 vs 1,000,000 stored subscribers: seconds per million, and the ratio.

    .venv/bin/python bench/segment_bench.py [--total 1000000] [--small 10000] [--rounds 3]

Starts a redis-server of its own (the embedded one, under a temporary folder) and fills two
databases with the same mix of subscribers at every stage as ``bench/tick_bench.py`` (its
simulated histories and loader: the store's own encoding, real ledgers), ``--small`` of them
in database 1 and ``--total`` in database 0; every fifth reader has check-ins and every
seventh the gentle pace. Then ``course.segments.count.count_segment`` (what ``course segment
count`` runs, a sample of 5 included) counts each expression in ``EXPRESSIONS`` over both,
``--rounds`` times, interleaved. A count is a scan, so its time grows with the list; what is
compared is the time per subscriber (per million): a ratio near 1 means no cost beyond the
scan itself. The ratio is printed last.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import redis
from tick_bench import MIX, NOW, Loader, _picker, mix_history, populate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.schedule import Schedule, load_schedule  # noqa: E402
from course.segments.count import count_segment  # noqa: E402
from course.segments.language import parse  # noqa: E402
from course.store import Store, embedded  # noqa: E402
from course.store.codec import stored_name  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402

EXPRESSIONS = (
    "status:active",
    "status:active phase:2",
    "status:active not-received:sleep-first",
    "tz:Europe/* or checkin:flare",
    "(status:completed or status:active) joined:>2025-06-01 pace:gentle",
)
PROTOTYPES = 2000


def fill(store: Store, schedule: Schedule, count: int, rng: random.Random) -> None:
    """``count`` subscribers of the mix, then check-ins and gentle paces on some of them."""
    prototypes: dict[str, list] = defaultdict(list)
    for kind, share in MIX.items():
        for _ in range(max(10, int(min(PROTOTYPES, count) * share))):
            prototypes[kind].append(mix_history(schedule, kind, rng))
    kinds = list(MIX)
    chosen = rng.choices(kinds, [MIX[k] for k in kinds], k=count)
    flat = [h for k in kinds for h in prototypes[k]]
    ids = populate(Loader(store, rng), flat, count, 0, _picker(kinds, prototypes, chosen, rng))
    lessons = [lesson.id for lesson in schedule.lessons]
    pipe = store.redis.pipeline(transaction=False)
    for n, sub_id in enumerate(ids):
        if n % 5 == 0:
            answer = rng.choice(("flare", "same", "better"))
            value = f"{answer}|{int(NOW.timestamp()) - rng.randrange(86400 * 30)}"
            pipe.hset(store.checkin_key(sub_id), rng.choice(lessons), value)
        if n % 7 == 0:
            pipe.hset(store.sub_key(sub_id), stored_name("pace"), "gentle")
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()


def timed(store: Store, node) -> tuple[float, int]:
    began = time.perf_counter()
    result = count_segment(store, node, sample=5, rng=random.Random(1))
    return time.perf_counter() - began, result.matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000, help="stored subscribers (big)")
    parser.add_argument("--small", type=int, default=10_000, help="stored subscribers (small)")
    parser.add_argument("--rounds", type=int, default=3, help="counts timed of each")
    args = parser.parse_args()
    schedule = load_schedule(ROOT / "schedule.yaml")
    nodes = [(text, parse(text, schedule)) for text in EXPRESSIONS]
    embedded.DISABLED_COMMANDS = tuple(c for c in embedded.DISABLED_COMMANDS if c != "CONFIG")
    var = Path(tempfile.mkdtemp(prefix="segment-bench-"))
    try:
        url = ensure_embedded_redis(var)
        base = url.rsplit("/", 1)[0]
        stores = {
            size: Store(redis.Redis.from_url(f"{base}/{db}", decode_responses=True,
                                             socket_timeout=None))
            for size, db in ((args.small, 1), (args.total, 0))
        }  # fmt: skip
        stores[args.total].redis.config_set("appendonly", "no")  # filling is not measured
        version = stores[args.total].redis.info("server")["redis_version"]
        print(f"redis-server {version} (under {var})")
        for size, store in stores.items():
            began = time.perf_counter()
            fill(store, schedule, size, random.Random(20260120))
            print(f"loaded {size:,} subscribers in {time.perf_counter() - began:.0f} s")
        run(args, nodes, stores)
    finally:
        stop_embedded_redis(var, timeout=60)
        shutil.rmtree(var, ignore_errors=True)


def run(args, nodes, stores: dict[int, Store]) -> None:
    per_million: dict[int, list[float]] = {size: [] for size in stores}
    print(f"\nseconds per count, median of {args.rounds} (matches), and per million subscribers:")
    for text, node in nodes:
        times: dict[int, list[float]] = {size: [] for size in stores}
        matched: dict[int, int] = {}
        order = list(stores.items())
        for _ in range(args.rounds):
            order.reverse()
            for size, store in order:
                seconds, matched[size] = timed(store, node)
                times[size].append(seconds)
        line = []
        for size in stores:
            median = statistics.median(times[size])
            per_million[size].append(median / size * 1e6)
            line.append(f"{size:>9,}: {median:7.3f} s ({matched[size]:>7,}) "
                        f"{median / size * 1e6:6.2f} s/M")  # fmt: skip
        print(f"  {text}\n    " + "   ".join(line))
    small, big = (statistics.median(per_million[size]) for size in stores)
    print(f"median per million: {small:.2f} s over {args.small:,}, {big:.2f} s over {args.total:,}")
    print(f"segment count per subscriber over {args.total:,} / over {args.small:,} = "
          f"{big / small:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
