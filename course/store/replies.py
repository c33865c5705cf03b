"""Readers' replies in Redis: each reader's last :data:`MAX_PER_READER` replies, newest first
(``P replies:{id}``, JSON per reply), the readers by their latest reply (``P replies``), the
replies per lesson (``P stats:replies``), the inbound webhook's counts (``P stats:inbound``)
and the Message-IDs of replies already kept (``P inbound:seen:{hash}``), so SendGrid's repeat
of a post is not kept twice."""

from __future__ import annotations

import hashlib
import json

import redis
from redis.commands.core import Script

from course.models.reply import Reply
from course.store.codec import as_str
from course.store.keys import Keys

MAX_PER_READER = 20  # replies kept per reader: the oldest goes when a newer one comes
SEEN_TTL = 7 * 24 * 3600  # seconds a kept reply's Message-ID is remembered (SendGrid: 3 days)

# KEYS: sub hash, the reader's replies list, replies zset, seen key ("" when no Message-ID),
#       the replies-per-lesson hash
# ARGV: reply JSON, epoch, sub id, most kept, seen TTL, lesson id ("" when none is known)
# Keeps a reply only while its reader's record exists: a reply racing an erase never
# outlives the record; a kept reply to a known lesson counts for that lesson (a repeated post
# counts nothing). Returns 1 kept, 0 no such record, -1 already kept (a repeated post).
ADD_REPLY_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if KEYS[4] ~= '' and not redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[5])) then
  return -1
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[3])
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
return 1
"""


def encode_reply(reply: Reply) -> str:
    return json.dumps(reply.as_dict(), ensure_ascii=False, separators=(",", ":"))


def decode_reply(value: str | bytes) -> Reply | None:
    """A stored reply, or None for one that cannot be read (shown as missing, never fatal)."""
    try:
        data = json.loads(as_str(value))
        return Reply(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


class ReplyRecords(Keys):
    """Replies per reader, the readers by latest reply, replies per lesson and the inbound
    counts."""

    redis: redis.Redis
    _add_reply: Script

    def add_reply(self, sub_id: str, reply: Reply, message_id: str = "") -> int:
        """Keep ``reply`` with the record ``sub_id`` (:data:`ADD_REPLY_SCRIPT`): 1 kept, 0 no
        such record, -1 a reply with this ``message_id`` was kept already. A kept reply with a
        ``lesson_id`` counts once for that lesson."""
        seen = ""
        if message_id:
            seen = self.inbound_seen_key(hashlib.sha256(message_id.encode()).hexdigest()[:32])
        keys = [self.sub_key(sub_id), self.replies_key(sub_id), self.replied_key, seen,
                self.reply_stats_key]  # fmt: skip
        args = [encode_reply(reply), reply.at, sub_id, MAX_PER_READER, SEEN_TTL, reply.lesson_id]
        return int(self._add_reply(keys=keys, args=args))

    def replies_of(self, sub_id: str) -> list[Reply]:
        """A reader's replies, newest first."""
        values = self.redis.lrange(self.replies_key(sub_id), 0, -1)
        return [reply for reply in map(decode_reply, values) if reply is not None]

    def recent_replies(self, limit: int) -> list[tuple[str, Reply]]:
        """The newest ``limit`` replies of everyone, newest first, with their reader's id.
        The readers with the latest replies hold them all, so only those are read."""
        readers = [as_str(i) for i in self.redis.zrevrange(self.replied_key, 0, limit - 1)]
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in readers:
            pipe.lrange(self.replies_key(sub_id), 0, limit - 1)
        found = [
            (sub_id, reply)
            for sub_id, values in zip(readers, pipe.execute(), strict=True)
            for reply in map(decode_reply, values)
            if reply is not None
        ]
        return sorted(found, key=lambda pair: pair[1].at, reverse=True)[:limit]

    def reply_counts(self) -> dict[str, int]:
        """Lesson id -> replies kept that answered it (anonymous: an erase leaves them)."""
        raw = self.redis.hgetall(self.reply_stats_key)
        return {as_str(k): int(v) for k, v in raw.items()}

    def count_inbound(self, name: str, by: int = 1) -> None:
        self.redis.hincrby(self.inbound_stats_key, name, by)

    def inbound_counts(self) -> dict[str, int]:
        raw = self.redis.hgetall(self.inbound_stats_key)
        return {as_str(k): int(v) for k, v in raw.items()}
