"""Settling uncertain sends: the index of ``uncertain`` entries, the latest send that a
provider event proved went through (the mark), and the script that decides, for one entry,
to re-send it.

An entry is ``uncertain`` when its send's outcome is unknown (a worker killed after
starting it, a request that hung). SendGrid posts a ``processed`` event for every message it
accepts, so once events have arrived for a send that started *after* this one, and a whole
settling window has then passed with no event for it, the provider never had it: it is
claimed again. The proof (when the entry was armed and which later send's event did it) is
kept in ``P settle:proof``. A re-send that ends uncertain too is settled by the same rule (a
send later than the re-send must have its event), at most :data:`MAX_RESENDS` times. A late
event for the first send that arrives before the re-send starts settles it as sent instead
(:meth:`Ledger.resolve_uncertain`); every step is one script, so the decision and the claim
cannot be split by an event or an unsubscribe.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from course.models.ledger import SettlingFacts
from course.store.codec import as_str, encode_score, encode_value, with_fields
from course.store.entries import ENTRY_LUA
from course.store.keys import Keys, member, split_member

# KEYS: sub hash (with the ledger's entries), entry numbers hash, uncertain zset, pending
#       zset, mark hash, proof hash, the lesson's send stats hash
# ARGV: id, lesson, now, window (seconds), stale deadline of the re-send, recheck epoch,
#       most re-sends of one entry
# The proof is ``phase|re-sends so far|epoch|mark at|mark event``: ``armed`` once a later
# send's event was seen and none for this send, ``resent`` once it was claimed again. A
# re-send that ends uncertain too is a new uncertain send: armed again only by an event for a
# send later than *it*, re-sent again up to the limit.
# Returns 1 re-send claimed; 2 armed (proof recorded, re-sent a window later if still
# uncertain); 0 nothing to settle (no longer uncertain, or re-sent as often as allowed: it
# leaves the index); -1 not mailable (unsubscribed, bounced, erased: leaves the index, stays
# uncertain); -2 no event for a later send yet; -3 paused (looked at again later); -4 armed,
# its window is not over.
SETTLE_SCRIPT = ENTRY_LUA + with_fields(
    """
local member = ARGV[1] .. '|' .. ARGV[2]
local field = entry_field(KEYS[2], nil, ARGV[2], false)
local raw = field and redis.call('HGET', KEYS[1], field)
if not raw then redis.call('ZREM', KEYS[3], member) return 0 end
local state, at, attempt = entry_parts(raw)
if state ~= 'uncertain' then redis.call('ZREM', KEYS[3], member) return 0 end
local proof = redis.call('HGET', KEYS[6], member) or 'none|0|0|0|'
local phase, resends, armed = string.match(proof, '^([^|]*)|([^|]*)|([^|]*)')
resends = tonumber(resends)
if phase == 'resent' and resends >= tonumber(ARGV[7]) then
  redis.call('ZREM', KEYS[3], member) return 0
end
local status = redis.call('HGET', KEYS[1], '@status')
if status ~= 'active' and status ~= 'completed' and status ~= 'paused' then
  redis.call('ZREM', KEYS[3], member) return -1
end
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
if phase ~= 'armed' then
  local mark = redis.call('HMGET', KEYS[5], 'at', 'event')
  if not mark[1] or tonumber(mark[1]) <= tonumber(at) then
    redis.call('ZADD', KEYS[3], ARGV[6], member) return -2
  end
  redis.call('HSET', KEYS[6], member,
             'armed|' .. resends .. '|' .. ARGV[3] .. '|' .. mark[1] .. '|' .. (mark[2] or ''))
  redis.call('ZADD', KEYS[3], now + window, member)
  return 2
end
armed = tonumber(armed)
if now < armed + window then redis.call('ZADD', KEYS[3], armed + window, member) return -4 end
if status == 'paused' then redis.call('ZADD', KEYS[3], ARGV[6], member) return -3 end
redis.call('HSET', KEYS[1], field,
           'claimed|' .. ARGV[3] .. '|' .. attempt .. '|re-send: no event for it')
local rest = string.match(proof, '^[^|]*|[^|]*|[^|]*|(.*)')
redis.call('HSET', KEYS[6], member, 'resent|' .. (resends + 1) .. '|' .. ARGV[3] .. '|' .. rest)
redis.call('ZREM', KEYS[3], member)
redis.call('ZADD', KEYS[4], ARGV[5], member)
redis.call('HINCRBY', KEYS[7], 'uncertain', -1)
redis.call('HINCRBY', KEYS[7], 'resent', 1)
return 1
"""
)

# KEYS: mark hash
# ARGV: epoch at which the send that an event is about started, a reference to it
#       (``{id}|{lesson}``), now
# Moves the mark forward only (events arrive in any order); counts every event that names a
# send. Returns 1 when the mark moved.
MARK_SCRIPT = """
redis.call('HINCRBY', KEYS[1], 'events', 1)
redis.call('HSET', KEYS[1], 'last_seen', ARGV[3])
local cur = redis.call('HGET', KEYS[1], 'at')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'event', ARGV[2], 'seen', ARGV[3])
return 1
"""

MAX_RESENDS = 2  # re-sends of one entry: three sends in all, each proven lost by events


class Settling(Keys):
    """The uncertain index (``P uncertain``), the mark (``P settle:mark``) and the proofs
    (``P settle:proof``)."""

    redis: redis.Redis
    _settle: Script
    _mark: Script

    def uncertain_due(self, now: float, limit: int = 10_000) -> list[tuple[str, str]]:
        """Uncertain entries whose time to be looked at has come (oldest first)."""
        found = self.redis.zrangebyscore(self.uncertain_key, "-inf", now, 0, limit)
        return [split_member(as_str(m)) for m in found]

    def settle_many(
        self, items: list[tuple[str, str]], now: float, window: float, stale_at: float,
        recheck_at: float,
    ) -> list[int]:  # fmt: skip
        """Run the settle script for each (subscriber, lesson), in one round trip."""
        if not items:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for sub_id, lesson_id in items:
            keys = [self.sub_key(sub_id), self.entry_numbers_key, self.uncertain_key,
                    self.pending_key, self.settle_mark_key, self.settle_proof_key,
                    self.send_stats_key(lesson_id)]  # fmt: skip
            args = [sub_id, lesson_id, encode_value(float(now)), encode_value(float(window)),
                    encode_score(stale_at), encode_score(recheck_at), MAX_RESENDS]  # fmt: skip
            self._settle(keys=keys, args=args, client=pipe)
        return [int(answer) for answer in pipe.execute()]

    def mark_send(self, sent_at: float, sub_id: str, lesson_id: str, now: float) -> bool:
        """An event arrived for the send of (subscriber, lesson) that started at
        ``sent_at``: the mark moves forward to it if it is the latest. True when it moved."""
        args = [encode_score(sent_at), member(sub_id, lesson_id), encode_value(float(now))]
        return bool(self._mark(keys=[self.settle_mark_key], args=args))

    def settle_mark(self) -> dict[str, str]:
        """The mark: ``at`` (the latest send an event proved), ``event`` (which),
        ``seen`` (when that event came), ``last_seen``, ``events`` (how many named a send).
        Empty when no event ever named a send."""
        raw = self.redis.hgetall(self.settle_mark_key)
        return {as_str(k): as_str(v) for k, v in raw.items()}

    def settle_proof(self, sub_id: str, lesson_id: str) -> str | None:
        """``armed|re-sends|when|mark at|mark event`` (a later send's event was seen and none
        for this one), ``resent|re-sends|when|mark at|mark event`` (claimed again); None."""
        raw = self.redis.hget(self.settle_proof_key, member(sub_id, lesson_id))
        return as_str(raw) if raw else None

    def uncertain_counts(self) -> tuple[int, int]:
        """(entries in the uncertain index, proofs kept: armed or re-sent)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.uncertain_key)
        pipe.hlen(self.settle_proof_key)
        waiting, proofs = pipe.execute()
        return int(waiting), int(proofs)

    def settling_facts(self) -> SettlingFacts:
        """The figures ``course doctor`` and ``course stats`` report (course.reports.settling)."""
        waiting, proofs = self.uncertain_counts()
        return SettlingFacts(waiting, proofs, self.settle_mark())
