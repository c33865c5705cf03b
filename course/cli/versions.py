"""``course publish``, ``course versions`` and ``course rollback``: the working files become
the live version only through the diff and the gate.

Publishing validates the working files as ``course validate`` does (an invalid course is
never published), prints what the change does to the people in the course (as ``course diff``
does), and asks before it publishes; without a terminal it wants ``--yes``. A version that
removes a lesson someone is due for within the hour always wants ``--yes``, saying why.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from course.cli.context import Context, Failed, console, instant_or_now, pass_ctx
from course.cli.group import cli
from course.cli.schedule import check_course, measure_change
from course.clock import utc_now
from course.mail.render import RenderError
from course.models.schedule import Schedule
from course.schedule import ScheduleError
from course.schedule.bundle import ExportError, export_files, load_contents
from course.schedule.diff import changed_files
from course.schedule.load import sender_problems
from course.schedule.publish import publish_files, publish_version, working_version
from course.store.versions import ScheduleVersions, StaleLive, VersionError, clean_text


def _author(ctx: Context, author: str | None) -> str:
    return clean_text(author or ctx.settings.publisher, 100) or "unknown"


def _live_schedule(versions: ScheduleVersions, vid: str, reserved: bool):
    """A saved version loaded as a worker would load it (its private folder with it)."""
    try:
        schedule, _, unpacked = load_contents(versions.files(vid), reserved)
    except (ScheduleError, RenderError) as exc:
        raise Failed(f"version {vid} cannot be loaded: {exc}") from None
    return schedule, unpacked


def _gate(
    ctx: Context,
    versions: ScheduleVersions,
    live: str | None,
    target: str,
    new: Schedule,
    new_files: dict[str, bytes],
    label: str,
    yes: bool,
    now: datetime,
) -> None:
    """Print what going from the live version to ``target`` changes, and stop unless it may
    go ahead: ``--yes``, or a "y" at the terminal (never for a removal due within the hour)."""
    if live is None:
        click.echo(f"no version is live yet: {target} ({label}) will be the first")
    else:
        old, unpacked = _live_schedule(versions, live, ctx.settings.env == "dev")
        try:
            from course.reports.impact import report_lines

            changes, found = measure_change(ctx, old, new, now)
        finally:
            unpacked.close()
        click.echo(f"{live} (live) -> {target} ({label})")
        for line in [
            *report_lines(changes, found),
            *changed_files(versions.files(live), new_files),
        ]:
            click.echo(line)
        soon = {k: n for k, n in (found.removed_soon if found else {}).items() if n}
        if soon:
            said = ", ".join(f"{lesson} ({n} due within the hour)" for lesson, n in soon.items())
            click.echo(f"this version removes lessons people are due for now: {said}")
            if not yes:
                raise Failed(
                    "not published: removing a lesson someone is due for within the hour "
                    "needs --yes (they will get their next lesson instead)"
                )
    if yes:
        return
    if not sys.stdin.isatty():
        raise Failed("not published: confirm with --yes (there is no terminal to ask)")
    if not click.confirm(f"publish {target}?", default=False):
        raise Failed("not published")


@cli.command()
@click.option("--message", "-m", default="", help="Why: shown in `course versions` and stats.")
@click.option("--yes", "-y", is_flag=True, help="Publish without asking.")
@click.option("--author", default=None, help="Who publishes (default: COURSE_PUBLISHER or $USER).")
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@click.option("--now", "now_text", default=None, help="The instant to count the impact at.")
@pass_ctx
def publish(
    ctx: Context, message: str, yes: bool, author: str | None, schedule_path: Path | None,
    now_text: str | None,
) -> None:  # fmt: skip
    """Check the working files, show what they change against the live version, and make
    them the live version that every worker and the web app run."""
    path = schedule_path or ctx.settings.schedule_path
    dev = ctx.settings.env == "dev"
    schedule, problems = check_course(path)
    if not dev:
        problems += [f"{p} (refused outside COURSE_ENV=dev)" for p in sender_problems(path)]
    for problem in problems:
        click.echo(problem, err=True)
    if problems or schedule is None:
        raise Failed(f"not published: {len(problems)} problem(s) in the course's content")
    templates = None if schedule_path else ctx.settings.templates_dir
    try:
        candidate = working_version(path, templates, reserved_sender=dev)
    except (ScheduleError, RenderError) as exc:
        raise Failed(f"not published: {exc}") from None
    versions = ctx.store.schedule_versions()
    live = versions.live()
    if candidate.id == live:
        click.echo(f"nothing changed: the working files are version {live}, already live")
        return
    now = instant_or_now(now_text, "--now")
    _gate(ctx, versions, live, candidate.id, candidate.schedule, candidate.contents,
          "the working files", yes, now)  # fmt: skip
    who = _author(ctx, author)
    try:
        publish_files(versions, candidate, live, who, message, "publish", utc_now())
    except StaleLive as exc:
        raise Failed(f"not published: {exc}") from None
    click.echo(f"published {candidate.id} by {who}: workers and the web app run it within seconds")


@cli.command()
@click.argument("version", required=False)
@click.option("--message", "-m", default="", help="Why (default: rollback to VERSION).")
@click.option("--yes", "-y", is_flag=True, help="Roll back without asking.")
@click.option("--author", default=None, help="Who (default: COURSE_PUBLISHER or $USER).")
@click.option("--now", "now_text", default=None, help="The instant to count the impact at.")
@pass_ctx
def rollback(
    ctx: Context, version: str | None, message: str, yes: bool, author: str | None,
    now_text: str | None,
) -> None:  # fmt: skip
    """Make an earlier version live again (default: the one live before the live one),
    through the same diff and gate as publish. Lessons already sent are never sent again."""
    versions = ctx.store.schedule_versions()
    live = versions.live()
    if live is None:
        raise Failed("nothing is published yet: there is nothing to roll back")
    if version is None:
        earlier = [e.id for e in versions.history() if e.id != live]
        if not earlier:
            raise Failed(f"{live} is the only version that was ever live")
        target = earlier[-1]
    else:
        found = versions.resolve(version)
        if found is None:
            raise click.BadParameter(f"no version {version!r} (see `course versions`)",
                                     param_hint="VERSION")  # fmt: skip
        target = found
    if target == live:
        click.echo(f"nothing changed: {target} is already live")
        return
    schedule, unpacked = _live_schedule(versions, target, ctx.settings.env == "dev")
    try:
        files = versions.files(target)
        _gate(ctx, versions, live, target, schedule, files, "rollback", yes,
              instant_or_now(now_text, "--now"))  # fmt: skip
    finally:
        unpacked.close()
    who = _author(ctx, author)
    try:
        publish_version(versions, target, live, who, message or f"rollback to {target}",
                        "rollback", utc_now())  # fmt: skip
    except (StaleLive, VersionError) as exc:
        raise Failed(f"not rolled back: {exc}") from None
    click.echo(f"rolled back to {target} by {who}: workers and the web app run it within seconds")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def versions(click_ctx: click.Context, as_json: bool) -> None:
    """List every saved version, newest first, which one is live and which is the draft;
    `course versions export VERSION DIR` writes one's files to a folder."""
    if click_ctx.invoked_subcommand is None:
        _list_versions(click_ctx.find_object(Context), as_json)


@versions.command("export")
@click.argument("version")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
@pass_ctx
def export(ctx: Context, version: str, folder: Path, force: bool) -> None:
    """Write the files of VERSION (a published version or the draft; `live` and `draft`
    name those) to FOLDER, as schedule.yaml and templates/..., so the repository can
    follow what was published in the browser."""
    store = ctx.store.schedule_drafts()
    if version in ("live", "draft"):
        found = store.live() if version == "live" else getattr(store.draft(), "id", None)
    else:
        found = store.resolve(version)
    if found is None:
        raise click.BadParameter(f"no version {version!r} (see `course versions`)",
                                 param_hint="VERSION")  # fmt: skip
    contents = store.files(found)
    if not contents:
        raise Failed(f"version {found} has no files in the store")
    try:
        written = export_files(contents, folder, force)
    except ExportError as exc:
        raise Failed(f"not exported: {exc}") from None
    click.echo(f"exported {found}: {len(written)} file(s) to {folder}")


def _list_versions(ctx: Context, as_json: bool) -> None:
    store = ctx.store.schedule_drafts()
    draft = getattr(store.draft(), "id", None)
    live = store.live()
    saved = store.all()
    went_live: dict[str, datetime] = {}
    for entry in store.history():
        went_live[entry.id] = entry.at  # the latest time each one became live
    if as_json:
        rows = [
            {"id": v.id, "live": v.id == live, "draft": v.id == draft,
             "created": v.created.isoformat(),
             "author": v.author, "message": v.message, "parent": v.parent,
             "last_live_at": went_live[v.id].isoformat() if v.id in went_live else None}
            for v in saved
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    if not saved:
        click.echo("no version published yet (`course publish` publishes the working files)")
        return
    table = Table(title="Versions (newest first; * live, d the draft)")
    for column in ("", "version", "saved (UTC)", "by", "message", "last live from (UTC)"):
        table.add_column(column)
    for v in saved:
        since = went_live.get(v.id)
        table.add_row(
            "*" if v.id == live else "d" if v.id == draft else "", v.id,
            v.created.strftime("%Y-%m-%d %H:%M"),
            Text(v.author), Text(v.message), since.strftime("%Y-%m-%d %H:%M") if since else "",
        )  # fmt: skip
    console.print(table)
