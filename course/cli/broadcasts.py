"""``course broadcast create|preview|test|send|status|cancel|list``: one-off emails to a
segment (see README, "Broadcasts"). Thin: the operations are course.broadcasts.service."""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path

import click

from course.cli.context import Context, Failed, console, pass_ctx
from course.cli.group import cli
from course.clock import utc_now


class BadBroadcast(click.ClickException):
    """A mistake in what was asked: one line, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"broadcast: {self.format_message()}", err=True)


def _fail(exc: Exception) -> click.ClickException:
    if getattr(exc, "usage", False):
        return BadBroadcast(str(exc))
    return Failed(str(exc))


def _hhmm(_ctx: click.Context, _param: click.Parameter, value: str | None) -> time | None:
    from course.broadcasts.timing import parse_hhmm

    if value is None:
        return None
    try:
        return parse_hhmm(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.group()
def broadcast() -> None:
    """Broadcasts: one email to the readers a segment chooses (see README, "Broadcasts")."""


@broadcast.command("create")
@click.option("--template", required=True, help="A Markdown file under templates/, e.g. "
              "broadcasts/program-open.md.")  # fmt: skip
@click.option("--subject", required=True, help="The email's subject.")
@click.option("--to", "expression", required=True, help="The segment, e.g. 'status:completed'.")
@click.option("--at-local", callback=_hhmm, default=None,
              help="Send at this HH:MM in each reader's own zone (default: at once).")  # fmt: skip
@click.option("--include-paused", is_flag=True, help="Also readers who paused the course.")
@click.option("--send", "send_now", is_flag=True,
              help="Send it as soon as it is stored, as `send ID` would.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def create(ctx: Context, template: str, subject: str, expression: str, at_local: time | None,
           include_paused: bool, send_now: bool, as_json: bool) -> None:  # fmt: skip
    """Check and store a draft broadcast; prints its id. Nothing is sent until `send`, or
    with `--send`, which sends it as soon as it is stored (one command)."""
    from course.broadcasts.service import BroadcastError, create_broadcast

    rt = ctx.runtime
    schedule, renderer = rt.schedules.current()
    try:
        b = create_broadcast(rt.store, schedule, renderer, ctx.settings.templates_dir,
                             template=template, subject=subject, expression=expression,
                             at_local=at_local, include_paused=include_paused,
                             now=utc_now())  # fmt: skip
    except BroadcastError as exc:
        raise _fail(exc) from None
    if as_json and not send_now:
        click.echo(json.dumps(_as_dict(b), indent=2, ensure_ascii=False))
        return
    if not as_json:
        click.echo(b.id)
    if send_now:
        sent = _send(ctx, b.id, quiet=as_json)
        if as_json:
            click.echo(json.dumps(_as_dict(sent), indent=2, ensure_ascii=False))


@broadcast.command("preview")
@click.argument("broadcast_id")
@click.option("--html", "fmt", flag_value="html", help="Print the HTML part.")
@click.option("--text", "fmt", flag_value="text", default=True, help="Print the text part.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the HTML here.")
@click.option("--name", "first_name", default="Alex", help="Sample reader's first name.")
@pass_ctx
def preview(ctx: Context, broadcast_id: str, fmt: str, out: Path | None, first_name: str) -> None:
    """The broadcast's email as a sample reader gets it."""
    from course.broadcasts.service import BroadcastError, preview_email

    rt = ctx.runtime
    _, renderer = rt.schedules.current()
    try:
        email = preview_email(rt.store, renderer, ctx.settings, broadcast_id, first_name)
    except BroadcastError as exc:
        raise _fail(exc) from None
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(email.html, encoding="utf-8")
        console.print(f"wrote {out}", markup=False)
        return
    click.echo(f"Subject: {email.subject}\n")
    click.echo(email.html if fmt == "html" else email.text)


@broadcast.command("test")
@click.argument("broadcast_id")
@click.option("--to", "address", required=True, help="Where to send it (your own address).")
@click.option("--name", "first_name", default="Alex", help="Sample reader's first name.")
@pass_ctx
def test(ctx: Context, broadcast_id: str, address: str, first_name: str) -> None:
    """Send the broadcast once to ADDRESS, marked [TEST], with links that act on nobody;
    recorded in no ledger."""
    from course.broadcasts.service import BroadcastError, send_test_email
    from course.subscribers.signup import check_email

    rt = ctx.runtime
    _, renderer = rt.schedules.current()
    to = check_email(address)
    try:
        email, result = send_test_email(rt.store, renderer, ctx.settings, rt.transport,
                                        broadcast_id, to, first_name)  # fmt: skip
    except BroadcastError as exc:
        raise _fail(exc) from None
    finally:
        rt.close()
    detail = f" (provider id {result.provider_message_id})" if result.provider_message_id else ""
    console.print(f"sent test of broadcast {broadcast_id} to {to} via {ctx.settings.transport}"
                  f"{detail}: {email.subject}", markup=False)  # fmt: skip


@broadcast.command("send")
@click.argument("broadcast_id")
@pass_ctx
def send(ctx: Context, broadcast_id: str) -> None:
    """Claim every reader of the segment (once each, whatever happens); workers send each
    claim when its time comes. Running it again claims nobody twice."""
    _send(ctx, broadcast_id)


def _send(ctx: Context, broadcast_id: str, quiet: bool = False):
    """Send (claim) the broadcast and say what it did, unless ``quiet``; the broadcast."""
    from course.broadcasts.service import BroadcastError, send_broadcast

    rt = ctx.runtime
    schedule, _ = rt.schedules.current()
    try:
        report = send_broadcast(rt.store, schedule, broadcast_id, utc_now(), events=rt.events)
    except BroadcastError as exc:
        raise _fail(exc) from None
    b = report.broadcast
    if report.stopped:
        raise Failed(f"broadcast {b.id} was cancelled while claiming ({report.claimed} claimed)")
    if quiet:
        return b
    if report.was_sent:
        click.echo(f"broadcast {b.id}: already sent ({b.claimed} recipients)")
        return b
    line = f"broadcast {b.id}: claimed {report.claimed}"
    if report.already:
        line += f" (and {report.already} claimed before)"
    if report.refused:
        line += f"; {report.refused} no longer mailable"
    if report.first_at and report.last_at and b.at_local:
        line += f"; sending from {report.first_at:%Y-%m-%d %H:%M} to {report.last_at:%H:%M} UTC"
    click.echo(line)
    return b


@broadcast.command("status")
@click.argument("broadcast_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(ctx: Context, broadcast_id: str, as_json: bool) -> None:
    """The broadcast and its counts."""
    from course.broadcasts.service import BroadcastError, get_broadcast

    try:
        b = get_broadcast(ctx.runtime.store, broadcast_id)
    except BroadcastError as exc:
        raise _fail(exc) from None
    data = _as_dict(b)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for name, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "—"
        console.print(f"{name:>15}  {value}", markup=False)


@broadcast.command("cancel")
@click.argument("broadcast_id")
@pass_ctx
def cancel(ctx: Context, broadcast_id: str) -> None:
    """Cancel: nobody more is claimed and nothing not yet handed to the provider is sent."""
    from course.broadcasts.service import BroadcastError, cancel_broadcast

    try:
        stopped = cancel_broadcast(ctx.runtime.store, broadcast_id, utc_now())
    except BroadcastError as exc:
        raise _fail(exc) from None
    click.echo(f"broadcast {broadcast_id}: cancelled; {stopped} waiting sends stopped")


@broadcast.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """Every broadcast, newest first."""
    from course.broadcasts.service import list_broadcasts

    rows = [_as_dict(b) for b in list_broadcasts(ctx.runtime.store)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no broadcasts")
    for row in rows:
        c = row["counts"]
        console.print(f"{row['id']}  {row['status']:<9}  {row['created'][:16]}  "
                      f"claimed {c['claimed']}, sent {c['sent']}  {row['subject']}  "
                      f"to {row['to']}", markup=False)  # fmt: skip


def _as_dict(b) -> dict:
    from course.reports.broadcasts import broadcast_row

    return broadcast_row(b)
