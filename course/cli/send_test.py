"""``course send-test``: one email of the schedule on disk sent to your own address through
the configured transport, marked as a test and recorded nowhere."""

from __future__ import annotations

from pathlib import Path

import click

from course.cli.context import Context, Failed, console, pass_ctx
from course.cli.group import cli
from course.mail.render import Renderer


@cli.command("send-test")
@click.argument("lesson_id")
@click.option("--to", "address", required=True, help="Where to send it (your own address).")
@click.option("--name", "first_name", default="Alex", help="Sample subscriber's first name.")
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@pass_ctx
def send_test(
    ctx: Context, lesson_id: str, address: str, first_name: str, schedule_path: Path | None
) -> None:
    """Send one email (LESSON_ID, 'confirmation' or 'course-complete') of the schedule file
    on disk to ADDRESS through the configured transport: subject marked [TEST], links that
    act on nobody, never recorded in any subscriber's ledger."""
    from course.mail.send_test import build_test_email
    from course.subscribers.signup import check_email
    from course.transport import (
        PermanentSendError,
        TransientSendError,
        UncertainSendError,
        make_transport,
    )

    schedule = ctx.schedule(schedule_path)
    try:
        lesson = schedule.lesson(lesson_id)
    except KeyError:
        ids = ", ".join(lesson.id for lesson in schedule.emails)
        raise Failed(f"no lesson {lesson_id!r} in {schedule.path} (lessons: {ids})") from None
    to = check_email(address)
    email = build_test_email(Renderer(schedule), ctx.settings, lesson, to, first_name)
    transport = make_transport(ctx.settings)
    try:
        result = transport.send(email)
    except (TransientSendError, PermanentSendError, UncertainSendError) as exc:
        raise Failed(f"{ctx.settings.transport}: not sent: {exc.reason}") from None
    finally:
        transport.close()
    detail = f" (provider id {result.provider_message_id})" if result.provider_message_id else ""
    console.print(
        f"sent test of {lesson.id} to {to} via {ctx.settings.transport}{detail}: {email.subject}",
        markup=False,
    )
