"""Logs of the services: one line per event, JSON by default (``COURSE_LOG_FORMAT``).

Code that reports an event calls :func:`log_event` with the event's name and fields. As
text, that is ``event key=value ...``; as JSON, one object per line with ``time``,
``level``, ``event``, ``role`` (worker, beat, web), ``logger``, ``message`` and each field
at the top level. Lines from Celery and uvicorn get the same shape with ``event`` ``log``
(``http`` for uvicorn's access log, with client, method, path and status).

The worker and beat are configured through Celery's ``setup_logging`` signal (with a
receiver, Celery leaves logging alone), the web app through uvicorn's ``log_config``.
The ``text`` format keeps Celery's and uvicorn's own set-up as it always was.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# The first keys of every JSON line, in this order; the event's fields follow.
LEADING = ("time", "level", "event", "role", "logger", "message")


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    """One line for ``event``: readable as text, its fields kept apart for JSON."""
    if not logger.isEnabledFor(level):  # the tick may log once per claim: stay cheap
        return
    text = " ".join(f"{name}={value}" for name, value in fields.items())
    logger.log(level, "%s %s", event, text, extra={"event": event, "fields": fields})


class JsonLines(JsonFormatter):
    """python-json-logger's formatter, with the event's fields lifted to the top level."""

    def __init__(self, role: str = "course") -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"role": role},
            defaults={"event": "log"},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data.pop("color_message", None)  # uvicorn's copy of the message for terminals
        fields = log_data.pop("fields", None)
        ordered = {key: log_data.pop(key) for key in LEADING if key in log_data}
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in ordered:  # never let a field hide the line's own keys
                    ordered[key] = value
        ordered.update(log_data)  # what else the record carried (exc_info, Celery's data)
        return ordered


class AccessFields(logging.Filter):
    """uvicorn's access log as an ``http`` event with its parts as fields (after the web
    app's :class:`~course.web.access_log.RedactTokens` filter has taken the tokens out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _, status = args
            record.event = "http"
            record.fields = {"client": client, "method": method, "path": path, "status": status}
        return True


def json_config(role: str, level: int | str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` that sends every record, uvicorn's and Celery's
    too, as one JSON line to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"access": {"()": AccessFields}},
        "formatters": {"json": {"()": JsonLines, "role": role}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["access"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # uvicorn's own handlers would print a second, plain copy: its records go to root.
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")
        },
    }


def configure_celery_logging(log_format: str) -> None:
    """Let Celery's worker and beat log JSON lines (``text``: Celery's own format).

    The role is the Celery command being run (``worker``, ``beat``), read from click's
    context, which is current while Celery sets up logging for it.
    """
    if log_format != "json":
        return
    from celery.signals import setup_logging

    setup_logging.connect(_setup_celery_logging, weak=False, dispatch_uid="course.logs")


def _setup_celery_logging(loglevel: int | None = None, **_: object) -> None:
    import logging.config

    import click

    context = click.get_current_context(silent=True)
    role = context.info_name if context is not None and context.info_name else "celery"
    logging.config.dictConfig(json_config(role, loglevel or logging.INFO))
