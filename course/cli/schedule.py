"""``course validate``, ``course diff`` and ``course timeline``: the schedule file, what an
edit of it changes (and for whom), and one subscriber's lesson calendar."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import click
from rich.table import Table

from course.cli.context import (
    Context,
    Failed,
    console,
    instant_or_now,
    parse_instant,
    parse_zone,
    pass_ctx,
)
from course.cli.group import cli
from course.models.schedule import Schedule
from course.schedule.load import sender_problems
from course.timeline import calendar
from course.validation import check_course, measure

__all__ = ["check_course", "measure_change"]


@cli.command()
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@click.option("--against", default=None, metavar="OLD",
              help="Also print what changed since OLD (a path or git:REV[:path]) and its impact "
                   "on the subscribers in the store.")  # fmt: skip
@click.option("--now", "now_text", default=None, help="With --against: the instant to count at.")
@pass_ctx
def validate(
    ctx: Context, schedule_path: Path | None, against: str | None, now_text: str | None
) -> None:
    """Check schedule.yaml, compile every template and read every email for a sample subscriber.

    Reports every problem, one line each with its file and line, and exits 1 if there is any:
    the schedule's and its templates' together, even when the schedule itself has mistakes.
    """
    path = schedule_path or ctx.settings.schedule_path
    schedule, problems = check_course(path)
    for problem in sender_problems(path):
        if ctx.settings.env != "dev":
            problems.append(f"{problem} (refused outside COURSE_ENV=dev)")
        else:
            click.echo(f"note: {problem} (fine in dev; production refuses to start)")
    for problem in problems:
        click.echo(problem, err=True)
    if problems or schedule is None:
        raise Failed(f"{len(problems)} problem(s) in the course's content")
    click.echo(
        f"{schedule.path}: ok — {len(schedule.phases)} phases, {schedule.lesson_count} lessons, "
        f"{len(schedule.emails)} emails checked"
    )
    if against:
        click.echo("")
        _print_diff(ctx, against, str(schedule.path), now_text, as_json=False, strict=False)


@cli.command()
@click.argument("old")
@click.argument("new", required=False)
@click.option("--now", "now_text", default=None, help="The instant to count at (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning.")
@click.option("--no-subscribers", "no_subscribers", is_flag=True,
              help="Compare the schedules only; do not read the store.")  # fmt: skip
@pass_ctx
def diff(
    ctx: Context, old: str, new: str | None, now_text: str | None, as_json: bool, strict: bool,
    no_subscribers: bool,
) -> None:  # fmt: skip
    """What changing the schedule from OLD to NEW does, to the lessons and to the people in the
    course. OLD and NEW are paths or git:REV[:path]; NEW defaults to the working schedule."""
    new = new or str(ctx.settings.schedule_path)
    _print_diff(ctx, old, new, now_text, as_json, strict, subscribers=not no_subscribers)


def _print_diff(
    ctx: Context, old_spec: str, new_spec: str, now_text: str | None, as_json: bool,
    strict: bool, subscribers: bool = True,
) -> None:  # fmt: skip
    from course.reports.impact import report_lines, to_json, warnings
    from course.schedule.source import SourceError, load_source

    now = instant_or_now(now_text, "--now")
    temps: list = []
    try:
        try:
            old, old_name = load_source(old_spec, ctx.settings.schedule_path, temps)
            new, new_name = load_source(new_spec, ctx.settings.schedule_path, temps)
        except SourceError as exc:
            raise click.BadParameter(str(exc), param_hint="OLD/NEW") from None
        changes, found = measure_change(ctx, old, new, now, subscribers)
    finally:
        for temp in temps:
            temp.cleanup()
    if as_json:
        click.echo(json.dumps(to_json(changes, found), indent=2))
    else:
        click.echo(f"{old_name} -> {new_name}")
        for line in report_lines(changes, found):
            click.echo(line)
        if subscribers and not changes.timing:
            click.echo("nobody's lessons or send times change (the store was not read)")
    if strict and warnings(changes, found):
        raise Failed("warnings (see above); without --strict they do not fail")


def measure_change(ctx: Context, old: Schedule, new: Schedule, now, subscribers: bool = True):
    """The lesson-level changes from ``old`` to ``new`` and what they do to the people in the
    course (see :func:`course.validation.measure_change`)."""
    return measure(ctx.store, old, new, now, subscribers)


@cli.command()
@click.option("--signup", required=True, help="Confirmation instant, ISO-8601.")
@click.option("--tz", "tz", default=None, help="IANA time zone (default: the course's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@pass_ctx
def timeline(
    ctx: Context, signup: str, tz: str | None, as_json: bool, schedule_path: Path | None
) -> None:
    """Print a subscriber's lesson calendar."""
    schedule = ctx.schedule(schedule_path)
    zone = parse_zone(tz) if tz else schedule.course.timezone
    start = parse_instant(signup, "--signup")
    entries = calendar(schedule, start, zone)
    if as_json:
        rows = [
            {
                "lesson_id": e.lesson_id,
                "phase_id": e.phase_id,
                "send_at": e.send_at.astimezone(zone).isoformat(),
            }
            for e in entries
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{schedule.course.name} — signup {start.isoformat()} ({zone.key})")
    for column in ("#", "lesson", "phase", "local send time", "UTC"):
        table.add_column(column)
    for n, entry in enumerate(entries, 1):
        local = entry.send_at.astimezone(zone)
        table.add_row(
            str(n),
            entry.lesson_id,
            entry.phase_id,
            local.strftime("%a %Y-%m-%d %H:%M %Z"),
            entry.send_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
