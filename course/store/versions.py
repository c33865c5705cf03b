"""Published versions of the course in Redis: every version's files (the schedule and each
template it names), who made it and why, the one ``live`` pointer the workers and the web app
follow, and the log of the instants each version became live.

A version is content-addressed: its id is :func:`version_id` of its files, so the same files
are the same version, and saving one again changes nothing. A version is saved first (a
draft, in the admin editor to come) and goes live by :meth:`ScheduleVersions.publish`, a
compare-and-set on the live pointer: whoever read the live version ``A`` and publishes ``B``
over it fails if someone else published meanwhile. The other keys are in
:mod:`course.store.keys` (which builds all of them); the published course's are these:

``P schedule:version:{id}`` hash  one version of the course: relative path (``schedule.yaml``,
                              ``templates/lessons/welcome.md``, ...) -> the file's text; the
                              schedule and every template it names, the layouts and the
                              page overrides under ``templates/web/``. ``{id}`` is 12 hex
                              digits of the files' SHA-256 (course.store.versions.version_id):
                              the same files are the same version. Never changed once written.
``P schedule:version:{id}:info`` hash  author, created (ISO instant), message, parent (the
                              live version it was made over: the compare-and-set base of a
                              draft), files (count). Written with the files, in one MULTI.
``P schedule:versions`` zset  version id -> epoch it was first saved (the list of versions).
``P schedule:live``  string  the live version's id: what every worker and the web app run
                              (they GET it every few seconds). Changed only by the publish
                              script (course.store.versions.PUBLISH_SCRIPT), a compare-and-set.
``P schedule:live:log`` zset  JSON ``{"id", "at", "author", "message", "kind"}`` -> epoch at
                              which that version became live (``kind`` publish, rollback,
                              first-start, on-start, watch). Kept for ever (a few entries a
                              week): the version live at any instant is
                              ``ZREVRANGEBYSCORE log t -inf LIMIT 0 1``, so a lesson can be
                              shown as it was when it was sent (course.store.versions.live_at).
``P schedule:draft``  hash    the draft waiting to be published (at most one): id (a saved
                              version, not live), live (the live version it was made over),
                              author, at (ISO instant). Changed only by the scripts of
                              course.store.drafts: saving is a compare-and-set on the draft the
                              editor was opened from, publishing clears it in the same step.
``P schedule:snapshot`` hash relative path -> bytes of the last valid schedule's files, as
                              kept before versions existed; read once, to publish it when a
                              store has no live version and the files on disk are invalid.
``P schedule:snapshot:lessons`` set  every email id any published version had (and any
                              schedule kept in the old snapshot): where ``course stats``
                              finds the figures of removed lessons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import redis

from course.store.codec import as_str
from course.store.keys import Keys

MAX_MESSAGE = 500  # characters of a publish message kept
MAX_AUTHOR = 100

# KEYS[1] the live pointer, KEYS[2] the live log, KEYS[3] the version's info hash.
# ARGV[1] version id, ARGV[2] the live id the caller compared against ("" for none),
# ARGV[3] epoch of the publish (the log's score), ARGV[4] the log entry (JSON).
# Returns 1 published, 0 already live, -1 no such version, -2 live is not ARGV[2] (stale).
PUBLISH_SCRIPT = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local live = redis.call('GET', KEYS[1]) or ''
if live == ARGV[1] then return 0 end
if live ~= ARGV[2] then return -2 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


class VersionError(ValueError):
    """A version cannot be saved or published (named in the message)."""


class StaleLive(VersionError):
    """Someone else published since the live version was read (compare-and-set failed)."""


def version_id(contents: dict[str, bytes]) -> str:
    """A short name for exact files: equal files, equal id (12 hex digits of SHA-256)."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        data = contents[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12]


def clean_text(text: str, limit: int) -> str:
    """One line of printable text (a message or a name shown on a terminal and a page):
    control characters, escape sequences included, become spaces."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(flat.split())[:limit]


@dataclass(frozen=True)
class Version:
    """A saved version: who made it, when, why, and the live version it was made over."""

    id: str
    author: str
    created: datetime
    message: str
    parent: str | None
    files: int


@dataclass(frozen=True)
class LiveEntry:
    """One moment a version became live: by whom, why (``publish``, ``rollback``, ...)."""

    id: str
    at: datetime
    author: str
    message: str
    kind: str


def _check_names(contents: dict[str, bytes]) -> None:
    for name, data in contents.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name or not name:
            raise VersionError(f"{name}: not a relative path inside the course folder")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise VersionError(f"{name}: not UTF-8 text") from None


class ScheduleVersions(Keys):
    """The versions of the course under one prefix (see :mod:`course.store.keys`)."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix
        self._publish = client.register_script(PUBLISH_SCRIPT)

    # -- writing --------------------------------------------------------------------------------

    def save(
        self,
        contents: dict[str, bytes],
        author: str,
        message: str,
        now: datetime,
        parent: str | None = None,
        lesson_ids: Iterable[str] = (),
    ) -> tuple[str, bool]:
        """Keep ``contents`` as a version; its id and whether it is new. Saving files that
        are already a version changes nothing (its first author and message stay).
        ``lesson_ids`` join the set of every email id a version had (``course stats``
        finds the figures of removed lessons there)."""
        _check_names(contents)
        vid = version_id(contents)
        info = {
            "author": clean_text(author, MAX_AUTHOR) or "unknown",
            "created": now.astimezone(UTC).isoformat(),
            "message": clean_text(message, MAX_MESSAGE),
            "parent": parent or "",
            "files": str(len(contents)),
        }
        ids = list(lesson_ids)
        if self.redis.exists(self.version_info_key(vid)):
            if ids:
                self.redis.sadd(self.scheduled_lessons_key, *ids)
            return vid, False
        pipe = self.redis.pipeline()  # MULTI: the files are there before the info says so
        pipe.hset(self.version_files_key(vid), mapping=contents)
        pipe.hset(self.version_info_key(vid), mapping=info)
        pipe.zadd(self.versions_key, {vid: now.timestamp()}, nx=True)
        if ids:
            pipe.sadd(self.scheduled_lessons_key, *ids)
        pipe.execute()
        return vid, True

    def publish(
        self,
        vid: str,
        expected: str | None,
        author: str,
        message: str,
        now: datetime,
        kind: str = "publish",
    ) -> bool:
        """Make ``vid`` live if the live version is still ``expected`` (None: none yet).
        True when it went live, False when it already was; :class:`StaleLive` when another
        publish came first, :class:`VersionError` for an unknown version."""
        entry = json.dumps(
            {
                "id": vid,
                "at": now.astimezone(UTC).isoformat(),
                "author": clean_text(author, MAX_AUTHOR) or "unknown",
                "message": clean_text(message, MAX_MESSAGE),
                "kind": kind,
            },
            sort_keys=True,
        )
        keys = [self.live_key, self.live_log_key, self.version_info_key(vid)]
        done = int(self._publish(keys=keys, args=[vid, expected or "", now.timestamp(), entry]))
        if done == -1:
            raise VersionError(f"no version {vid}")
        if done == -2:
            raise StaleLive(
                f"the live version changed since it was read (now {self.live()}); look again"
            )
        return done == 1

    # -- reading --------------------------------------------------------------------------------

    def live(self) -> str | None:
        """The live version's id (one GET: cheap enough to ask every few seconds)."""
        value = self.redis.get(self.live_key)
        return as_str(value) if value else None

    def files(self, vid: str) -> dict[str, bytes]:
        """The version's files, relative path -> bytes ({} for an unknown version)."""
        raw = self.redis.hgetall(self.version_files_key(vid))
        return {
            as_str(name): data if isinstance(data, bytes) else str(data).encode()
            for name, data in raw.items()
        }

    def info(self, vid: str) -> Version | None:
        raw = {
            as_str(k): as_str(v) for k, v in self.redis.hgetall(self.version_info_key(vid)).items()
        }
        if not raw:
            return None
        return Version(
            id=vid,
            author=raw.get("author", ""),
            created=datetime.fromisoformat(raw["created"]),
            message=raw.get("message", ""),
            parent=raw.get("parent") or None,
            files=int(raw.get("files") or 0),
        )

    def all(self) -> list[Version]:
        """Every saved version, newest first."""
        ids = [as_str(v) for v in self.redis.zrevrange(self.versions_key, 0, -1)]
        found = [self.info(vid) for vid in ids]
        return [v for v in found if v is not None]

    def resolve(self, text: str) -> str | None:
        """The id of the version ``text`` names (the id, or a unique start of it, 4+ digits)."""
        text = text.strip().lower()
        if len(text) < 4:
            return None
        ids = [as_str(v) for v in self.redis.zrange(self.versions_key, 0, -1)]
        matches = [vid for vid in ids if vid.startswith(text)]
        return matches[0] if len(matches) == 1 else None

    def history(self) -> list[LiveEntry]:
        """Every moment a version became live, oldest first."""
        return [_entry(raw) for raw in self.redis.zrange(self.live_log_key, 0, -1)]

    def live_since(self) -> LiveEntry | None:
        """When, by whom and why the live version became live."""
        raw = self.redis.zrevrange(self.live_log_key, 0, 0)
        return _entry(raw[0]) if raw else None

    def live_at(self, instant: datetime) -> str | None:
        """The version that was live at ``instant`` (None before the first publish): what
        a lesson sent then was rendered from."""
        raw = self.redis.zrevrangebyscore(
            self.live_log_key, instant.timestamp(), "-inf", start=0, num=1
        )
        return _entry(raw[0]).id if raw else None


def _entry(raw: object) -> LiveEntry:
    data = json.loads(as_str(raw))
    return LiveEntry(
        id=data["id"],
        at=datetime.fromisoformat(data["at"]),
        author=data.get("author", ""),
        message=data.get("message", ""),
        kind=data.get("kind", "publish"),
    )
