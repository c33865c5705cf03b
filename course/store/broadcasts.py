"""Broadcasts in Redis: their definitions, the list of them, and the claim of their
recipients (:data:`CLAIM_SCRIPT`). The keys (course.store.keys):

``P broadcast:{id}`` hash  template (its path), subject, source (the template's text when it
                           was created: what every recipient gets), expression (the segment),
                           at_local (``HH:MM``, or ``""``: at once), include_paused (``1``/``0``),
                           status (draft, sending, sent, cancelled), created and sent_at
                           (epochs), claimed (recipients claimed, counted by the claim script).
``P broadcasts``     zset  broadcast id -> epoch it was created.
``P sub:{sub}``      the recipient's ledger entry ``b:{id}`` (like a lesson's, under its number);
                           its outcomes in ``P stats:sends:b:{id}``, its provider events in
                           ``P stats:lesson:b:{id}``.

A recipient is claimed as the ledger entry ``b:{id}`` in their own ledger, so the rest of
a broadcast's way is the lessons' own: the tick's pending pass hands the claim to a worker
when its instant comes, ``start_send`` checks the reader's status at the moment of sending
(unsubscribe wins), ``finish`` records the outcome and counts it in ``stats:sends:b:{id}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time

import redis
from redis.commands.core import Script

from course.models.broadcast import Broadcast, ClaimCounts, entry_id
from course.models.ledger import Outcome
from course.models.subscriber import LedgerEntry
from course.store.codec import as_str, as_text, encode_score, encode_value, with_fields
from course.store.entries import ENTRY_LUA
from course.store.keys import Keys, split_member

# KEYS: broadcast hash, pending zset, entry numbers hash, entry names hash
# ARGV: key prefix, entry id (b:{id}), now, include paused ('1' or '0'), then for each
#       recipient: subscriber id, pending score (their send instant)
# Claims the entry for each recipient: only while the broadcast is sending, only for a reader
# who may be mailed (active or completed: graduates; paused when asked; never suppressed or
# erased), only once (HSETNX). Course progress is not touched: no version, due index, last
# lesson or day count changes. Like the segments' FACTS_SCRIPT it builds each reader's
# ``P sub:{id}`` from the prefix, so that a page of recipients is one call. Returns
# {claimed, not mailable, already in the ledger, not sending (cancelled)}.
CLAIM_SCRIPT = ENTRY_LUA + with_fields("""
local p, entry, now, paused = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local n = (#ARGV - 4) / 2
if redis.call('HGET', KEYS[1], 'status') ~= 'sending' then return {0, 0, 0, n} end
local field = entry_field(KEYS[3], KEYS[4], entry, true)
local claimed, refused, already = 0, 0, 0
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local status = redis.call('HGET', p .. 'sub:' .. id, '@status')
  if status == 'active' or status == 'completed' or (paused and status == 'paused') then
    if redis.call('HSETNX', p .. 'sub:' .. id, field, 'claimed|' .. now .. '|0|') == 1 then
      redis.call('ZADD', KEYS[2], ARGV[i + 1], id .. '|' .. entry)
      claimed = claimed + 1
    else
      already = already + 1
    end
  else
    refused = refused + 1
  end
end
if claimed > 0 then redis.call('HINCRBY', KEYS[1], 'claimed', claimed) end
return {claimed, refused, already, 0}
""")

CLAIM_PAGE = 1000  # recipients per script call: about a millisecond of the server's time


_FIELDS = ("template", "subject", "source", "expression", "at_local", "include_paused",
           "status", "created", "sent_at", "claimed")  # fmt: skip


class BroadcastRecords(Keys):
    """Broadcast definitions, their list, their recipients' claims and their counts."""

    redis: redis.Redis
    _claim_broadcast: Script

    def add_broadcast(self, b: Broadcast) -> None:
        """Store a new broadcast (its definition and its place in the list), in one step."""
        fields = {
            "template": b.template,
            "subject": b.subject,
            "source": b.source,
            "expression": b.expression,
            "at_local": b.at_local.strftime("%H:%M") if b.at_local else "",
            "include_paused": "1" if b.include_paused else "0",
            "status": b.status,
            "created": encode_value(float(b.created)),
            "sent_at": "",
            "claimed": "0",
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.broadcast_key(b.id), mapping=fields)
        pipe.zadd(self.broadcasts_key, {b.id: b.created})
        pipe.execute()

    def broadcast(self, broadcast_id: str) -> Broadcast | None:
        """One broadcast with its counts, or None."""
        found = self.broadcasts([broadcast_id])
        return found[0] if found else None

    def broadcast_exists(self, broadcast_id: str) -> bool:
        return bool(self.redis.exists(self.broadcast_key(broadcast_id)))

    def broadcast_ids(self, limit: int = 200) -> list[str]:
        """The newest broadcasts' ids, newest first."""
        return [as_str(i) for i in self.redis.zrevrange(self.broadcasts_key, 0, limit - 1)]

    def broadcasts(self, ids: list[str]) -> list[Broadcast]:
        """These broadcasts (those that exist), with their counts, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for broadcast_id in ids:
            entry = entry_id(broadcast_id)
            pipe.hgetall(self.broadcast_key(broadcast_id))
            pipe.hgetall(self.send_stats_key(entry))
            pipe.hgetall(self.lesson_stats_key(entry))
        replies = pipe.execute() if ids else []
        found = []
        for n, broadcast_id in enumerate(ids):
            raw, sends, events = (as_text(r) for r in replies[3 * n : 3 * n + 3])
            if raw.get("status"):
                found.append(_decode(broadcast_id, raw, sends, events))
        return found

    def set_broadcast_status(
        self, broadcast_id: str, status: str, allowed: tuple[str, ...], now: float | None = None
    ) -> str | None:
        """Move a broadcast to ``status`` if it is in one of ``allowed`` (a compare-and-set;
        ``now`` also sets ``sent_at`` when it is not set yet). The status it had (None: no
        such broadcast); it changed only if that is in ``allowed``."""
        key = self.broadcast_key(broadcast_id)

        def change(pipe: redis.client.Pipeline) -> str | None:
            before, sent_at = (
                as_str(v) if v else None for v in pipe.hmget(key, "status", "sent_at")
            )
            if before is None or before not in allowed:
                return before
            pipe.multi()
            pipe.hset(key, "status", status)
            if now is not None and not sent_at:
                pipe.hset(key, "sent_at", encode_value(float(now)))
            return before

        return self.redis.transaction(change, key, value_from_callable=True)

    def claim_broadcast_many(
        self, b: Broadcast, recipients: list[tuple[str, float]], now: float
    ) -> ClaimCounts:
        """Run :data:`CLAIM_SCRIPT` over (subscriber id, send instant) pairs, a thousand per
        call; how many were claimed, not mailable, claimed before, refused (cancelled)."""
        total = [0, 0, 0, 0]
        head = [self.prefix, b.entry, encode_value(float(now)), "1" if b.include_paused else "0"]
        for start in range(0, len(recipients), CLAIM_PAGE):
            args = list(head)
            for sub_id, at in recipients[start : start + CLAIM_PAGE]:
                args += [sub_id, encode_score(at)]
            keys = [self.broadcast_key(b.id), self.pending_key, self.entry_numbers_key,
                    self.entry_names_key]  # fmt: skip
            found = self._claim_broadcast(keys=keys, args=args)
            total = [t + int(f) for t, f in zip(total, found, strict=True)]
        return ClaimCounts(*total)

    def broadcast_waiting(self, broadcast_id: str) -> list[tuple[str, str]]:
        """The broadcast's unfinished entries (claimed, sending, retry): those in the pending
        index, found by a scan of it (only ``cancel`` needs this)."""
        pattern = f"*|{entry_id(broadcast_id)}"
        found = self.redis.zscan_iter(self.pending_key, match=pattern, count=5000)
        return [split_member(as_str(m)) for m, _ in found]

    def skip_entries(
        self, items: list[tuple[str, str]], now: float, why: str, batch: int = 1000
    ) -> int:
        """Mark these entries ``skipped`` (``why``) where they are still claimed or waiting
        for a retry, so no worker starts them (``start_send`` then refuses); how many were."""
        skipped = 0
        finish: Callable[[list[Outcome]], list[bool]] = self.finish_many  # type: ignore[attr-defined]
        for start in range(0, len(items), batch):
            outcomes = [
                Outcome(s, LedgerEntry(lesson, "skipped", now, 0, why), None, ("claimed", "retry"))
                for s, lesson in items[start : start + batch]
            ]
            skipped += sum(finish(outcomes))
        return skipped


def _decode(
    broadcast_id: str, raw: dict[str, str], sends: dict[str, str], events: dict[str, str]
) -> Broadcast:
    at_local = raw.get("at_local") or ""
    return Broadcast(
        id=broadcast_id,
        template=raw.get("template", ""),
        subject=raw.get("subject", ""),
        source=raw.get("source", ""),
        expression=raw.get("expression", ""),
        at_local=time.fromisoformat(at_local) if at_local else None,
        include_paused=raw.get("include_paused") == "1",
        status=raw.get("status", ""),
        created=float(raw.get("created") or 0),
        sent_at=float(raw["sent_at"]) if raw.get("sent_at") else None,
        claimed=int(raw.get("claimed") or 0),
        counts={k: int(v) for k, v in sends.items()},
        events={k: int(v) for k, v in events.items()},
    )
