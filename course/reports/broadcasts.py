"""A broadcast's figures as plain data (pure): ``course broadcast status --json``, ``course
stats`` (its JSON and HTML) and the admin pages show the same rows.

- claimed: recipients claimed (each reader once);
- sent, failed, uncertain: the ledger's outcomes (``uncertain`` net of those settled later);
- skipped: claimed but not sent (unsubscribed or suppressed before their send, or cancelled);
- waiting: claimed and not finished yet (their local hour has not come, or on their way);
- retried: retries scheduled; clicks, unsubscribes, ... : the Event Webhook's counts (never
  opens, which mail clients fake).
"""

from __future__ import annotations

from datetime import UTC, datetime

from course.models.broadcast import Broadcast

EVENTS = ("delivered", "click", "unsubscribe", "group_unsubscribe", "spamreport", "bounce",
          "dropped")  # fmt: skip


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def broadcast_counts(b: Broadcast) -> dict[str, int]:
    done = {name: max(0, b.counts.get(name, 0)) for name in ("sent", "failed", "uncertain",
                                                            "skipped")}  # fmt: skip
    waiting = max(0, b.claimed - sum(done.values()))
    events = {name: b.events.get(name, 0) for name in EVENTS}
    return {"claimed": b.claimed, **done, "waiting": waiting,
            "retried": b.counts.get("retried", 0), **events}  # fmt: skip


def broadcast_row(b: Broadcast) -> dict:
    """One broadcast: what it is and its counts."""
    return {
        "id": b.id,
        "status": b.status,
        "subject": b.subject,
        "template": b.template,
        "to": b.expression,
        "at_local": b.at_local.strftime("%H:%M") if b.at_local else None,
        "include_paused": b.include_paused,
        "created": _iso(b.created) or "",
        "sent_at": _iso(b.sent_at),
        "counts": broadcast_counts(b),
    }
