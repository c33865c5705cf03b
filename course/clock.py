"""The one clock at the edges: commands, tasks and routes ask it for now and pass that instant
down; the logic below them takes ``now`` as a parameter."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    return datetime.now(UTC)
