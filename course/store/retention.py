"""What retention needs from Redis: the two indexes of records whose time may be up
(``P retention:ended``, ``P retention:unconfirmed``), the one-time pass that indexes records
made before them, the script that erases one record whose time is up, the run's lock and its
counts. The policy (which records, when, in what order) is in
:mod:`course.subscribers.retention`.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from course.store.codec import as_str, encode_score, stored_name, with_fields
from course.store.keys import Keys
from course.store.privacy import ERASE_SCRIPT

KINDS = ("ended", "pending")  # the two indexes: completed or left, and never confirmed

# KEYS: the first eleven of ERASE_SCRIPT (sub hash, entry names hash, subs count, due, pending,
#       quarantine, the address's email bucket, replies list, replies zset, retention ended,
#       retention unconfirmed),
#       then the suppressed set and the retention stats hash, then ERASE_SCRIPT's last two
#       (the uncertain zset and the settle proof hash)
# ARGV: id, address (as the caller read it), cutoff (epoch), kind ('ended' or 'pending'),
#       the address's suppression hash, status (as the caller read it)
# Checks, in the same step as the erase, that the record's time is still up: still in the
# kind's index (ended or unconfirmed) at or before the cutoff, still in an ended (or pending)
# status, the address and status the caller read. A reader who left, and still holds the
# address, leaves its suppression hash behind (never mailed again); a completed or
# unconfirmed one leaves nothing. Returns
# what ERASE_SCRIPT returns (keys deleted, >= 0) once erased; -1 not due (any more), -2 the
# record is gone, -3 not in such a status (dropped from the index), -4 changed since the
# caller read it (read it again).
RETIRE_SCRIPT = with_fields(
    """
local index = KEYS[10]
if ARGV[4] == 'pending' then index = KEYS[11] end
local score = redis.call('ZSCORE', index, ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[3]) then return -1 end
local s = redis.call('HMGET', KEYS[1], '@status', '@email')
if not s[1] then
  redis.call('ZREM', index, ARGV[1])
  return -2
end
local reason
if ARGV[4] == 'pending' then
  if s[1] == 'pending' then reason = 'pending' end
elseif s[1] == 'completed' then reason = 'completed'
elseif s[1] == 'unsubscribed' or s[1] == 'bounced' or s[1] == 'complained' then
  reason = 'left'
end
if not reason then
  redis.call('ZREM', index, ARGV[1])
  return -3
end
if s[1] ~= ARGV[6] or s[2] ~= ARGV[2] then return -4 end
if reason == 'left' then
  local holder = redis.call('HGET', KEYS[7], ARGV[2])
  if not holder or holder == ARGV[1] then redis.call('SADD', KEYS[12], ARGV[5]) end
end
redis.call('HINCRBY', KEYS[13], reason, 1)
"""
    + ERASE_SCRIPT
)

# KEYS: retention ended zset, retention unconfirmed zset, then one sub hash each
# ARGV: now (epoch), then the ids of those sub hashes
# Indexes records made before the retention indexes existed, without moving an entry the
# live scripts wrote (NX): pending ones at their signup, completed ones at their last
# lesson (when they completed), and those who left at ``now`` (when they left was not
# stored: they are counted from this pass). Returns how many it added.
BACKFILL_SCRIPT = with_fields(
    """
local added = 0
for k = 3, #KEYS do
  local id = ARGV[k - 1]
  local s = redis.call('HMGET', KEYS[k], '@status', '@created', '@last_sent')
  if s[1] == 'pending' then
    added = added + redis.call('ZADD', KEYS[2], 'NX', s[2] or ARGV[1], id)
  elseif s[1] == 'completed' then
    added = added + redis.call('ZADD', KEYS[1], 'NX', s[3] or s[2] or ARGV[1], id)
  elseif s[1] == 'unsubscribed' or s[1] == 'bounced' or s[1] == 'complained' then
    added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[1], id)
  end
end
return added
"""
)

# KEYS: lock key
# ARGV: token
# Releases the lock only if this run still holds it (its TTL may have run out meanwhile).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RetentionRecords(Keys):
    """The retention indexes, the erase of one record whose time is up, the lock, the counts."""

    redis: redis.Redis
    _retire: Script
    _backfill: Script
    _release_lock: Script

    def _index_key(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(kind)
        return self.ended_key if kind == "ended" else self.unconfirmed_key

    def retention_candidates(
        self, kind: str, cutoff: float, batch: int, offset: int = 0
    ) -> list[str]:
        """Ids in the ``kind`` index at or before ``cutoff``, oldest first."""
        ids = self.redis.zrangebyscore(
            self._index_key(kind), "-inf", encode_score(cutoff), start=offset, num=batch
        )
        return [as_str(i) for i in ids]

    def retention_facts(self, sub_ids: list[str]) -> list[tuple[str, str]]:
        """(status, address) of each record ("" for what it lacks), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hmget(self.sub_key(sub_id), stored_name("status"), stored_name("email"))
        return [(as_str(s or ""), as_str(e or "")) for s, e in pipe.execute()]

    def retire_many(
        self, kind: str, cutoff: float, items: list[tuple[str, str, str, str]]
    ) -> list[int]:
        """:data:`RETIRE_SCRIPT` for each (id, address, status, suppression hash), in one
        round trip; the script's answers."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id, address, status, hashed in items:
            keys = [self.sub_key(sub_id), self.entry_names_key, self.subs_count_key,
                    self.due_key(sub_id), self.pending_key, self.quarantine_key,
                    self.email_key(address),
                    self.replies_key(sub_id), self.replied_key, self.ended_key,
                    self.unconfirmed_key, self.suppressed_key,
                    self.retention_stats_key, self.uncertain_key,
                    self.settle_proof_key]  # fmt: skip
            args = [sub_id, address, encode_score(cutoff), kind, hashed, status]
            self._retire(keys=keys, args=args, client=pipe)
        return [int(r) for r in pipe.execute()] if items else []

    def backfill_done(self) -> bool:
        """Whether every record made before the retention indexes has been indexed."""
        return self.redis.hget(self.retention_backfill_key, "done") == b"1"

    def backfill_step(self, now: float, batch: int) -> tuple[int, bool]:
        """Index one batch of older records (a SCAN of ``P sub:*`` resumed where the last
        step left it); (records added, whether the pass is over)."""
        raw = self.redis.hget(self.retention_backfill_key, "cursor")
        cursor, found = self.redis.scan(int(raw or 0), match=self.sub_pattern, count=batch)
        ids = [self.sub_id_of(as_str(key)) for key in found]
        added = 0
        if ids:
            keys = [self.ended_key, self.unconfirmed_key, *(self.sub_key(i) for i in ids)]
            added = int(self._backfill(keys=keys, args=[encode_score(now), *ids]))
        done = int(cursor) == 0
        self.redis.hset(
            self.retention_backfill_key, mapping={"cursor": cursor, "done": "1" if done else "0"}
        )
        return added, done

    def take_retention_lock(self, token: str, ttl: int) -> bool:
        """Hold the retention lock for ``ttl`` seconds; False when another run holds it."""
        return bool(self.redis.set(self.retention_lock_key, token, nx=True, ex=ttl))

    def release_retention_lock(self, token: str) -> None:
        self._release_lock(keys=[self.retention_lock_key], args=[token])

    def record_retention_run(self, at: float, erased: int, seconds: float) -> None:
        """The latest run's instant, records erased and duration (``P stats:retention``)."""
        mapping = {"last_at": encode_score(at), "last_erased": erased,
                   "last_seconds": f"{seconds:.3f}"}  # fmt: skip
        self.redis.hset(self.retention_stats_key, mapping=mapping)

    def retention_stats(self) -> dict[str, float]:
        """``P stats:retention`` as numbers (empty before the first run)."""
        raw = self.redis.hgetall(self.retention_stats_key)
        return {as_str(k): float(v) for k, v in raw.items()}

    def retention_waiting(self, kind: str) -> int:
        """How many records the ``kind`` index holds now (their time may not be up)."""
        return int(self.redis.zcard(self._index_key(kind)))
