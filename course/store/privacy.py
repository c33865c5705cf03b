"""What erasing an address needs from Redis: the chain of records that held it, their raw
fields, the suppression set (``P suppressed``) and the erase script that removes one record
with every index entry of it. The rules (what is exported, the order of an erase) are in
:mod:`course.subscribers.privacy`."""

from __future__ import annotations

import redis
from redis.commands.core import Script

from course.store.codec import FIELD_OF, as_str, stored_name, suppression_hash
from course.store.entries import split_record
from course.store.keys import Keys

# KEYS: sub hash (the ledger's entries are in it), entry names hash, subs count, due bucket
#       zset, pending zset, quarantine hash, the address's email bucket, replies list,
#       replies zset, retention ended zset, retention unconfirmed zset, and always as the
#       last two (a script that embeds this one passes keys of its own between): the
#       uncertain zset and the settle proof hash
# ARGV: id, address
# Removes one record, its replies and every index entry of it in one step, so a tick or
# worker running meanwhile sees either all of it or none. Returns the number of keys deleted
# (0 to 2: the record with its ledger, its replies).
ERASE_SCRIPT = """
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local lesson = string.match(field, '^%d+$') and redis.call('HGET', KEYS[2], field)
  if lesson then
    redis.call('ZREM', KEYS[5], ARGV[1] .. '|' .. lesson)
    redis.call('ZREM', KEYS[#KEYS - 1], ARGV[1] .. '|' .. lesson)
    redis.call('HDEL', KEYS[#KEYS], ARGV[1] .. '|' .. lesson)
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[3]) end
local deleted = redis.call('DEL', KEYS[1], KEYS[8])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[10], ARGV[1])
redis.call('ZREM', KEYS[11], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
if redis.call('HGET', KEYS[7], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[7], ARGV[2]) end
return deleted
"""


class PrivacyRecords(Keys):
    """Reads and deletes for a person's data export and erasure."""

    redis: redis.Redis
    _erase: Script

    def address_holder(self, address: str) -> str:
        """The id the address maps to now (``P email``), or "" when none."""
        current = self.redis.hget(self.email_key(address), address)
        return as_str(current) if current else ""

    def email_and_prior(self, sub_id: str) -> tuple[str | None, str]:
        """A record's address (None: no such record) and the record it replaced ("" none)."""
        email, prior = self.redis.hmget(self.sub_key(sub_id), stored_name("email"),
                                         stored_name("prior"))  # fmt: skip
        return (None if email is None else as_str(email)), (as_str(prior) if prior else "")

    def email_of(self, sub_id: str) -> str | None:
        """A record's address, or None when there is no such record."""
        email = self.redis.hget(self.sub_key(sub_id), stored_name("email"))
        return None if email is None else as_str(email)

    def emails_of(self, sub_ids: list[str]) -> list[str | None]:
        """:meth:`email_of` for each record, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hget(self.sub_key(sub_id), stored_name("email"))
        return [None if email is None else as_str(email) for email in pipe.execute()]

    def raw_fields(self, sub_id: str) -> dict[str, str]:
        """A record's hash as stored, each field under its full name (``status``, not the
        stored ``s``; the version as ``v``), without its ledger entries; empty when there is
        none."""
        fields, _ = split_record(self.redis.hgetall(self.sub_key(sub_id)))
        return {_full_name(name): value for name, value in fields.items()}

    def suppress_address(self, address: str) -> bool:
        """Add the address to ``P suppressed`` for good; False when it was there already."""
        return bool(self.redis.sadd(self.suppressed_key, suppression_hash(address)))

    def erase_record(self, sub_id: str, address: str) -> int:
        """Remove one record, its replies and its index entries (:data:`ERASE_SCRIPT`); keys
        deleted."""
        keys = [self.sub_key(sub_id), self.entry_names_key, self.subs_count_key,
                self.due_key(sub_id), self.pending_key, self.quarantine_key,
                self.email_key(address),
                self.replies_key(sub_id), self.replied_key, self.ended_key,
                self.unconfirmed_key, self.uncertain_key, self.settle_proof_key]  # fmt: skip
        return int(self._erase(keys=keys, args=[sub_id, address]))

    def drop_vanished_holder(self, address: str) -> None:
        """Remove the address's mapping if the record it names no longer exists."""
        left = self.redis.hget(self.email_key(address), address)
        if left and not self.redis.exists(self.sub_key(as_str(left))):
            self.redis.hdel(self.email_key(address), address)


def _full_name(stored: str) -> str:
    name = FIELD_OF.get(stored, stored)
    return "v" if name == "version" else name
