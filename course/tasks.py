"""Celery: beat fires ``course.tick`` every minute and ``course.retention`` once a day; workers
run ``course.deliver``, and ``course.signup`` and ``course.confirmation`` for the web app's
signups.

The tasks are thin: they build the runtime once per worker process and call the engine.
Delivery messages are acknowledged late and requeued if a worker dies; that is harmless
because the ledger, not the message, decides who sends (see course.engine).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from celery import Celery, current_app, shared_task
from celery.schedules import crontab
from celery.signals import after_task_publish, beat_init
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError

from course import engine
from course.broadcasts.service import prepare_batch
from course.clock import utc_now
from course.engine.experiments import evaluate_hourly
from course.logs import log_event
from course.models.schedule import CONFIRMATION_ID
from course.runtime import Runtime, build_runtime
from course.settings import Settings
from course.store import Store, StoreError, connect
from course.store.embedded import resolve_redis_url
from course.subscribers.confirmation import send_confirmation
from course.subscribers.double_opt_in import InvalidMessage, message_repr, run_signup
from course.subscribers.retention import run_retention
from course.task_names import (
    CONFIRMATION_TASK,
    DELIVER_TASK,
    LESSON_QUEUE,
    RETENTION_TASK,
    SIGNUP_QUEUE,
    SIGNUP_TASK,
    TICK_TASK,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
)
from course.transport import PermanentSendError, TransientSendError, UncertainSendError
from course.webhooks.delivery import GONE, run_jobs
from course.webhooks.lessons import SentRecorder, emit_lesson_events
from course.webhooks.post import Poster

log = logging.getLogger("course.tasks")

TICK_EVERY = 60.0  # seconds
RETENTION_AT = crontab(hour=3, minute=17)  # daily, UTC: a quiet hour, off the round minute
# Longer than any delivery batch can take (TASK_BATCH_SIZE sends with their timeouts), so Redis
# does not hand a message that is still being worked on to a second worker.
VISIBILITY_TIMEOUT = 3600


def create_app(settings: Settings, broker_url: str | None = None) -> Celery:
    """A Celery app for ``settings``; the broker is the course's Redis (embedded if unset)."""
    broker = broker_url or resolve_redis_url(settings.redis_url, settings.var_dir)
    app = Celery("course", broker=broker, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "tick": {
                "task": TICK_TASK,
                "schedule": TICK_EVERY,
                "options": {"expires": TICK_EVERY * 0.9},
            },
            "retention": {
                "task": RETENTION_TASK,
                "schedule": RETENTION_AT,
                "options": {"expires": 6 * 3600},  # a day's run missed waits for the next
            },
        },
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        # Every worker consumes every queue unless told otherwise (-Q webhooks: webhooks only)
        task_queues=[
            Queue(name, Exchange(name), routing_key=name)
            for name in (LESSON_QUEUE, SIGNUP_QUEUE, WEBHOOK_QUEUE)
        ],
        task_default_queue=LESSON_QUEUE,
        task_routes={
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            SIGNUP_TASK: {"queue": SIGNUP_QUEUE},
            CONFIRMATION_TASK: {"queue": SIGNUP_QUEUE},
        },
    )
    app.conf.course_settings = settings.with_(redis_url=broker)
    return app


def enqueuer(app: Celery) -> engine.Enqueue:
    """The engine's ``enqueue``: one ``course.deliver`` message per batch."""

    def enqueue(items: list[engine.Item], now: datetime) -> None:
        app.send_task(DELIVER_TASK, args=[[list(i) for i in items], now.isoformat()])

    return enqueue


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built on first use (after a prefork child has forked)."""
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(current_app.conf.course_settings, role="worker")
        _runtime.send_events_with(current_app.send_task)
    return _runtime


def _parse(now: str | None) -> datetime:
    return utc_now() if now is None else datetime.fromisoformat(now)


def _wall_clock() -> datetime:
    """Deliveries are stamped with the tick's instant or the wall clock, whichever is later:
    a batch that waited in a backed-up queue records when it really went and sets retry
    deadlines from then. (A simulated run ahead of the wall clock keeps its own clock.)"""
    return utc_now()


@beat_init.connect
def _beat_started(sender, **_: object) -> None:
    """Beat records in Redis that it runs, now and each time it sends a tick, for its
    health check (``course health beat``); only the beat process does this."""
    settings = sender.app.conf.course_settings
    store = Store(connect(settings.redis_url, socket_timeout=5))

    def seen() -> None:
        try:
            store.set_beat_seen(time.time())
        except StoreError as exc:  # the health check will say so; beat carries on
            log.warning("beat could not record that it runs: %s", exc)

    def on_publish(sender=None, **_: object) -> None:
        if sender == TICK_TASK:
            seen()

    after_task_publish.connect(on_publish, weak=False, dispatch_uid="course.beat_seen")
    seen()


@shared_task(name=TICK_TASK)
def tick_task(now: str | None = None) -> dict:
    rt = runtime()
    schedule, _ = rt.schedules.current()
    result = engine.tick(rt.store, schedule, _parse(now), enqueuer(current_app),
                         settle_window=rt.settings.settling_window)  # fmt: skip
    evaluate_hourly(rt.store, schedule, _parse(now))  # subject experiments: winner: auto
    return result.__dict__


@shared_task(name=DELIVER_TASK)
def deliver_task(items: list[list[str]], now: str) -> dict:
    rt = runtime()
    _, renderer = rt.schedules.current()
    batch = [(sub_id, lesson_id) for sub_id, lesson_id in items]
    # Broadcasts (``b:{id}`` entries): a cancelled one's claims are skipped, the others are
    # rendered from their own stored text in the course's layout.
    batch, renderer = prepare_batch(rt.store, renderer, batch, _parse(now))
    wanted = rt.events.wants("lesson.sent") or rt.events.wants("subscriber.completed")
    store = SentRecorder(rt.store) if wanted else rt.store  # no webhooks: the store as it is
    try:
        result = engine.deliver(
            store,
            renderer,
            rt.transport,
            batch,
            _parse(now),
            rt.links,
            clock=_wall_clock,
            # Only a transport whose requests are independent sends several at once.
            concurrency=rt.settings.send_concurrency if rt.transport.concurrent else 1,
        )
    finally:  # what was sent before an error still has its events
        if isinstance(store, SentRecorder):
            emit_lesson_events(rt.store, rt.events, store.sent, max(_parse(now), _wall_clock()))
    return result.__dict__


@shared_task(name=CONFIRMATION_TASK, bind=True, max_retries=engine.MAX_ATTEMPTS - 1)
def confirmation_task(self, sub_id: str) -> dict:
    """The double opt-in email for a pending subscriber (enqueued by the web app).

    Transient transport errors are retried with the engine's backoff; a send with an
    unknown outcome is not repeated (a second confirmation email would be harmless, but
    the rule is the same as for lessons); a refused one is logged."""
    rt = runtime()
    _, renderer = rt.schedules.current()
    attempt = self.request.retries + 1
    try:
        outcome = send_confirmation(rt.store, renderer, rt.transport, rt.settings, sub_id)
    except TransientSendError as exc:
        if attempt >= engine.MAX_ATTEMPTS:
            log_event(log, logging.ERROR, "confirmation", subscriber=sub_id, outcome="failed",
                      reason=f"gave up: {exc.reason}")  # fmt: skip
            rt.store.count_send(CONFIRMATION_ID, "failed")
            return {"sent": False, "reason": f"gave up: {exc.reason}"}
        wait = max(exc.retry_after or 0.0, engine.backoff(attempt))
        log_event(log, logging.WARNING, "confirmation", subscriber=sub_id, outcome="retry",
                  attempt=attempt, wait=round(wait), reason=exc.reason)  # fmt: skip
        raise self.retry(countdown=wait) from exc
    except UncertainSendError as exc:
        log_event(log, logging.WARNING, "confirmation", subscriber=sub_id, outcome="uncertain",
                  reason=exc.reason)  # fmt: skip
        rt.store.count_send(CONFIRMATION_ID, "uncertain")
        return {"sent": False, "reason": f"uncertain: {exc.reason}"}
    except PermanentSendError as exc:
        log_event(log, logging.ERROR, "confirmation", subscriber=sub_id, outcome="failed",
                  reason=exc.reason)  # fmt: skip
        rt.store.count_send(CONFIRMATION_ID, "failed")
        return {"sent": False, "reason": exc.reason}
    log_event(log, logging.INFO, "confirmation", subscriber=sub_id, outcome=outcome.reason)
    return {"sent": outcome.sent, "reason": outcome.reason}


@shared_task(name=SIGNUP_TASK, bind=True, max_retries=engine.MAX_ATTEMPTS - 1)
def signup_task(self, **message: object) -> dict:
    """A signup from the web app (:func:`course.subscribers.double_opt_in.run_signup`): the
    store work and the confirmation task, which the web leaves to the worker so that its
    answer takes the same time whatever the address's state.

    Redis (the store or the broker) unavailable: retried with the engine's backoff. The
    message is acknowledged late, so a worker that dies mid-task has it redelivered; that is
    harmless: the second run finds the pending record the first one made and at worst sends
    its confirmation again, within the mailbox's and domain's limits. Nothing here logs or
    returns the address (the message's ``kwargsrepr`` masks it where Celery shows it)."""
    rt = runtime()
    attempt = self.request.retries + 1
    try:
        schedule, _ = rt.schedules.current()
        result = run_signup(rt.store, rt.settings, schedule, current_app.send_task, message)
    except InvalidMessage as exc:  # not written by the web app: nothing to retry
        log_event(log, logging.ERROR, "signup", outcome="invalid", reason=str(exc))
        return {"outcome": "invalid"}
    except (StoreError, OperationalError) as exc:
        reason = type(exc).__name__  # a Redis error's text may quote a command's arguments
        if attempt >= engine.MAX_ATTEMPTS:
            log_event(log, logging.ERROR, "signup", outcome="failed", attempt=attempt,
                      reason=f"gave up: {reason}")  # fmt: skip
            return {"outcome": "failed"}
        wait = engine.backoff(attempt)
        log_event(log, logging.WARNING, "signup", outcome="retry", attempt=attempt,
                  wait=round(wait), reason=reason)  # fmt: skip
        # The retry is a new message: without its own kwargsrepr Celery would show (and
        # log) the full kwargs, address included.
        raise self.retry(countdown=wait, exc=None, kwargsrepr=message_repr(message)) from None
    return {"outcome": result.outcome, "subscriber": result.subscriber_id}


@shared_task(name=RETENTION_TASK)
def retention_task(now: str | None = None) -> dict:
    """Erase what the retention policy says is kept too long
    (:func:`course.subscribers.retention.run_retention`); a run already going (a second
    beat) makes this one do nothing."""
    rt = runtime()
    s = rt.settings
    run = run_retention(rt.store, _parse(now), s.retention_months, s.retention_pending_days)
    log_event(log, logging.INFO, "retention", busy=run.busy, left=run.erased["left"],
              completed=run.erased["completed"], pending=run.expired, dropped=run.dropped,
              indexed=run.indexed, more=run.more, seconds=round(run.seconds, 3))  # fmt: skip
    return {**run.__dict__, "total": run.total}


@shared_task(name=WEBHOOK_TASK)
def webhook_task(jobs: list[list], attempt: int = 1) -> dict:
    """Post outbound webhook events (course.webhooks.delivery): each job is [endpoint key,
    event]; what must be tried again goes in one new message after the next retry delay."""
    rt = runtime()
    poster = Poster()
    try:
        run = run_jobs(jobs, rt.settings.webhooks, attempt, rt.settings.webhook_delays, poster.post)
    finally:
        poster.close()
    for jobs_next, attempt_next, wait in ((run.retry, attempt + 1, run.delay),
                                          (run.later, attempt, 0.0)):  # fmt: skip
        if not jobs_next:
            continue
        try:
            current_app.send_task(WEBHOOK_TASK, args=[jobs_next, attempt_next],
                                  countdown=wait, queue=WEBHOOK_QUEUE)  # fmt: skip
        except Exception as exc:  # the broker is gone: those events are lost, and counted
            log_event(log, logging.ERROR, "webhook", outcome="dropped", events=len(jobs_next),
                      reason=f"could not queue them again: {type(exc).__name__}")  # fmt: skip
            by_key = {endpoint.key: endpoint.host for endpoint in rt.settings.webhooks}
            for key, _ in jobs_next:
                run.counts[(by_key.get(key, GONE), "dropped")] += 1
    try:
        rt.store.count_outbound(run.counts)
    except StoreError as exc:
        log.warning("could not count webhook deliveries: %s", type(exc).__name__)
    totals = {name: sum(n for (_, kind), n in run.counts.items() if kind == name)
              for name in ("sent", "failed", "refused", "dropped")}  # fmt: skip
    log_event(log, logging.INFO, "webhook_run", attempt=attempt, jobs=len(jobs),
              retrying=len(run.retry), later=len(run.later), **totals)  # fmt: skip
    return {"jobs": len(jobs), "retrying": len(run.retry), "later": len(run.later), **totals}
