"""``course stats``: results per phase and lesson, the funnel and the subscribers, printed
as tables, JSON or an HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from course.cli.context import Context, Failed, console, pass_ctx
from course.cli.group import cli
from course.clock import utc_now


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a self-contained HTML report (with a funnel chart) here.",
)
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@pass_ctx
def stats(ctx: Context, as_json: bool, html_path: Path | None, schedule_path: Path | None) -> None:
    """Results per phase and lesson, the funnel, subscribers by status, and which schedule
    the workers run; also validates the schedule file on disk (exit 1 if it is invalid)."""
    from course.reports import stats as course_stats
    from course.reports.outbound import outbound_lines, outbound_rows
    from course.reports.settling import settling_status
    from course.reports.stats_html import html_report
    from course.reports.stats_json import to_json

    if schedule_path is not None:
        ctx.settings = ctx.settings.with_(schedule_path=schedule_path)
    path = ctx.settings.schedule_path
    disk = course_stats.check_disk(path, ctx.settings.templates_dir)
    rt = ctx.runtime
    schedule, _ = rt.schedules.current()  # the last valid one when the file is invalid
    report = course_stats.collect(rt.store, schedule, utc_now(), disk)
    fine, settling = settling_status(ctx.settings.settling_window, rt.store.settling_facts())
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html_report(report), encoding="utf-8")
    outbound = rt.store.outbound_stats()
    if as_json:
        click.echo(json.dumps({**to_json(report), "settling": {"ok": fine, "detail": settling},
                               "webhooks_out": outbound_rows(outbound)}, indent=2))  # fmt: skip
    else:
        _print_stats(report)
        console.print(f"Uncertain sends: {settling}", markup=False, soft_wrap=True)
        if outbound or ctx.settings.webhooks:
            console.print("\n[bold]Outbound webhooks[/bold] (by endpoint host)")
            for line in outbound_lines(outbound, len(ctx.settings.webhooks)):
                console.print(f"  {line}", markup=False, soft_wrap=True)
        if html_path is not None:
            console.print(f"wrote {html_path}")
    if disk.error:
        first = disk.error.splitlines()[0]
        raise Failed(
            f"the schedule on disk is invalid (not publishable; the live version runs on): {first}"
        )


def _print_experiments(experiments) -> None:
    from rich.markup import escape

    from course.reports.experiments import HEADINGS, NOTE, rows

    for experiment in experiments:
        title = f"Subject experiment: {experiment.lesson_id}"
        out = Table(title=escape(title), title_justify="left", caption=escape(experiment.state),
                    caption_justify="left")  # fmt: skip
        for heading in HEADINGS:
            out.add_column(heading, justify="left" if heading == "subject" else "right")
        for cells in rows(experiment):
            out.add_row(*(escape(cell) for cell in cells))
        console.print(out)
    console.print(NOTE, markup=False, soft_wrap=True)


def _print_checkins(report) -> None:
    from rich.markup import escape

    from course.reports.checkins import HEADINGS, chart_lines, rows

    out = Table(title="Check-ins: “How has this week been?”", title_justify="left")
    out.add_column("lesson")
    for heading in HEADINGS:
        out.add_column(heading, justify="right")
    for kind, label, cells in rows(report):
        bold = kind == "phase"
        out.add_row(escape(label if bold else f"  {label}"), *cells, style="bold" if bold else None)
    console.print(out)
    console.print(f"Readers who answered any check-in: {report.readers}")
    console.print("\n[bold]Check-ins across the course[/bold]: shares of each lesson's answers")
    for line in chart_lines(report):
        console.print(line, markup=False)


def _print_broadcasts(rows) -> None:
    from rich.markup import escape

    from course.reports.broadcasts import COLUMNS, NOTE, broadcast_cells, broadcast_label

    out = Table(title="Broadcasts", title_justify="left")
    out.add_column("broadcast")
    for _, heading in COLUMNS:
        out.add_column(heading, justify="right")
    for row in rows:
        out.add_row(escape(broadcast_label(row)), *broadcast_cells(row))
    console.print(out)
    console.print(NOTE, markup=False, soft_wrap=True)


def _print_stats(report) -> None:
    from rich.markup import escape

    from course.reports.stats_table import (
        COLUMNS,
        EVENTS_NOTE,
        removed_rows,
        retention_line,
        schedule_lines,
        table_rows,
    )

    def table(rows, title: str) -> Table:
        out = Table(title=title, title_justify="left")
        out.add_column("lesson")
        for _, heading, _ in COLUMNS:
            out.add_column(heading, justify="right")
        for row in rows:
            bold = row.kind in ("phase", "total")
            label = escape(row.label if bold else f"  {row.label}")
            out.add_row(label, *row.cells, style="bold" if bold else None)
        return out

    when = report.generated_at.strftime("%Y-%m-%d %H:%M %Z")
    console.print(f"[bold]{escape(report.course_name)}[/bold] — stats at {when}")
    console.print(table(table_rows(report), "Results per lesson (shares are of sent)"))
    console.print(EVENTS_NOTE, soft_wrap=True)
    if report.exits_before_first:
        left = ", ".join(f"{n} {status}" for status, n in report.exits_before_first.items())
        console.print(f"Left before the first lesson: {left}")
    if report.removed:
        console.print(table(removed_rows(report), "Removed lessons (no longer in the schedule)"))
    if report.checkins is not None and report.checkins.lessons:
        _print_checkins(report.checkins)
    if report.broadcasts:
        _print_broadcasts(report.broadcasts)
    if report.experiments:
        _print_experiments(report.experiments)
    console.print("\n[bold]Funnel[/bold]: subscribers sent each lesson")
    top = max((step.sent for step in report.funnel), default=0)
    width = max((len(step.label) for step in report.funnel), default=0)
    for step in report.funnel:
        bar = "█" * round(30 * step.sent / top) if top else ""
        share = f" {step.share * 100:.0f}%" if step.share is not None else ""
        console.print(f"  {step.label:<{width}} {bar} {step.sent}{share}", markup=False)
    statuses = ", ".join(f"{name} {count}" for name, count in report.statuses.items())
    console.print(f"\n[bold]Subscribers[/bold]: {report.subscribers} ({statuses})")
    console.print(f"In quarantine: {report.quarantined}")
    console.print(retention_line(report), markup=False)
    console.print("\n[bold]Schedule[/bold]")
    for line in schedule_lines(report):
        console.print(f"  {line}", markup=False, soft_wrap=True)
