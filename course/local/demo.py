"""``course demo``: the whole course, for sample subscribers, on simulated days.

It runs on the embedded default, in a folder of its own (``var/demo``), with a real Celery
worker process: sample subscribers in several time zones confirm over the first days, one
takes a week's flare pause, and ticks are driven at each instant something falls due.
Every email lands in the outbox; the run ends with a table of who got which lesson when
(local time), a check that each subscriber's lessons came in schedule order and none
twice, and an ``index.html`` that links every email.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from course import engine
from course.clock import utc_now
from course.local.supervise import (
    WorkerError,
    start_process,
    stop_all,
    wait_for_worker,
    worker_command,
)
from course.private_files import private_dir, write_private
from course.runtime import connect
from course.schedule import Schedule, load_schedule
from course.settings import Settings
from course.store import Store
from course.store.embedded import ensure_embedded_redis, redact_url, stop_embedded_redis
from course.subscribers.lifecycle import enrol, pause
from course.tasks import create_app, enqueuer
from course.timeline import add_local_days

# (email, first name, time zone, hours after the demo's start at which they confirm)
SAMPLES = [
    ("maya@example.com", "Maya", "America/New_York", 0.0),
    ("wei@example.com", "Wei", "Asia/Shanghai", 7.5),
    ("sam@example.com", None, "Europe/London", 23.75),
    ("ana@example.com", "Ana", "America/Sao_Paulo", 30.0),
    ("noah@example.com", "Noah", "Australia/Lord_Howe", 49.25),
    ("priya@example.com", "Priya", "Asia/Kolkata", 61.0),
]
FLARE_SUBSCRIBER = 2  # index in the sample list: pauses for a week during the course
FLARE_DAY = 12
FLARE_DAYS = 7
DRAIN_TIMEOUT = 60.0


class DemoError(RuntimeError):
    """The demo could not run to the end."""


@dataclass(frozen=True)
class Sample:
    email: str
    first_name: str | None
    tz: str
    confirm_at: datetime


def samples(count: int, start: datetime) -> list[Sample]:
    out = []
    for i in range(count):
        email, name, tz, hours = SAMPLES[i % len(SAMPLES)]
        if i >= len(SAMPLES):
            local, _, domain = email.partition("@")
            email, hours = f"{local}{i // len(SAMPLES) + 1}@{domain}", hours + 11 * i % 72
        out.append(Sample(email, name, tz, start + timedelta(hours=hours)))
    return out


def demo_settings(settings: Settings) -> Settings:
    var_dir = settings.var_dir / "demo"
    return settings.with_(
        redis_url=None,
        var_dir=var_dir,
        outbox_dir=var_dir / "outbox",
        transport="outbox",
        schedule_path=settings.schedule_path.resolve(),
    )


def start_worker(settings: Settings, redis_url: str, log_path: Path) -> subprocess.Popen:
    worker = settings.with_(
        redis_url=redis_url,
        transport="outbox",
        outbox_dir=settings.outbox_dir.resolve(),
        var_dir=settings.var_dir.resolve(),
    )
    env = {**os.environ, **worker.to_env()}
    return start_process(worker_command(2, "WARNING", alone=True), env, log_path)


def wait_drained(store: Store, proc: subprocess.Popen, timeout: float = DRAIN_TIMEOUT) -> None:
    """Until the worker has finished every claimed delivery."""
    deadline = time.monotonic() + timeout
    while store.pending_count():
        if proc.poll() is not None:
            raise DemoError(f"the demo worker exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise DemoError("deliveries did not finish within a minute")
        time.sleep(0.01)


def course_days(schedule: Schedule) -> int:
    """Enough simulated days for every sample to finish, pause and weekday rules included."""
    last = schedule.lessons[-1].day
    return last + FLARE_DAYS + 3 + 7 + len(schedule.lessons) // 7 + 1


def run_demo(settings: Settings, days: int | None, count: int, console: Console) -> bool:
    settings = demo_settings(settings)
    schedule = load_schedule(settings.schedule_path)
    days = days or course_days(schedule)
    private_dir(settings.var_dir)
    stop_embedded_redis(settings.var_dir)
    shutil.rmtree(settings.var_dir / "redis", ignore_errors=True)
    shutil.rmtree(settings.outbox_dir, ignore_errors=True)
    private_dir(settings.outbox_dir)
    url = ensure_embedded_redis(settings.var_dir)
    _, client = connect(settings.with_(redis_url=url))
    store = Store(client)
    app = create_app(settings, url)
    console.print(f"demo: embedded Redis at {redact_url(url)}, outbox {settings.outbox_dir}")
    log_path = settings.var_dir / "worker.log"
    worker = start_worker(settings, url, log_path)
    try:
        wait_for_worker(app, worker)
        start = utc_now().replace(minute=0, second=0, microsecond=0)
        people = samples(count, start)
        paused = _simulate(store, schedule, app, worker, people, start, days, console)
        full = days >= course_days(schedule)
        return report(store, schedule, people, paused, settings.outbox_dir, console, full)
    except (DemoError, WorkerError) as exc:
        console.print(f"[red]demo failed:[/red] {exc} (worker log: {log_path})")
        return False
    finally:
        stop_all({"worker": worker})
        app.close()
        client.close()
        stop_embedded_redis(settings.var_dir)


def _simulate(store, schedule, app, worker, people, start, days, console) -> str | None:
    """Drive ticks at each instant something falls due; returns who took a flare pause."""
    enqueue = enqueuer(app)
    end = start + timedelta(days=days)
    signups = sorted(people, key=lambda p: p.confirm_at)
    flare_email = people[FLARE_SUBSCRIBER].email if len(people) > FLARE_SUBSCRIBER else None
    flare_at = start + timedelta(days=FLARE_DAY, hours=15)
    paused = None
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[sent]} emails"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("days", total=days, sent=0)
        sent = 0
        while True:
            candidates = [p.confirm_at for p in signups[:1]]
            if flare_email:
                candidates.append(flare_at)
            due = store.next_due()
            if due is not None:
                candidates.append(datetime.fromtimestamp(due, UTC))
            if not candidates:
                break
            now = min(candidates)
            if now > end:
                break
            while signups and signups[0].confirm_at <= now:
                person = signups.pop(0)
                enrol(
                    store, schedule, person.email, person.first_name, person.tz, now, True, "demo"
                )
            if flare_email and flare_at <= now:
                sub = store.find(flare_email)
                if sub is not None and sub.status == "active":
                    pause(store, sub, now, add_local_days(now, FLARE_DAYS, sub.zone))
                    paused = sub.email
                flare_email = None
            result = engine.tick(store, schedule, now, enqueue)
            wait_drained(store, worker)
            sent += result.claimed
            progress.update(task, completed=(now - start) / timedelta(days=1), sent=sent)
        progress.update(task, completed=days)
    return paused


def _local(epoch: float, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(epoch, ZoneInfo(tz)).strftime("%a %d %b %H:%M")


def report(store, schedule, people, paused, outbox: Path, console: Console, full: bool) -> bool:
    """Print the table, write the index, and check order, uniqueness and headers."""
    subs = [store.find(p.email) for p in people]
    subs = [s for s in subs if s is not None]
    ledgers = {s.id: store.ledger(s.id) for s in subs}
    problems: list[str] = []

    if not console.is_terminal:  # a log file or a pipe: room for the whole table
        console.width = max(console.width, 150)
    table = Table(
        title=f"{schedule.course.name}: who got which lesson when (local time)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("#", justify="right")
    table.add_column("lesson")
    for s in subs:
        table.add_column(f"{s.first_name or s.email.split('@')[0]}\n{s.tz.split('/')[-1]}")
    for lesson in schedule.lessons:
        cells = []
        for s in subs:
            entry = ledgers[s.id].get(lesson.id)
            cells.append(_local(entry.at, s.tz) if entry and entry.state == "sent" else "—")
        table.add_row(str(lesson.number), lesson.id, *cells)
    console.print(table)
    if paused:
        console.print(
            f"{paused} took a {FLARE_DAYS}-day flare pause on day "
            f"{FLARE_DAY}: every lesson after it moved {FLARE_DAYS} days later."
        )

    order = {lesson.id: lesson.number for lesson in schedule.lessons}
    for s in subs:
        sent = sorted((e for e in ledgers[s.id].values() if e.state == "sent"), key=lambda e: e.at)
        numbers = [order[e.lesson_id] for e in sent]
        if numbers != sorted(numbers):
            problems.append(f"{s.email}: lessons out of order: {numbers}")
        others = [e for e in ledgers[s.id].values() if e.state != "sent"]
        problems += [f"{s.email}: {e.lesson_id} is {e.state} ({e.detail})" for e in others]
        if full and len(sent) != len(schedule.lessons):
            problems.append(f"{s.email}: got {len(sent)} of {len(schedule.lessons)} lessons")

    index, seen = write_index(outbox, schedule, problems)
    for key, n in seen.items():
        if n > 1:
            problems.append(f"{key[0]}: lesson {key[1]} is in the outbox {n} times")
    total = sum(seen.values())
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}")
    if not problems:
        console.print(
            f"[green]ok[/green]: {total} emails for {len(subs)} subscribers, each in schedule "
            "order, none twice, each with text and HTML parts and one-click unsubscribe headers"
        )
    console.print(f"every email: {index.resolve()}")
    return not problems


def write_index(outbox: Path, schedule: Schedule, problems: list[str]) -> tuple[Path, dict]:
    """An index.html beside the .eml files, with each email's HTML and text parts."""
    rows, seen = [], {}
    for eml in sorted(outbox.glob("*.eml")):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        key = (str(msg["To"]), str(msg.get("X-Course-Lesson-Id", "")))
        seen[key] = seen.get(key, 0) + 1
        parts = [p.get_content_type() for p in msg.iter_parts()]
        if parts != ["text/plain", "text/html"]:
            problems.append(f"{eml.name}: parts are {parts}")
        if not msg["List-Unsubscribe"] or not msg["List-Unsubscribe-Post"]:
            problems.append(f"{eml.name}: missing List-Unsubscribe headers")
        html_part = msg.get_body(("html",))
        text_part = msg.get_body(("plain",))
        write_private(outbox / f"{eml.stem}.html", html_part.get_content())
        write_private(outbox / f"{eml.stem}.txt", text_part.get_content())
        rows.append(
            f"<tr><td>{html.escape(str(msg['To']))}</td><td>{html.escape(key[1])}</td>"
            f"<td>{html.escape(str(msg['Subject']))}</td>"
            f'<td><a href="{eml.stem}.html">HTML</a> · <a href="{eml.stem}.txt">text</a> · '
            f'<a href="{eml.name}">.eml</a></td></tr>'
        )
    index = outbox / "index.html"
    write_private(
        index,
        "<!doctype html><meta charset=utf-8>"
        f"<title>{html.escape(schedule.course.name)} — demo outbox</title>"
        "<style>body{font:16px system-ui;margin:2rem}td,th{padding:.3rem .6rem;"
        "border-bottom:1px solid #ddd;text-align:left}</style>"
        f"<h1>{html.escape(schedule.course.name)} — {len(rows)} emails</h1>"
        "<table><tr><th>To</th><th>Lesson</th><th>Subject</th><th>Open</th></tr>"
        + "".join(rows)
        + "</table>",
    )
    return index, seen
