"""Subscriber records: adding (one, or an import), reading, finding by address, updating
with a version check, suppressing for good, and counting by status.

The records are ``P sub:{id}`` hashes, indexed by address (``P e:{bucket}``) and the due index
(``P due:{bucket}``), and counted (``P subs:count``); see :mod:`course.store.keys`.
"""

from __future__ import annotations

import secrets

import redis
from redis.commands.core import Script

from course.models.subscriber import LedgerEntry, Subscriber
from course.store.codec import (
    FIELD_NAMES,
    UNSET,
    as_str,
    as_text,
    decode_subscriber,
    encode_score,
    encode_subscriber,
    encode_value,
    normalise_address,
    stored_name,
    suppression_hash,
    with_fields,
)
from course.store.entries import EntryNumbers, split_record
from course.store.errors import DuplicateSubscriber, ErasedAddress
from course.store.layout import LAYOUT

# KEYS: sub hash, due bucket zset, retention ended zset, retention unconfirmed zset
# ARGV: id, expected version ('' = any), due score ('' = remove from due, '=' = leave),
#       then field, value pairs to set ('' = unset: the field is removed).
# A status change keeps the retention indexes: no longer pending leaves the unconfirmed one,
# completed enters the ended one at Redis's clock (the instant it completed).
# Returns 1 updated, -1 version moved on, -3 no such subscriber.
UPDATE_SCRIPT = with_fields(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -3 end
local v = redis.call('HGET', KEYS[1], '@version') or '0'
if ARGV[2] ~= '' and v ~= ARGV[2] then return -1 end
for i = 4, #ARGV - 1, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  if ARGV[i] == '@status' and ARGV[i + 1] ~= 'pending' then
    redis.call('ZREM', KEYS[4], ARGV[1])
    if ARGV[i + 1] == 'completed' then
      redis.call('ZADD', KEYS[3], 'NX', redis.call('TIME')[1], ARGV[1])
    end
  end
end
redis.call('HINCRBY', KEYS[1], '@version', 1)
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[3] ~= '=' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 1
"""
)

# KEYS: the address's email bucket, subs count, new sub hash, due bucket, current holder's sub hash,
#       suppressed set, retention unconfirmed zset, layout string
# ARGV: email, new id, created, due ('' = not due), id the email maps to now ('' = none),
#       the address's suppression hash, then field, value pairs of the new subscriber.
# A suppressed (or vanished) holder of the address gives way to a new record: a new signup is
# a new consent record, never a silent resume; the new record names the one it replaced
# (``prior``), so every record that ever held the address can be found. Returns 1 added,
# 0 the address is taken, -1 the address changed hands meanwhile, -2 the address was erased
# on request (suppressed for good). A pending record enters the retention unconfirmed index.
# A record written here is in this release's layout: a store without a layout gets it.
ADD_SCRIPT = with_fields(
    f"""
if redis.call('SISMEMBER', KEYS[6], ARGV[6]) == 1 then return -2 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[5] then return -1 end
if cur then
  local st = redis.call('HGET', KEYS[5], '@status')
  if st and st ~= 'unsubscribed' and st ~= 'bounced' and st ~= 'complained' then return 0 end
end
redis.call('HSET', KEYS[3], unpack(ARGV, 7))
if cur then redis.call('HSET', KEYS[3], '@prior', cur) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2]) end
if redis.call('HGET', KEYS[3], '@status') == 'pending' then
  redis.call('ZADD', KEYS[7], ARGV[3], ARGV[2])
end
redis.call('SET', KEYS[8], '{LAYOUT}', 'NX')
return 1
"""
)

# KEYS: sub hash, due bucket, exits stats hash, retention ended zset, retention unconfirmed zset
# ARGV: id, new status (unsubscribed, bounced or complained), now ('' = Redis's clock)
# Suppresses a subscriber who may still be mailed and counts the exit against their last
# lesson; the instant they left goes in the retention index (a later exit of a completed
# reader moves it later). Returns 1 suppressed, 0 already suppressed (left as it is), -3 no
# such subscriber.
SUPPRESS_SCRIPT = with_fields(
    """
local s = redis.call('HMGET', KEYS[1], '@status', '@last_lesson')
if not s[1] then return -3 end
if s[1] == 'unsubscribed' or s[1] == 'bounced' or s[1] == 'complained' then return 0 end
redis.call('HSET', KEYS[1], '@status', ARGV[2])
redis.call('HINCRBY', KEYS[1], '@version', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], (s[2] or '') .. '|' .. ARGV[2], 1)
local at = ARGV[3]
if at == '' then at = redis.call('TIME')[1] end
redis.call('ZADD', KEYS[4], at, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""
)

# KEYS: subs count, suppressed set, retention ended zset, retention unconfirmed zset, layout
#       string, then per subscriber: their new hash, their address's email bucket, their due
#       bucket
# ARGV: F (number of fields), the F field names, then per subscriber: email, id, created,
#       due ('' = not due), the address's suppression hash, and the F values ('' = not set:
#       left out of the hash).
# An import: each subscriber is added only while nobody holds the address, not even someone
# suppressed (never a silent re-enrolment), and never an address erased on request.
# A pending record enters the retention unconfirmed index, a completed or suppressed one the
# ended index, both at its created instant (when it left is not known: counted from here).
# A record written here is in this release's layout: a store without a layout gets it.
# Returns per subscriber 1 added, 0 address taken, -1 address erased.
ADD_MANY_SCRIPT = with_fields(
    f"""
redis.call('SET', KEYS[5], '{LAYOUT}', 'NX')
local f = tonumber(ARGV[1])
local out = {{}}
local i = f + 2
for k = 6, #KEYS, 3 do
  local email, id, created, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SISMEMBER', KEYS[2], ARGV[i + 4]) == 1 then
    out[#out + 1] = -1
  elseif redis.call('HEXISTS', KEYS[k + 1], email) == 1 then
    out[#out + 1] = 0
  else
    local pairs = {{'@version', '0'}}
    for j = 1, f do
      local value = ARGV[i + 4 + j]
      if value ~= '' then
        pairs[#pairs + 1] = ARGV[1 + j]
        pairs[#pairs + 1] = value
      end
    end
    redis.call('HSET', KEYS[k], unpack(pairs))
    redis.call('HSET', KEYS[k + 1], email, id)
    redis.call('INCR', KEYS[1])
    if due ~= '' then redis.call('ZADD', KEYS[k + 2], due, id) end
    local status = redis.call('HGET', KEYS[k], '@status')
    if status == 'pending' then redis.call('ZADD', KEYS[4], created, id)
    elseif status ~= 'active' and status ~= 'paused' then
      redis.call('ZADD', KEYS[3], created, id)
    end
    out[#out + 1] = 1
  end
  i = i + 5 + f
end
return out
"""
)


class SubscriberRecords(EntryNumbers):
    """Subscriber records and their address index."""

    redis: redis.Redis
    _add: Script
    _add_many: Script
    _update: Script
    _suppress: Script

    def add(
        self,
        email: str,
        first_name: str | None,
        tz: str,
        now: float,
        status: str = "pending",
        start: float | None = None,
        due: float | None = None,
        source: str = "",
        consent: str = "",
    ) -> Subscriber:
        """Create a subscriber; ``due`` puts them in the due index at once.

        An address that unsubscribed, bounced or complained before gets a new record; one
        erased on request raises :class:`ErasedAddress`."""
        address = normalise_address(email)
        sub_id = secrets.token_hex(6)
        sub = Subscriber(
            id=sub_id,
            email=address,
            first_name=first_name or None,
            tz=tz,
            status=status,
            created=now,
            start=start,
            source=source,
            consent=consent,
        )
        pairs = [item for pair in encode_subscriber(sub).items() for item in pair]
        for _ in range(5):
            current = self.redis.hget(self.email_key(address), address)
            current = as_str(current) if current else ""
            keys = [self.email_key(address), self.subs_count_key, self.sub_key(sub_id),
                    self.due_key(sub_id), self.sub_key(current or sub_id), self.suppressed_key,
                    self.unconfirmed_key, self.layout_key]  # fmt: skip
            args = [address, sub_id, encode_value(now), "" if due is None else encode_value(due),
                    current, suppression_hash(address)]  # fmt: skip
            outcome = int(self._add(keys=keys, args=args + pairs))
            if outcome == 1:
                return sub
            if outcome == -2:
                raise ErasedAddress(f"{address}: erased on request; it is never mailed again")
            if outcome == 0:
                raise DuplicateSubscriber(f"{address}: already subscribed")
        raise DuplicateSubscriber(f"{address}: being changed by someone else, try again")

    def add_many(self, subs: list[Subscriber], dues: list[float | None]) -> list[int]:
        """Create new subscribers (an import) in one step, each as :meth:`add` would, but only
        where the address is free: an address held by anyone, even someone who unsubscribed,
        is left alone, and an address erased on request is refused. Per subscriber: 1 added,
        0 the address is taken, -1 the address was erased."""
        if not subs:
            return []
        names = sorted(FIELD_NAMES)
        args: list[str] = [str(len(names)), *(stored_name(name) for name in names)]
        for sub, due in zip(subs, dues, strict=True):
            due_score = "" if due is None else encode_score(due)
            args += [sub.email, sub.id, encode_score(sub.created), due_score,
                     suppression_hash(sub.email)]  # fmt: skip
            stored = encode_subscriber(sub)  # what it leaves out, the script leaves out too
            args += [stored.get(stored_name(name), "") for name in names]
        keys = [self.subs_count_key, self.suppressed_key, self.ended_key, self.unconfirmed_key,
                self.layout_key]  # fmt: skip
        for sub in subs:
            keys += [self.sub_key(sub.id), self.email_key(sub.email), self.due_key(sub.id)]
        return [int(outcome) for outcome in self._add_many(keys=keys, args=args)]

    def find_many(self, emails: list[str]) -> list[Subscriber | None]:
        """The subscriber holding each address (or None), in two round trips."""
        if not emails:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for email in emails:
            address = normalise_address(email)
            pipe.hget(self.email_key(address), address)
        ids = [as_str(i) if i else None for i in pipe.execute()]
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in ids:
            if sub_id:
                pipe.hgetall(self.sub_key(sub_id))
        raws = iter(pipe.execute() if any(ids) else [])
        return [
            decode_subscriber(i, as_text(raw)) if i and (raw := next(raws)) else None for i in ids
        ]

    def read_many(
        self, sub_ids: list[str]
    ) -> list[tuple[Subscriber | None, dict[str, LedgerEntry]]]:
        """Each subscriber with their whole ledger, in two round trips (the records, then the
        names of the entry numbers in them)."""
        records = self._records(sub_ids)
        ledgers = self.ledgers_of([numbered for _, numbered in records])
        return [
            (decode_subscriber(sub_id, fields) if fields else None, ledger)
            for sub_id, (fields, _), ledger in zip(sub_ids, records, ledgers, strict=True)
        ]

    def new_id(self) -> str:
        """A fresh subscriber id."""
        return secrets.token_hex(6)

    def get(self, sub_id: str) -> Subscriber | None:
        raw = self.redis.hgetall(self.sub_key(sub_id))
        return decode_subscriber(sub_id, as_text(raw)) if raw else None

    def _records(self, sub_ids: list[str]) -> list[tuple[dict[str, str], dict[str, str]]]:
        """Each record's hash split into its fields and its entries (:func:`split_record`)."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.sub_key(sub_id))
        return [split_record(raw) for raw in (pipe.execute() if sub_ids else [])]

    def get_many(self, sub_ids: list[str]) -> list[tuple[Subscriber | None, set[str]]]:
        """Each subscriber with the entry ids (lessons) in their ledger, in two round trips."""
        records = self._records(sub_ids)
        names = self.entry_names(n for _, numbered in records for n in numbered)
        return [
            (decode_subscriber(sub_id, fields) if fields else None,
             {names[n] for n in numbered if n in names})
            for sub_id, (fields, numbered) in zip(sub_ids, records, strict=True)
        ]  # fmt: skip

    def get_each(self, sub_ids: list[str]) -> list[Subscriber | None]:
        """Each subscriber (None where there is none), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.sub_key(sub_id))
        raws = pipe.execute() if sub_ids else []
        return [
            decode_subscriber(i, as_text(raw)) if raw else None
            for i, raw in zip(sub_ids, raws, strict=True)
        ]

    def find(self, email: str) -> Subscriber | None:
        address = normalise_address(email)
        sub_id = self.redis.hget(self.email_key(address), address)
        return self.get(as_str(sub_id)) if sub_id else None

    def is_erased(self, email: str) -> bool:
        """Whether the address was erased on request (and so may never be mailed)."""
        return bool(self.redis.sismember(self.suppressed_key, suppression_hash(email)))

    def erased_many(self, emails: list[str]) -> list[bool]:
        """:meth:`is_erased` for each address, in one round trip."""
        if not emails:
            return []
        hashes = [suppression_hash(email) for email in emails]
        return [bool(found) for found in self.redis.smismember(self.suppressed_key, hashes)]

    def update(
        self,
        sub_id: str,
        changes: dict[str, object],
        due: float | str | None = "=",
        expected_version: int | None = None,
    ) -> int:
        """Set fields and the due score in one step; ``due=None`` removes from the index. A
        field set to its default (None, 0, "standard") is removed: unset costs no memory."""
        args: list[str] = [
            sub_id,
            "" if expected_version is None else str(expected_version),
            "" if due is None else ("=" if due == "=" else encode_score(float(due))),  # type: ignore[arg-type]
        ]
        for name, value in changes.items():
            if name not in FIELD_NAMES:
                raise KeyError(name)
            text = encode_value(value)
            unset = text in UNSET.get(name, ("",))  # a default: unset
            args += [stored_name(name), "" if unset else text]
        keys = [self.sub_key(sub_id), self.due_key(sub_id), self.ended_key, self.unconfirmed_key]
        return int(self._update(keys=keys, args=args))

    def suppress(self, sub_id: str, status: str, now: float | None = None) -> int:
        """Suppress for good (no version check) and count the exit after their last lesson;
        1 done, 0 already suppressed, -3 no such subscriber. ``now`` is when they left (for
        retention); None takes Redis's clock."""
        keys = [self.sub_key(sub_id), self.due_key(sub_id), self.exits_key, self.ended_key,
                self.unconfirmed_key]  # fmt: skip
        at = "" if now is None else encode_score(now)
        return int(self._suppress(keys=keys, args=[sub_id, status, at]))
