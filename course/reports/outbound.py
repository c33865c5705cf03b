"""Outbound webhooks in ``course stats``: each endpoint host's counts (pure)."""

from __future__ import annotations

OUTCOMES = ("sent", "failed", "refused", "dropped", "unqueued")
LABELS = {
    "sent": "sent",
    "failed": "failed attempts",
    "refused": "refused (4xx, not retried)",
    "dropped": "dropped after the last attempt",
    "unqueued": "not queued (broker down)",
}


def outbound_rows(stats: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """{host: {outcome: count}} with every outcome present, hosts in order."""
    return {host: {name: stats[host].get(name, 0) for name in OUTCOMES} for host in sorted(stats)}


def outbound_lines(stats: dict[str, dict[str, int]], configured: int) -> list[str]:
    """One line per endpoint host; a line saying so when nothing was posted yet."""
    if not stats:
        return [f"{configured} endpoints configured, no events posted yet"]
    return [
        f"{host}: " + ", ".join(f"{counts[name]} {LABELS[name]}" for name in OUTCOMES)
        for host, counts in outbound_rows(stats).items()
    ]
