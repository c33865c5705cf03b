"""Subscribers in as CSV, ``course subscribers import``, and the file format both ways.

The file (UTF-8, with or without a BOM; LF or CRLF line ends; RFC 4180 quoting)::

    email,first_name,timezone,signup_time,consent_source
    ann@example.com,Ann,Europe/Berlin,2026-03-01T09:30:00Z,webinar signup form

Column names are matched case-insensitively and may come in any order. ``email``,
``signup_time`` and ``consent_source`` are required; ``first_name`` and ``timezone`` may be
left empty (no name; the course's zone). An export adds ``status``, ``lessons_sent``,
``lessons_total`` and ``last_lesson``; an import understands them too, so an export can be
imported elsewhere: ``status`` keeps suppressed, pending and completed people as they were
(everyone else is active), ``last_lesson`` keeps their place (forward-only, so nothing is sent
twice); the counts are only informative. An export writes a cell that starts with ``=``,
``+``, ``-``, ``@``, TAB, CR or ``'`` with one ``'`` before it, so that a spreadsheet shows
it as text instead of running it as a formula; an import takes that ``'`` off again.

Reading and checking rows (:func:`read_rows`) is pure; :func:`import_rows` is the thin edge
that batches them through the store, as :func:`course.subscribers.csv_export.export_rows` does
the other way.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO

from email_validator import EmailNotValidError, validate_email

from course.mail.addresses import SMTPUTF8_REASON, needs_smtputf8
from course.models.schedule import Schedule
from course.models.subscriber import STATUSES, SUPPRESSED, Subscriber
from course.progress import due_at, next_lesson
from course.store import Store
from course.subscribers.signup import MAX_ZONE, InvalidSignup, clean_name, known_zones

COLUMNS = ("email", "first_name", "timezone", "signup_time", "consent_source")
REQUIRED = ("email", "signup_time", "consent_source")
EXPORT_COLUMNS = (*COLUMNS, "status", "lessons_sent", "lessons_total", "last_lesson")
MAX_FIELD = 1000  # characters; longer is a bad row, not a crash
CSV_FIELD_LIMIT = 16 * 1024 * 1024  # what the csv module may read before it gives up on a field
BATCH = 1000  # rows per round trip to Redis
START_AT_SIGNUP, START_AT_IMPORT = "signup", "import"


class CsvFileError(ValueError):
    """The file as a whole cannot be imported (its header); one line, naming the file."""


@dataclass(frozen=True)
class Row:
    """One valid row, ready to become a subscriber."""

    line: int
    email: str
    first_name: str | None
    tz: str
    signup: datetime
    consent_source: str
    status: str = "active"  # the record starts as: active, pending, completed or suppressed
    # (unsubscribed, bounced, complained), as an export's status column says
    last_lesson: str | None = None


@dataclass(frozen=True)
class BadRow:
    line: int
    field: str
    reason: str
    raw: tuple[str, ...]

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ImportSummary:
    rows: int = 0
    imported: int = 0
    imported_suppressed: int = 0  # rows whose status says unsubscribed/bounced/complained
    existing: int = 0  # the address is already subscribed
    suppressed: int = 0  # the address unsubscribed, bounced or complained: never re-enrolled
    bad: list[BadRow] = field(default_factory=list)


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _header(names: list[str], source: str) -> list[str]:
    columns = [name.strip().lower() for name in names]
    for index, name in enumerate(columns):
        if name not in EXPORT_COLUMNS:
            raise CsvFileError(f"{source}:1: unknown column {names[index].strip()!r} "
                               f"(columns: {', '.join(COLUMNS)})")  # fmt: skip
        if name in columns[:index]:
            raise CsvFileError(f"{source}:1: column {name!r} appears twice")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise CsvFileError(f"{source}:1: missing column(s) {', '.join(missing)} "
                           f"(header: {','.join(COLUMNS)})")  # fmt: skip
    return columns


def _check_email(text: str) -> str:
    if needs_smtputf8(text):
        raise ValueError(f"cannot be mailed: {SMTPUTF8_REASON}")
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


@functools.lru_cache(maxsize=10_000)  # first names repeat: check each once
def _name_or_reason(text: str) -> tuple[str | None, str | None]:
    try:
        return clean_name(text), None
    except InvalidSignup:
        return None, "not a first name (letters, at most 3 words and 40 characters)"


def _check_name(text: str) -> str | None:
    name, reason = _name_or_reason(text)
    if reason:
        raise ValueError(reason)
    return name


def _check_zone(text: str, default: str) -> str:
    if not text:
        return default
    if len(text) > MAX_ZONE or text not in known_zones():
        raise ValueError(f"unknown time zone {text!r}")
    return text


def _check_time(text: str, now: datetime) -> datetime:
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 date and time: {text!r}") from None
    instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    if instant.year < 1971:
        raise ValueError(f"too long ago: {text!r}")
    if instant > now + timedelta(minutes=5):
        raise ValueError(f"in the future: {text!r}")
    return instant.astimezone(UTC)


def _status(text: str) -> str:
    value = text.lower()
    if value not in ("", *STATUSES):
        raise ValueError(f"unknown status {text!r} (statuses: {', '.join(STATUSES)})")
    if value in SUPPRESSED or value in ("pending", "completed"):
        return value
    return "active"  # active, paused or not given: in the course from their start


def read_rows(
    stream: IO[str], source: str, schedule: Schedule, now: datetime
) -> Iterator[Row | BadRow]:
    """Every data row of a subscriber CSV, checked: a :class:`Row` or a :class:`BadRow`.

    ``stream`` is opened with ``newline=""``. Line numbers are those of the file (the header is
    line 1; a quoted field over several lines counts them all). An address seen earlier in the
    file is a bad row naming both lines. Raises :class:`CsvFileError` for an unusable header.
    """
    with _field_limit(CSV_FIELD_LIMIT):
        reader = csv.reader(stream)
        try:
            names = next(reader, None)
        except csv.Error as exc:
            raise CsvFileError(f"{source}:1: {exc}") from None
        if not names or not any(name.strip() for name in names):
            raise CsvFileError(f"{source}: no header line (header: {','.join(COLUMNS)})")
        columns = _header(names, source)
        lessons = {lesson.id: lesson for lesson in schedule.lessons}
        default_zone = schedule.course.timezone.key
        seen: dict[str, int] = {}
        end = reader.line_num
        while True:
            line = end + 1
            try:
                raw = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                end = reader.line_num
                yield BadRow(line, "row", str(exc), ())
                continue
            end = reader.line_num
            if not raw or (len(raw) == 1 and not raw[0].strip()):
                continue  # a blank line
            row = tuple(raw)
            if len(raw) != len(columns):
                reason = f"{len(raw)} fields, the header has {len(columns)}"
                yield BadRow(line, "row", reason, row)
                continue
            cells = (from_spreadsheet(value.strip()) for value in raw)
            values = dict(zip(columns, cells, strict=True))
            problem = _first_problem(values)
            if problem:
                yield BadRow(line, problem[0], problem[1], row)
                continue
            try:
                checked = _check_row(values, lessons, default_zone, now)
            except _FieldError as exc:
                yield BadRow(line, exc.field, exc.reason, row)
                continue
            email = checked["email"]
            if email in seen:
                yield BadRow(line, "email", f"{email} is also on line {seen[email]}", row)
                continue
            seen[email] = line
            yield Row(line=line, **checked)


class _FieldError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula
# A value that itself starts with ' is escaped too, so that taking one ' off on import is never
# ambiguous: "'=a@example.org" (a valid address) comes back as itself, not as "=a@example.org".
_ESCAPED = (*FORMULA_START, "'")


def spreadsheet_safe(text: str) -> str:
    """A value for an exported cell: a leading ``'`` keeps a spreadsheet from running it
    as a formula (``=HYPERLINK(...)``, ``-Ann``); :func:`from_spreadsheet` takes it off."""
    return "'" + text if text.startswith(_ESCAPED) else text


def from_spreadsheet(text: str) -> str:
    """The value :func:`spreadsheet_safe` was given (a ``'`` is taken off only where it put
    one, so a hand-written ``'Ann`` stays as it is)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_ESCAPED) else text


def _first_problem(values: dict[str, str]) -> tuple[str, str] | None:
    for name, value in values.items():
        if len(value) > MAX_FIELD:
            return name, f"field longer than {MAX_FIELD} characters ({len(value)})"
        if "\ufffd" in value:
            return name, "not valid UTF-8 text"
        if "\x00" in value:
            return name, "contains a NUL character"
    for name in REQUIRED:
        if not values.get(name):
            return name, "required, but empty"
    return None


def _check_row(values: dict[str, str], lessons: dict, default_zone: str, now: datetime) -> dict:
    def check(name: str, rule: Callable[[], object]) -> object:
        try:
            return rule()
        except ValueError as exc:
            raise _FieldError(name, str(exc)) from None

    last = values.get("last_lesson") or None
    if last is not None and last not in lessons:
        raise _FieldError("last_lesson", f"no lesson {last!r} in the schedule")
    return {
        "email": check("email", lambda: _check_email(values["email"])),
        "first_name": check("first_name", lambda: _check_name(values.get("first_name", ""))),
        "tz": check("timezone", lambda: _check_zone(values.get("timezone", ""), default_zone)),
        "signup": check("signup_time", lambda: _check_time(values["signup_time"], now)),
        "consent_source": values["consent_source"],
        "status": check("status", lambda: _status(values.get("status", ""))),
        "last_lesson": last,
    }


def new_subscriber(
    store: Store, schedule: Schedule, row: Row, now: datetime, start_at: str
) -> tuple[Subscriber, float | None]:
    """The record an imported row becomes, and its due score (None: not in the due index).

    An active row starts the course clock at its signup time (or at ``now`` with
    ``start_at="import"``); lessons already due then catch up one a day, in order.
    """
    signup = row.signup.timestamp()
    status = row.status
    sub = Subscriber(
        id=store.new_id(),
        email=row.email,
        first_name=row.first_name,
        tz=row.tz,
        status=status,
        created=signup,
        source=row.consent_source,
    )
    if status == "pending":
        return sub, None  # waits for a confirmation
    start = signup if start_at == START_AT_SIGNUP else now.timestamp()
    lesson_day = schedule.lesson(row.last_lesson).day if row.last_lesson else None
    sub = replace(sub, start=start, last_lesson=row.last_lesson, last_day=lesson_day)
    if status != "active":
        return sub, None  # completed, or suppressed: never mailed again
    lesson = next_lesson(schedule, sub, set())
    if lesson is None:
        return replace(sub, status="completed"), None
    return sub, due_at(schedule, sub, lesson).timestamp()


def import_rows(
    store: Store,
    schedule: Schedule,
    rows: Iterable[Row | BadRow],
    now: datetime,
    start_at: str = START_AT_SIGNUP,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import the valid rows, a batch at a time; never over an existing or suppressed record.

    ``on_batch(rows_so_far)`` is called after each batch (a progress bar).
    """
    summary = ImportSummary()
    batch: list[Row] = []

    def flush() -> None:
        holders = store.find_many([row.email for row in batch])
        erased = store.erased_many([row.email for row in batch])
        fresh = []
        for row, holder, gone in zip(batch, holders, erased, strict=True):
            if gone or (holder is not None and holder.status in SUPPRESSED):
                summary.suppressed += 1
            elif holder is None:
                fresh.append(row)
            else:
                summary.existing += 1
        records = [new_subscriber(store, schedule, row, now, start_at) for row in fresh]
        if dry_run:
            outcomes = [1] * len(records)
        else:
            outcomes = store.add_many([sub for sub, _ in records], [due for _, due in records])
        for (sub, _), outcome in zip(records, outcomes, strict=True):
            if outcome == -1:
                summary.suppressed += 1  # erased between the check and the write
            elif outcome != 1:
                summary.existing += 1  # taken between the check and the write
            elif sub.status in SUPPRESSED:
                summary.imported_suppressed += 1
            else:
                summary.imported += 1
        batch.clear()
        if on_batch:
            on_batch(summary.rows)

    for item in rows:
        summary.rows += 1
        if isinstance(item, BadRow):
            summary.bad.append(item)
            continue
        batch.append(item)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return summary


def _shortened(raw: tuple[str, ...], limit: int = 200) -> list[str]:
    return [v if len(v) <= limit else f"{v[:limit]}…[{len(v)} characters]" for v in raw]


def write_errors(bad: list[BadRow], out: IO[str]) -> None:
    """Each bad row as ``line N: field: reason``, then the row as it was (long fields cut)."""
    for row in bad:
        out.write(f"{row}\n")
        if row.raw:
            text = io.StringIO()
            csv.writer(text, lineterminator="").writerow(_shortened(row.raw))
            out.write(f"    {text.getvalue()}\n")
