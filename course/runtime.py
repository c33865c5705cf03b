"""The pieces a running process needs, built from the settings: Redis, the store, the
current schedule with its compiled templates (kept fresh by ``course.schedule.reload``), and
the transport."""

from __future__ import annotations

from dataclasses import dataclass, field

from course.schedule.reload import (
    ScheduleHolder,
    ScheduleSnapshot,
    ScheduleStatusBoard,
    fingerprint,
)
from course.settings import Settings
from course.store import Client, Store
from course.store import connect as connect_redis
from course.store.embedded import check_server_version, resolve_redis_url
from course.tokens import subscriber_links
from course.transport import Transport, make_transport

# Schedule hot reload lives in course.schedule.reload; these names stay importable from here.
__all__ = [
    "Runtime",
    "ScheduleHolder",
    "ScheduleSnapshot",
    "ScheduleStatusBoard",
    "build_runtime",
    "connect",
    "fingerprint",
]


@dataclass
class Runtime:
    settings: Settings
    redis_url: str
    client: Client
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


def connect(settings: Settings) -> tuple[str, Client]:
    """The Redis URL in use (embedded when ``REDIS_URL`` is unset) and a client for it."""
    url = resolve_redis_url(settings.redis_url, settings.var_dir)
    client = connect_redis(url, decode_responses=True, health_check_interval=30)
    check_server_version(client)
    return url, client


def build_runtime(settings: Settings, role: str | None = None) -> Runtime:
    """The runtime of a process; with a ``role`` (``worker``) the process records the
    schedule it runs in Redis (short-lived CLI commands do not)."""
    url, client = connect(settings)
    store = Store(client)
    board = store.status_board(role) if role else None
    return Runtime(
        settings=settings,
        redis_url=url,
        client=client,
        store=store,
        schedules=ScheduleHolder(
            settings.schedule_path,
            settings.templates_dir,
            store.schedule_snapshot(),
            board,
            reserved_sender=settings.env == "dev",
        ),
    )
