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
from html import escape

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


# The columns ``course stats`` and its HTML show per broadcast: (count, heading).
COLUMNS = (
    ("claimed", "recipients"),
    ("sent", "sent"),
    ("skipped", "skipped"),
    ("failed", "failed"),
    ("uncertain", "uncertain"),
    ("waiting", "waiting"),
    ("click", "clicked"),
    ("unsubscribe", "unsubscribed"),
)
NOTE = (
    "Recipients: readers claimed (each once). Skipped: unsubscribed or suppressed before "
    "their send, or cancelled. Waiting: claimed, not sent yet (their local hour has not "
    "come, or on the way). Clicked and unsubscribed: the provider's events."
)


def broadcast_label(row: dict) -> str:
    return f"{row['id']} {row['status']}: {row['subject']} (to {row['to']})"


def broadcast_cells(row: dict) -> list[str]:
    return [str(row["counts"].get(name, 0)) for name, _ in COLUMNS]


def broadcasts_html(rows: tuple[dict, ...]) -> str:
    """The broadcasts section of the HTML report ("" when there are none)."""
    if not rows:
        return ""
    head = "".join(f'<th scope="col">{escape(heading)}</th>' for _, heading in COLUMNS)
    body = "".join(
        f'<tr><th scope="row">{escape(broadcast_label(row))}</th>'
        + "".join(f"<td>{cell}</td>" for cell in broadcast_cells(row))
        + "</tr>"
        for row in rows
    )
    return (
        '<h2>Broadcasts</h2><div class="scroll"><table><caption>Per broadcast, newest first'
        f'</caption><thead><tr><th scope="col">broadcast</th>{head}</tr></thead>'
        f'<tbody>{body}</tbody></table></div><p class="note">{escape(NOTE)}</p>'
    )
