"""Subscriber state in Redis: subscribers, the due index, and the per-subscriber ledger.

Key layout (``P`` is the key prefix, ``hr:`` by default):

``P sub:{id}``       hash    one subscriber: email, first_name, tz, status, created, start,
                              paused, paused_at, paused_until, last_sent, sent_that_day,
                              last_lesson, last_day, version (``v``), source, consent
                              (``text version|IP`` of the signup), prior (the record
                              that held the address before this one, set on a re-signup
                              only). Empty string means "not set".
``P email``          hash    lower-cased email address -> subscriber id
``P subs``           zset    subscriber id -> created (epoch), for listing in signup order
``P due``            zset    subscriber id -> epoch at which their next lesson is due; only
                              active subscribers with a lesson left are in it, so a tick
                              reads only what is due (``ZRANGEBYSCORE -inf now``).
``P ledger:{id}``    hash    lesson id -> ``state|epoch|attempt|detail`` (epoch in whole
                              seconds; older entries have milliseconds); state is one of
                              claimed, sending, retry, sent (detail: provider message id),
                              failed (detail: reason), uncertain, skipped (detail: why).
``P pending``        zset    ``{id}|{lesson}`` -> epoch at which that unfinished ledger entry
                              needs attention: a retry falls due, or a claim or send has
                              gone stale (its worker died) and the tick must look at it.
``P tick:last``      string  ISO instant of the last tick, for health checks.
``P tick:stats``     hash    every tick adds to it: count, seconds_total (time spent
                              ticking), and sets last_at (epoch of its ``now``),
                              last_duration (seconds), last_due (subscribers it found due),
                              last_claimed. Read by ``/metrics``.
``P beat:last``      string  epoch at which beat last showed it runs (started, or sent a
                              tick), for beat's health check (``course health beat``).
``P quarantine``     hash    subscriber id -> why a tick could not handle them (a damaged
                              record); they are out of the due index until an operator looks.
``P schedule:snapshot`` hash relative path -> bytes of the last valid schedule's files
                              (see course.runtime.ScheduleSnapshot).
``P schedule:snapshot:lessons`` set  every email id any valid schedule kept there had:
                              where ``course stats`` finds the figures of removed lessons.
``P rl:{scope}:{key}:{window}`` string  a fixed-window rate-limit counter of the web app
                              (scope ``ip`` per hour, ``addr`` per day keyed by a hash of
                              the address, ``admin`` admin sign-in attempts per IP per 15
                              minutes, counted before the token is compared; a correct one
                              is taken off again); expires with its window.
``P admin:session:{id}`` string  a signed-in admin page session (value ``1``), expiring with
                              it (12 hours); its id is in the signed session cookie and is
                              checked on every request, and signing out deletes it, so a
                              copied cookie stops working too (course.web.admin).
``P sg:event:{sg_event_id}`` string  a SendGrid event already handled (kept 7 days), so a
                              redelivered webhook batch is not counted twice.
``P stats:lesson:{lesson}`` hash  event name (delivered, open, click, bounce, blocked,
                              dropped, spamreport, unsubscribe, ...) -> count, from the
                              SendGrid Event Webhook.
``P stats:sends:{lesson}`` hash  ledger outcomes of that lesson, kept by the scripts that
                              write them: sent, failed, uncertain (net of those settled
                              later), skipped -> entries now in that state; retried -> every
                              retry scheduled. Read by ``course stats`` and ``/metrics``.
``P stats:exits``    hash    ``{lesson}|{status}`` -> how many subscribers left the course
                              (status unsubscribed, bounced or complained) while that was
                              their last lesson; lesson ``""`` before the first lesson.
                              Counted by the suppress script, only on the change from a
                              mailable status, so a repeated unsubscribe counts once.
``P schedule:status`` hash   ``{role}@{host}:{pid}`` -> JSON of the schedule that process
                              runs: fingerprint, loaded_at, error and error_at of the latest
                              invalid edit, seen_at (see course.runtime.ScheduleStatusBoard).
``P stats:webhook``  hash    received, duplicate, unknown_subscriber, unknown_lesson,
                              invalid, reconciled -> count (webhook bookkeeping).
``P suppressed``     set     :func:`suppression_hash` of every address erased on request
                              (course.subscribers.privacy): the only trace of them; no record can be
                              added for such an address again.

Encoding: a subscriber field without a value (None, a zero counter) is not stored, "" or
absent reads as "not set"; instants in hashes and ledger entries are whole epoch seconds (Redis
keeps an integer string in a small hash as an integer), sorted-set scores keep milliseconds.
Records written before kept every field and milliseconds; they read the same.

Every change of a subscriber bumps ``version``; the claim is a compare-and-set on it, so a
tick or worker that read old state can never claim on top of a newer change.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import fields
from datetime import datetime
from typing import NamedTuple

import redis

from course.models.subscriber import LedgerEntry, Subscriber

DEFAULT_PREFIX = "hr:"

# KEYS: sub hash, ledger hash, due zset, pending zset
# ARGV: id, lesson, expected version, now, next due ('' = none left: completed),
#       sent_that_day, lesson day, pending deadline, previous lesson ('' = none)
# Returns 1 claimed, 0 not active, -1 version moved on, -2 lesson already in the ledger,
# -3 the previous lesson is still on its way (claimed, sending or retry): order first.
CLAIM_SCRIPT = """
local s = redis.call('HMGET', KEYS[1], 'status', 'v')
if s[1] ~= 'active' then return 0 end
local v = s[2] or '0'
if v ~= ARGV[3] then return -1 end
if ARGV[9] ~= '' then
  local prev = redis.call('HGET', KEYS[2], ARGV[9])
  if prev then
    local state = string.match(prev, '^([^|]*)')
    if state == 'claimed' or state == 'sending' or state == 'retry' then return -3 end
  end
end
if redis.call('HSETNX', KEYS[2], ARGV[2], 'claimed|' .. ARGV[4] .. '|0|') == 0 then return -2 end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'last_sent', ARGV[4],
           'sent_that_day', ARGV[6], 'last_lesson', ARGV[2], 'last_day', ARGV[7])
if ARGV[5] == '' then
  redis.call('HSET', KEYS[1], 'status', 'completed')
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
end
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1] .. '|' .. ARGV[2])
return 1
"""

# KEYS: sub hash, ledger hash, pending zset, the lesson's send stats hash
# ARGV: id, lesson, now, stale deadline, this call's token
# Moves a claimed or retry entry to sending, only while the subscriber may still be mailed.
# The token is kept in the sending entry: the same call run again (a client that lost the
# answer and retried the command) gets its attempt back instead of a refusal.
# Returns the attempt number (>= 1), 0 no such entry, -1 subscriber suppressed (entry
# becomes skipped), -2 entry is in another state (someone else sends or sent it).
START_SEND_SCRIPT = """
local raw = redis.call('HGET', KEYS[2], ARGV[2])
if not raw then return 0 end
local state, at, attempt, detail = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|?(.*)')
if state == 'sending' and detail == ARGV[5] then return tonumber(attempt) end
if state ~= 'claimed' and state ~= 'retry' then return -2 end
local member = ARGV[1] .. '|' .. ARGV[2]
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'active' and status ~= 'completed' and status ~= 'paused' then
  local why = status or 'erased'
  redis.call('HSET', KEYS[2], ARGV[2], 'skipped|' .. ARGV[3] .. '|' .. attempt .. '|' .. why)
  redis.call('ZREM', KEYS[3], member)
  redis.call('HINCRBY', KEYS[4], 'skipped', 1)
  return -1
end
local n = tonumber(attempt) + 1
redis.call('HSET', KEYS[2], ARGV[2], 'sending|' .. ARGV[3] .. '|' .. n .. '|' .. ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], member)
return n
"""

# KEYS: ledger hash, pending zset, the lesson's send stats hash
# ARGV: id, lesson, new entry, pending score ('' = done, remove), allowed states (comma list)
# Returns 1 written, 0 the entry was in a state not allowed. The stats count entries by
# final state (an uncertain entry settled later moves from one count to the other) and
# every retry scheduled.
FINISH_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[2])
local state = raw and string.match(raw, '^([^|]*)') or ''
if not string.find(',' .. ARGV[5] .. ',', ',' .. state .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local new = string.match(ARGV[3], '^([^|]*)')
if new == 'retry' then redis.call('HINCRBY', KEYS[3], 'retried', 1)
elseif new ~= state and (new == 'sent' or new == 'failed' or new == 'uncertain'
                         or new == 'skipped') then
  redis.call('HINCRBY', KEYS[3], new, 1)
  if state == 'uncertain' then redis.call('HINCRBY', KEYS[3], 'uncertain', -1) end
end
local member = ARGV[1] .. '|' .. ARGV[2]
if ARGV[4] == '' then redis.call('ZREM', KEYS[2], member)
else redis.call('ZADD', KEYS[2], ARGV[4], member) end
return 1
"""

# KEYS: sub hash, due zset
# ARGV: id, expected version ('' = any), due score ('' = remove from due, '=' = leave),
#       then field, value pairs to set ('' = unset: the field is removed).
# Returns 1 updated, -1 version moved on, -3 no such subscriber.
UPDATE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -3 end
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if ARGV[2] ~= '' and v ~= ARGV[2] then return -1 end
for i = 4, #ARGV - 1, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[3] ~= '=' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 1
"""

# KEYS: email hash, subs zset, new sub hash, due zset, current holder's sub hash,
#       suppressed set
# ARGV: email, new id, created, due ('' = not due), id the email maps to now ('' = none),
#       the address's suppression hash, then field, value pairs of the new subscriber.
# A suppressed (or vanished) holder of the address gives way to a new record: a new signup is
# a new consent record, never a silent resume; the new record names the one it replaced
# (``prior``), so every record that ever held the address can be found. Returns 1 added,
# 0 the address is taken, -1 the address changed hands meanwhile, -2 the address was erased
# on request (suppressed for good).
ADD_SCRIPT = """
if redis.call('SISMEMBER', KEYS[6], ARGV[6]) == 1 then return -2 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[5] then return -1 end
if cur then
  local st = redis.call('HGET', KEYS[5], 'status')
  if st and st ~= 'unsubscribed' and st ~= 'bounced' and st ~= 'complained' then return 0 end
end
redis.call('HSET', KEYS[3], unpack(ARGV, 7))
if cur then redis.call('HSET', KEYS[3], 'prior', cur) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2]) end
return 1
"""

# KEYS: sub hash, due zset, exits stats hash
# ARGV: id, new status (unsubscribed, bounced or complained)
# Suppresses a subscriber who may still be mailed and counts the exit against their last
# lesson. Returns 1 suppressed, 0 already suppressed (left as it is), -3 no such subscriber.
SUPPRESS_SCRIPT = """
local s = redis.call('HMGET', KEYS[1], 'status', 'last_lesson')
if not s[1] then return -3 end
if s[1] == 'unsubscribed' or s[1] == 'bounced' or s[1] == 'complained' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], (s[2] or '') .. '|' .. ARGV[2], 1)
return 1
"""

# KEYS: subs zset
# ARGV: first rank, last rank, key prefix
# Counts the status of each subscriber in that slice of the signup index (their hashes are
# ``prefix .. 'sub:' .. id``, read here rather than declared: a statistic, not a write).
# Returns {ids seen, status, count, status, count, ...}.
COUNT_STATUSES_SCRIPT = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local counts = {}
for _, id in ipairs(ids) do
  local status = redis.call('HGET', ARGV[3] .. 'sub:' .. id, 'status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {#ids}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
"""

_FIELD_NAMES = {f.name for f in fields(Subscriber)} - {"id", "version"}
_FLOATS = {"created", "start", "paused", "paused_at", "paused_until", "last_sent"}
_INTS = {"sent_that_day", "last_day"}
# Values that mean "not set" and are not stored: empty, or the default of a counter.
_UNSET = {"paused": ("", "0"), "sent_that_day": ("", "0"), "v": ("", "0")}

# KEYS: email hash, subs zset, due zset, suppressed set, then one new subscriber hash each
# ARGV: F (number of fields), the F field names, then per subscriber: email, id, created,
#       due ('' = not due), the address's suppression hash, and the F values ('' = not set:
#       left out of the hash).
# An import: each subscriber is added only while nobody holds the address, not even someone
# suppressed (never a silent re-enrolment), and never an address erased on request.
# Returns per subscriber 1 added, 0 address taken, -1 address erased.
ADD_MANY_SCRIPT = """
local f = tonumber(ARGV[1])
local out = {}
local i = f + 2
for k = 5, #KEYS do
  local email, id, created, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SISMEMBER', KEYS[4], ARGV[i + 4]) == 1 then
    out[#out + 1] = -1
  elseif redis.call('HEXISTS', KEYS[1], email) == 1 then
    out[#out + 1] = 0
  else
    local pairs = {'v', '0'}
    for j = 1, f do
      local value = ARGV[i + 4 + j]
      if value ~= '' then
        pairs[#pairs + 1] = ARGV[1 + j]
        pairs[#pairs + 1] = value
      end
    end
    redis.call('HSET', KEYS[k], unpack(pairs))
    redis.call('HSET', KEYS[1], email, id)
    redis.call('ZADD', KEYS[2], created, id)
    if due ~= '' then redis.call('ZADD', KEYS[3], due, id) end
    out[#out + 1] = 1
  end
  i = i + 5 + f
end
return out
"""


class Claim(NamedTuple):
    """What a tick asks the claim script to do for one subscriber."""

    sub_id: str
    lesson_id: str
    version: int  # the subscriber's version when the tick read them
    now: float
    next_due: float | None  # None: this is their last lesson
    sent_that_day: int  # counting this claim
    lesson_day: int
    deadline: float  # when an unfinished entry is looked at again
    previous: str | None  # the lesson before, which must have finished

    @property
    def item(self) -> tuple[str, str]:
        return (self.sub_id, self.lesson_id)


# The states a send's outcome may replace unless told otherwise: its own ``sending``, or an
# ``uncertain`` a tick called it meanwhile (the answer came after all).
FINISH_FROM = ("sending", "uncertain")


class Outcome(NamedTuple):
    """What :meth:`Store.finish` records for one send."""

    sub_id: str
    entry: LedgerEntry
    pending_at: float | None = None  # keep it pending until then (a retry)
    allowed: tuple[str, ...] = FINISH_FROM  # states it may replace


class DuplicateSubscriber(ValueError):
    """A subscriber with this email address already exists."""


class ErasedAddress(DuplicateSubscriber):
    """The address was erased on request: nothing may be added for it, ever."""


SUPPRESSION_DOMAIN = "healing-roadmap:suppressed:"


def normalise_address(email: str) -> str:
    """The form every key and hash of an address uses."""
    return email.strip().lower()


def suppression_hash(email: str) -> str:
    """Plain SHA-256 of the normalised address behind a fixed domain prefix.

    Not keyed with the secret key: a keyed hash would stop matching after a key rotation,
    and an erased person could then be mailed again. The prefix keeps it from matching the
    lists of plain e-mail hashes that circulate; what a plain hash still allows (someone
    holding the database can test an address they already know) is the price of a
    suppression that never expires."""
    return hashlib.sha256((SUPPRESSION_DOMAIN + normalise_address(email)).encode()).hexdigest()


def _encode(value: object) -> str:
    """A hash field's value. Instants and durations are whole epoch seconds: nothing reads
    them finer than a second, and Redis keeps an integer string in a hash as an integer
    (5 bytes instead of 14). Records written before kept milliseconds; they decode alike."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value))  # never negative: epochs and durations
    return str(value)


def _score(value: float) -> str:
    """A sorted-set score (due, pending, signup order): precision costs nothing there."""
    return f"{value:.3f}"


def encode_subscriber(sub: Subscriber) -> dict[str, str]:
    """The fields of ``sub``'s hash (``P sub:{id}``), version included, as the store writes
    them: a field without a value (None, a zero counter) is left out, read back as unset."""
    mapping = {name: _encode(getattr(sub, name)) for name in _FIELD_NAMES}
    mapping["v"] = str(sub.version)
    return {name: text for name, text in mapping.items() if text not in _UNSET.get(name, ("",))}


def _decode(sub_id: str, raw: dict[str, str]) -> Subscriber:
    values: dict[str, object] = {}
    for name in _FIELD_NAMES:
        text = raw.get(name, "")
        if name in _FLOATS:
            values[name] = float(text) if text else (0.0 if name == "paused" else None)
        elif name in _INTS:
            values[name] = int(text) if text else (0 if name == "sent_that_day" else None)
        elif name == "first_name":
            values[name] = text or None
        else:
            values[name] = text
    return Subscriber(id=sub_id, version=int(raw.get("v", 0)), **values)  # type: ignore[arg-type]


def member(sub_id: str, lesson_id: str) -> str:
    return f"{sub_id}|{lesson_id}"


def split_member(value: str) -> tuple[str, str]:
    sub_id, _, lesson_id = value.partition("|")
    return sub_id, lesson_id


class Store:
    """Redis access for subscribers, the due index and the ledger. The client is passed in."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.redis = client
        self.prefix = prefix
        self._add_many = client.register_script(ADD_MANY_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._start_send = client.register_script(START_SEND_SCRIPT)
        self._finish = client.register_script(FINISH_SCRIPT)
        self._update = client.register_script(UPDATE_SCRIPT)
        self._add = client.register_script(ADD_SCRIPT)
        self._suppress = client.register_script(SUPPRESS_SCRIPT)
        self._count_statuses = client.register_script(COUNT_STATUSES_SCRIPT)

    # keys
    def sub_key(self, sub_id: str) -> str:
        return f"{self.prefix}sub:{sub_id}"

    def ledger_key(self, sub_id: str) -> str:
        return f"{self.prefix}ledger:{sub_id}"

    @property
    def due_key(self) -> str:
        return f"{self.prefix}due"

    @property
    def pending_key(self) -> str:
        return f"{self.prefix}pending"

    @property
    def email_key(self) -> str:
        return f"{self.prefix}email"

    @property
    def subs_key(self) -> str:
        return f"{self.prefix}subs"

    @property
    def quarantine_key(self) -> str:
        return f"{self.prefix}quarantine"

    @property
    def suppressed_key(self) -> str:
        return f"{self.prefix}suppressed"

    @property
    def snapshot_key(self) -> str:
        return f"{self.prefix}schedule:snapshot"

    # subscribers
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
            current = self.redis.hget(self.email_key, address)
            current = _str(current) if current else ""
            keys = [self.email_key, self.subs_key, self.sub_key(sub_id), self.due_key,
                    self.sub_key(current or sub_id), self.suppressed_key]  # fmt: skip
            args = [address, sub_id, _encode(now), "" if due is None else _encode(due), current,
                    suppression_hash(address)]  # fmt: skip
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
        names = sorted(_FIELD_NAMES)
        args: list[str] = [str(len(names)), *names]
        for sub, due in zip(subs, dues, strict=True):
            args += [sub.email, sub.id, _score(sub.created), "" if due is None else _score(due),
                     suppression_hash(sub.email)]  # fmt: skip
            stored = encode_subscriber(sub)  # what it leaves out, the script leaves out too
            args += [stored.get(name, "") for name in names]
        keys = [self.email_key, self.subs_key, self.due_key, self.suppressed_key,
                *(self.sub_key(s.id) for s in subs)]  # fmt: skip
        return [int(outcome) for outcome in self._add_many(keys=keys, args=args)]

    def find_many(self, emails: list[str]) -> list[Subscriber | None]:
        """The subscriber holding each address (or None), in two round trips."""
        if not emails:
            return []
        found = self.redis.hmget(self.email_key, [email.strip().lower() for email in emails])
        ids = [_str(i) if i else None for i in found]
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in ids:
            if sub_id:
                pipe.hgetall(self.sub_key(sub_id))
        raws = iter(pipe.execute() if any(ids) else [])
        return [_decode(i, _text(raw)) if i and (raw := next(raws)) else None for i in ids]

    def read_many(
        self, sub_ids: list[str]
    ) -> list[tuple[Subscriber | None, dict[str, LedgerEntry]]]:
        """Each subscriber with their whole ledger, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.sub_key(sub_id))
            pipe.hgetall(self.ledger_key(sub_id))
        replies = pipe.execute()
        result = []
        for i, sub_id in enumerate(sub_ids):
            raw, ledger = replies[2 * i], replies[2 * i + 1]
            sub = _decode(sub_id, _text(raw)) if raw else None
            entries = {_str(k): LedgerEntry.decode(_str(k), _str(v)) for k, v in ledger.items()}
            result.append((sub, entries))
        return result

    def new_id(self) -> str:
        """A fresh subscriber id."""
        return secrets.token_hex(6)

    def get(self, sub_id: str) -> Subscriber | None:
        raw = self.redis.hgetall(self.sub_key(sub_id))
        return _decode(sub_id, _text(raw)) if raw else None

    def get_many(self, sub_ids: list[str]) -> list[tuple[Subscriber | None, set[str]]]:
        """Each subscriber with the lesson ids in their ledger, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.sub_key(sub_id))
            pipe.hkeys(self.ledger_key(sub_id))
        replies = pipe.execute()
        result = []
        for i, sub_id in enumerate(sub_ids):
            raw, done = replies[2 * i], replies[2 * i + 1]
            sub = _decode(sub_id, _text(raw)) if raw else None
            result.append((sub, {_str(k) for k in done}))
        return result

    def get_each(self, sub_ids: list[str]) -> list[Subscriber | None]:
        """Each subscriber (None where there is none), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.sub_key(sub_id))
        raws = pipe.execute() if sub_ids else []
        return [
            _decode(i, _text(raw)) if raw else None for i, raw in zip(sub_ids, raws, strict=True)
        ]

    def find(self, email: str) -> Subscriber | None:
        sub_id = self.redis.hget(self.email_key, email.strip().lower())
        return self.get(_str(sub_id)) if sub_id else None

    def is_erased(self, email: str) -> bool:
        """Whether the address was erased on request (and so may never be mailed)."""
        return bool(self.redis.sismember(self.suppressed_key, suppression_hash(email)))

    def erased_many(self, emails: list[str]) -> list[bool]:
        """:meth:`is_erased` for each address, in one round trip."""
        if not emails:
            return []
        hashes = [suppression_hash(email) for email in emails]
        return [bool(found) for found in self.redis.smismember(self.suppressed_key, hashes)]

    def iter_ids(self, batch: int = 1000) -> Iterator[str]:
        """Subscriber ids in signup order."""
        start = 0
        while True:
            ids = self.redis.zrange(self.subs_key, start, start + batch - 1)
            if not ids:
                return
            yield from (_str(i) for i in ids)
            start += batch

    def count(self) -> int:
        return int(self.redis.zcard(self.subs_key))

    def update(
        self,
        sub_id: str,
        changes: dict[str, object],
        due: float | str | None = "=",
        expected_version: int | None = None,
    ) -> int:
        """Set fields and the due score in one step; ``due=None`` removes from the index."""
        args: list[str] = [
            sub_id,
            "" if expected_version is None else str(expected_version),
            "" if due is None else ("=" if due == "=" else _score(float(due))),  # type: ignore[arg-type]
        ]
        for name, value in changes.items():
            if name not in _FIELD_NAMES:
                raise KeyError(name)
            args += [name, _encode(value)]
        return int(self._update(keys=[self.sub_key(sub_id), self.due_key], args=args))

    def suppress(self, sub_id: str, status: str) -> int:
        """Suppress for good (no version check) and count the exit after their last lesson;
        1 done, 0 already suppressed, -3 no such subscriber."""
        keys = [self.sub_key(sub_id), self.due_key, self.exits_key]
        return int(self._suppress(keys=keys, args=[sub_id, status]))

    def status_counts(self, batch: int = 1000) -> dict[str, int]:
        """Subscribers by status: every record's ``status`` counted inside Redis, a batch of
        the signup index per call (each call holds the server for a few milliseconds)."""
        counts: dict[str, int] = {}
        start = 0
        while True:
            reply = self._count_statuses(
                keys=[self.subs_key], args=[start, start + batch - 1, self.prefix]
            )
            seen, pairs = int(reply[0]), reply[1:]
            for i in range(0, len(pairs), 2):
                name = _str(pairs[i])
                counts[name] = counts.get(name, 0) + int(pairs[i + 1])
            if seen < batch:
                return counts
            start += batch

    # the ledger
    def ledger(self, sub_id: str) -> dict[str, LedgerEntry]:
        raw = self.redis.hgetall(self.ledger_key(sub_id))
        return {_str(k): LedgerEntry.decode(_str(k), _str(v)) for k, v in raw.items()}

    def entry(self, sub_id: str, lesson_id: str) -> LedgerEntry | None:
        raw = self.redis.hget(self.ledger_key(sub_id), lesson_id)
        return LedgerEntry.decode(lesson_id, _str(raw)) if raw else None

    # the due index
    def due_ids(self, now: float, limit: int = 1000) -> list[str]:
        return [_str(i) for i in self.redis.zrangebyscore(self.due_key, "-inf", now, 0, limit)]

    def all_due_ids(self, now: float, page: int = 10_000) -> list[str]:
        """Every subscriber due by ``now``, read before anything is changed."""
        ids: list[str] = []
        while True:
            found = self.redis.zrangebyscore(self.due_key, "-inf", now, len(ids), page)
            ids.extend(_str(i) for i in found)
            if len(found) < page:
                return ids

    def due_score(self, sub_id: str) -> float | None:
        return self.redis.zscore(self.due_key, sub_id)

    def next_due(self) -> float | None:
        """The earliest due instant in the index, or None."""
        first = self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def due_count(self, now: float | None = None) -> int:
        return int(self.redis.zcount(self.due_key, "-inf", "+inf" if now is None else now))

    # claims and sends
    def claim_many(self, claims: Iterable[Claim]) -> list[int]:
        """Run the claim script for each claim, in one round trip; the script's answers."""
        pipe = self.redis.pipeline(transaction=False)
        for c in claims:
            self._claim(
                keys=[
                    self.sub_key(c.sub_id),
                    self.ledger_key(c.sub_id),
                    self.due_key,
                    self.pending_key,
                ],
                args=[
                    c.sub_id,
                    c.lesson_id,
                    str(c.version),
                    _encode(float(c.now)),
                    "" if c.next_due is None else _score(float(c.next_due)),
                    str(c.sent_that_day),
                    str(c.lesson_day),
                    _score(float(c.deadline)),
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
        keys = [self.sub_key(sub_id), self.ledger_key(sub_id), self.pending_key,
                self.send_stats_key(lesson_id)]  # fmt: skip
        token = secrets.token_hex(4)  # this call's, so that a retried command is recognised
        args = [sub_id, lesson_id, _encode(float(now)), _score(stale_at), token]
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
        keys = [self.ledger_key(sub_id), self.pending_key, self.send_stats_key(entry.lesson_id)]
        args = [
            sub_id,
            entry.lesson_id,
            entry.encode(),
            "" if outcome.pending_at is None else _score(outcome.pending_at),
            ",".join(outcome.allowed),
        ]
        return {"keys": keys, "args": args}

    def pending_due(self, now: float, limit: int = 1000) -> list[tuple[str, str]]:
        found = self.redis.zrangebyscore(self.pending_key, "-inf", now, 0, limit)
        return [split_member(_str(m)) for m in found]

    def pending_count(self, due_by: float | None = None) -> int:
        """Unfinished ledger entries; with ``due_by``, those whose time has come by then."""
        if due_by is None:
            return int(self.redis.zcard(self.pending_key))
        return int(self.redis.zcount(self.pending_key, "-inf", due_by))

    def drop_pending(self, sub_id: str, lesson_id: str) -> None:
        self.redis.zrem(self.pending_key, member(sub_id, lesson_id))

    def touch_pending(self, items: list[tuple[str, str]], at: float) -> None:
        if items:
            self.redis.zadd(self.pending_key, {member(s, les): at for s, les in items}, xx=True)

    def quarantine(self, sub_id: str, reason: str) -> None:
        """Take a subscriber the tick cannot handle out of the due index, saying why."""
        pipe = self.redis.pipeline()
        pipe.hset(self.quarantine_key, sub_id, reason)
        pipe.zrem(self.due_key, sub_id)
        pipe.execute()

    def quarantine_count(self) -> int:
        return int(self.redis.hlen(self.quarantine_key))

    def quarantined(self) -> dict[str, str]:
        raw = self.redis.hgetall(self.quarantine_key)
        return {_str(k): _str(v) for k, v in raw.items()}

    def release(self, sub_id: str, now: float) -> bool:
        """Back from quarantine into the due index: the next tick looks at them again."""
        if not self.redis.hdel(self.quarantine_key, sub_id):
            return False
        if self.redis.exists(self.sub_key(sub_id)):
            self.redis.zadd(self.due_key, {sub_id: now})
        return True

    def resolve_uncertain(self, sub_id: str, lesson_id: str, state: str, detail: str,
                          now: float) -> bool:  # fmt: skip
        """Settle an ``uncertain`` entry with what the provider reported (``sent`` or
        ``failed``); any other state is left alone. True when it was settled."""
        if state not in ("sent", "failed"):
            raise ValueError(state)
        entry = self.entry(sub_id, lesson_id)
        if entry is None or entry.state != "uncertain":
            return False
        settled = LedgerEntry(lesson_id, state, now, entry.attempt, detail)
        return self.finish(sub_id, settled, None, allowed=("uncertain",))

    # the web app: rate limits and provider events
    def rate_key(self, scope: str, key: str, window: int, now: float) -> str:
        return f"{self.prefix}rl:{scope}:{key}:{int(now // window)}"

    def hit(self, scope: str, key: str, window: int, now: float) -> tuple[int, float]:
        """Count one more hit in the current fixed window of ``window`` seconds: the count
        so far and the seconds until the window ends."""
        name = self.rate_key(scope, key, window, now)
        pipe = self.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window + 60)
        count, _ = pipe.execute()
        return int(count), window - (now % window)

    def hits(self, scope: str, key: str, window: int, now: float) -> int:
        value = self.redis.get(self.rate_key(scope, key, window, now))
        return int(value) if value else 0

    def admin_session_key(self, session_id: str) -> str:
        return f"{self.prefix}admin:session:{session_id}"

    def event_key(self, event_id: str) -> str:
        return f"{self.prefix}sg:event:{event_id}"

    def event_seen(self, event_id: str) -> bool:
        """Whether a provider event with this id was already handled (in the last 7 days)."""
        return bool(self.redis.exists(self.event_key(event_id)))

    def mark_event(self, event_id: str, ttl: int = 7 * 24 * 3600) -> None:
        """Remember that a provider event was handled, for ``ttl`` seconds."""
        self.redis.set(self.event_key(event_id), "1", ex=ttl)

    def lesson_stats_key(self, lesson_id: str) -> str:
        return f"{self.prefix}stats:lesson:{lesson_id}"

    def send_stats_key(self, lesson_id: str) -> str:
        return f"{self.prefix}stats:sends:{lesson_id}"

    def count_send(self, lesson_id: str, outcome: str) -> None:
        """Count a send outside the ledger (the confirmation email) in its send stats."""
        self.redis.hincrby(self.send_stats_key(lesson_id), outcome, 1)

    def send_stats(self, lesson_id: str) -> dict[str, int]:
        """Ledger outcomes of one lesson: sent, failed, uncertain, skipped, retried."""
        raw = self.redis.hgetall(self.send_stats_key(lesson_id))
        return {_str(k): int(v) for k, v in raw.items()}

    @property
    def exits_key(self) -> str:
        return f"{self.prefix}stats:exits"

    def exit_stats(self) -> dict[tuple[str, str], int]:
        """(last lesson, status) -> subscribers who left then; lesson "" = before the first."""
        raw = self.redis.hgetall(self.exits_key)
        found = {}
        for key, value in raw.items():
            lesson_id, _, status = _str(key).rpartition("|")
            found[(lesson_id, status)] = int(value)
        return found

    def stats_lesson_ids(self) -> set[str]:
        """Every lesson id that may have figures, including lessons since removed: the ids
        of every valid schedule kept (``schedule:snapshot:lessons``); a store from before
        that set existed is scanned for its stats keys instead."""
        known = {_str(i) for i in self.redis.smembers(self.scheduled_lessons_key)}
        if known:
            return known
        found = set()
        for kind in ("sends", "lesson"):
            pattern = f"{self.prefix}stats:{kind}:*"
            for key in self.redis.scan_iter(match=pattern, count=5000):
                found.add(_str(key)[len(pattern) - 1 :])
        return found

    @property
    def scheduled_lessons_key(self) -> str:
        return f"{self.snapshot_key}:lessons"

    def many_lesson_stats(self, lesson_ids: list[str]) -> dict[str, tuple[dict, dict]]:
        """Each lesson's (send stats, provider event counts), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for lesson_id in lesson_ids:
            pipe.hgetall(self.send_stats_key(lesson_id))
            pipe.hgetall(self.lesson_stats_key(lesson_id))
        replies = pipe.execute()
        result = {}
        for i, lesson_id in enumerate(lesson_ids):
            sends, events = replies[2 * i], replies[2 * i + 1]
            result[lesson_id] = (
                {_str(k): int(v) for k, v in sends.items()},
                {_str(k): int(v) for k, v in events.items()},
            )
        return result

    @property
    def schedule_status_key(self) -> str:
        return f"{self.prefix}schedule:status"

    @property
    def webhook_stats_key(self) -> str:
        return f"{self.prefix}stats:webhook"

    def count_lesson_event(self, lesson_id: str, event: str) -> None:
        self.redis.hincrby(self.lesson_stats_key(lesson_id), event, 1)

    def count_webhook(self, name: str, amount: int = 1) -> None:
        if amount:
            self.redis.hincrby(self.webhook_stats_key, name, amount)

    def lesson_stats(self, lesson_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.lesson_stats_key(lesson_id))
        return {_str(k): int(v) for k, v in raw.items()}

    def lesson_counts(
        self, lesson_ids: list[str]
    ) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Each lesson's :meth:`send_stats` and :meth:`lesson_stats`, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for lesson_id in lesson_ids:
            pipe.hgetall(self.send_stats_key(lesson_id))
            pipe.hgetall(self.lesson_stats_key(lesson_id))
        replies = pipe.execute()
        return {
            lesson_id: tuple(  # type: ignore[misc]
                {_str(k): int(v) for k, v in raw.items()} for raw in replies[2 * i : 2 * i + 2]
            )
            for i, lesson_id in enumerate(lesson_ids)
        }

    def webhook_stats(self) -> dict[str, int]:
        raw = self.redis.hgetall(self.webhook_stats_key)
        return {_str(k): int(v) for k, v in raw.items()}

    # housekeeping
    def set_last_tick(self, iso: str) -> None:
        self.redis.set(f"{self.prefix}tick:last", iso)

    @property
    def tick_stats_key(self) -> str:
        return f"{self.prefix}tick:stats"

    def record_tick(self, now: datetime, duration: float, due: int, claimed: int) -> None:
        """What a tick at ``now`` did and how long it took (``tick:last`` and ``tick:stats``)."""
        key = self.tick_stats_key
        pipe = self.redis.pipeline()
        pipe.set(f"{self.prefix}tick:last", now.isoformat())
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "seconds_total", duration)
        pipe.hset(key, mapping={"last_at": _encode(now.timestamp()),
                                "last_duration": f"{duration:.6f}",
                                "last_due": due, "last_claimed": claimed})  # fmt: skip
        pipe.execute()

    def tick_stats(self) -> dict[str, float]:
        """``tick:stats`` as numbers (empty before the first tick)."""
        raw = self.redis.hgetall(self.tick_stats_key)
        return {_str(k): float(v) for k, v in raw.items()}

    def set_beat_seen(self, at: float) -> None:
        self.redis.set(f"{self.prefix}beat:last", _encode(at))

    def beat_seen(self) -> float | None:
        """Epoch at which beat last showed it runs, or None if it never did."""
        value = self.redis.get(f"{self.prefix}beat:last")
        return float(value) if value else None

    def last_tick(self) -> str | None:
        value = self.redis.get(f"{self.prefix}tick:last")
        return _str(value) if value else None


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text(raw: dict) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in raw.items()}
