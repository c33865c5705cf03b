"""What can happen to a subscriber: enrol, confirm, pause, resume, change their settings
(pace, send time, zone) or first name, unsubscribe.

Each operation takes the store, the schedule where timing matters, and ``now``; the CLI,
the web app and the tick call these, never the store's fields directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from course.models.schedule import Schedule
from course.models.subscriber import SUPPRESSED, ReaderSettings, Subscriber
from course.progress import due_at, next_lesson, resumed_at, with_settings
from course.subscribers.variants import count_reader
from course.transport import SEND_TIMEOUT
from course.webhooks.events import NO_EVENTS, EventSink

if TYPE_CHECKING:
    from course.store import Store


class SubscriptionError(ValueError):
    """The operation does not apply to this subscriber in their current state."""


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriptionError(f"unknown time zone {name!r}") from None
    return name


def enrol(
    store: Store,
    schedule: Schedule,
    email: str,
    first_name: str | None,
    tz: str | None,
    now: datetime,
    confirmed: bool = True,
    source: str = "cli",
    consent: str = "",
    events: EventSink = NO_EVENTS,
) -> Subscriber:
    """Add a subscriber; a confirmed one starts the course at ``now`` (day 0 due at once).

    ``consent`` records the consent text version and IP address of a web signup."""
    zone = check_zone(tz) if tz else schedule.course.timezone.key
    sub = store.add(email, first_name, zone, now.timestamp(), source=source, consent=consent)
    return confirm(store, schedule, sub, now, events) if confirmed else sub


def confirm(
    store: Store,
    schedule: Schedule,
    sub: Subscriber,
    now: datetime,
    events: EventSink = NO_EVENTS,
) -> Subscriber:
    """Start the course clock at ``now``; a second confirmation changes nothing. Once it is
    saved, ``subscriber.confirmed`` goes to ``events``."""
    if sub.status != "pending":
        return sub
    started = replace(sub, status="active", start=now.timestamp())
    lesson = next_lesson(schedule, started, set())
    due = due_at(schedule, started, lesson).timestamp() if lesson else None
    changes = {"status": "active", "start": started.start}
    if store.update(sub.id, changes, due, sub.version) != 1:
        raise SubscriptionError(f"{sub.email}: changed meanwhile, try again")
    events.emit("subscriber.confirmed", {"subscriber": sub.id}, now)
    return store.get(sub.id) or started


def pause(
    store: Store, sub: Subscriber, now: datetime, until: datetime | None = None
) -> Subscriber:
    """Stop the course clock; with ``until`` the course resumes by itself then."""
    if sub.status != "active":
        raise SubscriptionError(f"{sub.email}: cannot pause a subscriber who is {sub.status}")
    due = until.timestamp() if until else None  # the tick resumes it when this falls due
    changes = {
        "status": "paused",
        "paused_at": now.timestamp(),
        "paused_until": until.timestamp() if until else None,
    }
    if store.update(sub.id, changes, due, sub.version) != 1:
        raise SubscriptionError(f"{sub.email}: changed meanwhile, try again")
    return store.get(sub.id) or sub


def resume(store: Store, schedule: Schedule, sub: Subscriber, now: datetime) -> Subscriber:
    """Restart the clock: every remaining lesson moves later by the time spent paused."""
    if sub.status != "paused":
        raise SubscriptionError(f"{sub.email}: cannot resume a subscriber who is {sub.status}")
    resumed = resumed_at(sub, now)
    lesson = next_lesson(schedule, resumed, set(store.ledger(sub.id)))
    due = due_at(schedule, resumed, lesson).timestamp() if lesson else None
    changes = {
        "status": "active" if lesson else "completed",
        "paused": resumed.paused,
        "paused_at": None,
        "paused_until": None,
    }
    if store.update(sub.id, changes, due, sub.version) != 1:
        raise SubscriptionError(f"{sub.email}: changed meanwhile, try again")
    return store.get(sub.id) or resumed


# Version moves a settings change reads again and decides again before it gives up: a tick
# claiming the reader's lesson meanwhile bumps the version too.
SETTINGS_ROUNDS = 5


def change_settings(
    store: Store, schedule: Schedule, sub: Subscriber, wanted: ReaderSettings, now: datetime
) -> Subscriber:
    """Set the reader's pace, send time and zone (:func:`course.progress.with_settings`) and
    move their due time to match, in one step checked against the record's version: a tick
    that claimed a lesson meanwhile makes this read the record again and decide again, so a
    change racing a tick never loses the change, and the claim decides who sends."""
    check_zone(wanted.tz)
    for _ in range(SETTINGS_ROUNDS):
        if sub.status in SUPPRESSED:
            raise SubscriptionError(f"{sub.email}: has left the course ({sub.status})")
        done = set(store.ledger(sub.id))
        changed = with_settings(schedule, sub, done, now, wanted)
        if changed == sub:
            return sub
        due: float | str | None = "="  # paused, pending, completed: their index entry stays
        lesson = next_lesson(schedule, changed, done) if changed.status == "active" else None
        if lesson is not None:
            due = due_at(schedule, changed, lesson).timestamp()
        names = ("pace", "send_time", "tz", "anchor", "anchor_day", "anchor_paused")
        fields = {name: getattr(changed, name) for name in names}
        if store.update(sub.id, fields, due, sub.version) == 1:
            return store.get(sub.id) or changed
        current = store.get(sub.id)
        if current is None:
            raise SubscriptionError(f"{sub.email}: has left the course (erased)")
        sub = current
    raise SubscriptionError(f"{sub.email}: changed meanwhile, try again")


def rename(store: Store, sub: Subscriber, first_name: str | None) -> Subscriber:
    """Set the first name the emails greet the subscriber by (None: none), under the record's
    version; a subscriber who left keeps theirs."""
    if sub.status in SUPPRESSED:
        raise SubscriptionError(f"{sub.email}: has left the course ({sub.status})")
    if sub.first_name == first_name:
        return sub
    if store.update(sub.id, {"first_name": first_name}, "=", sub.version) != 1:
        raise SubscriptionError(f"{sub.email}: changed meanwhile, try again")
    return store.get(sub.id) or replace(sub, first_name=first_name)


def unsubscribe(
    store: Store,
    sub: Subscriber,
    status: str = "unsubscribed",
    now: datetime | None = None,
    events: EventSink = NO_EVENTS,
) -> Subscriber:
    """Suppress for good, whatever else is happening: no version check, unsubscribe wins.

    The link may come from an email sent before the person signed up again: whichever
    record now holds the address is suppressed too. A record already suppressed keeps the
    status it has (a bounce stays a bounce). Each change from a mailable status is counted
    once, against the subscriber's last lesson (``course stats``: "unsubscribed after").
    ``now`` is when they left, kept for retention (None: Redis's clock). Each record that
    changed gets its event (``subscriber.bounced`` for a bounce, else
    ``subscriber.unsubscribed`` with the ``reason``: unsubscribed or complained).
    """
    if status not in SUPPRESSED:
        raise ValueError(status)
    at = now.timestamp() if now is not None else None
    changed = []
    if store.suppress(sub.id, status, at) == 1:
        changed.append(sub.id)
        if status == "unsubscribed":  # a subject experiment's count
            count_reader(store, sub.id, sub.last_lesson, "unsubscribed")
    current = store.find(sub.email)
    if (
        current is not None
        and current.id != sub.id
        and current.status not in SUPPRESSED
        and store.suppress(current.id, status, at) == 1
    ):
        changed.append(current.id)
    for sub_id in changed:
        if status == "bounced":
            events.emit("subscriber.bounced", {"subscriber": sub_id}, now)
        else:
            events.emit("subscriber.unsubscribed", {"subscriber": sub_id, "reason": status}, now)
    return store.get(sub.id) or sub


# Seconds one lesson send can take, at most, from being marked ``sending`` until the provider
# has answered: an unsubscribe or an erase waits this long for it, and takes a ``sending``
# entry older than this for a worker that died. The SendGrid transport's SEND_TIMEOUT bounds
# each blocking socket step, not the request, and a send on a new connection has five: TCP
# connect, TLS handshake, writing the request's head, then its body (http.client writes them
# apart), and reading the answer (one piece). So five timeouts, and a margin for rendering
# and Redis. Not covered: a DNS lookup (no timeout), a connect that tries several addresses
# in turn, a server that trickles its answer, and the SMTP transport (30 s for each of a
# dozen commands); only a deadline on the whole request would bound those.
SEND_SETTLE = 5 * SEND_TIMEOUT + 5.0


def wait_for_sends(
    store: Store,
    sub_id: str,
    timeout: float = SEND_SETTLE,
    clock: Callable[[], float] = time.time,
    poll: float = 0.02,
) -> bool:
    """Until no lesson of ``sub_id`` is being handed to the provider; False after ``timeout``.

    A worker checks that the subscriber may be mailed, then renders and sends: an unsubscribe
    that lands in between cannot stop that one email. Answering the unsubscribe only after
    it has gone keeps the promise "after the answer, nothing more is sent" (a send that
    starts later is refused). A ``sending`` entry that started more than ``timeout`` ago
    belongs to a worker that died and is not waited for. The record that holds the address
    now is waited for too: :func:`unsubscribe` suppresses it as well (a link from an email
    sent before the person signed up again).
    """
    ids = {sub_id}
    sub = store.get(sub_id)
    holder = store.find(sub.email) if sub is not None else None
    if holder is not None:
        ids.add(holder.id)
    deadline = clock() + timeout
    while True:
        now = clock()
        started_lately = [
            entry
            for one in ids
            for entry in store.ledger(one).values()
            if entry.state == "sending" and entry.at > now - timeout
        ]
        if not started_lately:
            return True
        if now >= deadline:
            return False
        time.sleep(poll)
