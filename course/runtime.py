"""The pieces a running process needs, built from the settings: Redis, the store, the
live version of the course with its compiled templates (followed by
``course.schedule.reload``), and the transport."""

from __future__ import annotations

from dataclasses import dataclass, field

from course.schedule.reload import ScheduleHolder, ScheduleStatusBoard, fingerprint
from course.settings import Settings
from course.store import Client, Store
from course.store import connect as connect_redis
from course.store.embedded import check_server_version, resolve_redis_url
from course.tokens import subscriber_links
from course.transport import Transport, make_transport
from course.webhooks.emit import Emitter, SendTask
from course.webhooks.events import NO_EVENTS, EventSink

# Schedule hot reload lives in course.schedule.reload; these names stay importable from here.
__all__ = [
    "Runtime",
    "ScheduleHolder",
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
    # Outbound webhook events (course.webhooks): nothing until the process says how it
    # queues tasks (:meth:`send_events_with`)
    events: EventSink = NO_EVENTS

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = make_transport(self.settings)
        return self._transport

    def links(self, subscriber_id: str) -> dict[str, str]:
        return subscriber_links(self.settings.base_url, self.settings.secret_key, subscriber_id)

    def send_events_with(self, send_task: SendTask) -> None:
        """Emit this process's events through ``send_task`` (Celery's), when an endpoint is
        configured; with none, emitting stays free."""
        if self.settings.webhooks:
            self.events = Emitter(self.settings.webhooks, send_task, self.store.count_outbound)

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


def holder(settings: Settings, store: Store, role: str | None, **options: object) -> ScheduleHolder:
    """The live version of the course for a process; with a ``role`` it reports on the
    status board which version it runs. The first start on an empty store publishes the
    files, as does the start of a service (a ``role``) with ``COURSE_PUBLISH_ON_START=1``
    when they differ from the live version; a CLI command never does that."""
    return ScheduleHolder(
        settings.schedule_path,
        settings.templates_dir,
        store.schedule_versions(),
        store.status_board(role) if role else None,
        reserved_sender=settings.env == "dev",
        publish_on_start=settings.publish_on_start and role is not None,
        publisher=settings.publisher,
        legacy=store.legacy_snapshot,
        **options,  # type: ignore[arg-type]
    )


def build_runtime(settings: Settings, role: str | None = None) -> Runtime:
    """The runtime of a process; with a ``role`` (``worker``) the process records the
    version it runs in Redis (short-lived CLI commands do not). Raises
    :class:`course.store.LayoutMismatch` when the store is not in this release's layout."""
    url, client = connect(settings)
    store = Store(client)
    try:
        store.require_layout()  # refuses a store of another layout, stamps an empty one
    except BaseException:
        client.close()
        raise
    return Runtime(
        settings=settings,
        redis_url=url,
        client=client,
        store=store,
        schedules=holder(settings, store, role),
    )
