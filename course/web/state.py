"""What the web app's requests share (:class:`WebState`): the settings, the store, the pages,
the schedule (reloaded when edited), signups and the task sender; and :class:`Unavailable`.

No routes live here: the routers (one module per noun) and the admin pages import this module,
never each other. The Redis client is built here rather than by :func:`course.runtime.connect`:
the app must start while Redis is down (``/healthz`` then says so), its client carries the
timeouts a request can wait, and the schedule is loaded at the first request that needs it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.responses import HTMLResponse

from course.clock import utc_now
from course.mail.render import Renderer, RenderError
from course.runtime import holder
from course.schedule import Schedule, ScheduleError
from course.schedule.past import PastVersions
from course.schedule.reload import ScheduleHolder
from course.settings import Settings
from course.store import Store, StoreError, connect
from course.store.embedded import resolve_redis_url
from course.subscribers.double_opt_in import SendTask, Signups
from course.web.pages import Pages
from course.webhooks.emit import Emitter
from course.webhooks.events import NO_EVENTS, EventSink

log = logging.getLogger("course.web")

SCHEDULE_CHECK_EVERY = 1.0  # seconds between looks at the live version (one GET)


def now() -> datetime:
    """The time of a request, in UTC."""
    return utc_now()


class Unavailable(Exception):
    """Redis or the schedule cannot be used right now."""


class WebState:
    """What the app's requests share: the store, the schedule (reloaded when edited; the
    app starts even while it is invalid, and says so on /healthz) and the task sender."""

    def __init__(
        self,
        settings: Settings,
        send_task: SendTask | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._clock = clock  # paces the looks for schedule edits
        url = resolve_redis_url(settings.redis_url, settings.var_dir)
        self.client = connect(
            url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self.store = Store(self.client)
        # LayoutMismatch: the app refuses to start; Redis down: it starts, /healthz says so.
        with contextlib.suppress(StoreError):
            self.store.require_layout()
        self._send_task = send_task
        self._celery = None
        self._broker_url = url
        self._holder: ScheduleHolder | None = None
        self._past = PastVersions(self.store.schedule_versions())
        self._load_error: str | None = None
        self._lock = threading.Lock()
        self._disk_pages = Pages(settings.templates_dir)  # until a version is loaded
        self._pages: tuple[str | None, Pages] | None = None
        self._page_filters: dict[str, Callable[..., Any]] = {}
        self.signups = Signups(self.store, settings, self.send_task)
        # Outbound webhook events of the requests (a confirm, an unsubscribe, a check-in)
        self.events: EventSink = (
            Emitter(settings.webhooks, self.send_task, self.store.count_outbound)
            if settings.webhooks
            else NO_EVENTS
        )

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Hand a task to the workers; False (logged) when the broker cannot take it.

        For a tick or a confirmation the state change that asked for it is already saved,
        and both are safe to leave: beat's next tick sends what a confirm made due, and
        signing up again resends a confirmation; so their visitor gets the normal answer. A
        signup is nothing but its task: the signup route answers 503 when this is False.
        """
        try:
            if self._send_task is not None:
                self._send_task(name, *args, **kwargs)
                return True
            with self._lock:
                if self._celery is None:
                    from course.tasks import create_app as create_celery

                    self._celery = create_celery(self.settings, self._broker_url)
            self._celery.send_task(name, *args, **kwargs)
            return True
        except Exception as exc:  # kombu's OperationalError, a Redis error, a timeout
            log.error("could not queue %s: %s", name, exc)
            return False

    @property
    def pages(self) -> Pages:
        """The pages of the live version (its overrides under ``templates/web/``); the
        files' own until a version is loaded (Redis down at start)."""
        running = self._holder
        if running is None or running.version is None:
            return self._disk_pages
        if self._pages is None or self._pages[0] != running.version:
            pages = Pages(running.schedule.templates_dir, self.settings.templates_dir)
            pages.env.filters.update(self._page_filters)
            self._pages = (running.version, pages)
        return self._pages[1]

    def add_page_filters(self, **filters: Callable[..., Any]) -> None:
        """Jinja filters every page may use, whichever version's pages are shown."""
        self._page_filters.update(filters)
        self._disk_pages.env.filters.update(filters)
        self._pages = None

    def schedule(self, fresh: bool = False) -> Schedule:
        """The live version's schedule, or :class:`Unavailable`. A newly published
        version is looked for at most once per SCHEDULE_CHECK_EVERY seconds, or now when
        ``fresh``."""
        with self._lock:
            if self._holder is None:
                try:
                    self._holder = holder(
                        self.settings, self.store, "web",
                        check_every=SCHEDULE_CHECK_EVERY, monotonic=self._clock,
                    )  # fmt: skip
                except (ScheduleError, RenderError, OSError, StoreError) as exc:
                    self._load_error = str(exc)
                    raise Unavailable(f"no valid schedule: {exc}") from None
                self._load_error = None
            schedule, _ = self._holder.current(fresh)
            return schedule

    def renderer(self) -> Renderer:
        """The current schedule's compiled templates (:class:`Unavailable` without one)."""
        self.schedule()
        assert self._holder is not None
        return self._holder.current()[1]

    def as_sent(self, instant: datetime) -> tuple[Schedule, Renderer]:
        """The schedule and templates of the version that was live at ``instant`` (what an
        email sent then was rendered from); the live ones if that is the same version or
        cannot be loaded."""
        running = (self.schedule(), self.renderer())
        assert self._holder is not None
        return self._past.as_of(instant, self._holder.version, running)

    def schedule_status(self) -> dict[str, object]:
        try:
            self.schedule(fresh=True)  # a health check sees an edit at once
        except Unavailable:
            return {"loaded": False, "error": self._load_error}
        error = self._holder.error if self._holder else None  # an invalid edit, still running
        running = (
            {"fingerprint": self._holder.fingerprint, "version": self._holder.version}
            if self._holder
            else {}
        )
        if self._holder and self._holder.schedule.confirmation is None:
            message = f"{self.settings.schedule_path}: no confirmation email: signups are refused"
            return {"loaded": True, "error": error or message, "signups": False, **running}
        return {"loaded": True, "error": error, "signups": True, **running}

    def workers_schedule(self, now: datetime) -> list[dict[str, object]]:
        """The schedule each running worker process last reported (course.reports.stats)."""
        from course.reports.stats import read_processes

        return [
            {"process": p.process, "version": p.version, "fingerprint": p.fingerprint,
             "loaded_at": p.loaded_at.isoformat() if p.loaded_at else None,
             "error": p.error, "error_at": p.error_at.isoformat() if p.error_at else None}
            for p in read_processes(self.store, now)
            if p.role == "worker" and not p.stale
        ]  # fmt: skip

    def course_name(self) -> str:
        try:
            return self.schedule().course.name
        except Unavailable:
            return "The Healing Roadmap"

    def page(self, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        context.setdefault("course_name", self.course_name())
        return self.pages.render(name, status_code=status_code, **context)

    def close(self) -> None:
        self._past.close()
        self.client.close()
        if self._celery is not None:
            self._celery.close()
