"""The schedule's state in Redis: its published versions (:mod:`course.store.versions`), the
status board where every process says which version it runs (``P schedule:status``), and the
snapshot of the last valid files kept before versions existed (``P schedule:snapshot``, read
once to adopt it)."""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime

import redis

from course.store.codec import as_str
from course.store.drafts import ScheduleDrafts
from course.store.errors import StoreError
from course.store.keys import Keys
from course.store.versions import ScheduleVersions

log = logging.getLogger("course.runtime")  # its name from before it moved here


class ScheduleStatusBoard:
    """Where a process says which schedule it runs: one field of the hash
    ``P schedule:status`` per process (``role@host:pid``), a JSON object with the
    version it runs, its fingerprint (the same id), loaded_at, the error of the latest
    version it could not load and when, and seen_at.

    ``course stats`` and the web app's ``/healthz`` read it. Reporting never stops sending:
    a Redis error is logged and the next report tries again."""

    HEARTBEAT = 60.0  # seconds between reports when nothing changed
    FORGET_AFTER = 7 * 24 * 3600  # a process not heard of for this long is dropped

    def __init__(self, client: redis.Redis, key: str, role: str, process: str | None = None):
        self.client = client
        self.key = key
        self.role = role
        self.process = process or f"{role}@{socket.gethostname()}:{os.getpid()}"
        self._last: tuple[dict, float] | None = None

    def report(self, state: dict[str, str | None], now: datetime) -> None:
        """Record ``state`` (fingerprint, loaded_at, error, error_at) if it changed or the
        last report is a heartbeat old."""
        ts = now.timestamp()
        if self._last and self._last[0] == state and ts - self._last[1] < self.HEARTBEAT:
            return
        body = {"role": self.role, **state, "seen_at": now.isoformat()}
        try:
            pipe = self.client.pipeline()
            pipe.hset(self.key, self.process, json.dumps(body))
            for raw, text in self.client.hgetall(self.key).items():
                name = raw.decode() if isinstance(raw, bytes) else raw
                if name != self.process and _seen(text) < ts - self.FORGET_AFTER:
                    pipe.hdel(self.key, name)
            pipe.execute()
        except (StoreError, OSError) as exc:
            log.warning("could not record the schedule status: %s", exc)
            return
        self._last = (dict(state), ts)


def _seen(text: str) -> float:
    try:
        return datetime.fromisoformat(json.loads(text)["seen_at"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return 0.0


class ScheduleState(Keys):
    """The versions, the status board and the old snapshot under this store's keys."""

    redis: redis.Redis

    def schedule_versions(self) -> ScheduleVersions:
        """The published versions and the live pointer (``P schedule:version:*``, ``:live``)."""
        return ScheduleVersions(self.redis, self.prefix)

    def schedule_drafts(self) -> ScheduleDrafts:
        """The versions with the draft the admin editor saves (``P schedule:draft``)."""
        return ScheduleDrafts(self.redis, self.prefix)

    def legacy_snapshot(self) -> dict[str, bytes]:
        """The last valid files a store kept before versions existed ({} when none)."""
        raw = self.redis.hgetall(self.snapshot_key)
        return {
            as_str(name): data if isinstance(data, bytes) else str(data).encode()
            for name, data in raw.items()
        }

    def status_board(self, role: str, process: str | None = None) -> ScheduleStatusBoard:
        """Where this process (as ``role``) reports the schedule it runs."""
        return ScheduleStatusBoard(self.redis, self.schedule_status_key, role, process)

    def schedule_statuses(self) -> dict[str, str]:
        """Process name -> the JSON it last reported on the status board."""
        raw = self.redis.hgetall(self.schedule_status_key)
        return {as_str(k): as_str(v) for k, v in raw.items()}
