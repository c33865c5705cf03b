"""The ``course`` command. Exit status: 0 ok, 1 a check failed, 2 usage error."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.table import Table

from course.mail.render import Renderer, RenderError
from course.schedule import ScheduleError, load_schedule
from course.settings import Settings, SettingsError
from course.store import DuplicateSubscriber, StoreError
from course.store.embedded import EmbeddedRedisError
from course.subscribers.lifecycle import SubscriptionError
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
@click.option("--against", default=None, metavar="OLD",
              help="Also print what changed since OLD (a path or git:REV[:path]) and its impact "
                   "on the subscribers in the store.")  # fmt: skip
@click.option("--now", "now_text", default=None, help="With --against: the instant to count at.")
@pass_ctx
def validate(
    ctx: Context, schedule_path: Path | None, against: str | None, now_text: str | None
) -> None:
    """Check schedule.yaml, compile every template and read every email for a sample subscriber.

    Reports every problem, one line each with its file and line, and exits 1 if there is any.
    """
    from course.mail.checks import check_content

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
    from course.schedule.diff import compare, impact, report_lines, to_json, warnings
    from course.schedule.source import SourceError, load_source

    now = parse_instant(now_text, "--now") if now_text else datetime.now(UTC)
    temps: list = []
    try:
        try:
            old, old_name = load_source(old_spec, ctx.settings.schedule_path, temps)
            new, new_name = load_source(new_spec, ctx.settings.schedule_path, temps)
        except SourceError as exc:
            raise click.BadParameter(str(exc), param_hint="OLD/NEW") from None
        changes = compare(old, new)
        found = None
        if subscribers and changes.timing:  # else nobody's lessons or send times change
            store = ctx.runtime.store
            found = impact(changes, old, new, _scan(store), now)
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


def _scan(store, chunk: int = 1000):
    """Every subscriber with their ledger's lesson ids, read a pipelined chunk at a time."""
    ids: list[str] = []
    for sub_id in store.iter_ids(batch=chunk):
        ids.append(sub_id)
        if len(ids) >= chunk:
            yield from store.get_many(ids)
            ids = []
    if ids:
        yield from store.get_many(ids)


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
    began = time.monotonic()
    schedule, renderer = rt.schedules.current()
    totals = engine.DeliverResult()
    if inline:

        def clock() -> datetime:
            """The tick's instant running on, so each send is stamped when it starts, as a
            worker's are (tasks._wall_clock); from --now too, where the wall clock would
            never be later than a simulated instant ahead of it."""
            return now + timedelta(seconds=time.monotonic() - began)

        def enqueue(items, when):
            outcome = engine.deliver(
                rt.store, renderer, rt.transport, items, when, rt.links, clock=clock
            )
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
    email = sample_email(renderer, ctx.settings, lesson, first_name)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(email.html, encoding="utf-8")
        console.print(f"wrote {out}")
        return
    click.echo(f"Subject: {email.subject}\n")
    click.echo(email.html if fmt == "html" else email.text)


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

    if schedule_path is not None:
        ctx.settings = ctx.settings.with_(schedule_path=schedule_path)
    path = ctx.settings.schedule_path
    disk = course_stats.check_disk(path, ctx.settings.templates_dir)
    rt = ctx.runtime
    schedule, _ = rt.schedules.current()  # the last valid one when the file is invalid
    report = course_stats.collect(rt.store, schedule, datetime.now(UTC), disk)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(course_stats.html_report(report), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(course_stats.to_json(report), indent=2))
    else:
        _print_stats(report)
        if html_path is not None:
            console.print(f"wrote {html_path}")
    if disk.error:
        first = disk.error.splitlines()[0]
        raise Failed(f"the schedule on disk is invalid (workers keep the last valid one): {first}")


def _print_stats(report) -> None:
    from rich.markup import escape

    from course.reports.stats import COLUMNS, EVENTS_NOTE, removed_rows, schedule_lines, table_rows

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
    console.print(EVENTS_NOTE)
    if report.exits_before_first:
        left = ", ".join(f"{n} {status}" for status, n in report.exits_before_first.items())
        console.print(f"Left before the first lesson: {left}")
    if report.removed:
        console.print(table(removed_rows(report), "Removed lessons (no longer in the schedule)"))
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
    console.print("\n[bold]Schedule[/bold]")
    for line in schedule_lines(report):
        console.print(f"  {line}", markup=False, soft_wrap=True)


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


@cli.command()
@click.option("--days", type=click.IntRange(min=1), default=None, help="Simulated days.")
@click.option("--subscribers", "count", type=click.IntRange(1, 500), default=6)
@pass_ctx
def demo(ctx: Context, days: int | None, count: int) -> None:
    """Run the whole course for sample subscribers on simulated days (embedded Redis,
    a real worker process, the outbox transport)."""
    from course.local.demo import run_demo

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
    from course.local.supervise import run_services

    web = None if no_web else (host, port)
    raise SystemExit(run_services(ctx.settings, concurrency=concurrency, console=console, web=web))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_ctx
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the subscriber web app (signup, confirm, unsubscribe, pause, webhook)."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from course.logs import json_config
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
        log_config=json_config("web") if ctx.settings.log_format == "json" else LOGGING_CONFIG,
    )


BEAT_MAX_AGE = 180  # seconds: three missed ticks


@cli.group()
def health() -> None:
    """Health checks for containers and process supervisors: exit 0 healthy, 1 not."""


@health.command("beat")
@click.option("--max-age", type=click.IntRange(min=1), default=BEAT_MAX_AGE, show_default=True,
              help="Seconds since beat last started or sent a tick.")  # fmt: skip
@pass_ctx
def health_beat(ctx: Context, max_age: int) -> None:
    """Whether beat runs: it records in Redis when it starts and each time it sends a tick."""
    from course.store import Store, connect
    from course.store.embedded import running_url

    url = ctx.settings.redis_url or running_url(ctx.settings.var_dir)
    if url is None:
        raise Failed("no Redis: REDIS_URL is unset and no embedded server runs")
    client = connect(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        seen = Store(client).beat_seen()
    finally:
        client.close()
    healthy, message = beat_health(seen, datetime.now(UTC).timestamp(), max_age)
    if not healthy:
        raise Failed(message)
    click.echo(message)


def beat_health(seen: float | None, now: float, max_age: int) -> tuple[bool, str]:
    """Whether beat, last seen at ``seen`` (epoch), counts as running at ``now``; and why."""
    if seen is None:
        return False, "beat: never seen (it records itself when it starts)"
    age = now - seen
    if age > max_age:
        return False, f"beat: last seen {age:.0f} s ago (more than {max_age} s)"
    return True, f"beat: last seen {max(age, 0):.0f} s ago"


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
    from course.subscribers.lifecycle import enrol
    from course.subscribers.signup import check_email

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
    from course.reports.subscriber import subscriber_report

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

    from course.subscribers.csv_rows import CsvFileError, import_rows, read_rows, write_errors

    now = parse_instant(now_text, "--now") if now_text else datetime.now(UTC)
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

    from course.subscribers.csv_rows import export_rows

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

    sub = unsubscribe(ctx.runtime.store, _find(ctx, email))
    wait_for_sends(ctx.runtime.store, sub.id)  # a lesson already on its way goes first
    console.print(f"{sub.email}: {sub.status}")


def _address(value: str) -> str:
    """Normalised as signups and imports store it (a punycode domain matches its Unicode form)."""
    from course.subscribers.lifecycle import SubscriptionError
    from course.subscribers.signup import check_email

    try:
        return check_email(value)
    except SubscriptionError:
        raise click.BadParameter(f"not an email address: {value!r}", param_hint="ADDRESS") from None


@subscribers.command("export-data")
@click.argument("address")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the JSON here instead of standard output.")  # fmt: skip
@click.option("--scan", is_flag=True, help="Also read every record (finds records made "
              "before re-signups were linked; slow on a large list).")  # fmt: skip
@pass_ctx
def subscribers_export_data(ctx: Context, address: str, out: Path | None, scan: bool) -> None:
    """Everything held about ADDRESS, as JSON (GDPR access request)."""
    from course.subscribers.privacy import export_data

    address = _address(address)
    data = export_data(ctx.runtime.store, address, datetime.now(UTC), scan=scan)
    if data is None:
        erased = ctx.runtime.store.is_erased(address)
        raise Failed(f"no data held for {address}" + (" (erased on request)" if erased else ""))
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out is None:
        click.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    err_console.print(f"wrote {out} ({len(data['records'])} record(s))")


@subscribers.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--scan", is_flag=True, help="Also read every record (see export-data).")
@pass_ctx
def subscribers_erase(ctx: Context, address: str, yes: bool, scan: bool) -> None:
    """Erase everything held about ADDRESS for good (GDPR erasure); only a hash of the
    address is kept, so that it is never mailed again. A lesson already on its way to the
    address is waited for first, as for an unsubscribe."""
    from course.subscribers.privacy import erase, record_ids

    address = _address(address)
    store = ctx.runtime.store
    if not yes:
        found = len(record_ids(store, address, scan))
        click.confirm(
            f"Erase {address} ({found} record(s)) for good? This cannot be undone",
            abort=True,
            err=True,
        )
    result = erase(store, address, datetime.now(UTC), scan=scan)
    if result.records:
        console.print(
            f"{address}: erased {len(result.records)} record(s), {result.keys} key(s); "
            "never mailed again"
        )
    elif result.already:
        console.print(f"{address}: nothing held; already erased, never mailed again")
    else:
        console.print(f"{address}: nothing held; suppressed, never mailed again")


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
    from course.subscribers.lifecycle import resume

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
        email = store.email_of(sub_id) or ""
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
    except StoreError as exc:
        click.echo(f"course: Redis: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        click.echo(f"course: {exc}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
