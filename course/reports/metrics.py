"""Prometheus metrics, read from Redis when scraped.

The counts live in Redis, kept by the store's scripts as every worker on every machine
writes the ledger, so any web process serves the same numbers and a restart loses none.
Nothing is counted in the web process itself. The README lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from course.reports.outbound import outbound_rows
from course.store import Store, StoreError

# Ledger outcomes that only ever grow. ``uncertain`` is a gauge: a provider event settles
# an uncertain send as sent or failed, and its count goes down.
GROWING_OUTCOMES = ("sent", "failed", "skipped", "retried")


# The last tick's figures (``Store.tick_stats``): metric, help text, field.
LAST_TICK_GAUGES = (
    ("course_last_tick_timestamp_seconds", "The instant (its now) of the last tick.", "last_at"),
    ("course_last_tick_duration_seconds", "How long the last tick took.", "last_duration"),
    ("course_last_tick_due", "Subscribers the last tick found due.", "last_due"),
    ("course_last_tick_claimed", "Lessons the last tick claimed.", "last_claimed"),
)


class StoreCollector(Collector):
    """Every metric, read from the store at each scrape.

    ``lesson_ids`` names the lessons to report (the current schedule's: a lesson removed
    from the schedule leaves the metrics with it); ``clock`` gives the epoch for the due
    backlog ("due by now").
    """

    def __init__(
        self,
        store: Store,
        lesson_ids: Callable[[], Iterable[str]],
        clock: Callable[[], float],
    ):
        self.store = store
        self.lesson_ids = lesson_ids
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._families(list(self.lesson_ids()), self.clock())
        except (StoreError, OSError):
            yield GaugeMetricFamily("course_redis_up", "Whether Redis answered the scrape.", 0)
            return
        yield GaugeMetricFamily("course_redis_up", "Whether Redis answered the scrape.", 1)
        yield from families

    def _families(self, lessons: list[str], now: float) -> list[Metric]:
        store = self.store
        return [
            *lesson_families(store, lessons),
            webhook_family(store),
            outbound_family(store),
            *backlog_families(store, now),
            *tick_families(store),
            *beat_families(store),
        ]


def lesson_families(store: Store, lessons: list[str]) -> list[Metric]:
    """Per lesson: emails by ledger outcome, uncertain sends, and provider events."""
    counts = store.lesson_counts(lessons)
    emails = CounterMetricFamily(
        "course_emails",
        "Lesson emails by outcome: sent (accepted by the provider), failed, skipped "
        "(not sent: unsubscribed, or left the schedule), retried (retries scheduled).",
        labels=["lesson", "outcome"],
    )
    uncertain = GaugeMetricFamily(
        "course_emails_uncertain",
        "Sends whose outcome is unknown (may have been accepted; never re-sent), "
        "not yet settled by a provider event.",
        labels=["lesson"],
    )
    events = CounterMetricFamily(
        "course_provider_events",
        "Provider events per lesson from the SendGrid Event Webhook "
        "(delivered, open, click, bounce, ...).",
        labels=["lesson", "event"],
    )
    for lesson in lessons:
        sends, provider = counts[lesson]
        for outcome in GROWING_OUTCOMES:
            emails.add_metric([lesson, outcome], sends.get(outcome, 0))
        uncertain.add_metric([lesson], sends.get("uncertain", 0))
        for event, count in sorted(provider.items()):
            events.add_metric([lesson, event], count)
    return [emails, uncertain, events]


def webhook_family(store: Store) -> Metric:
    """The Event Webhook's bookkeeping, by outcome."""
    webhook = CounterMetricFamily(
        "course_webhook_events",
        "Event Webhook bookkeeping: received, duplicate, unknown_subscriber, "
        "unknown_lesson, invalid, reconciled.",
        labels=["outcome"],
    )
    for outcome, count in sorted(store.webhook_stats().items()):
        webhook.add_metric([outcome], count)
    return webhook


def outbound_family(store: Store) -> Metric:
    """Outbound webhooks (COURSE_WEBHOOKS), by endpoint host and outcome."""
    family = CounterMetricFamily(
        "course_webhooks_out",
        "Outbound webhook posts by endpoint host: sent (2xx), failed (attempts that got a "
        "network error, 429 or 5xx), refused (other statuses, not retried), dropped (given "
        "up after the last attempt), unqueued (the broker did not take the event).",
        labels=["host", "outcome"],
    )
    for host, counts in outbound_rows(store.outbound_stats()).items():
        for outcome, count in counts.items():
            family.add_metric([host, outcome], count)
    return family


def backlog_families(store: Store, now: float) -> list[Metric]:
    """The work waiting (due subscribers, unfinished sends) and the records held."""
    return [
        GaugeMetricFamily(
            "course_due_backlog",
            "Subscribers whose next lesson is due now and not yet claimed by a tick.",
            store.due_count(now),
        ),
        GaugeMetricFamily(
            "course_due_subscribers",
            "Subscribers in the due index (active, with a lesson left), due now or later.",
            store.due_count(),
        ),
        GaugeMetricFamily(
            "course_pending_sends",
            "Unfinished ledger entries: claimed, being sent, or waiting for a retry.",
            store.pending_count(),
        ),
        GaugeMetricFamily(
            "course_pending_sends_overdue",
            "Unfinished entries whose retry or stale deadline has passed (a tick will "
            "hand them out again).",
            store.pending_count(now),
        ),
        GaugeMetricFamily(
            "course_quarantined_subscribers",
            "Subscriber records a tick could not read (course subscribers quarantine).",
            store.quarantine_count(),
        ),
        GaugeMetricFamily("course_subscribers", "Subscriber records.", store.count()),
    ]


def tick_families(store: Store) -> list[Metric]:
    """Every tick's duration as a summary, and the last tick's figures once there was one."""
    ticks = store.tick_stats()
    families: list[Metric] = [
        SummaryMetricFamily(
            "course_tick_duration_seconds",
            "Time each tick took, from reading the due index to handing out the work.",
            count_value=ticks.get("count", 0),
            sum_value=ticks.get("seconds_total", 0.0),
        )
    ]
    if ticks:
        families += [
            GaugeMetricFamily(name, help_text, ticks.get(field, 0.0))
            for name, help_text, field in LAST_TICK_GAUGES
        ]
    return families


def beat_families(store: Store) -> list[Metric]:
    """When beat was last seen, once it has been."""
    beat = store.beat_seen()
    if beat is None:
        return []
    return [
        GaugeMetricFamily(
            "course_beat_last_seen_timestamp_seconds",
            "When beat last started or sent a tick.",
            beat,
        )
    ]


def build_registry(
    store: Store, lesson_ids: Callable[[], Iterable[str]], clock: Callable[[], float]
) -> CollectorRegistry:
    """A registry with only the course's metrics (no per-process Python metrics: the web
    process is not where the work happens)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, lesson_ids, clock))
    return registry
