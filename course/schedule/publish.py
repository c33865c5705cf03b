"""Publishing the working files: they become a version in the store and the live pointer
moves to it. ``course publish`` (with its diff and gate, course.cli.versions), the first
start on an empty store, ``COURSE_PUBLISH_ON_START`` and ``course run --watch`` all come
through :func:`publish_files`; an invalid course never gets that far.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from course.clock import utc_now
from course.logs import log_event
from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.bundle import course_files, read_files
from course.schedule.errors import Problem, ScheduleError
from course.schedule.load import load_schedule
from course.store.versions import ScheduleVersions, StaleLive, version_id

log = logging.getLogger("course.runtime")


@dataclass(frozen=True)
class Candidate:
    """The working files, valid, as a version to be: the schedule, its files and their id."""

    schedule: Schedule
    contents: dict[str, bytes]
    id: str


def working_version(
    path: Path, templates_dir: Path | None = None, reserved_sender: bool = True
) -> Candidate:
    """The working files loaded and compiled as a worker would, and the exact bytes that
    were checked. A file saved while this ran fails it: what is published is what was
    checked. Raises :class:`ScheduleError` or :class:`RenderError`."""
    path = Path(path)
    first = load_schedule(path, templates_dir, reserved_sender=reserved_sender)
    before = read_files(course_files(first))
    schedule = load_schedule(path, templates_dir, reserved_sender=reserved_sender)
    Renderer(schedule)  # every template compiled: a mistake only the whole email shows
    contents = read_files(course_files(schedule))
    if version_id(contents) != version_id(before):
        problem = Problem(str(path), None, "", "the files changed while they were checked")
        raise ScheduleError([problem])
    return Candidate(schedule, contents, version_id(contents))


def publish_files(
    versions: ScheduleVersions,
    candidate: Candidate,
    expected: str | None,
    author: str,
    message: str,
    kind: str,
    now: datetime,
) -> bool:
    """Save ``candidate`` and make it live over ``expected`` (compare-and-set); logged.
    False when it already was live. Raises :class:`StaleLive`."""
    emails = [email.id for email in candidate.schedule.emails]
    versions.save(candidate.contents, author, message, now, expected, emails)
    return publish_version(versions, candidate.id, expected, author, message, kind, now)


def publish_version(
    versions: ScheduleVersions,
    vid: str,
    expected: str | None,
    author: str,
    message: str,
    kind: str,
    now: datetime,
) -> bool:
    """Make a saved version live over ``expected``, and log it (``schedule_published``)."""
    if not versions.publish(vid, expected, author, message, now, kind):
        return False
    log_event(
        log, logging.INFO, "schedule_published",
        version=vid, previous=expected or "-", kind=kind, author=author, message=message,
    )  # fmt: skip
    return True


def publish_at_start(
    versions: ScheduleVersions,
    path: Path,
    templates_dir: Path | None,
    reserved_sender: bool,
    on_start: bool,
    author: str,
    legacy: Callable[[], dict[str, bytes]] = dict,
    now: Callable[[], datetime] = utc_now,
) -> None:
    """What a starting process publishes: the files when the store has no live version
    yet (the first start), or with ``on_start`` (``COURSE_PUBLISH_ON_START=1``) when they
    differ from the live one. Invalid files are never published; on a store with no live
    version the valid files kept before versions existed (``legacy``) are, instead."""
    live = versions.live()
    if live is not None and not on_start:
        return
    try:
        candidate = working_version(path, templates_dir, reserved_sender)
    except (ScheduleError, RenderError, OSError) as exc:
        old = legacy() if live is None else {}
        if not old:
            if live is None:
                raise
            log.error("COURSE_PUBLISH_ON_START: the files are invalid, not published: %s", exc)
            return
        vid, _ = versions.save(old, author, "the last valid files kept before versions", now())
        with contextlib.suppress(StaleLive):  # another process adopted it first
            publish_version(versions, vid, None, author, "adopted the kept snapshot",
                            "first-start", now())  # fmt: skip
        log.error("invalid schedule at start, published the last valid one: %s", exc)
        return
    if candidate.id == live:
        return
    kind, message = (
        ("first-start", "first start on an empty store: published the files")
        if live is None
        else ("on-start", "COURSE_PUBLISH_ON_START: the files differ from the live version")
    )
    try:
        publish_files(versions, candidate, live, author, message, kind, now())
    except StaleLive:  # another process started at the same time and published first
        log.info("another process published first; following the live version")


class Watcher:
    """``course run --watch``: the working files published whenever they change and are
    valid, as saving a file shipped it before versions. An invalid save is reported and
    changes nothing; the workers keep the live version."""

    def __init__(
        self,
        versions: ScheduleVersions,
        path: Path,
        templates_dir: Path,
        author: str,
        reserved_sender: bool = True,
        report: Callable[[str], None] = print,
        now: Callable[[], datetime] = utc_now,
    ):
        self.versions = versions
        self.path = Path(path)
        self.templates_dir = templates_dir
        self.author = author
        self.reserved_sender = reserved_sender
        self.report = report
        self.now = now
        self._stamp: tuple = ()

    def stamp(self) -> tuple:
        """What changes when a file is saved: every file's name, mtime and size."""
        files = [self.path, *sorted(p for p in self.templates_dir.rglob("*") if p.is_file())]
        found = []
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def check(self) -> str | None:
        """Publish the files if they changed since the last look and are valid; the id
        published, else None."""
        stamp = self.stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            candidate = working_version(self.path, self.templates_dir, self.reserved_sender)
        except (ScheduleError, RenderError, OSError) as exc:
            self.report(f"watch: not published (the live version keeps running): {exc}")
            log.error("invalid schedule saved, not published: %s", exc,
                      extra={"event": "schedule_invalid"})  # fmt: skip
            return None
        live = self.versions.live()
        if candidate.id == live:
            return None
        message = f"saved {self.path.name} (course run --watch)"
        try:
            publish_files(self.versions, candidate, live, self.author, message, "watch",
                          self.now())  # fmt: skip
        except StaleLive:
            self._stamp = ()  # look again next time
            return None
        self.report(f"watch: published {candidate.id} ({message})")
        return candidate.id
