"""Where a subscriber's bytes go: one record of each kind of ``bench/tick_bench.py``'s mix,
written the same way (its simulated histories and loader), taken apart field by field.

    .venv/bin/python bench/record_profile.py [--redis-server PATH]

For each kind (fresh, active, completed, unsubscribed...) it prints ``MEMORY USAGE`` of the
record and splits it into the key (its name, the keyspace's entry, the object header: what
MEMORY USAGE counts besides the value), the ziplist's own header,
every subscriber field (name and value) and the ledger's entries, from the ziplist encoding
of Redis 6.2 (listpack in Redis 7 costs about the same: one byte less an element's header,
one more for its back-length). What the model does not explain of the server's figure is
printed too (a byte or two: it is exact up to the key's allocation).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tick_bench import Loader, fresh_history, mix_history  # noqa: E402

from course.schedule import load_schedule  # noqa: E402
from course.store import Store, embedded  # noqa: E402
from course.store.codec import FIELD_OF  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.store.entries import is_entry_field  # noqa: E402

KINDS = ("fresh", "active", "completed", "unsubscribed", "paused", "pending")


def element_size(value: str, previous: int) -> int:
    """Bytes of one ziplist element (Redis 6.2): the previous element's length (1 byte below
    254), the encoding header and the data; a string that reads as an integer is kept as one."""
    size = 1 if previous < 254 else 5
    if value.lstrip("-").isdigit() and str(int(value)) == value and abs(int(value)) < 2**63:
        n = int(value)
        if 0 <= n <= 12:
            return size + 1
        for limit, width in ((2**7, 1), (2**15, 2), (2**23, 3), (2**31, 4)):
            if -limit <= n < limit:
                return size + 1 + width
        return size + 1 + 8
    length = len(value.encode())
    header = 1 if length < 64 else 2 if length < 16384 else 5
    return size + header + length


def profile(client: redis.Redis, key: str) -> dict[str, int]:
    """The parts of one record's bytes (see the module's docstring)."""
    parts: dict[str, int] = {}
    previous = 0
    body = 10 + 1  # ziplist header (total bytes, tail offset, length) and end byte
    for name, value in client.hgetall(key).items():
        field = element_size(name, previous)
        data = element_size(value, field)
        previous = data
        label = "ledger entries" if is_entry_field(name) else FIELD_OF.get(name, name)
        parts[label] = parts.get(label, 0) + field + data
        body += field + data
    total = int(client.memory_usage(key, samples=0) or 0)
    key_part = 24 + 16 + len(key) + 4  # dict entry, object header, key sds (header, nul)
    parts["ziplist header and end"] = 11
    parts["key, dict entry, object header"] = key_part
    parts["not explained by the model"] = total - key_part - body
    parts["total (MEMORY USAGE)"] = total
    return parts


LAST = ("ledger entries", "ziplist header and end", "key, dict entry, object header",
        "not explained by the model", "total (MEMORY USAGE)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-server", metavar="PATH", help="another redis-server binary")
    args = parser.parse_args()
    if args.redis_server:
        embedded.redis_binary = lambda: args.redis_server
    schedule = load_schedule(ROOT / "schedule.yaml")
    rng = random.Random(20260120)
    var = Path(tempfile.mkdtemp(prefix="record-profile-"))
    try:
        url = ensure_embedded_redis(var)
        store = Store(redis.Redis.from_url(url, decode_responses=True))
        loader = Loader(store, rng)
        keys = {}
        for n, kind in enumerate(KINDS):
            history = fresh_history(schedule, rng) if kind == "fresh" else None
            while history is None or (kind == "active" and len(history.sent) < 10):
                history = mix_history(schedule, kind, rng)
            sub, ledger = loader.person(n, history)
            loader.load([(sub, ledger, history.due)])
            keys[kind] = store.sub_key(sub.id)
        profiles = {kind: profile(store.redis, key) for kind, key in keys.items()}
        fields = sorted({label for p in profiles.values() for label in p} - set(LAST))
        rows = [*fields, *LAST]
        print(f"{'bytes of one record':<32}" + "".join(f"{k:>13}" for k in KINDS))
        for label in rows:
            cells = "".join(f"{profiles[k].get(label, 0):>13}" for k in KINDS)
            print(f"{label:<32}{cells}")
        counts = "".join(
            f"{sum(1 for f in store.redis.hkeys(keys[k]) if is_entry_field(f)):>13}" for k in KINDS
        )
        print(f"{'(ledger entries: count)':<32}{counts}")
    finally:
        stop_embedded_redis(var, timeout=30)
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
