"""The versions a process ran before the live one, loaded on request: a lesson's online
copy is rendered from the version that was live when it was sent, not from today's.

:class:`PastVersions` keeps the few most recently asked-for versions compiled (each in its
own private folder, closed when it is dropped); the live version is never loaded twice: the
caller passes what it runs. A version that cannot be loaded (its files gone, or invalid
under today's code) falls back to the live one, so a page still shows something true.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime

from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.bundle import Unpacked, load_contents
from course.schedule.errors import ScheduleError
from course.store import StoreError
from course.store.versions import ScheduleVersions

log = logging.getLogger("course.runtime")

Loaded = tuple[Schedule, Renderer]


class PastVersions:
    """The version live at an instant, compiled; at most ``keep`` kept at once."""

    def __init__(self, versions: ScheduleVersions, keep: int = 3):
        self.versions = versions
        self.keep = keep
        self._loaded: OrderedDict[str, tuple[Schedule, Renderer, Unpacked]] = OrderedDict()
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def as_of(self, instant: datetime, live: str | None, running: Loaded) -> Loaded:
        """The schedule and renderer of the version live at ``instant``; ``running`` (the
        version ``live``) when that is the one, when none was published yet, or when the
        older one cannot be loaded."""
        try:
            vid = self.versions.live_at(instant)
        except StoreError as exc:
            log.warning("could not look up the version live at %s: %s", instant, exc)
            return running
        if vid is None or vid == live or vid in self._failed:
            return running
        with self._lock:
            if vid in self._loaded:
                self._loaded.move_to_end(vid)
                schedule, renderer, _ = self._loaded[vid]
                return schedule, renderer
            try:
                contents = self.versions.files(vid)
                if not contents:
                    raise ScheduleError([])
                loaded = load_contents(contents, reserved_sender=False)
            except (ScheduleError, RenderError, OSError, StoreError) as exc:
                self._failed.add(vid)
                log.warning("version %s cannot be shown, showing the live one: %s", vid, exc)
                return running
            self._loaded[vid] = loaded
            while len(self._loaded) > self.keep:
                _, (_, _, unpacked) = self._loaded.popitem(last=False)
                unpacked.close()
            return loaded[0], loaded[1]

    def close(self) -> None:
        with self._lock:
            for _, _, unpacked in self._loaded.values():
                unpacked.close()
            self._loaded.clear()
