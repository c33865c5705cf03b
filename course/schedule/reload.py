"""What a running process runs: the live version of the course, followed in Redis.

:class:`ScheduleHolder` keeps the schedule and its compiled templates. With the store's
versions (every worker, the web app and the CLI) it runs only the published version: it
looks at the live pointer (one GET, at most every ``check_every`` seconds), loads a newly
published version's files from Redis into a private folder, compiles it and switches; if that
fails it keeps the last good version and says so loudly. Editing the files changes nothing
until they are published (course.schedule.publish). The first start on an empty store
publishes the files. Without versions (tests of the loader) it reloads the files when they
change. It reports which version it runs on the :class:`ScheduleStatusBoard`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from course.clock import utc_now
from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.bundle import Unpacked, course_files, load_contents, read_files
from course.schedule.errors import ScheduleError
from course.schedule.load import load_schedule
from course.schedule.publish import publish_at_start
from course.store import StoreError
from course.store.snapshot import ScheduleStatusBoard
from course.store.versions import ScheduleVersions, version_id

log = logging.getLogger("course.runtime")  # its name from before it moved here

__all__ = ["ScheduleHolder", "ScheduleStatusBoard", "fingerprint"]


def fingerprint(contents: dict[str, bytes]) -> str:
    """A short name for a schedule's exact files: the id they have as a version."""
    return version_id(contents)


def _stamp(schedule_path: Path, templates_dir: Path) -> tuple:
    """What changes when a marketer edits the schedule or a template (file mode only)."""
    files = [schedule_path, *sorted(p for p in templates_dir.rglob("*") if p.is_file())]
    stamps = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _now() -> datetime:
    return utc_now()


class ScheduleHolder:
    """The schedule a process runs and its compiled templates.

    With ``versions``: the live version, followed as it changes; ``publish_on_start``
    (``COURSE_PUBLISH_ON_START``) publishes the files at start when they differ from it,
    with ``publisher`` as the author. A version that cannot be loaded is logged loudly and
    kept in :attr:`error`; the last good one keeps running. With a ``board``, every load,
    failure and (once a minute) the fact that the process still runs are recorded in
    Redis. With ``reserved_sender`` False (outside dev) a sender on a domain reserved for
    examples makes a schedule invalid.
    """

    def __init__(
        self,
        schedule_path: Path,
        templates_dir: Path | None = None,
        versions: ScheduleVersions | None = None,
        board: ScheduleStatusBoard | None = None,
        clock: Callable[[], datetime] = _now,
        check_every: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        reserved_sender: bool = True,
        publish_on_start: bool = False,
        publisher: str = "course",
        legacy: Callable[[], dict[str, bytes]] = dict,
    ):
        self.path = Path(schedule_path)
        self.reserved_sender = reserved_sender
        self.templates_dir = templates_dir or self.path.resolve().parent / "templates"
        self.versions = versions
        self.board = board
        self.clock = clock
        self.error: str | None = None
        self.error_at: datetime | None = None
        self.version: str | None = None  # the live version's id (None in file mode)
        self.fingerprint = ""
        self.loaded_at = clock()
        self.check_every = check_every  # a hot path (the web app) looks at most this often
        self._monotonic = monotonic
        self._checked = monotonic()
        self._failed: str | None = None  # a version that could not be loaded: not retried
        self._unpacked: Unpacked | None = None
        if versions is None:
            self._stamp = _stamp(self.path, self.templates_dir)
            self.schedule, self.renderer = self._load_files()
        else:
            publish_at_start(
                versions, self.path, templates_dir, reserved_sender, publish_on_start,
                publisher, legacy, clock,
            )  # fmt: skip
            live = versions.live()
            if live is None:  # pragma: no cover - publish_at_start raised or published
                raise ScheduleError([])
            self.schedule, self.renderer = self._load_version(live)
            log.info("running version %s", live, extra={"event": "schedule_loaded"})
        self._report()

    def _load_files(self) -> tuple[Schedule, Renderer]:
        schedule = load_schedule(
            self.path, self.templates_dir, reserved_sender=self.reserved_sender
        )
        renderer = Renderer(schedule)
        try:
            self.fingerprint = fingerprint(read_files(course_files(schedule)))
        except OSError as exc:
            log.warning("could not read the valid schedule's files back: %s", exc)
        self.loaded_at = self.clock()
        return schedule, renderer

    def _load_version(self, vid: str) -> tuple[Schedule, Renderer]:
        assert self.versions is not None
        contents = self.versions.files(vid)
        if not contents:
            raise ScheduleError([]) from None
        schedule, renderer, unpacked = load_contents(contents, self.reserved_sender)
        previous, self._unpacked = self._unpacked, unpacked
        if previous is not None:
            previous.close()
        self.version = self.fingerprint = vid
        self.loaded_at = self.clock()
        return schedule, renderer

    def status(self) -> dict[str, str | None]:
        """The version this process runs and the latest one it could not load, as plain data."""
        return {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "loaded_at": self.loaded_at.isoformat(),
            "error": self.error,
            "error_at": self.error_at.isoformat() if self.error_at else None,
        }

    def _report(self) -> None:
        if self.board is not None:
            self.board.report(self.status(), self.clock())

    def current(self, fresh: bool = False) -> tuple[Schedule, Renderer]:
        """The schedule to run, switched first to a newly published version (looked for no
        more than once per ``check_every`` seconds unless ``fresh``)."""
        now = self._monotonic()
        if not fresh and now - self._checked < self.check_every:
            return self.schedule, self.renderer
        self._checked = now
        if self.versions is not None:
            self._follow_live()
        else:
            self._reload_files()
        self._report()
        return self.schedule, self.renderer

    def _follow_live(self) -> None:
        assert self.versions is not None
        try:
            live = self.versions.live()
        except StoreError as exc:
            log.warning("could not read the live version: %s", exc)
            return
        if live is None or live in (self.version, self._failed):
            return
        try:
            self.schedule, self.renderer = self._load_version(live)
        except (ScheduleError, RenderError, OSError, StoreError) as exc:
            self._failed = live
            text = str(exc) or "its files are missing"
            self.error, self.error_at = f"version {live}: {text}", self.clock()
            log.error(
                "could not load version %s, still running %s: %s", live, self.version, text,
                extra={"event": "schedule_invalid"},
            )  # fmt: skip
        else:
            self._failed = None
            self.error = self.error_at = None
            log.info("now running version %s", live, extra={"event": "schedule_reloaded"})

    def _reload_files(self) -> None:
        stamp = _stamp(self.path, self.templates_dir)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.schedule, self.renderer = self._load_files()
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
                "schedule reloaded: %s", self.fingerprint, extra={"event": "schedule_reloaded"}
            )
