"""Emitting: the one call a state change makes once it is saved. It is a cheap enqueue (one
``course.webhook`` message for every endpoint and event of the call, on the ``webhooks``
queue), made only when an endpoint wants the event: with no ``COURSE_WEBHOOKS`` it costs
nothing. It never raises and never waits for a receiver: a broker that cannot take the
message is logged and counted (``unqueued``), and the state change stands.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from course.clock import utc_now
from course.logs import log_event
from course.task_names import WEBHOOK_QUEUE, WEBHOOK_TASK
from course.webhooks.endpoints import Endpoint
from course.webhooks.events import new_event

log = logging.getLogger("course.webhooks")

SendTask = Callable[..., object]  # Celery's send_task(name, args=..., queue=...)
CountOutbound = Callable[[Counter[tuple[str, str]]], None]  # (host, name) -> amount


class Emitter:
    """Hands events to the ``course.webhook`` task (see :class:`EventSink`)."""

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        send_task: SendTask,
        count: CountOutbound,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.endpoints = endpoints
        self._send_task = send_task
        self._count = count
        self._clock = clock

    def wants(self, event_type: str) -> bool:
        return any(endpoint.wants(event_type) for endpoint in self.endpoints)

    def emit(self, event_type: str, data: dict[str, Any], now: datetime | None = None) -> None:
        """One event of ``event_type`` at ``now`` (None: the clock)."""
        if self.wants(event_type):
            self.emit_many([(event_type, data)], now or self._clock())

    def emit_many(self, events: list[tuple[str, dict[str, Any]]], now: datetime) -> None:
        """Several events (a delivery batch's) in one message."""
        jobs = []
        for event_type, data in events:
            targets = [endpoint for endpoint in self.endpoints if endpoint.wants(event_type)]
            if targets:
                event = new_event(event_type, data, now).as_dict()
                jobs += [[endpoint.key, event] for endpoint in targets]
        if not jobs:
            return
        try:
            queued = self._send_task(WEBHOOK_TASK, args=[jobs, 1], queue=WEBHOOK_QUEUE)
            reason = "the broker refused it"
        except Exception as exc:  # kombu's OperationalError, a Redis error: never the sender's
            queued, reason = False, type(exc).__name__
        if queued is False:
            log_event(log, logging.ERROR, "webhook", outcome="unqueued", events=len(jobs),
                      reason=reason)  # fmt: skip
            hosts = {endpoint.key: endpoint.host for endpoint in self.endpoints}
            self._safe_count(Counter((hosts[key], "unqueued") for key, _ in jobs))

    def _safe_count(self, counts: Counter[tuple[str, str]]) -> None:
        try:
            self._count(counts)
        except Exception as exc:  # Redis is down too: the log line above is what is left
            log.warning("could not count unqueued webhook events: %s", type(exc).__name__)
