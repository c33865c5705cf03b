"""The ``course`` command (``course.cli:main``). The group and ``main`` live in ``group.py``, what
every command shares in ``context.py``, then one module per noun; importing a command module
adds its commands to the group."""

from course.cli import (
    broadcasts,
    doctor,
    health,
    migrate,
    preview,
    privacy,
    retention,
    run,
    schedule,
    segments,
    send_test,
    stats,
    subscribers,
    versions,
)
from course.cli.group import cli, main

# The command modules are listed so that importing them (which registers them) reads as used.
__all__ = [
    "broadcasts",
    "cli",
    "doctor",
    "health",
    "main",
    "migrate",
    "preview",
    "privacy",
    "retention",
    "run",
    "schedule",
    "segments",
    "send_test",
    "stats",
    "subscribers",
    "versions",
]
