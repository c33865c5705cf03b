"""The draft: a saved version not yet live, made in the admin editor, waiting to be published.

There is at most one (``P schedule:draft``, see :mod:`course.store.keys`): it names its version,
the live version it was made over, who saved it last and when. Saving is a compare-and-set in
one Lua script: the editor says which version it was opened from (the draft, or the live version
when there was none), and the save is refused when someone saved a draft since, or published
since (the draft's live version is no longer live). The files are written by the same script,
so a refused save leaves nothing behind. Publishing the draft is the publish compare-and-set of
:mod:`course.store.versions` that also clears the draft, in one step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from course.store.codec import as_str
from course.store.versions import (
    MAX_AUTHOR,
    MAX_MESSAGE,
    ScheduleVersions,
    VersionError,
    _check_names,
    clean_text,
    version_id,
)

# KEYS[1] draft hash, KEYS[2] live pointer, KEYS[3] the version's files, KEYS[4] its info,
# KEYS[5] the versions zset. ARGV[1] base (the version the editor was opened from),
# ARGV[2] the new version id, ARGV[3] author, ARGV[4] ISO instant, ARGV[5] epoch,
# ARGV[6] message, ARGV[7..] file name, file text, ...
# Returns 1 saved, 0 the files are the live version's (no draft any more),
# -1 someone saved a draft since, -2 someone published since.
SAVE_SCRIPT = """
local live = redis.call('GET', KEYS[2]) or ''
local draft = redis.call('HGET', KEYS[1], 'id')
if draft then
  if draft ~= ARGV[1] then return -1 end
  if (redis.call('HGET', KEYS[1], 'live') or '') ~= live then return -2 end
elseif ARGV[1] ~= live then
  return -2
end
if ARGV[2] == live then
  redis.call('DEL', KEYS[1])
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
  redis.call('HSET', KEYS[4], 'author', ARGV[3], 'created', ARGV[4], 'message', ARGV[6],
             'parent', ARGV[1], 'files', tostring((#ARGV - 6) / 2))
  redis.call('ZADD', KEYS[5], 'NX', ARGV[5], ARGV[2])
end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'live', live, 'author', ARGV[3], 'at', ARGV[4])
return 1
"""

# KEYS[1] draft hash, KEYS[2] live pointer, KEYS[3] live log, KEYS[4] the set of every email
# id a published version had. ARGV[1] the draft's id as the page showed it, ARGV[2] epoch,
# ARGV[3] the log entry, ARGV[4..] the draft's email ids. Returns 1 published, -1 the draft
# changed since, -2 someone published since the draft was made.
PUBLISH_SCRIPT = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return -1 end
local live = redis.call('GET', KEYS[2]) or ''
if (redis.call('HGET', KEYS[1], 'live') or '') ~= live then return -2 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
for i = 4, #ARGV do redis.call('SADD', KEYS[4], ARGV[i]) end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] draft hash; ARGV[1] the draft's id as the page showed it. 1 discarded, 0 not.
DISCARD_SCRIPT = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


class StaleDraft(VersionError):
    """Someone saved or published since the editor was opened (compare-and-set failed)."""


@dataclass(frozen=True)
class Draft:
    """The draft waiting: its version, the live version it was made over, who saved it when."""

    id: str
    live: str | None
    author: str
    at: datetime


class ScheduleDrafts(ScheduleVersions):
    """The versions with the draft (one at most) under one prefix."""

    def __init__(self, client, prefix: str):
        super().__init__(client, prefix)
        self._save_draft = client.register_script(SAVE_SCRIPT)
        self._publish_draft = client.register_script(PUBLISH_SCRIPT)
        self._discard = client.register_script(DISCARD_SCRIPT)

    def draft(self) -> Draft | None:
        raw = {as_str(k): as_str(v) for k, v in self.redis.hgetall(self.draft_key).items()}
        if not raw.get("id"):
            return None
        return Draft(
            id=raw["id"],
            live=raw.get("live") or None,
            author=raw.get("author", ""),
            at=datetime.fromisoformat(raw["at"]),
        )

    def save_draft(
        self, contents: dict[str, bytes], base: str | None, author: str, message: str,
        now: datetime,
    ) -> str | None:  # fmt: skip
        """Keep ``contents`` as the draft, made from ``base`` (the draft the editor opened,
        or the live version when there was no draft); the draft's id, or None when the
        files are the live version's again (the draft is gone). :class:`StaleDraft` when
        someone saved or published since ``base`` was read."""
        _check_names(contents)
        vid = version_id(contents)
        keys = [self.draft_key, self.live_key, self.version_files_key(vid),
                self.version_info_key(vid), self.versions_key]  # fmt: skip
        args: list[object] = [
            base or "", vid, clean_text(author, MAX_AUTHOR) or "unknown",
            now.astimezone(UTC).isoformat(), now.timestamp(), clean_text(message, MAX_MESSAGE),
        ]  # fmt: skip
        for name, data in sorted(contents.items()):
            args += [name, data]
        done = int(self._save_draft(keys=keys, args=args))
        if done == -1:
            found = self.draft()
            by = f" by {found.author} at {found.at:%H:%M} UTC" if found else ""
            raise StaleDraft(f"not saved: someone saved the draft since you opened it{by}; "
                             "open it again and redo your change")  # fmt: skip
        if done == -2:
            raise StaleDraft(
                f"not saved: a version was published since you opened it (live is now "
                f"{self.live()}); open the editor again and redo your change"
            )
        return vid if done == 1 else None

    def publish_draft(
        self, vid: str, author: str, message: str, now: datetime, lesson_ids=()
    ) -> None:
        """Make the draft ``vid`` live and clear it, in one step; :class:`StaleDraft` when
        the draft changed or someone published since it was made."""
        entry = json.dumps(
            {"id": vid, "at": now.astimezone(UTC).isoformat(),
             "author": clean_text(author, MAX_AUTHOR) or "unknown",
             "message": clean_text(message, MAX_MESSAGE), "kind": "publish"},
            sort_keys=True,
        )  # fmt: skip
        keys = [self.draft_key, self.live_key, self.live_log_key, self.scheduled_lessons_key]
        args = [vid, now.timestamp(), entry, *lesson_ids]
        done = int(self._publish_draft(keys=keys, args=args))
        if done == -1:
            raise StaleDraft("not published: the draft changed since this page was drawn; "
                             "look at it again")  # fmt: skip
        if done == -2:
            raise StaleDraft(
                f"not published: a version was published since this draft was made (live is "
                f"now {self.live()}); discard the draft and make the change again"
            )

    def discard_draft(self, vid: str) -> bool:
        """Drop the draft if it is still ``vid`` (its version stays saved)."""
        return bool(int(self._discard(keys=[self.draft_key], args=[vid])))
