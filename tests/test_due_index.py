"""The due index in small zsets (layout 6): every reader in its bucket, read across them."""

from course.store.keys import DUE_BUCKETS, due_bucket


def test_due_entries_spread_over_small_buckets_and_read_back_in_order(store, redis_client):
    ids = [f"{n:012x}" for n in range(400)]
    pipe = redis_client.pipeline()
    for n, sub_id in enumerate(ids):
        pipe.zadd(store.due_key(sub_id), {sub_id: 1000.0 + n})
    pipe.execute()
    buckets = redis_client.keys("hr:due:*")
    assert len(buckets) > 300  # spread, not piled in a few
    assert all(redis_client.object("encoding", b) in ("ziplist", "listpack") for b in buckets)
    assert store.due_key(ids[7]) == f"hr:due:{due_bucket(ids[7]):04x}"
    assert all(0 <= due_bucket(i) < DUE_BUCKETS for i in ids)

    assert store.all_due_ids(1199.0) == ids[:200]  # earliest first, across buckets
    assert store.due_ids(1399.0) == ids
    part = store.due_ids(1399.0, limit=50)
    assert len(part) == 50 and part == sorted(part)
    assert store.due_count() == 400 and store.due_count(1009.5) == 10
    assert store.next_due() == 1000.0 and store.due_score(ids[3]) == 1003.0

    store.drop_due(ids[0])
    assert store.next_due() == 1001.0 and store.due_score(ids[0]) is None
    store.redis.hset(store.sub_key(ids[1]), "s", "active")
    store.quarantine(ids[1], "damaged")
    assert store.next_due() == 1002.0
    assert store.release(ids[1], 5.0) and store.next_due() == 5.0


def test_an_empty_index_reads_nothing(store):
    assert store.all_due_ids(1e12) == [] and store.next_due() is None and store.due_count() == 0
