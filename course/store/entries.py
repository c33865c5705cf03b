"""Ledger entries inside the subscriber's hash (layout 7): the entry numbers, the Lua that
every ledger script shares, and reading a record's hash back into its fields and its ledger.

A reader's ledger is not a key of its own: each entry is a field of ``P sub:{id}`` named by
the *number* of its entry id (a lesson id, or ``b:{id}`` for a broadcast). The numbers are
given out once, in order, by the first script that writes an entry of that id
(``P entries:number``: entry id -> number; ``P entries:name``: number -> entry id) and never
change or come back, whatever the course becomes: a lesson's entries keep their number
through every version. A subscriber field's stored name is letters (course.store.codec
STORED_NAMES), an entry's field is digits, so the two never meet. An entry's value is
``state|epoch|attempt|detail``, except the commonest, a send that went through at the first
attempt and was never re-sent: its epoch alone (``sent`` is implied; Redis keeps it as an
integer, 6 bytes in a small hash instead of 19).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import redis

from course.models.subscriber import LedgerEntry
from course.store.codec import as_str
from course.store.keys import Keys

# Shared by the ledger scripts (prepended to each): ``entry_field`` gives the field of an
# entry id (assigning the next number when ``assign`` is true and it has none: nil when it
# has none and ``assign`` is false); ``entry_parts`` splits a stored value into state, epoch,
# attempt, detail (a bare epoch is a ``sent`` entry of attempt 1); ``entry_state`` is the
# state alone (nil for no value). ``compact_sent`` is the value a ``sent`` entry is written
# as: the bare epoch when it is the first attempt with no detail.
ENTRY_LUA = """
local function entry_field(numbers, names, entry, assign)
  local n = redis.call('HGET', numbers, entry)
  if n or not assign then return n end
  n = tostring(redis.call('HLEN', numbers) + 1)
  redis.call('HSET', numbers, entry, n)
  redis.call('HSET', names, n, entry)
  return n
end
local function entry_parts(raw)
  if not string.find(raw, '|', 1, true) then return 'sent', raw, '1', '' end
  local state, at, attempt, detail = string.match(raw, '^([^|]*)|([^|]*)|?([^|]*)|?(.*)')
  return state, at, attempt, detail
end
local function entry_state(raw)
  if not raw then return nil end
  return string.match(raw, '^([^|]*)|') or 'sent'
end
local function compact_sent(state, at, attempt, detail)
  if state == 'sent' and attempt == '1' and detail == '' then return at end
  return state .. '|' .. at .. '|' .. attempt .. (detail ~= '' and ('|' .. detail) or '')
end
"""


def is_entry_field(name: str) -> bool:
    """Whether a field of a subscriber's hash is a ledger entry (its name is a number)."""
    return name.isdigit()


def encode_entry(entry: LedgerEntry) -> str:
    """An entry's stored value as the finish script writes it for a send the settling did
    not re-send: a first-attempt ``sent`` without detail is its epoch alone (the Python
    twin of ``compact_sent``, for tools that write a store directly, as the benchmarks do)."""
    if entry.state == "sent" and entry.attempt == 1 and not entry.detail:
        return str(math.floor(entry.at))
    return entry.encode()


def decode_entry(lesson_id: str, raw: str) -> LedgerEntry:
    """A stored entry value back into a :class:`LedgerEntry` (a bare epoch: sent, attempt 1)."""
    if "|" not in raw:
        return LedgerEntry(lesson_id, "sent", float(raw), 1)
    return LedgerEntry.decode(lesson_id, raw)


def split_record(raw: Mapping) -> tuple[dict[str, str], dict[str, str]]:
    """A subscriber's hash as HGETALL returns it: (its subscriber fields, its entries by
    number), both as text."""
    fields: dict[str, str] = {}
    numbered: dict[str, str] = {}
    for key, value in raw.items():
        name = as_str(key)
        (numbered if is_entry_field(name) else fields)[name] = as_str(value)
    return fields, numbered


class EntryNumbers(Keys):
    """``P entries:number`` and ``P entries:name``: reading entry numbers back into ids."""

    redis: redis.Redis

    def entry_names(self, numbers: Iterable[str]) -> dict[str, str]:
        """Entry number -> entry id for these numbers (one HMGET; unknown ones left out)."""
        return self._look_up(self.entry_names_key, numbers)

    def entry_numbers(self, entry_ids: Iterable[str]) -> dict[str, str]:
        """Entry id -> its number, for the ids that have one (none was ever written: none)."""
        return self._look_up(self.entry_numbers_key, entry_ids)

    def _look_up(self, key: str, wanted: Iterable[str]) -> dict[str, str]:
        names = sorted(set(wanted))
        found = self.redis.hmget(key, names) if names else []
        return {name: as_str(value) for name, value in zip(names, found, strict=True) if value}

    def ledgers_of(self, numbered: list[dict[str, str]]) -> list[dict[str, LedgerEntry]]:
        """Each record's entries (by number, as :func:`split_record` gives them) as its
        ledger (entry id -> entry), with one read of the numbers' names for them all."""
        names = self.entry_names(n for entries in numbered for n in entries)
        return [
            {names[n]: decode_entry(names[n], raw) for n, raw in entries.items() if n in names}
            for entries in numbered
        ]
