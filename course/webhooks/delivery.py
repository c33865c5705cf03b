"""A run of the ``course.webhook`` task: post each (endpoint, event) job once, and say what
to count and what to try again (pure but for the ``post`` it is given).

A job that got 2xx is done; 429, 5xx or a network error is tried again after the next of
the retry delays (``COURSE_WEBHOOK_RETRY_DELAYS``), until the last attempt, after which it is
dropped and counted; any other status (a 4xx, a redirect) is refused: counted, never retried.
An endpoint that timed out, could not be reached or answered 429 is not tried again in the
same run: its other jobs wait for the retry with it, so a slow receiver costs one timeout
per run, not one per event. A run stops posting after RUN_BUDGET seconds (a receiver that
answers, but slowly): the jobs it did not try go at once into a new message at the same
attempt, so one run never holds a worker process for long.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from course.logs import log_event
from course.webhooks.endpoints import Endpoint
from course.webhooks.events import Event
from course.webhooks.post import Answer

log = logging.getLogger("course.webhooks")

Job = list  # [endpoint key, event as a dict]: what a course.webhook message carries
GONE = "(no longer configured)"  # the host counted for an endpoint the worker does not know
RUN_BUDGET = 30.0  # seconds of posting per run; the rest waits in a new message


@dataclass
class Run:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (host, name) -> n
    retry: list[Job] = field(default_factory=list)  # the jobs for the next attempt
    delay: float | None = None  # seconds before that attempt
    later: list[Job] = field(default_factory=list)  # not tried (out of time): same attempt


def run_jobs(
    jobs: list[Job],
    endpoints: tuple[Endpoint, ...],
    attempt: int,
    delays: tuple[float, ...],
    post: Callable[[Endpoint, Event], Answer],
    budget: float = RUN_BUDGET,
    clock: Callable[[], float] = time.monotonic,
) -> Run:
    """Post every job of attempt number ``attempt`` (1 = the first), for ``budget`` seconds
    at most."""
    by_key = {endpoint.key: endpoint for endpoint in endpoints}
    last = attempt > len(delays)
    run = Run(delay=None if last else delays[attempt - 1])
    down: set[str] = set()
    deadline = clock() + budget
    for index, (key, raw) in enumerate(jobs):
        if clock() > deadline:
            run.later = [list(job) for job in jobs[index:]]
            break
        endpoint = by_key.get(key)
        event = Event.from_dict(raw)
        if endpoint is None:  # COURSE_WEBHOOKS changed since the event was emitted
            run.counts[(GONE, "dropped")] += 1
            log_event(log, logging.WARNING, "webhook", outcome="dropped", host=GONE,
                      event_id=event.id, reason="no longer in COURSE_WEBHOOKS")  # fmt: skip
            continue
        if key in down:
            answer = Answer("retry", "not tried: the endpoint failed earlier in this run")
        else:
            answer = post(endpoint, event)
            if answer.endpoint_down:
                down.add(key)
            name = {"ok": "sent", "retry": "failed", "refused": "refused"}[answer.outcome]
            run.counts[(endpoint.host, name)] += 1
        if answer.outcome == "retry" and not last:
            run.retry.append([key, raw])
            level, outcome = logging.WARNING, "retry"
        elif answer.outcome == "retry":
            run.counts[(endpoint.host, "dropped")] += 1
            level, outcome = logging.ERROR, "dropped"
        elif answer.outcome == "refused":
            level, outcome = logging.ERROR, "refused"
        else:  # one line per run says how many went (course.tasks): this one is for debugging
            level, outcome = logging.DEBUG, "sent"
        log_event(log, level, "webhook", outcome=outcome, host=endpoint.host, event_id=event.id,
                  type=event.type, attempt=attempt, status=answer.detail)  # fmt: skip
    return run
