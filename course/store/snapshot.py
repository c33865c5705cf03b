"""The schedule's state in Redis: the snapshot of the last valid schedule's files
(``P schedule:snapshot`` and its ``:lessons`` set) and the status board where every process
says which schedule it runs (``P schedule:status``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import redis

from course.models.schedule import Schedule
from course.store.codec import as_str
from course.store.errors import StoreError
from course.store.keys import Keys

log = logging.getLogger("course.runtime")  # its name from before it moved here


class ScheduleSnapshot:
    """The files of the last valid schedule, kept in Redis (a hash: relative path -> bytes),
    so that a process starting while ``schedule.yaml`` is broken still sends with the last
    valid schedule, as a running one does."""

    SCHEDULE_NAME = "schedule.yaml"

    def __init__(self, client: redis.Redis, key: str):
        self.client = client
        self.key = key
        self.lessons_key = f"{key}:lessons"  # every lesson id any valid schedule had

    @classmethod
    def files(cls, schedule: Schedule) -> dict[str, Path]:
        """What a schedule is made of: the file itself, its emails' templates and the layouts."""
        found = {cls.SCHEDULE_NAME: schedule.path}
        layouts = schedule.templates_dir / "layouts"
        paths = [schedule.templates_dir / lesson.template for lesson in schedule.emails]
        paths += [p for p in layouts.rglob("*") if p.is_file()] if layouts.is_dir() else []
        for path in paths:
            found[f"templates/{path.relative_to(schedule.templates_dir).as_posix()}"] = path
        return found

    @staticmethod
    def read(files: dict[str, Path]) -> dict[str, bytes]:
        return {name: path.read_bytes() for name, path in files.items()}

    def save(self, contents: dict[str, bytes], lesson_ids: Iterable[str] = ()) -> None:
        """Keep ``contents``; remember ``lesson_ids`` (so ``course stats`` can find the
        figures of lessons later removed without scanning every key)."""
        pipe = self.client.pipeline()
        pipe.delete(self.key)
        pipe.hset(self.key, mapping=contents)
        ids = list(lesson_ids)
        if ids:
            pipe.sadd(self.lessons_key, *ids)
        pipe.execute()

    def restore(self) -> Path | None:
        """The snapshot written to a new folder of this process's own; its schedule's path."""
        contents = self.client.hgetall(self.key)
        if not contents:
            return None
        folder = Path(tempfile.mkdtemp(prefix="course-schedule-"))
        for raw_name, data in contents.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            target = (folder / name).resolve()
            if not target.is_relative_to(folder.resolve()):
                continue  # never write outside the snapshot folder
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data if isinstance(data, bytes) else data.encode())
        return folder / self.SCHEDULE_NAME


class ScheduleStatusBoard:
    """Where a process says which schedule it runs: one field of the hash
    ``P schedule:status`` per process (``role@host:pid``), a JSON object with the
    fingerprint, loaded_at, the error of the latest invalid edit and when, and seen_at.

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
    """The snapshot and the status board under this store's keys."""

    redis: redis.Redis

    def schedule_snapshot(self) -> ScheduleSnapshot:
        """The snapshot of the last valid schedule (``P schedule:snapshot``)."""
        return ScheduleSnapshot(self.redis, self.snapshot_key)

    def status_board(self, role: str, process: str | None = None) -> ScheduleStatusBoard:
        """Where this process (as ``role``) reports the schedule it runs."""
        return ScheduleStatusBoard(self.redis, self.schedule_status_key, role, process)

    def schedule_statuses(self) -> dict[str, str]:
        """Process name -> the JSON it last reported on the status board."""
        raw = self.redis.hgetall(self.schedule_status_key)
        return {as_str(k): as_str(v) for k, v in raw.items()}
