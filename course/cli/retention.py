"""``course retention run [--dry-run]``: erase now what the retention policy says is kept
too long (the daily beat task does the same; see course.subscribers.retention)."""

from __future__ import annotations

import json

import click

from course.cli.context import Context, Failed, console, pass_ctx
from course.cli.group import cli
from course.clock import utc_now


@cli.group()
def retention() -> None:
    """Personal data kept no longer than the policy (COURSE_RETENTION_MONTHS and
    COURSE_RETENTION_PENDING_DAYS)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be erased; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def retention_run(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Erase readers who completed or left more than COURSE_RETENTION_MONTHS ago (those who
    left keep only the hash that stops them being mailed again) and signups never confirmed
    after COURSE_RETENTION_PENDING_DAYS."""
    from course.subscribers.retention import run_retention

    s = ctx.settings
    run = run_retention(ctx.store, utc_now(), s.retention_months, s.retention_pending_days,
                        dry_run=dry_run)  # fmt: skip
    if run.busy:
        raise Failed("another retention run is going on (the daily task?); try again later")
    if as_json:
        click.echo(json.dumps({**run.__dict__, "total": run.total}, indent=2))
    else:
        verb = "would erase" if dry_run else "erased"
        console.print(
            f"retention ({s.retention_months} months after leaving, {s.retention_pending_days}"
            f" days unconfirmed): {verb} {run.erased['left']} who left, "
            f"{run.erased['completed']} who completed, {run.expired} never confirmed",
            markup=False,
        )
        if not run.backfill_done:
            console.print(
                "older records are not all indexed yet: "
                + ("a run (not dry) indexes them first" if dry_run else "the next run goes on"),
                markup=False,
            )
        elif run.more:
            console.print("stopped at the time limit: the next run goes on", markup=False)
