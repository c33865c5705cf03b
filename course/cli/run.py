"""``course tick``, ``course demo``, ``course run`` and ``course serve``: running the course,
one tick at a time, on simulated days, or as the whole set of services."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import click

from course.cli.context import Context, Failed, console, instant_or_now, pass_ctx
from course.cli.group import cli
from course.mail.render import RenderError
from course.settings import Settings


@cli.command()
@click.option("--now", "now_text", default=None, help="The tick's instant (default: now).")
@click.option(
    "--inline", is_flag=True, help="Deliver in this process instead of handing to workers."
)
@pass_ctx
def tick(ctx: Context, now_text: str | None, inline: bool) -> None:
    """Run one tick: claim every lesson due by NOW and deliver it."""
    from course import engine
    from course.broadcasts.service import prepare_batch
    from course.engine.experiments import evaluate_hourly
    from course.tasks import create_app, enqueuer
    from course.webhooks.lessons import SentRecorder, emit_lesson_events

    rt = ctx.runtime
    now = instant_or_now(now_text, "--now")
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
            items, mail = prepare_batch(rt.store, renderer, items, when)
            store = SentRecorder(rt.store)
            try:
                outcome = engine.deliver(
                    store, mail, rt.transport, items, when, rt.links, clock=clock
                )
            finally:  # the batch's lesson.sent events, as a worker emits them
                emit_lesson_events(rt.store, rt.events, store.sent, clock())
            for name in ("sent", "failed", "retrying", "uncertain", "skipped"):
                setattr(totals, name, getattr(totals, name) + getattr(outcome, name))

    else:
        enqueue = enqueuer(create_app(ctx.settings, rt.redis_url))
    window = rt.settings.settling_window  # None: no signed webhook, nothing is re-sent
    result = engine.tick(rt.store, schedule, now, enqueue, settle_window=window)
    evaluate_hourly(rt.store, schedule, now)  # subject experiments with winner: auto
    line = f"tick {now.isoformat()}: claimed {result.claimed}, retried {result.redispatched}"
    line += f", uncertain {result.uncertain}, re-sent {result.resent}"
    line += f", completed {result.completed}"
    if inline:
        line += f"; sent {totals.sent}, failed {totals.failed}, retrying {totals.retrying}"
        line += f", uncertain {totals.uncertain}, skipped {totals.skipped}"
    else:
        line += f"; {result.batches} batches handed to workers"
    console.print(line)


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
@click.option("--watch", is_flag=True, help="Publish every valid save of the files (no diff).")
@pass_ctx
def run(ctx: Context, concurrency: int, host: str, port: int, no_web: bool, watch: bool) -> None:
    """Run Redis (embedded unless REDIS_URL is set), a worker, beat and the web app until
    Ctrl-C. They run the published version: edits go live with `course publish`, or at
    each valid save with --watch."""
    from course.local.supervise import port_problem, run_services

    web = None if no_web else (host, port)
    if web is not None and (problem := port_problem(host, port)):
        raise Failed(problem)  # before Redis, the worker or beat start
    if web is not None:
        _refuse_broken_pages(ctx.settings)
    status = run_services(ctx.settings, concurrency=concurrency, console=console, web=web,
                          watch=watch)  # fmt: skip
    raise SystemExit(status)


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

    _refuse_broken_pages(ctx.settings)
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


def _refuse_broken_pages(settings: Settings) -> None:
    """The course's own pages (``templates/web/``) read before the web app starts: a syntax
    error or an access the sandbox refuses stops it, one line each with file and line."""
    from course.web.pages import check_pages

    folder = settings.schedule_path.resolve().parent
    problems = check_pages(settings.templates_dir, lambda path: str(path.relative_to(folder)))
    if problems:
        raise RenderError("\n".join(problems))
