"""The pieces a running process needs, built from the settings: Redis, the store, the
current schedule with its compiled templates, and the transport."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from course.embedded import check_server_version, resolve_redis_url
from course.render import Renderer, RenderError
from course.schedule import Schedule, ScheduleError, load_schedule
from course.settings import Settings
from course.store import Store
from course.tokens import subscriber_links
from course.transport import Transport, make_transport

log = logging.getLogger("course.runtime")


def _fingerprint(schedule_path: Path, templates_dir: Path) -> tuple:
    """What changes when a marketer edits the schedule or a template."""
    files = [schedule_path, *sorted(p for p in templates_dir.rglob("*") if p.is_file())]
    stamps = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


class ScheduleSnapshot:
    """The files of the last valid schedule, kept in Redis (a hash: relative path -> bytes),
    so that a process starting while ``schedule.yaml`` is broken still sends with the last
    valid schedule, as a running one does."""

    SCHEDULE_NAME = "schedule.yaml"

    def __init__(self, client: redis.Redis, key: str):
        self.client = client
        self.key = key

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

    def save(self, contents: dict[str, bytes]) -> None:
        pipe = self.client.pipeline()
        pipe.delete(self.key)
        pipe.hset(self.key, mapping=contents)
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


class ScheduleHolder:
    """The last valid schedule and its compiled templates, reloaded when the files change.

    An invalid edit is logged loudly and kept in :attr:`error`; sending goes on with the
    last valid schedule. With a :class:`ScheduleSnapshot`, that holds across restarts too.
    """

    def __init__(
        self,
        schedule_path: Path,
        templates_dir: Path | None = None,
        snapshot: ScheduleSnapshot | None = None,
        check_every: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(schedule_path)
        self.templates_dir = templates_dir or self.path.resolve().parent / "templates"
        self.snapshot = snapshot
        self.error: str | None = None
        # Looking for edits stats every template (about a millisecond): a caller on a hot
        # path (the web app) looks at most once per ``check_every`` seconds of ``clock``.
        self.check_every = check_every
        self._clock = clock
        self._checked = clock()
        self._stamp = _fingerprint(self.path, self.templates_dir)
        try:
            self.schedule, self.renderer = self._load()
        except (ScheduleError, RenderError) as exc:
            restored = snapshot.restore() if snapshot else None
            if restored is None:
                raise
            self.error = str(exc)
            schedule = load_schedule(restored, restored.parent / "templates")
            self.schedule, self.renderer = schedule, Renderer(schedule)
            log.error(
                "invalid schedule at start, sending with the last valid one: %s",
                exc,
                extra={"event": "schedule_invalid"},
            )

    def _load(self) -> tuple[Schedule, Renderer]:
        schedule = load_schedule(self.path, self.templates_dir)
        renderer = Renderer(schedule)
        if self.snapshot is not None:
            self._save_snapshot(schedule)
        return schedule, renderer

    def _save_snapshot(self, schedule: Schedule) -> None:
        """Keep what was just validated; skip it if a file changed while it was checked."""
        files = ScheduleSnapshot.files(schedule)
        try:
            contents = ScheduleSnapshot.read(files)
            if _fingerprint(self.path, self.templates_dir) != self._stamp:
                return  # edited meanwhile: the next reload validates and saves it
            self.snapshot.save(contents)
        except (OSError, redis.RedisError) as exc:
            log.warning("could not keep a copy of the valid schedule: %s", exc)

    def current(self, fresh: bool = False) -> tuple[Schedule, Renderer]:
        """The last valid schedule, reloaded first if its files changed (looked at no more
        than once per ``check_every`` seconds unless ``fresh``)."""
        now = self._clock()
        if not fresh and now - self._checked < self.check_every:
            return self.schedule, self.renderer
        self._checked = now
        stamp = _fingerprint(self.path, self.templates_dir)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.schedule, self.renderer = self._load()
            except (ScheduleError, RenderError) as exc:
                self.error = str(exc)
                log.error(
                    "invalid schedule, still sending with the last valid one: %s",
                    exc,
                    extra={"event": "schedule_invalid"},
                )
            else:
                self.error = None
                log.info("schedule reloaded", extra={"event": "schedule_reloaded"})
        return self.schedule, self.renderer


@dataclass
class Runtime:
    settings: Settings
    redis_url: str
    client: redis.Redis
    store: Store
    schedules: ScheduleHolder
    _transport: Transport | None = field(default=None, repr=False)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = make_transport(self.settings)
        return self._transport

    def links(self, subscriber_id: str) -> dict[str, str]:
        return subscriber_links(self.settings.base_url, self.settings.secret_key, subscriber_id)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.client.close()


def connect(settings: Settings) -> tuple[str, redis.Redis]:
    """The Redis URL in use (embedded when ``REDIS_URL`` is unset) and a client for it."""
    url = resolve_redis_url(settings.redis_url, settings.var_dir)
    client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
    check_server_version(client)
    return url, client


def build_runtime(settings: Settings) -> Runtime:
    url, client = connect(settings)
    store = Store(client)
    return Runtime(
        settings=settings,
        redis_url=url,
        client=client,
        store=store,
        schedules=ScheduleHolder(
            settings.schedule_path,
            settings.templates_dir,
            ScheduleSnapshot(client, store.snapshot_key),
        ),
    )
