"""Schedule hot reload: a running process keeps the last valid schedule and its compiled
templates, reloads them when the files change, and goes on with the last valid one (loudly)
after an invalid edit.

:class:`ScheduleHolder` is the reload itself. :class:`ScheduleSnapshot` (the last valid
schedule's files, kept so a process starting on a broken file still sends) and
:class:`ScheduleStatusBoard` (which schedule each process runs) are its two Redis-backed
helpers, kept behind the store (:mod:`course.store.snapshot`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from course.clock import utc_now
from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.errors import ScheduleError
from course.schedule.load import load_schedule
from course.store import StoreError
from course.store.snapshot import ScheduleSnapshot, ScheduleStatusBoard

log = logging.getLogger("course.runtime")  # its name from before it moved here


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


def fingerprint(contents: dict[str, bytes]) -> str:
    """A short name for a schedule's exact files: equal files, equal fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        data = contents[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12]


def _now() -> datetime:
    return utc_now()


class ScheduleHolder:
    """The last valid schedule and its compiled templates, reloaded when the files change.

    An invalid edit is logged loudly and kept in :attr:`error`; sending goes on with the
    last valid schedule. With a :class:`ScheduleSnapshot`, that holds across restarts too.
    With a :class:`ScheduleStatusBoard`, every load, rejected edit and (once a minute) the
    fact that the process is still running are recorded in Redis. With ``reserved_sender``
    False (outside dev) a sender on a domain reserved for examples makes a schedule invalid.
    """

    def __init__(
        self,
        schedule_path: Path,
        templates_dir: Path | None = None,
        snapshot: ScheduleSnapshot | None = None,
        board: ScheduleStatusBoard | None = None,
        clock: Callable[[], datetime] = _now,
        check_every: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        reserved_sender: bool = True,
    ):
        self.path = Path(schedule_path)
        self.reserved_sender = reserved_sender
        self.templates_dir = templates_dir or self.path.resolve().parent / "templates"
        self.snapshot = snapshot
        self.board = board
        self.clock = clock
        self.error: str | None = None
        self.error_at: datetime | None = None
        self.fingerprint = ""
        self.loaded_at = clock()
        # Looking for edits stats every template (about a millisecond): a caller on a hot
        # path (the web app) looks at most once per ``check_every`` seconds of ``monotonic``.
        self.check_every = check_every
        self._monotonic = monotonic
        self._checked = monotonic()
        self._stamp = _fingerprint(self.path, self.templates_dir)
        try:
            self.schedule, self.renderer = self._load()
        except (ScheduleError, RenderError) as exc:
            restored = snapshot.restore() if snapshot else None
            if restored is None:
                raise
            self.error, self.error_at = str(exc), self.loaded_at
            schedule = load_schedule(
                restored, restored.parent / "templates", reserved_sender=reserved_sender
            )
            self.schedule, self.renderer = schedule, Renderer(schedule)
            self.fingerprint = fingerprint(ScheduleSnapshot.read(ScheduleSnapshot.files(schedule)))
            log.error(
                "invalid schedule at start, sending with the last valid one: %s",
                exc,
                extra={"event": "schedule_invalid"},
            )
        self._report()

    def _load(self) -> tuple[Schedule, Renderer]:
        schedule = load_schedule(
            self.path, self.templates_dir, reserved_sender=self.reserved_sender
        )
        renderer = Renderer(schedule)
        try:
            contents = ScheduleSnapshot.read(ScheduleSnapshot.files(schedule))
        except OSError as exc:
            log.warning("could not read the valid schedule's files back: %s", exc)
            contents = None
        if contents is not None:
            self.fingerprint = fingerprint(contents)
            if self.snapshot is not None:
                self._save_snapshot(contents, [lesson.id for lesson in schedule.emails])
        self.loaded_at = self.clock()
        return schedule, renderer

    def _save_snapshot(self, contents: dict[str, bytes], lesson_ids: list[str]) -> None:
        """Keep what was just validated; skip it if a file changed while it was checked."""
        try:
            if _fingerprint(self.path, self.templates_dir) != self._stamp:
                return  # edited meanwhile: the next reload validates and saves it
            self.snapshot.save(contents, lesson_ids)
        except (OSError, StoreError) as exc:
            log.warning("could not keep a copy of the valid schedule: %s", exc)

    def status(self) -> dict[str, str | None]:
        """The schedule this process runs and the latest invalid edit, as plain data."""
        return {
            "fingerprint": self.fingerprint,
            "loaded_at": self.loaded_at.isoformat(),
            "error": self.error,
            "error_at": self.error_at.isoformat() if self.error_at else None,
        }

    def _report(self) -> None:
        if self.board is not None:
            self.board.report(self.status(), self.clock())

    def current(self, fresh: bool = False) -> tuple[Schedule, Renderer]:
        """The last valid schedule, reloaded first if its files changed (looked at no more
        than once per ``check_every`` seconds unless ``fresh``)."""
        now = self._monotonic()
        if not fresh and now - self._checked < self.check_every:
            return self.schedule, self.renderer
        self._checked = now
        stamp = _fingerprint(self.path, self.templates_dir)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.schedule, self.renderer = self._load()
            except (ScheduleError, RenderError) as exc:
                self.error, self.error_at = str(exc), self.clock()
                log.error(
                    "invalid schedule, still sending with the last valid one: %s",
                    exc,
                    extra={"event": "schedule_invalid"},
                )
            else:
                self.error = self.error_at = None
                log.info(
                    "schedule reloaded: %s",
                    self.fingerprint,
                    extra={"event": "schedule_reloaded"},
                )
        self._report()
        return self.schedule, self.renderer
