"""Shared fixtures: a real redis-server of the tests' own, and a small course."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from subprocess import run as run_process

import pytest
import redis

from course import engine
from course.local.supervise import (
    WorkerError,
    start_process,
    stop_all,
    wait_for_worker,
    worker_command,
)
from course.mail.render import Renderer
from course.schedule import load_schedule
from course.settings import Settings
from course.store import Store
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis
from course.subscribers.double_opt_in import SignupResult, run_signup
from course.task_names import SIGNUP_TASK
from course.tokens import subscriber_links

ROOT = Path(__file__).resolve().parent.parent

SMALL_SCHEDULE = """\
course:
  name: Test Course
  from: {name: "Test Course", email: "lessons@course.example.org"}
  reply_to: "hello@course.example.org"
  postal_address: "1 Test Street, Testville"
  send_time: "08:00"
  timezone: America/New_York
  weekdays: [mon, tue, wed, thu, fri, sat, sun]
  max_lessons_per_day: 1
phases:
  - id: first
    title: First phase
    lessons:
      - {id: hello, day: 0, subject: "Hello", preheader: "Start here", template: lessons/hello.md}
      - {id: second, day: 2, subject: "Second", preheader: "More", template: lessons/second.md}
  - id: last
    title: Last phase
    lessons:
      - {id: third, day: 3, subject: "Third", preheader: "Again", template: lessons/third.md}
      - {id: fourth, day: 4, subject: "Fourth", preheader: "Done", template: lessons/fourth.md}
confirmation:
  subject: "Please confirm"
  preheader: "One click to start"
  template: emails/confirm.md
"""


def write_course(folder: Path, schedule_text: str = SMALL_SCHEDULE) -> Path:
    """A course folder (schedule.yaml + templates) for tests; returns the schedule path."""
    lessons = folder / "templates" / "lessons"
    lessons.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "templates" / "layouts", folder / "templates" / "layouts",
                    dirs_exist_ok=True)  # fmt: skip
    for name in ("hello", "second", "third", "fourth"):
        (lessons / f"{name}.md").write_text(
            textwrap.dedent(f"""\
                Hi {{{{ first_name or "friend" }}}},

                This is the **{name}** lesson.

                ::: step
                **One small step for today**

                1. Breathe out slowly after the {name} lesson.
                :::
                """)
        )
    (folder / "templates" / "emails").mkdir(exist_ok=True)
    (folder / "templates" / "emails" / "confirm.md").write_text(
        'Hi {{ first_name or "friend" }},\n\n[Yes, start my course]({{ confirm_url }})\n'
    )
    path = folder / "schedule.yaml"
    path.write_text(schedule_text)
    return path


class Sender:
    """Ticks in this process and delivers each batch with ``concurrency`` requests at once."""

    def __init__(self, store, schedule, transport, concurrency: int):
        self.store, self.schedule, self.transport = store, schedule, transport
        self.renderer = Renderer(schedule)
        self.concurrency = concurrency
        self.batches: list[list[engine.Item]] = []

    def tick(self, now: datetime) -> engine.TickResult:
        return engine.tick(
            self.store, self.schedule, now, lambda items, _: self.batches.append(items)
        )

    def deliver(self, now: datetime) -> engine.DeliverResult:
        total = engine.DeliverResult()
        batches, self.batches = self.batches, []
        for batch in batches:
            got = engine.deliver(self.store, self.renderer, self.transport, batch, now,
                                 self.links, concurrency=self.concurrency)  # fmt: skip
            for name in ("sent", "failed", "retrying", "uncertain", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(got, name))
            total.errors += got.errors
        return total

    def links(self, sub_id: str) -> dict[str, str]:
        return subscriber_links("https://course.example", "secret", sub_id)


class SentTasks:
    """The web app's ``send_task``, recorded: ``calls`` holds ``(name, args, kwargs)``.

    The web only queues a signup (``course.signup``); :meth:`run_signups` does, explicitly and
    in this process, what a worker would do with those messages: each goes through JSON (as
    Celery's serializer sends it) into :func:`course.subscribers.double_opt_in.run_signup`,
    the function the worker's task calls, and the confirmation tasks it sends are recorded
    here too. Not Celery's eager mode: nothing runs unless a test asks for it."""

    def __init__(self, store: Store, settings: Settings, schedule):
        self.store, self.settings, self.schedule = store, settings, schedule
        self.calls: list[tuple[str, list, dict]] = []
        self.options: list[dict] = []
        self._done = 0  # how many of the recorded signups have been run

    def __call__(self, name, args=None, kwargs=None, **options) -> None:
        self.calls.append((name, list(args or []), dict(kwargs or {})))
        self.options.append(options)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def signups(self) -> list[dict]:
        """The messages of every ``course.signup`` queued so far."""
        return [kwargs for name, _, kwargs in self.calls if name == SIGNUP_TASK]

    def run_signups(self) -> list[SignupResult]:
        """Run the signups queued since the last call, in order, as the worker's task does."""
        results = []
        while self._done < len(self.signups()):
            message = json.loads(json.dumps(self.signups()[self._done]))
            self._done += 1
            results.append(run_signup(self.store, self.settings, self.schedule, self, message))
        return results

    def clear(self) -> None:
        self.calls.clear()
        self.options.clear()
        self._done = 0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A redis-server of the tests' own (the embedded binary), never someone else's."""
    var = tmp_path_factory.mktemp("redis")
    url = ensure_embedded_redis(var)
    yield url
    stop_embedded_redis(var)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def store(redis_client) -> Store:
    return Store(redis_client)


@pytest.fixture
def course_path(tmp_path) -> Path:
    return write_course(tmp_path / "course")


@pytest.fixture
def schedule(course_path):
    return load_schedule(course_path)


@pytest.fixture
def settings(tmp_path, course_path, redis_url) -> Settings:
    return Settings(
        redis_url=redis_url,
        outbox_dir=tmp_path / "outbox",
        schedule_path=course_path,
        var_dir=tmp_path / "var",
        base_url="https://course.example",
        secret_key="test-secret",
    )


def db_url(redis_url: str, db: int) -> str:
    """The tests' server, database ``db`` (a module that owns it may flush it)."""
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def put_entry(store: Store, sub_id: str, entry) -> None:
    """Write a ledger entry (a ``LedgerEntry``) whatever was there, as a test sets one up:
    through the finish script, which gives the entry its number (course.store.entries)."""
    every = ("", "claimed", "sending", "retry", "sent", "failed", "uncertain", "skipped")
    assert store.finish(sub_id, entry, None, every)


def entry_value(store: Store, sub_id: str, lesson_id: str) -> str | None:
    """A ledger entry's value as stored in the record's hash (under the lesson's number)."""
    number = store.entry_numbers([lesson_id]).get(lesson_id)
    raw = store.redis.hget(store.sub_key(sub_id), number) if number else None
    return raw.decode() if isinstance(raw, bytes) else raw


def course_env(url: str, schedule_path: Path, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``course`` or worker process on the tests' Redis and course."""
    return {
        **os.environ,
        "REDIS_URL": url,
        "COURSE_SCHEDULE": str(schedule_path),
        "COURSE_OUTBOX_DIR": str(folder / "outbox"),
        "COURSE_VAR_DIR": str(folder / "var"),
        "COURSE_BASE_URL": "https://course.example",
        **extra,
    }


def publish_course(store: Store, schedule_path: Path, message: str = "test edit") -> str:
    """Publish the course's working files (as `course publish --yes` does, without the diff):
    the version id. Tests that edit files and expect the workers to run the edit publish it."""
    from datetime import UTC

    from course.schedule.publish import publish_files, working_version

    versions = store.schedule_versions()
    candidate = working_version(schedule_path)
    now = datetime.now(UTC)
    publish_files(versions, candidate, versions.live(), "tests", message, "publish", now)
    return candidate.id


def start_worker(env: dict, log_path: Path, app, children: int = 2) -> subprocess.Popen:
    """A real Celery worker process (never eager mode), up and answering pings."""
    proc = start_process(worker_command(children, "INFO", alone=True), env, log_path)
    try:
        wait_for_worker(app, proc)
    except WorkerError as exc:
        stop_all({"worker": proc})
        raise AssertionError(f"{exc}\n{log_path.read_text()}") from None
    return proc


@pytest.fixture(scope="session")
def make_course():
    """``write_course`` for fixtures of wider scope."""
    return write_course


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "var" / "test-artifacts"  # screenshots: test output, ignored by git


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's ``chromium``) driven by Playwright; skips where it is missing."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


AXE_JS = Path(os.environ.get("AXE_CORE_JS") or ROOT / "node_modules" / "axe-core" / "axe.min.js")
AXE_MISSING = (
    "axe-core is not installed: `npm install --no-save axe-core` in the project folder "
    "(.ci/run does), or set AXE_CORE_JS to its axe.min.js"
)
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on ``page`` as it is now, one line each (rule,
    impact, what it asks, the first elements it found)."""
    # Evaluated by the browser's debugging protocol, which the pages' Content-Security-Policy
    # (no inline scripts) does not govern; a <script> tag would be refused.
    page.evaluate(AXE_JS.read_text() + "\n;0")
    found = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => [v.id, v.impact, v.help,"
        " v.nodes.slice(0, 3).map(n => n.target.join(' '))]))",
        WCAG_21_AA,
    )
    return [
        f"{rule} ({impact}): {text} at {', '.join(where)}" for rule, impact, text, where in found
    ]


@pytest.fixture
def axe():
    """``axe(page, name)``: checks the page with axe-core (WCAG 2.1 A and AA) and collects what
    it finds; the test fails at its end with every page's violations. Where axe-core is not
    installed nothing is checked (tests/test_web_browser.py's own axe test skips, saying so)."""
    found: dict[str, list[str]] = {}

    def check(page, name: str) -> None:
        if AXE_JS.is_file():
            violations = axe_violations(page)
            if violations:
                found[name] = violations

    yield check
    assert not found, "accessibility (axe-core, WCAG 2.1 AA):\n" + "\n".join(
        f"{name}: {line}" for name, lines in found.items() for line in lines
    )


@pytest.fixture
def artifacts(request) -> Path:
    """A folder for this test's screenshots under var/test-artifacts/."""
    folder = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cli_runner(env: dict, monkeypatch, capsys):
    """``run(*args, subprocess=False, stdin=None, **extra_env)``: ``course ARGS`` with ``env``
    (and ``stdin`` as its standard input), in this process through the command's own entry
    point (exit status, output), or in a subprocess of its own with ``subprocess=True``.
    In this process saves a Python start-up and the imports (about a second) per command."""
    from course.cli import main

    def run(
        *args: str, subprocess: bool = False, stdin: str | None = None, **extra: str
    ) -> CompletedProcess:
        full = {**env, **extra}
        if subprocess:
            return run_process([sys.executable, "-m", "course", *args], env=full, input=stdin,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        for name, value in full.items():
            monkeypatch.setenv(name, value)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out = capsys.readouterr()
        return CompletedProcess(list(args), exited.value.code, out.out, out.err)

    return run
