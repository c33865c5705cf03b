"""``course preview``: one email rendered for a sample subscriber, or every email as a
browsable gallery."""

from __future__ import annotations

from pathlib import Path

import click

from course.cli.context import Context, console, pass_ctx
from course.cli.group import cli
from course.mail.render import Renderer


@cli.command()
@click.argument("lesson_id", required=False)
@click.option("--all", "gallery", is_flag=True, help="Write every email to a browsable gallery.")
@click.option("--html", "fmt", flag_value="html", help="Print the HTML part.")
@click.option("--text", "fmt", flag_value="text", default=True, help="Print the text part.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the HTML here (with --all: the gallery's folder, default var/gallery).",
)
@click.option("--name", "first_name", default="Alex", help="Sample subscriber's first name.")
@click.option(
    "--variant",
    type=click.Choice(list("abcd")),
    default=None,
    help="A subject experiment's variant to show (default: a, the lesson's subject).",
)
@pass_ctx
def preview(
    ctx: Context,
    lesson_id: str | None,
    gallery: bool,
    fmt: str,
    out: Path | None,
    first_name: str,
    variant: str | None,
) -> None:
    """Render one email (LESSON_ID, or 'confirmation') or, with --all, every email."""
    from course.mail.samples import sample_email, write_gallery

    schedule = ctx.schedule()
    renderer = Renderer(schedule)
    if gallery:
        if lesson_id:
            raise click.UsageError("give a LESSON_ID or --all, not both")
        folder = out or ctx.settings.var_dir / "gallery"
        index = write_gallery(schedule, renderer, ctx.settings, folder, first_name)
        click.echo(f"{len(schedule.emails)} emails: {index.resolve()}")
        return
    if not lesson_id:
        raise click.UsageError("give a LESSON_ID, or --all for every email")
    try:
        lesson = schedule.lesson(lesson_id)
    except KeyError:
        ids = ", ".join(lesson.id for lesson in schedule.emails)
        raise click.BadParameter(
            f"no lesson {lesson_id!r} (lessons: {ids})", param_hint="LESSON_ID"
        ) from None
    if variant and "abcd".index(variant) >= len(lesson.subject_variants):
        have = ", ".join("abcd"[: len(lesson.subject_variants)]) or "none"
        raise click.BadParameter(
            f"{lesson_id} has no variant {variant!r} (its subject_variants: {have})",
            param_hint="--variant",
        )
    email = sample_email(renderer, ctx.settings, lesson, first_name, variant)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(email.html, encoding="utf-8")
        console.print(f"wrote {out}")
        return
    click.echo(f"Subject: {email.subject}")
    for letter, subject in zip("abcd", lesson.subject_variants, strict=False):
        click.echo(f"  variant {letter}: {subject}")
    click.echo("")
    click.echo(email.html if fmt == "html" else email.text)
