"""``course migrate``: moving a store from an older layout (:mod:`course.store.layout`) to this
release's, one step (layout n -> n + 1) at a time.

Each step works in batches over a SCAN/ZSCAN cursor; after each batch the cursor is saved in
``P migrate:state``, so a run killed half-way resumes where it stopped. Every batch is
idempotent per record (a batch redone after a crash changes nothing it changed before). When a
step's scan is over, ``P layout`` moves on and the state is cleared in one MULTI. A dry run
reads the same batches with scripts that count instead of writing, and writes nothing at all.
Migration runs while the workers, beat and the web app are stopped: :meth:`live_processes`
says who showed that it runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import redis

from course.store.codec import STORED_NAMES, as_str, as_text
from course.store.entries import ENTRY_LUA
from course.store.errors import LayoutMismatch
from course.store.keys import Keys
from course.store.layout import LAYOUT, newer_message

# KEYS: uncertain zset, then one ledger hash each
# ARGV: '1' to count only (a dry run) or '0', then the subscriber id of each ledger
# Layout 1 -> 2: puts every ``uncertain`` entry of those ledgers into the uncertain index at the
# instant of its send (what the finish script does for a new one), unless it is there already
# (an entry indexed before keeps its time). Returns how many it added (or would add).
BACKFILL_UNCERTAIN_SCRIPT = """
local dry = ARGV[1] == '1'
local added = 0
for k = 2, #KEYS do
  local entries = redis.call('HGETALL', KEYS[k])
  for i = 1, #entries, 2 do
    local state, at = string.match(entries[i + 1], '^([^|]*)|([^|]*)')
    if state == 'uncertain' then
      local member = ARGV[k] .. '|' .. entries[i]
      if not redis.call('ZSCORE', KEYS[1], member) then
        added = added + 1
        if not dry then redis.call('ZADD', KEYS[1], tonumber(at) or 0, member) end
      end
    end
  end
end
return added
"""

# KEYS: one subscriber hash each
# ARGV: '1' to count only (a dry run) or '0', then pairs: a field's long name, its stored name
# Layout 3 -> 4: renames the fields of each record to their stored names (a record renamed
# before has none of the long names left). Returns how many records it renamed (or would).
RENAME_FIELDS_SCRIPT = """
local dry = ARGV[1] == '1'
local short = {}
for i = 2, #ARGV, 2 do short[ARGV[i]] = ARGV[i + 1] end
local changed = 0
for k = 1, #KEYS do
  local raw = redis.call('HGETALL', KEYS[k])
  local renamed = false
  for i = 1, #raw, 2 do
    local to = short[raw[i]]
    if to then
      renamed = true
      if not dry then
        redis.call('HSET', KEYS[k], to, raw[i + 1])
        redis.call('HDEL', KEYS[k], raw[i])
      end
    end
  end
  if renamed then changed = changed + 1 end
end
return changed
"""

# KEYS: settle proof hash, then one ledger hash each
# ARGV: '1' to count only (a dry run) or '0', then the subscriber id of each ledger
# Layout 4 -> 5: drops the provider's message id from every ``sent`` entry that the settling
# did not re-send (what the finish script now does as it writes one). Returns how many
# entries it compacted (or would).
COMPACT_SENT_SCRIPT = """
local dry = ARGV[1] == '1'
local changed = 0
for k = 2, #KEYS do
  local entries = redis.call('HGETALL', KEYS[k])
  for i = 1, #entries, 2 do
    local kept = string.match(entries[i + 1], '^(sent|[^|]*|[^|]*)|.')
    if kept and redis.call('HEXISTS', KEYS[1], ARGV[k] .. '|' .. entries[i]) == 0 then
      changed = changed + 1
      if not dry then redis.call('HSET', KEYS[k], entries[i], kept) end
    end
  end
end
return changed
"""

# KEYS: entry numbers hash, entry names hash, then for each record: its sub hash, its ledger
#       hash (layout 6's ``P ledger:{id}``)
# ARGV: '1' to count only (a dry run) or '0'
# Layout 6 -> 7: folds each ledger into its record's hash, each entry under its number
# (course.store.entries; numbers given in the order met), a first-attempt ``sent`` entry as its
# bare epoch, and deletes the ledger. A ledger whose record is gone (an outcome written after
# an erase) is deleted alone. Returns how many entries it moved (or would).
FOLD_LEDGER_SCRIPT = (
    ENTRY_LUA
    + """
local dry = ARGV[1] == '1'
local moved = 0
for k = 3, #KEYS, 2 do
  local record = redis.call('EXISTS', KEYS[k]) == 1
  local entries = redis.call('HGETALL', KEYS[k + 1])
  for i = 1, #entries, 2 do
    if record then
      moved = moved + 1
      if not dry then
        local state, at, attempt, detail = entry_parts(entries[i + 1])
        at = tostring(math.floor(tonumber(at) or 0))
        local field = entry_field(KEYS[1], KEYS[2], entries[i], true)
        redis.call('HSET', KEYS[k], field, compact_sent(state, at, attempt, detail))
      end
    end
  end
  if not dry then redis.call('DEL', KEYS[k + 1]) end
end
return moved
"""
)

# What each step does, by the layout it starts from (shown in the progress bar and summary).
STEPS = {
    1: "index uncertain sends for the settling",
    2: "split the email index into small buckets",
    3: "short field names in every record",
    4: "sent entries without message ids; a count instead of the signup index",
    5: "split the due index into small zsets",
    6: "fold each ledger into its record, entries numbered and shorter",
}
HEARTBEAT_MAX_AGE = 180  # seconds: a process seen this recently is taken to be running


@dataclass
class StepResult:
    source: int  # the layout the step starts from
    title: str
    seen: int = 0  # records read
    changed: int = 0  # records (or entries) changed, or that would change in a dry run
    resumed: bool = False  # it went on from a saved cursor


@dataclass
class MigrationReport:
    start: int | None  # the store's layout before (None: empty)
    end: int
    dry_run: bool
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0


# (step, records read so far, records in all) after each batch
Progress = Callable[[StepResult, int, int], None]


class Migrations(Keys):
    """The batches of each migration step, its saved cursor, and who is running."""

    redis: redis.Redis

    def migration_state(self) -> dict[str, str]:
        """``P migrate:state`` (empty when no migration is under way)."""
        return as_text(self.redis.hgetall(self.migrate_state_key))

    def migration_total(self, source: int) -> int:
        """How many records the step from ``source`` reads (for the progress bar)."""
        if source == 2:
            return int(self.redis.hlen(self.legacy_email_key))
        if source == 5:
            return int(self.redis.zcard(self.legacy_due_key))
        if source == 6:
            return int(self.redis.get(self.subs_count_key) or 0)
        return int(self.redis.zcard(self.subs_key))

    def migration_batch(
        self, source: int, cursor: int, count: int, dry_run: bool
    ) -> tuple[int, int, int]:
        """One batch of the step from ``source``: (next cursor, 0 when done; records read;
        records changed or, in a dry run, that would change)."""
        if source == 1:
            return self._index_uncertain(cursor, count, dry_run)
        if source == 2:
            return self._split_email_index(cursor, count, dry_run)
        if source == 3:
            return self._rename_fields(cursor, count, dry_run)
        if source == 4:
            return self._compact_sent(cursor, count, dry_run)
        if source == 5:
            return self._split_due_index(cursor, count, dry_run)
        if source == 6:
            return self._fold_ledgers(cursor, count, dry_run)
        raise ValueError(f"no migration step from layout {source}")

    def _split_email_index(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 2 -> 3: each address of ``P email`` into its bucket (the same id: a batch
        done twice writes the same); the old hash goes when the step ends."""
        cursor, found = self.redis.hscan(self.legacy_email_key, cursor, count=count)
        pairs = {as_str(k): as_str(v) for k, v in found.items()}
        if not dry_run and pairs:
            pipe = self.redis.pipeline(transaction=False)
            for address, sub_id in pairs.items():
                pipe.hset(self.email_key(address), address, sub_id)
            pipe.execute()
        return int(cursor), len(pairs), len(pairs)

    def _split_due_index(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 5 -> 6: each member of ``P due`` into its bucket with its score (a batch
        done twice writes the same); the old zset goes when the step ends."""
        cursor, found = self.redis.zscan(self.legacy_due_key, cursor, count=count)
        pairs = [(as_str(m), float(score)) for m, score in found]
        if not dry_run and pairs:
            pipe = self.redis.pipeline(transaction=False)
            for sub_id, score in pairs:
                pipe.zadd(self.due_key(sub_id), {sub_id: score})
            pipe.execute()
        return int(cursor), len(pairs), len(pairs)

    def _fold_ledgers(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 6 -> 7: :data:`FOLD_LEDGER_SCRIPT` over a batch of a SCAN of the ledgers
        (``P ledger:*``; a record without a ledger has nothing to move)."""
        pattern = self.legacy_ledger_key("*")
        cursor, found = self.redis.scan(cursor, match=pattern, count=count)
        ids = [as_str(key)[len(pattern) - 1 :] for key in found]
        if not ids:
            return int(cursor), 0, 0
        script = self.redis.register_script(FOLD_LEDGER_SCRIPT)
        keys = [self.entry_numbers_key, self.entry_names_key]
        for sub_id in ids:
            keys += [self.sub_key(sub_id), self.legacy_ledger_key(sub_id)]
        changed = int(script(keys=keys, args=["1" if dry_run else "0"]))
        return int(cursor), len(ids), changed

    def _rename_fields(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 3 -> 4: :data:`RENAME_FIELDS_SCRIPT` over a batch of ``P subs``."""
        cursor, found = self.redis.zscan(self.subs_key, cursor, count=count)
        ids = [as_str(m) for m, _ in found]
        if not ids:
            return int(cursor), 0, 0
        renames = [item for name, short in STORED_NAMES.items() if name != short
                   for item in (name, short)]  # fmt: skip
        script = self.redis.register_script(RENAME_FIELDS_SCRIPT)
        keys = [self.sub_key(i) for i in ids]
        changed = int(script(keys=keys, args=["1" if dry_run else "0", *renames]))
        return int(cursor), len(ids), changed

    def _compact_sent(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 4 -> 5: :data:`COMPACT_SENT_SCRIPT` over a batch of ``P subs`` (the
        signup index itself goes as the step ends)."""
        cursor, found = self.redis.zscan(self.subs_key, cursor, count=count)
        ids = [as_str(m) for m, _ in found]
        if not ids:
            return int(cursor), 0, 0
        script = self.redis.register_script(COMPACT_SENT_SCRIPT)
        keys = [self.settle_proof_key, *(self.legacy_ledger_key(i) for i in ids)]
        changed = int(script(keys=keys, args=["1" if dry_run else "0", *ids]))
        return int(cursor), len(ids), changed

    def _index_uncertain(self, cursor: int, count: int, dry_run: bool) -> tuple[int, int, int]:
        """Layout 1 -> 2: :data:`BACKFILL_UNCERTAIN_SCRIPT` over a batch of ``P subs``."""
        cursor, found = self.redis.zscan(self.subs_key, cursor, count=count)
        ids = [as_str(m) for m, _ in found]
        if not ids:
            return int(cursor), 0, 0
        script = self.redis.register_script(BACKFILL_UNCERTAIN_SCRIPT)
        keys = [self.uncertain_key, *(self.legacy_ledger_key(i) for i in ids)]
        changed = int(script(keys=keys, args=["1" if dry_run else "0", *ids]))
        return int(cursor), len(ids), changed

    def save_migration_state(self, step: StepResult, cursor: int) -> None:
        mapping = {"from": step.source, "cursor": cursor, "seen": step.seen,
                   "changed": step.changed}  # fmt: skip
        self.redis.hset(self.migrate_state_key, mapping=mapping)

    def end_migration_step(self, source: int) -> None:
        """The step from ``source`` is over: the store is at ``source + 1``, in one MULTI
        (with what the step leaves behind: layout 2's email hash; layout 5's due zset;
        layout 4's signup index, replaced by its count, and a retention backfill's ZSCAN
        cursor over it, restarted as a SCAN)."""
        restart = source == 4 and self.redis.hget(self.retention_backfill_key, "done") == b"0"
        records = int(self.redis.zcard(self.subs_key)) if source == 4 else 0
        pipe = self.redis.pipeline()
        if source == 2:
            pipe.delete(self.legacy_email_key)
        if source == 5:
            pipe.delete(self.legacy_due_key)
        if source == 4:
            pipe.set(self.subs_count_key, records)
            pipe.delete(self.subs_key)
        if restart:
            pipe.hset(self.retention_backfill_key, "cursor", 0)
        pipe.set(self.layout_key, source + 1)
        pipe.delete(self.migrate_state_key)
        pipe.execute()

    def live_processes(self, now: float, max_age: float = HEARTBEAT_MAX_AGE) -> list[str]:
        """The processes that showed they run within ``max_age`` seconds of ``now``: beat
        (``P beat:last``) and every worker or web app on the status board."""
        found = []
        beat = self.redis.get(self.beat_last_key)
        if beat is not None and now - float(beat) <= max_age:
            found.append("beat")
        for name, text in as_text(self.redis.hgetall(self.schedule_status_key)).items():
            try:
                seen = datetime.fromisoformat(json.loads(text)["seen_at"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if now - seen <= max_age:
                found.append(name)
        return found


def migrate_store(store, batch: int, dry_run: bool,
                  progress: Progress | None = None) -> MigrationReport:  # fmt: skip
    """Move ``store`` to :data:`LAYOUT`, step by step from its layout (resuming a step a crash
    interrupted); with ``dry_run``, count what would change and write nothing. Raises
    :class:`LayoutMismatch` for a layout newer than this release's."""
    started = time.perf_counter()
    layout = store.stored_layout()
    report = MigrationReport(layout, LAYOUT, dry_run)
    if layout is None:  # empty: nothing to move, only the stamp
        if not dry_run:
            store.require_layout()
        return report
    if layout > LAYOUT:
        raise LayoutMismatch(newer_message(layout))
    saved = store.migration_state()
    for source in range(layout, LAYOUT):
        step = StepResult(source, STEPS[source])
        cursor = 0
        if saved.get("from") == str(source):
            cursor = int(saved.get("cursor", 0))
            step.seen, step.changed = int(saved.get("seen", 0)), int(saved.get("changed", 0))
            step.resumed = cursor != 0
        total = store.migration_total(source)
        while True:
            cursor, seen, changed = store.migration_batch(source, cursor, batch, dry_run)
            step.seen += seen
            step.changed += changed
            if not dry_run and cursor != 0:
                store.save_migration_state(step, cursor)
            if progress:
                progress(step, step.seen, total)
            if cursor == 0:
                break
        if not dry_run:
            store.end_migration_step(source)
        report.steps.append(step)
    report.seconds = time.perf_counter() - started
    return report
