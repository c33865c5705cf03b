"""When a broadcast goes to one reader (pure): at once, or at the next ``HH:MM`` on the
wall clock of the reader's own zone (DST-correct, through :mod:`course.timeline`)."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from course.timeline import next_slot

EVERY_DAY = frozenset(range(7))


def reader_zone(tz: str, default: ZoneInfo) -> ZoneInfo:
    """The reader's zone, or the course's when they gave none (or one this machine lacks)."""
    if not tz:
        return default
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def send_instant(now: datetime, at_local: time | None, zone: ZoneInfo) -> datetime:
    """``now`` without a local hour; else the first ``at_local`` in ``zone`` at or after
    ``now`` (a time the clock skips in spring is the end of the gap)."""
    if at_local is None:
        return now
    return next_slot(now, at_local, zone, EVERY_DAY)


def parse_hhmm(text: str) -> time:
    """``HH:MM`` (24-hour) as a time; ValueError with a one-line reason otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"not a time of day HH:MM: {text!r}")
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise ValueError(f"not a time of day HH:MM: {text!r}")
    return time(int(hours), int(minutes))
