"""The ``course`` command. Exit status: 0 ok, 1 a check failed, 2 usage error."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import redis
from rich.console import Console
from rich.table import Table

from course.embedded import EmbeddedRedisError
from course.render import Renderer, RenderError
from course.schedule import ScheduleError, load_schedule
from course.settings import Settings, SettingsError
from course.store import DuplicateSubscriber
from course.subscriptions import SubscriptionError
from course.timeline import calendar

console = Console(highlight=False)
if not console.is_terminal:  # a pipe or a log file: room for whole table rows
    console.width = max(console.width, 120)
err_console = Console(stderr=True, highlight=False)

# Errors a user can cause: reported as one line, never a traceback.
USER_ERRORS = (
    ScheduleError,
    RenderError,
    SettingsError,
    SubscriptionError,
    DuplicateSubscriber,
    EmbeddedRedisError,
)


class Failed(click.ClickException):
    """A check failed: exit status 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"course: {self.format_message()}", err=True)


def parse_instant(value: str, param: str) -> datetime:
    """An ISO-8601 instant; one without an offset is taken as UTC."""
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 instant: {value!r}", param_hint=param) from None
    instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    if not 1970 <= instant.year <= 9000:  # leaves room for a course's length
        raise click.BadParameter(f"out of range: {value!r}", param_hint=param)
    return instant


def parse_zone(value: str, param: str = "--tz") -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {value!r}", param_hint=param) from None


class Context:
    """Settings, and the runtime built only by commands that need Redis."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._runtime = None

    @property
    def runtime(self):
        if self._runtime is None:
            from course.runtime import build_runtime

            self._runtime = build_runtime(self.settings)
        return self._runtime

    def schedule(self, path: Path | None = None):
        return load_schedule(path or self.settings.schedule_path)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="healing-roadmap-course")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The Fibromyalgia Healing Roadmap email course."""
    ctx.obj = Context(Settings.from_env())


@cli.command()
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None)
@pass_ctx
def validate(ctx: Context, schedule_path: Path | None) -> None:
    """Check schedule.yaml, compile every template and read every email for a sample subscriber.

    Reports every problem, one line each with its file and line, and exits 1 if there is any.
    """
    from course.content import check_content

    schedule = ctx.schedule(schedule_path)
    problems = check_content(schedule, Renderer(schedule))
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise Failed(f"{len(problems)} problem(s) in the course's content")
    click.echo(
        f"{schedule.path}: ok — {len(schedule.phases)} phases, {schedule.lesson_count} lessons, "
        f"{len(schedule.emails)} emails checked"
    )


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


@cli.command()
@click.option("--now", "now_text", default=None, help="The tick's instant (default: now).")
@click.option(
    "--inline", is_flag=True, help="Deliver in this process instead of handing to workers."
)
@pass_ctx
def tick(ctx: Context, now_text: str | None, inline: bool) -> None:
    """Run one tick: claim every lesson due by NOW and deliver it."""
    from course import engine
    from course.tasks import create_app, enqueuer

    rt = ctx.runtime
    now = parse_instant(now_text, "--now") if now_text else datetime.now(UTC)
    schedule, renderer = rt.schedules.current()
    totals = engine.DeliverResult()
    if inline:

        def enqueue(items, when):
            outcome = engine.deliver(rt.store, renderer, rt.transport, items, when, rt.links)
            for name in ("sent", "failed", "retrying", "uncertain", "skipped"):
                setattr(totals, name, getattr(totals, name) + getattr(outcome, name))

    else:
        enqueue = enqueuer(create_app(ctx.settings, rt.redis_url))
    result = engine.tick(rt.store, schedule, now, enqueue)
    line = f"tick {now.isoformat()}: claimed {result.claimed}, retried {result.redispatched}"
    line += f", uncertain {result.uncertain}, completed {result.completed}"
    if inline:
        line += f"; sent {totals.sent}, failed {totals.failed}, retrying {totals.retrying}"
        line += f", uncertain {totals.uncertain}, skipped {totals.skipped}"
    else:
        line += f"; {result.batches} batches handed to workers"
    console.print(line)


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
@pass_ctx
def preview(
    ctx: Context,
    lesson_id: str | None,
    gallery: bool,
    fmt: str,
    out: Path | None,
    first_name: str,
) -> None:
    """Render one email (LESSON_ID, or 'confirmation') or, with --all, every email."""
    from course.preview import sample_email, write_gallery

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
    email = sample_email(renderer, ctx.settings, lesson, first_name)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(email.html, encoding="utf-8")
        console.print(f"wrote {out}")
        return
    click.echo(f"Subject: {email.subject}\n")
    click.echo(email.html if fmt == "html" else email.text)


@cli.command()
@click.option("--days", type=click.IntRange(min=1), default=None, help="Simulated days.")
@click.option("--subscribers", "count", type=click.IntRange(1, 500), default=6)
@pass_ctx
def demo(ctx: Context, days: int | None, count: int) -> None:
    """Run the whole course for sample subscribers on simulated days (embedded Redis,
    a real worker process, the outbox transport)."""
    from course.demo import run_demo

    if not run_demo(ctx.settings, days=days, count=count, console=console):
        raise Failed("the demo's deliveries did not match the schedule (see above)")


@cli.command()
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=2)
@click.option("--host", default="127.0.0.1", show_default=True, help="The web app's address.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--no-web", is_flag=True, help="Run without the web app.")
@pass_ctx
def run(ctx: Context, concurrency: int, host: str, port: int, no_web: bool) -> None:
    """Run Redis (embedded unless REDIS_URL is set), a worker, beat and the web app until
    Ctrl-C."""
    from course.supervise import run_services

    web = None if no_web else (host, port)
    raise SystemExit(run_services(ctx.settings, concurrency=concurrency, console=console, web=web))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_ctx
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the subscriber web app (signup, confirm, unsubscribe, pause, webhook)."""
    import uvicorn

    from course.web import create_app

    app = create_app(ctx.settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=ctx.settings.forwarded_allow_ips,
        server_header=False,
        log_level="info",
    )


# subscribers


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
    from course.subscriptions import enrol
    from course.validation import check_email

    address = check_email(email)
    if tz:
        parse_zone(tz)
    now = parse_instant(start, "--start") if start else datetime.now(UTC)
    schedule, _ = ctx.runtime.schedules.current()
    sub = enrol(ctx.runtime.store, schedule, address, first_name, tz, now, confirmed=not pending)
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
    from course.report import subscriber_report

    sub = _find(ctx, email)
    schedule, _ = ctx.runtime.schedules.current()
    report = subscriber_report(ctx.runtime.store, schedule, sub)
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
    rows = []
    for sub_id in store.iter_ids():
        sub = store.get(sub_id)
        if sub is None or (status and sub.status != status):
            continue
        rows.append(sub)
        if len(rows) >= limit:
            break
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


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_ctx
def subscribers_unsubscribe(ctx: Context, email: str) -> None:
    """Unsubscribe at once, for good (queued deliveries are not sent)."""
    from course.subscriptions import unsubscribe, wait_for_sends

    sub = unsubscribe(ctx.runtime.store, _find(ctx, email))
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
    from course.subscriptions import pause
    from course.timeline import add_local_days

    now = parse_instant(now_text, "--now") if now_text else datetime.now(UTC)
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
    from course.subscriptions import resume

    now = parse_instant(now_text, "--now") if now_text else datetime.now(UTC)
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
            if not store.release(sub_id, datetime.now(UTC).timestamp()):
                raise Failed(f"{sub_id}: not in quarantine")
        console.print(f"released {len(ids)}; the next tick looks at them again")
        return
    table = Table()
    for column in ("id", "email", "reason"):
        table.add_column(column)
    for sub_id, reason in held.items():
        email = store.redis.hget(store.sub_key(sub_id), "email") or ""
        table.add_row(sub_id, email, reason)
    console.print(table)
    console.print(f"{len(held)} in quarantine")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="course", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("course: aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except SettingsError as exc:
        click.echo(f"course: {exc}", err=True)
        raise SystemExit(2) from None
    except USER_ERRORS as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"course: {line}" if not line.startswith(("/", ".")) else line, err=True)
        raise SystemExit(1) from None
    except redis.RedisError as exc:
        click.echo(f"course: Redis: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        click.echo(f"course: {exc}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
