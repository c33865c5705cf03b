"""``course subscribers ...``: add, show, list, import, export, unsubscribe, pause, resume
and the quarantine. The privacy requests (export-data, erase) live in ``cli/privacy.py``."""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from course.cli.context import (
    Context,
    Failed,
    console,
    err_console,
    instant_or_now,
    parse_name,
    parse_zone,
    pass_ctx,
)
from course.cli.group import cli
from course.clock import utc_now


@cli.group()
def subscribers() -> None:
    """Add, inspect and unsubscribe subscribers."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", "first_name", default=None)
@click.option("--tz", "tz", default=None, help="IANA time zone (default: the course's).")
@click.option("--start", "start", default=None, help="Confirmation instant (default: now).")
@click.option("--pending", is_flag=True, help="Add unconfirmed (no lesson until confirmed).")
@pass_ctx
def subscribers_add(
    ctx: Context, email: str, first_name: str | None, tz: str | None, start: str | None,
    pending: bool,
) -> None:  # fmt: skip
    """Add a subscriber (confirmed unless --pending)."""
    from course.subscribers.lifecycle import enrol
    from course.subscribers.signup import check_email

    address = check_email(email)
    first_name = parse_name(first_name)
    if tz:
        parse_zone(tz)
    now = instant_or_now(start, "--start")
    schedule, _ = ctx.runtime.schedules.current()
    sub = enrol(ctx.runtime.store, schedule, address, first_name, tz, now,
                confirmed=not pending, events=ctx.runtime.events)  # fmt: skip
    console.print(f"added {sub.email} ({sub.status}, {sub.tz}) id {sub.id}")


def _find(ctx: Context, email: str):
    sub = ctx.runtime.store.find(email)
    if sub is None:
        raise Failed(f"{email}: no such subscriber")
    return sub


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def subscribers_show(ctx: Context, email: str, as_json: bool) -> None:
    """Show one subscriber and every lesson with its state."""
    from course.reports.subscriber import subscriber_report

    sub = _find(ctx, email)
    schedule, _ = ctx.runtime.schedules.current()
    report = subscriber_report(ctx.runtime.store, schedule, sub, utc_now())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    zone = ZoneInfo(sub.tz)
    console.print(f"[bold]{sub.email}[/bold] {sub.first_name or ''} — {sub.status}, {sub.tz}")
    table = Table()
    for column in ("lesson", "phase", "state", "when (local)", "detail"):
        table.add_column(column)
    for lesson in report["lessons"]:
        when = lesson.get("at") or lesson.get("due_at")
        local = (
            datetime.fromisoformat(when).astimezone(zone).strftime("%a %Y-%m-%d %H:%M")
            if when
            else ""
        )
        table.add_row(
            lesson["lesson_id"],
            lesson["phase_id"],
            lesson["state"],
            local,
            lesson.get("detail", ""),
        )
    console.print(table)


@subscribers.command("list")
@click.option("--status", type=click.Choice(
    ["pending", "active", "paused", "completed", "unsubscribed", "bounced", "complained"]
), default=None)  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(min=1), default=100)
@pass_ctx
def subscribers_list(ctx: Context, status: str | None, as_json: bool, limit: int) -> None:
    """List subscribers in signup order."""
    store = ctx.runtime.store
    found = (store.get(sub_id) for sub_id in store.signup_order(status, limit))
    rows = [sub for sub in found if sub is not None]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"id": s.id, "email": s.email, "status": s.status, "tz": s.tz,
                     "last_lesson": s.last_lesson}
                    for s in rows
                ],
                indent=2,
            )
        )  # fmt: skip
        return
    table = Table()
    for column in ("email", "name", "status", "time zone", "last lesson"):
        table.add_column(column)
    for s in rows:
        table.add_row(s.email, s.first_name or "", s.status, s.tz, s.last_lesson or "")
    console.print(table)
    console.print(f"{len(rows)} shown of {store.count()} subscribers")


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the bad rows (default: FILE.errors.txt).",
)
@click.option("--dry-run", is_flag=True, help="Check every row and count; write nothing.")
@click.option(
    "--start",
    "start_at",
    type=click.Choice(["signup", "import"]),
    default="signup",
    show_default=True,
    help="Start each course clock at the row's signup_time, or now.",
)
@click.option("--now", "now_text", default=None, hidden=True)
@pass_ctx
def subscribers_import(
    ctx: Context, file: Path, errors_path: Path | None, dry_run: bool, start_at: str,
    now_text: str | None,
) -> None:  # fmt: skip
    """Import subscribers from a CSV file (header: email,first_name,timezone,signup_time,
    consent_source). Bad rows go to the errors file; the valid ones are imported."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from course.subscribers.csv_import import CsvFileError, import_rows, read_rows, write_errors

    now = instant_or_now(now_text, "--now")
    schedule, _ = ctx.runtime.schedules.current()
    store = ctx.runtime.store
    try:
        raw = file.open("rb")
    except OSError as exc:
        raise click.BadParameter(f"{file}: {exc.strerror}", param_hint="FILE") from None
    size = max(1, file.stat().st_size)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=True,
    )
    with raw, progress:
        task = progress.add_task("import", total=size, rows=0)
        stream = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        try:
            rows = read_rows(stream, str(file), schedule, now)
            summary = import_rows(store, schedule, rows, now, start_at, dry_run,
                                  on_batch=lambda n: progress.update(task, completed=raw.tell(),
                                                                     rows=n))  # fmt: skip
        except CsvFileError as exc:
            raise Failed(str(exc)) from None
    verb = "would import" if dry_run else "imported"
    line = f"{file}: {summary.rows} rows; {verb} {summary.imported}"
    if summary.imported_suppressed:
        line += f" (+{summary.imported_suppressed} kept suppressed, as their status says)"
    line += f"; skipped {summary.existing} already subscribed, {summary.suppressed} unsubscribed"
    line += f" or suppressed; {len(summary.bad)} bad"
    click.echo(line)
    if summary.bad:
        target = errors_path or file.with_name(file.name + ".errors.txt")
        with target.open("w", encoding="utf-8") as out:
            write_errors(summary.bad, out)
        for bad in summary.bad[:3]:
            click.echo(f"{file}: {bad}", err=True)
        raise Failed(f"{len(summary.bad)} bad row(s), each with its reason in {target}")


@subscribers.command("export")
@click.argument("file", default="-", type=click.Path(path_type=Path, dir_okay=False,
                                                     allow_dash=True))  # fmt: skip
@click.option("--status", type=click.Choice(
    ["pending", "active", "paused", "completed", "unsubscribed", "bounced", "complained"]
), default=None)  # fmt: skip
@pass_ctx
def subscribers_export(ctx: Context, file: Path, status: str | None) -> None:
    """Write subscribers as CSV (the import's columns plus status and progress) to FILE or
    standard output (-)."""
    import csv

    from course.subscribers.csv_export import export_rows

    schedule, _ = ctx.runtime.schedules.current()
    rows = export_rows(ctx.runtime.store, schedule, status)
    if str(file) == "-":
        csv.writer(sys.stdout).writerows(rows)
        return
    count = -1  # the header is no subscriber
    with file.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        for row in rows:
            writer.writerow(row)
            count += 1
    click.echo(f"{file}: {count} subscribers")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_ctx
def subscribers_unsubscribe(ctx: Context, email: str) -> None:
    """Unsubscribe at once, for good (queued deliveries are not sent)."""
    from course.subscribers.lifecycle import unsubscribe, wait_for_sends

    sub = unsubscribe(ctx.runtime.store, _find(ctx, email), events=ctx.runtime.events)
    wait_for_sends(ctx.runtime.store, sub.id)  # a lesson already on its way goes first
    console.print(f"{sub.email}: {sub.status}")


@subscribers.command("pause")
@click.argument("email")
@click.option(
    "--days", type=click.IntRange(1, 365), default=None, help="Resume by itself after N days."
)
@click.option("--now", "now_text", default=None, hidden=True)
@pass_ctx
def subscribers_pause(ctx: Context, email: str, days: int | None, now_text: str | None) -> None:
    """Flare pause: stop the course clock (for N days, or until resumed)."""
    from course.subscribers.lifecycle import pause
    from course.timeline import add_local_days

    now = instant_or_now(now_text, "--now")
    found = _find(ctx, email)
    until = add_local_days(now, days, ZoneInfo(found.tz)) if days else None
    sub = pause(ctx.runtime.store, found, now, until)
    local = until.astimezone(ZoneInfo(sub.tz)).isoformat() if until else None
    console.print(f"{sub.email}: paused" + (f" until {local}" if local else " until resumed"))


@subscribers.command("resume")
@click.argument("email")
@click.option("--now", "now_text", default=None, hidden=True)
@pass_ctx
def subscribers_resume(ctx: Context, email: str, now_text: str | None) -> None:
    """Resume after a pause; remaining lessons move later by the time paused."""
    from course.subscribers.lifecycle import resume

    now = instant_or_now(now_text, "--now")
    schedule, _ = ctx.runtime.schedules.current()
    sub = resume(ctx.runtime.store, schedule, _find(ctx, email), now)
    console.print(f"{sub.email}: {sub.status}")


@subscribers.command("quarantine")
@click.option("--release", "release", default=None, metavar="ID|all",
              help="Hand one subscriber (or all) back to the next tick.")  # fmt: skip
@pass_ctx
def subscribers_quarantine(ctx: Context, release: str | None) -> None:
    """Subscribers a tick could not handle (a damaged record), with the reason."""
    store = ctx.runtime.store
    held = store.quarantined()
    if release:
        ids = list(held) if release == "all" else [release]
        for sub_id in ids:
            if not store.release(sub_id, utc_now().timestamp()):
                raise Failed(f"{sub_id}: not in quarantine")
        console.print(f"released {len(ids)}; the next tick looks at them again")
        return
    table = Table()
    for column in ("id", "email", "reason"):
        table.add_column(column)
    for sub_id, reason in held.items():
        email = store.email_of(sub_id) or ""
        table.add_row(sub_id, email, reason)
    console.print(table)
    console.print(f"{len(held)} in quarantine")
