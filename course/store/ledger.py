"""The per-subscriber ledger: claiming a lesson, starting its send, recording its outcome,
and the pending index of unfinished entries (retries, stale claims and sends).

Every step is one Lua script, so a tick and any number of workers can race without a lesson
ever being handed to the provider twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import redis
from redis.commands.core import Script

from course.models.ledger import FINISH_FROM, Claim, Outcome
from course.models.subscriber import LedgerEntry
from course.store.codec import as_str, encode_score, encode_value, with_fields
from course.store.entries import ENTRY_LUA, EntryNumbers, decode_entry, split_record
from course.store.keys import member, split_member

# KEYS: sub hash (the ledger's entries are its numbered fields: course.store.entries), due
#       bucket zset, pending zset, retention ended zset, entry numbers hash, entry names hash
# ARGV: id, lesson, expected version, now, next due ('' = none left: completed, and the
#       instant of completing goes in the retention index),
#       sent_that_day, lesson day, pending deadline, previous lesson ('' = none)
# Returns 1 claimed, 0 not active, -1 version moved on, -2 lesson already in the ledger,
# -3 the previous lesson is still on its way (claimed, sending or retry): order first.
CLAIM_SCRIPT = ENTRY_LUA + with_fields(
    """
local s = redis.call('HMGET', KEYS[1], '@status', '@version')
if s[1] ~= 'active' then return 0 end
local v = s[2] or '0'
if v ~= ARGV[3] then return -1 end
if ARGV[9] ~= '' then
  local prev = entry_field(KEYS[5], KEYS[6], ARGV[9], false)
  local state = prev and entry_state(redis.call('HGET', KEYS[1], prev))
  if state == 'claimed' or state == 'sending' or state == 'retry' then return -3 end
end
local field = entry_field(KEYS[5], KEYS[6], ARGV[2], true)
if redis.call('HSETNX', KEYS[1], field, 'claimed|' .. ARGV[4] .. '|0|') == 0 then return -2 end
redis.call('HSET', KEYS[1], '@version', tonumber(v) + 1, '@last_sent', ARGV[4],
           '@sent_that_day', ARGV[6], '@last_lesson', ARGV[2], '@last_day', ARGV[7])
if ARGV[5] == '' then
  redis.call('HSET', KEYS[1], '@status', 'completed')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1] .. '|' .. ARGV[2])
return 1
"""
)

# KEYS: sub hash, pending zset, the lesson's send stats hash, entry numbers hash
# ARGV: id, lesson, now, stale deadline, this call's token
# Moves a claimed or retry entry to sending, only while the subscriber may still be mailed.
# The token is kept in the sending entry: the same call run again (a client that lost the
# answer and retried the command) gets its attempt back instead of a refusal.
# Returns the attempt number (>= 1), 0 no such entry, -1 subscriber suppressed (entry
# becomes skipped), -2 entry is in another state (someone else sends or sent it).
START_SEND_SCRIPT = ENTRY_LUA + with_fields(
    """
local field = entry_field(KEYS[4], nil, ARGV[2], false)
local raw = field and redis.call('HGET', KEYS[1], field)
if not raw then return 0 end
local state, at, attempt, detail = entry_parts(raw)
if state == 'sending' and detail == ARGV[5] then return tonumber(attempt) end
if state ~= 'claimed' and state ~= 'retry' then return -2 end
local member = ARGV[1] .. '|' .. ARGV[2]
local status = redis.call('HGET', KEYS[1], '@status')
if status ~= 'active' and status ~= 'completed' and status ~= 'paused' then
  local why = status or 'erased'
  redis.call('HSET', KEYS[1], field, 'skipped|' .. ARGV[3] .. '|' .. attempt .. '|' .. why)
  redis.call('ZREM', KEYS[2], member)
  redis.call('HINCRBY', KEYS[3], 'skipped', 1)
  return -1
end
local n = tonumber(attempt) + 1
redis.call('HSET', KEYS[1], field, 'sending|' .. ARGV[3] .. '|' .. n .. '|' .. ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], member)
return n
"""
)

# KEYS: sub hash, pending zset, the lesson's send stats hash, uncertain zset, settle proof
#       hash, entry numbers hash, entry names hash
# ARGV: id, lesson, new entry (``state|epoch|attempt|detail``), pending score ('' = done,
#       remove), allowed states (comma list; an empty item allows writing an entry that is not
#       there: only tests seeding a ledger do), the new entry's epoch
# Returns 1 written, 0 the entry was in a state not allowed. The stats count entries by final state
# (an uncertain entry settled later moves from one count to the other) and every retry
# scheduled. An entry that becomes uncertain joins the uncertain index (what the settling
# reads), one that leaves that state leaves it. A ``sent`` entry keeps the provider's
# message id only when the settling re-sent it (its proof is kept): the webhook then tells an
# event of the first send from one of the re-send by it; otherwise nothing reads it, and the
# entry is written short (course.store.entries: the bare epoch for a first attempt).
FINISH_SCRIPT = (
    ENTRY_LUA
    + """
local seeding = string.find(',' .. ARGV[5] .. ',', ',,', 1, true) ~= nil
local field = entry_field(KEYS[6], KEYS[7], ARGV[2], seeding)
local raw = field and redis.call('HGET', KEYS[1], field)
if not raw and not seeding then return 0 end
local state = entry_state(raw) or ''
if not string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then return 0 end
local member = ARGV[1] .. '|' .. ARGV[2]
local new, at, attempt, detail = entry_parts(ARGV[3])
local entry = ARGV[3]
if new == 'sent' and redis.call('HEXISTS', KEYS[5], member) == 0 then
  entry = compact_sent(new, at, attempt, '')
end
redis.call('HSET', KEYS[1], field, entry)
if new == 'retry' then redis.call('HINCRBY', KEYS[3], 'retried', 1)
elseif new ~= state and (new == 'sent' or new == 'failed' or new == 'uncertain'
                         or new == 'skipped') then
  redis.call('HINCRBY', KEYS[3], new, 1)
  if state == 'uncertain' then redis.call('HINCRBY', KEYS[3], 'uncertain', -1) end
end
if ARGV[4] == '' then redis.call('ZREM', KEYS[2], member)
else redis.call('ZADD', KEYS[2], ARGV[4], member) end
if new == 'uncertain' then redis.call('ZADD', KEYS[4], ARGV[6], member)
elseif state == 'uncertain' then redis.call('ZREM', KEYS[4], member) end
return 1
"""
)

# KEYS: sub hash, entry numbers hash
# ARGV: entry id
# One entry's stored value (nil: none).
ENTRY_SCRIPT = (
    ENTRY_LUA
    + """
local field = entry_field(KEYS[2], nil, ARGV[1], false)
return field and redis.call('HGET', KEYS[1], field)
"""
)


class Ledger(EntryNumbers):
    """Claims, sends and their outcomes (the numbered fields of ``P sub:{id}``,
    ``P pending``)."""

    redis: redis.Redis
    _claim: Script
    _start_send: Script
    _finish: Script
    _entry: Script

    def ledger(self, sub_id: str) -> dict[str, LedgerEntry]:
        """The subscriber's ledger: entry id -> entry (empty: none, or no such record)."""
        _, numbered = split_record(self.redis.hgetall(self.sub_key(sub_id)))
        return self.ledgers_of([numbered])[0]

    def entry(self, sub_id: str, lesson_id: str) -> LedgerEntry | None:
        raw = self._entry(keys=[self.sub_key(sub_id), self.entry_numbers_key], args=[lesson_id])
        return decode_entry(lesson_id, as_str(raw)) if raw else None

    # claims and sends
    def claim_many(self, claims: Iterable[Claim]) -> list[int]:
        """Run the claim script for each claim, in one round trip; the script's answers."""
        pipe = self.redis.pipeline(transaction=False)
        for c in claims:
            self._claim(
                keys=[
                    self.sub_key(c.sub_id),
                    self.due_key(c.sub_id),
                    self.pending_key,
                    self.ended_key,
                    self.entry_numbers_key,
                    self.entry_names_key,
                ],
                args=[
                    c.sub_id,
                    c.lesson_id,
                    str(c.version),
                    encode_value(float(c.now)),
                    "" if c.next_due is None else encode_score(float(c.next_due)),
                    str(c.sent_that_day),
                    str(c.lesson_day),
                    encode_score(float(c.deadline)),
                    c.previous or "",
                ],
                client=pipe,
            )
        return [int(r) for r in pipe.execute()]

    def start_send(self, sub_id: str, lesson_id: str, now: float, stale_at: float) -> int:
        """Move a claimed (or retry) entry to ``sending``; the script's answer (see there)."""
        return int(self._start_send(**self._start_send_call(sub_id, lesson_id, now, stale_at)))

    def start_send_many(
        self, items: list[tuple[str, str]], now: float, stale_at: float
    ) -> list[int]:
        """:meth:`start_send` for each (subscriber, lesson), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id, lesson_id in items:
            self._start_send(**self._start_send_call(sub_id, lesson_id, now, stale_at), client=pipe)
        return [int(answer) for answer in pipe.execute()] if items else []

    def _start_send_call(self, sub_id: str, lesson_id: str, now: float, stale_at: float) -> dict:
        keys = [self.sub_key(sub_id), self.pending_key, self.send_stats_key(lesson_id),
                self.entry_numbers_key]  # fmt: skip
        token = secrets.token_hex(4)  # this call's, so that a retried command is recognised
        args = [sub_id, lesson_id, encode_value(float(now)), encode_score(stale_at), token]
        return {"keys": keys, "args": args}

    def finish(
        self,
        sub_id: str,
        entry: LedgerEntry,
        pending_at: float | None = None,
        allowed: tuple[str, ...] = FINISH_FROM,
    ) -> bool:
        """Record the outcome of a send; ``pending_at`` keeps it pending (a retry)."""
        outcome = Outcome(sub_id, entry, pending_at, allowed)
        return bool(self._finish(**self._finish_call(outcome)))

    def finish_many(self, outcomes: list[Outcome]) -> list[bool]:
        """:meth:`finish` for each outcome, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for outcome in outcomes:
            self._finish(**self._finish_call(outcome), client=pipe)
        return [bool(answer) for answer in pipe.execute()] if outcomes else []

    def _finish_call(self, outcome: Outcome) -> dict:
        sub_id, entry = outcome.sub_id, outcome.entry
        keys = [self.sub_key(sub_id), self.pending_key, self.send_stats_key(entry.lesson_id),
                self.uncertain_key, self.settle_proof_key, self.entry_numbers_key,
                self.entry_names_key]  # fmt: skip
        args = [
            sub_id,
            entry.lesson_id,
            entry.encode(),
            "" if outcome.pending_at is None else encode_score(outcome.pending_at),
            ",".join(outcome.allowed),
            encode_score(float(entry.at)),
        ]
        return {"keys": keys, "args": args}

    def pending_due(self, now: float, limit: int = 1000) -> list[tuple[str, str]]:
        found = self.redis.zrangebyscore(self.pending_key, "-inf", now, 0, limit)
        return [split_member(as_str(m)) for m in found]

    def pending_count(self, due_by: float | None = None) -> int:
        """Unfinished ledger entries; with ``due_by``, those whose time has come by then."""
        if due_by is None:
            return int(self.redis.zcard(self.pending_key))
        return int(self.redis.zcount(self.pending_key, "-inf", due_by))

    def pending_scores(self, sub_id: str, lesson_ids: list[str]) -> list[float | None]:
        """When each of the subscriber's entries is looked at again (None: not pending)."""
        if not lesson_ids:
            return []
        return self.redis.zmscore(self.pending_key, [member(sub_id, les) for les in lesson_ids])

    def drop_pending(self, sub_id: str, lesson_id: str) -> None:
        self.redis.zrem(self.pending_key, member(sub_id, lesson_id))

    def touch_pending(self, items: list[tuple[str, str]], at: float) -> None:
        if items:
            self.redis.zadd(self.pending_key, {member(s, les): at for s, les in items}, xx=True)

    def resolve_uncertain(self, sub_id: str, lesson_id: str, state: str, detail: str,
                          now: float) -> bool:  # fmt: skip
        """Settle an ``uncertain`` (or still ``sending``) entry with what the provider
        reported (``sent`` or ``failed``), keeping the instant of its send. A re-send that
        the settling claimed (see :mod:`course.store.settle`) and that has not started yet
        is settled the same way: the first send's event came late, so the re-send must not
        go. Any other state is left alone. True when it was settled."""
        if state not in ("sent", "failed"):
            raise ValueError(state)
        entry = self.entry(sub_id, lesson_id)
        if entry is None or entry.state not in ("uncertain", "sending", "claimed", "retry"):
            return False
        settled = LedgerEntry(lesson_id, state, entry.at or now, entry.attempt, detail)
        # From sending too: the provider had it while its worker waits for the answer, or
        # after the worker died; an event that came then must not be lost, or the entry,
        # called uncertain later, would be re-sent. The worker's own outcome then finds it
        # settled and changes nothing.
        if self.finish(sub_id, settled, None, allowed=("uncertain", "sending")):
            return True
        # Not uncertain (any more: the settling may have claimed the re-send since the read).
        # A re-send not started yet is stopped: start_send moves it to sending atomically and
        # finish only replaces claimed or retry, so exactly one of the two wins.
        return self.resent(sub_id, lesson_id) and self.finish(
            sub_id, settled, None, allowed=("claimed", "retry")
        )

    def resent(self, sub_id: str, lesson_id: str) -> bool:
        """Whether the settling has re-sent this entry (its proof is kept)."""
        return bool(self.redis.hexists(self.settle_proof_key, member(sub_id, lesson_id)))
