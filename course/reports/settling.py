"""What ``course doctor`` and ``course stats`` say of uncertain sends: how many wait, and
whether they can be settled (pure: the figures are read by the caller)."""

from __future__ import annotations

from datetime import UTC, datetime

from course.models.ledger import SettlingFacts

NO_WEBHOOK = (
    "not settled: no signed webhook (COURSE_TRANSPORT=sendgrid with "
    "SENDGRID_WEBHOOK_PUBLIC_KEY); uncertain sends are never re-sent"
)
NO_EVENTS = "not settled: no webhook events (none has arrived: check the Event Webhook's URL)"


def settling_status(window: float | None, facts: SettlingFacts) -> tuple[bool, str]:
    """(fine, one line): not fine when uncertain sends wait and nothing can settle them."""
    waiting = f"{facts.waiting} uncertain send(s) waiting"
    if window is None:
        return facts.waiting == 0, f"{waiting}; {NO_WEBHOOK}"
    events = int(facts.mark.get("events", 0) or 0)
    if not facts.mark.get("at"):
        return facts.waiting == 0, f"{waiting}; {NO_EVENTS}"
    last = datetime.fromtimestamp(float(facts.mark.get("last_seen") or 0), UTC)
    return True, (
        f"{waiting}; webhook events flowing ({events} seen, the latest {last:%Y-%m-%d %H:%M}"
        f" UTC): one with no event is re-sent once, {round(window / 60)} min after a later"
        " send's event"
    )
