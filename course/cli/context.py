"""What every command shares: the context object (settings, the runtime built lazily), the
consoles, the ``Failed`` exit, and the parsers for instants, time zones and first names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console

from course.clock import utc_now
from course.schedule import load_schedule
from course.settings import Settings

console = Console(highlight=False)
if not console.is_terminal:  # a pipe or a log file: room for whole table rows
    console.width = max(console.width, 120)
err_console = Console(stderr=True, highlight=False)


class Failed(click.ClickException):
    """A check failed: exit status 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"course: {self.format_message()}", err=True)


def parse_instant(value: str, param: str) -> datetime:
    """An ISO-8601 instant; one without an offset is taken as UTC."""
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 instant: {value!r}", param_hint=param) from None
    instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    if not 1970 <= instant.year <= 9000:  # leaves room for a course's length
        raise click.BadParameter(f"out of range: {value!r}", param_hint=param)
    return instant


def parse_zone(value: str, param: str = "--tz") -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {value!r}", param_hint=param) from None


def parse_name(value: str | None, param: str = "--name") -> str | None:
    """A first name as the web form takes it (:func:`course.subscribers.signup.clean_name`),
    or a usage error: a name with a line break or a link would break every later send."""
    from course.subscribers.signup import InvalidSignup, clean_name

    if value is None:
        return None
    try:
        return clean_name(value)
    except InvalidSignup:
        reason = "not a first name (letters, at most 3 words and 40 characters)"
        raise click.BadParameter(f"{reason}: {value!r}", param_hint=param) from None


def instant_or_now(text: str | None, param: str) -> datetime:
    """The instant an option gives (see ``parse_instant``), or now when it is not given."""
    return parse_instant(text, param) if text else utc_now()


class Context:
    """Settings, and the runtime built only by commands that need Redis."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._runtime = None
        self._store = None
        self._celery = None
        self._layout_checked = False

    @property
    def runtime(self):
        """The store and the live version of the course (publishing the files first on an
        empty store, as any first start does)."""
        if self._runtime is None:
            from course.runtime import build_runtime

            self._runtime = build_runtime(self.settings)
            self._runtime.send_events_with(self._send_task)
        return self._runtime

    def _send_task(self, name: str, *args, **kwargs) -> object:
        """Queue a task for the workers (a command's webhook events), through a Celery app
        made on first use."""
        if self._celery is None:
            from course.tasks import create_app

            self._celery = create_app(self.settings, self.runtime.redis_url)
        return self._celery.send_task(name, *args, **kwargs)

    @property
    def store(self):
        """The store alone, without loading the live version (``course publish`` and its
        kin must see an empty store as empty); refused unless in this release's layout."""
        if self._runtime is not None:
            return self._runtime.store
        store = self.any_store
        if not self._layout_checked:
            store.require_layout()
            self._layout_checked = True
        return store

    @property
    def any_store(self):
        """The store whatever its layout (``course migrate`` moves it to this release's)."""
        if self._store is None:
            from course.runtime import connect
            from course.store import Store

            self._store = Store(connect(self.settings)[1])
        return self._store

    def schedule(self, path: Path | None = None):
        return load_schedule(path or self.settings.schedule_path)


pass_ctx = click.make_pass_decorator(Context)
