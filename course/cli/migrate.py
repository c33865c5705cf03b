"""``course migrate [--dry-run] [--batch N] [--force]``: move the store to this release's
layout (course.store.migrate), with a progress bar and a summary line."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

import click

from course.cli.context import Context, Failed, pass_ctx
from course.cli.group import cli
from course.clock import utc_now


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Records a step reads per batch (each batch is one short command).")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Run although a worker, beat or the web app was seen lately.")  # fmt: skip
@pass_ctx
def migrate(ctx: Context, dry_run: bool, batch: int, force: bool) -> None:
    """Move the store from an older layout to this release's, in batches; a run that was
    stopped goes on where it stopped. Stop the workers, beat and the web app first."""
    from course.store.layout import LAYOUT
    from course.store.migrate import HEARTBEAT_MAX_AGE, migrate_store

    store = ctx.any_store
    if not dry_run and not force:
        running = store.live_processes(utc_now().timestamp())
        if running:
            raise Failed(
                f"{', '.join(running)} seen running in the last {HEARTBEAT_MAX_AGE} s: stop the "
                "workers, beat and the web app first (or --force if they are gone)"
            )
    with ExitStack() as bars:
        shown: dict[int, Any] = {}  # click's progress bar of each step

        def progress(step, seen: int, total: int) -> None:
            if step.source not in shown:
                label = f"layout {step.source} -> {step.source + 1}"
                shown[step.source] = bars.enter_context(
                    click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
                )
            bar = shown[step.source]
            bar.update(max(0, min(seen, total) - bar.pos))

        report = migrate_store(store, batch, dry_run, progress)
    if report.start is None:
        verb = "would be stamped" if dry_run else "stamped"
        click.echo(f"empty store: {verb} with layout {LAYOUT}; nothing to move")
        return
    if not report.steps:
        click.echo(f"store already at layout {LAYOUT}: nothing to do")
        return
    for step in report.steps:
        resumed = " (resumed)" if step.resumed else ""
        verb = "would change" if dry_run else "changed"
        click.echo(f"layout {step.source} -> {step.source + 1}{resumed} ({step.title}): "
                   f"{step.seen} records read, {step.changed} {verb}")  # fmt: skip
    if dry_run:
        click.echo(f"dry run: layout {report.start} -> {report.end} would change what is "
                   "above; nothing was written")  # fmt: skip
    else:
        click.echo(f"migrated: layout {report.start} -> {report.end} in {report.seconds:.2f} s")
