"""What every process that runs the course checks as it starts (``course run``, ``serve``, the
worker, beat), after its settings are read: the schedule file is there, outside dev it sends
from a domain that can receive mail, and dev mode on a public address is said out loud."""

from __future__ import annotations

from urllib.parse import urlsplit

from course.guard import DEV_SECRET_KEY, RESERVED_TLDS, is_loopback_host
from course.schedule.load import sender_problems
from course.settings import Settings, SettingsError


def require_schedule_file(settings: Settings) -> None:
    """At the start of a process that runs the course (``run``, ``serve``, the worker, beat):
    its schedule file must be there. The copy of the last valid schedule kept in Redis is for
    a broken edit, never for a file that is not there, which would quietly send an old course
    (COURSE_SCHEDULE=nope.yaml)."""
    if not settings.schedule_path.is_file():
        raise SettingsError(
            f"COURSE_SCHEDULE: {str(settings.schedule_path)!r}: no such file (set "
            "COURSE_SCHEDULE to the course's schedule.yaml, or run where it is)"
        )


def refuse_reserved_sender(settings: Settings) -> None:
    """Outside dev, a schedule whose ``from.email`` or ``reply_to`` is on a domain reserved for
    examples and tests (``healingroadmap.example``) stops the process with one line naming the
    field and its line: every email would be refused or lost. A file that is not YAML at all
    is left to the schedule's loader (which keeps the last valid schedule)."""
    if settings.env == "dev":
        return
    problems = sender_problems(settings.schedule_path)
    if problems:
        raise SettingsError(f"{problems[0]} (refused outside COURSE_ENV=dev)")


def dev_warning(settings: Settings) -> str | None:
    """In dev mode with a base URL others can reach, the one line to print loudly at start:
    dev accepts unsigned webhook events and, without COURSE_SECRET_KEY, signs links with a
    key everyone knows. None otherwise."""
    host = (urlsplit(settings.base_url).hostname or "").rstrip(".")
    if settings.env != "dev" or not host or is_loopback_host(host):
        return None
    if host.endswith(RESERVED_TLDS):  # names no one can reach (RFC 2606): tests, examples
        return None
    keys = " and signs links with the dev key" if settings.secret_key == DEV_SECRET_KEY else ""
    return (
        f"WARNING: COURSE_ENV is 'dev' but COURSE_BASE_URL ({settings.base_url}) is a public "
        f"address: dev accepts unsigned webhook events{keys}; set COURSE_ENV=production on "
        "a site others reach"
    )


def refuse_other_layout(redis_url: str) -> None:
    """At the start of the worker and beat: the store must be in this release's layout (an
    empty one is stamped with it). Raises :class:`course.store.LayoutMismatch` with the one
    line to print. A Redis that does not answer yet is left to the broker's retries; the
    worker's runtime checks again when it is built."""
    from course.store import Store, StoreError, connect

    client = connect(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        Store(client).require_layout()
    except (StoreError, OSError):
        pass
    finally:
        client.close()
