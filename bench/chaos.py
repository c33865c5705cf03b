"""Crash and fault test: the whole course calendar under SIGKILLs, a Redis crash and a
misbehaving provider, checked against what the provider says it accepted.

    .venv/bin/python bench/chaos.py [--subscribers 10000] [--workers 3] [--seed 1] [--events]

What runs, all real: a redis-server of its own with AOF (fsync always) in a temporary folder,
``--workers`` Celery worker processes on it, the SendGrid stand-in in this process (10% of
requests answered 429 with ``X-RateLimit-Reset`` a second ahead, 5% 500, 1% stalled for
``--hang-s`` before it answers), and the subscriber web app (uvicorn in a thread).

With ``--events`` the stand-in also posts signed Event Webhook events (``processed``,
``delivered``, some ``deferred``) for every accepted email to the web app, which settles
uncertain sends: an event settles a send the provider had, and the tick re-sends, once, one
with no event while later sends' events came (COURSE_SETTLE_WINDOW, in simulated seconds).
After each busy step the driver also waits until the events made so far were posted (SendGrid
posts within seconds; a step is an hour). Once the calendar is over, a reader signs up now and
then while uncertain sends remain, as readers keep doing, so that later sends exist.

The course's whole calendar passes in simulated time: ticks run here with an advancing
``now`` (one simulated hour a step) and the workers stamp each send with the tick's instant,
which runs ahead of the wall clock. After a step's tick the driver waits until the workers
are idle (the queue empty, no live worker with a task), so "a later simulated hour" never
overtakes a send that is still on its way; only a killed worker's send is left behind.

Meanwhile a killer thread SIGKILLs a random worker (its whole process group) every few
seconds and starts a new one; redis-server is SIGKILLed once mid-calendar, under load, and
restarted on the same port from its AOF; ``--unsubscribe-share`` of the subscribers
unsubscribe through the web app's one-click POST, each at the step one of their lessons is
due (so it races that lesson's delivery), and the instant the 200 came back is kept.

Then, from the stand-in's own record of what it accepted and the ledger:
  twice       no (subscriber, lesson) accepted twice
  after-unsub nothing accepted for an address after its unsubscribe was answered
  missing     every other due lesson accepted exactly once or ``uncertain`` in the ledger
              (with ``--events``: accepted, or failed for a permanent reason; uncertain
              is missing)
  uncertain   uncertain entries <= (worker kills + workers x redis crashes) x the emails a
              worker has in flight (a Redis crash can strand them in every worker): with
              ``--send-concurrency 1 --sendgrid-batch 1``, one per kill
  order       lessons accepted in schedule order per subscriber
  phantom     no ledger ``sent`` entry the provider never accepted
  unfinished  no entry left claimed, sending or retry
It prints the counts, then ``duplicates / after unsubscribe / missing`` (the target is
0/0/0), and exits 1 if any rule broke.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course import engine  # noqa: E402
from course.local.supervise import start_process, stop_all, worker_command  # noqa: E402
from course.progress import due_at  # noqa: E402
from course.schedule import Schedule, load_schedule  # noqa: E402
from course.settings import Settings  # noqa: E402
from course.store import Store, split_member  # noqa: E402
from course.store.embedded import (  # noqa: E402
    ensure_embedded_redis,
    redact_url,
    running_url,
    stop_embedded_redis,
)
from course.subscribers.lifecycle import enrol  # noqa: E402
from course.tasks import create_app, enqueuer  # noqa: E402
from course.testing.sendgrid_standin import (  # noqa: E402
    EventPoster,
    EventRates,
    Faults,
    SendGridStandIn,
)
from course.tokens import subscriber_links  # noqa: E402
from course.web.app import create_app as create_web_app  # noqa: E402

API_KEY = "SG.chaos"
SECRET = "chaos-secret"
STEP = timedelta(hours=1)  # simulated time per tick
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles")
QUEUE = "celery"  # kombu's Redis list of the default queue
UNFINISHED = ("claimed", "sending", "retry")
TARGETS = ("twice", "after-unsub", "missing")  # printed as duplicates / after unsub / missing


class ChaosError(RuntimeError):
    """The run itself could not go on (a worker never came up, the queue never drained)."""


@dataclass
class ChaosConfig:
    subscribers: int = 10_000
    workers: int = 3
    seed: int = 1
    schedule_path: Path = ROOT / "schedule.yaml"
    kill_every: float = 4.0  # wall seconds between worker kills, on average
    min_kills: int = 0  # kills at as many busy steps, besides those every few seconds
    redis_crashes: int = 1
    unsubscribe_share: float = 0.10
    rate_429: float = 0.10
    rate_500: float = 0.05
    rate_hang: float = 0.01
    hang_for: float = 0.3  # a hang stalls this long, inside the transport's 10 s timeout
    hang_drops: bool = False  # a hang ends without an answer: the send is uncertain
    start_spread_days: float = 3.0  # confirmations spread over this many simulated days
    batch_size: int = engine.TASK_BATCH_SIZE  # deliveries per task; a 429 holds back the rest
    # sends of a batch in flight at once per worker process (COURSE_SEND_CONCURRENCY); a
    # SIGKILL can leave each of them uncertain, so the bound on uncertain entries scales
    send_concurrency: int = Settings.send_concurrency
    # emails of one lesson per SendGrid request (COURSE_SENDGRID_BATCH); a kill mid-request
    # leaves all of them uncertain
    sendgrid_batch: int = Settings.sendgrid_batch
    zones: tuple[str, ...] = ZONES  # subscribers are spread over these, in turn
    settle_days: int = 4  # simulated days after the calendar for retries and stale claims
    var_dir: Path | None = None  # default: a new temporary folder, removed afterwards
    events: bool = False  # the stand-in posts signed events to the web app; uncertain settles
    event_delay: float = 0.05  # wall seconds before a processed event (delivered: up to 2x)
    event_deferred: float = 0.1  # share of emails deferred before delivered
    settle_window: int = Settings.settle_window  # simulated seconds (COURSE_SETTLE_WINDOW)


@dataclass
class ChaosReport:
    counts: dict[str, int | float] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def lines(self) -> list[str]:
        out = [f"{name:<22}{value}" for name, value in self.counts.items()]
        found = {rule: len(self.violations.get(rule, [])) for rule in TARGETS}
        out.append("duplicates / after unsubscribe / missing: "
                   + "/".join(str(n) for n in found.values()) + " (target 0/0/0)")  # fmt: skip
        out.append("violations:")
        for rule, found in self.violations.items():
            examples = "; ".join(found[:3])
            out.append(f"  {rule:<20}{len(found)}" + (f"  e.g. {examples}" if found else ""))
        out.append("PASS" if self.ok else "FAIL")
        return out


# ------------------------------------------------------------------------------------------
# The moving parts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _retrying(what: Callable, timeout: float = 120.0):
    """``what()``, again while Redis is down or loading (the crash and restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return what()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        except Exception as exc:  # kombu wraps a lost broker in its own OperationalError
            if "OperationalError" not in type(exc).__name__ or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Workers:
    """The Celery worker processes, each named so that it can be asked alone."""

    def __init__(self, count: int, env: dict[str, str], folder: Path, app) -> None:
        self.env, self.folder, self.app = env, folder, app
        self.names = [f"chaos{i}@{socket.gethostname()}" for i in range(count)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.ready: set[str] = set()
        self.lock = threading.Lock()

    def start(self, *names: str) -> None:
        """Start these workers side by side; return once each answers a ping."""
        for name in names:
            cmd = [*worker_command(1, "WARNING", alone=True), "-n", name]
            proc = start_process(cmd, self.env, self.folder / f"{name.split('@')[0]}.log")
            with self.lock:
                self.procs[name] = proc
        for name in names:
            self._wait(name)

    def _wait(self, name: str) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise ChaosError(f"worker {name} exited with status {proc.returncode}")
            try:
                if self.app.control.ping(destination=[name], timeout=0.5):
                    break
            except Exception:  # the broker is restarting
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise ChaosError(f"worker {name} did not come up within 120 s")
        with self.lock:
            self.ready.add(name)

    def kill(self, name: str) -> None:
        with self.lock:
            self.ready.discard(name)
            proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool, mid-whatever
        proc.wait()

    def idle(self) -> bool:
        """True when every live worker answered and none holds a task."""
        with self.lock:
            names = sorted(self.ready)
        if not names:
            return True
        inspect = self.app.control.inspect(destination=names, timeout=2.0)
        for ask in (inspect.active, inspect.reserved):
            replies = ask() or {}
            if set(replies) != set(names) or any(replies.values()):
                return False
        return True

    def stop(self) -> None:
        with self.lock:
            procs = dict(self.procs)
        stop_all(procs, grace=10)


class Killer(threading.Thread):
    """SIGKILLs a random worker every few seconds and starts a new one in its place."""

    def __init__(self, workers: Workers, every: float, rng: random.Random) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.workers, self.every, self.rng = workers, every, rng
        self.kills = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.every * self.rng.uniform(0.5, 1.5)):
                self.kill_one()
        except BaseException as exc:  # reported by the driver
            self.error = exc

    def kill_one(self) -> None:
        """SIGKILL a random worker and start a new one in its place (also called by the
        driver, at steps it chose, so that a fast run still has its kills mid-delivery)."""
        with self.lock:
            name = self.rng.choice(self.workers.names)
            self.workers.kill(name)
            self.kills += 1
            self.workers.start(name)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        if self.error is not None:
            raise ChaosError(f"the killer thread failed: {self.error}")


class Unsubscriber:
    """Posts one-click unsubscribes from a few threads; keeps when each 200 came back."""

    def __init__(self, base_url: str, threads: int = 4) -> None:
        self.base_url = base_url
        self.jobs: queue.Queue = queue.Queue()
        self.answered: dict[str, float] = {}
        self.attempts = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, daemon=True, name=f"unsub-{i}")
            for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def post(self, sub_id: str, delay: float) -> None:
        self.jobs.put((sub_id, time.monotonic() + delay))

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            sub_id, at = job
            time.sleep(max(0.0, at - time.monotonic()))
            url = subscriber_links(self.base_url, SECRET, sub_id)["unsubscribe_url"]
            while True:
                with self.lock:
                    self.attempts += 1
                request = urllib.request.Request(
                    url,
                    data=b"List-Unsubscribe=One-Click",
                    method="POST",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status = answer.status
                        answered = time.time()
                except (urllib.error.URLError, OSError):
                    status = 0  # Redis restarting behind the app: try again, as a person would
                if status == 200:
                    with self.lock:
                        self.answered[sub_id] = answered
                    break
                time.sleep(0.2)
            self.jobs.task_done()

    def join(self) -> None:
        self.jobs.join()
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


class WebApp:
    """The subscriber web app served by uvicorn in a thread of this process."""

    def __init__(self, settings: Settings, port: int) -> None:
        config = uvicorn.Config(
            create_web_app(settings), host="127.0.0.1", port=port, log_level="error",
            access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="web")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ChaosError("the web app did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def crash_redis(var: Path) -> None:
    """SIGKILL the redis-server (no shutdown, no final AOF rewrite) and start it again on the
    same port from its AOF."""
    folder = var / "redis"
    pid = int((folder / "redis.pid").read_text().strip())
    url = running_url(var)
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # the workers notice
    again = ensure_embedded_redis(var)
    if again != url:
        raise ChaosError(
            f"redis-server came back on {redact_url(again)}, not {redact_url(url or '?')}"
        )


# ------------------------------------------------------------------------------------------
# The run


class Chaos:
    def __init__(self, config: ChaosConfig, folder: Path, say: Callable[[str], None]) -> None:
        self.config, self.folder, self.say = config, folder, say
        self.rng = random.Random(config.seed)
        self.schedule: Schedule = load_schedule(config.schedule_path)
        self.settle_seconds = 0.0  # waiting for idle workers after a tick
        self.canaries: set[str] = set()  # readers signed up after the calendar (--events)

    def run(self) -> ChaosReport:
        cfg = self.config
        started = time.monotonic()
        var = self.folder / "var"
        url = ensure_embedded_redis(var)
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
        store = Store(client)
        faults = Faults(cfg.rate_429, cfg.rate_500, cfg.rate_hang, reset_in=1.0,
                        hang_for=cfg.hang_for, hang_answers=not cfg.hang_drops,
                        seed=cfg.seed)  # fmt: skip
        web_port = _free_port()
        base_url = f"http://127.0.0.1:{web_port}"
        self.poster = None
        if cfg.events:
            rates = EventRates(cfg.event_delay, cfg.event_deferred, 0.0, cfg.seed)
            self.poster = EventPoster(f"{base_url}/webhooks/sendgrid", rates)
        standin = SendGridStandIn(api_key=API_KEY, faults=faults, keep_payloads=False,
                                  events=self.poster).start()  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": url,
            "COURSE_SCHEDULE": str(cfg.schedule_path),
            "COURSE_TRANSPORT": "sendgrid",
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_HOST": standin.url,
            "COURSE_VAR_DIR": str(var),
            "COURSE_BASE_URL": base_url,
            "COURSE_SECRET_KEY": SECRET,
            "COURSE_SEND_CONCURRENCY": str(cfg.send_concurrency),
            "COURSE_SENDGRID_BATCH": str(cfg.sendgrid_batch),
            "COURSE_SETTLE_WINDOW": str(cfg.settle_window),
            "SENDGRID_WEBHOOK_PUBLIC_KEY": self.poster.public_key if self.poster else "",
        }
        settings = Settings.from_env(env)
        self.settle_window = settings.settling_window  # None without events
        app = create_app(settings, url)
        enqueue = enqueuer(app)
        workers = Workers(cfg.workers, env, self.folder, app)
        web = unsub = killer = None
        try:
            web = WebApp(settings, web_port)
            workers.start(*workers.names)
            sim_start = (datetime.now(UTC) + timedelta(days=1)).replace(
                minute=0, second=0, microsecond=0
            )
            unsub_at = self.enrol(store, sim_start)
            elapsed = time.monotonic() - started
            self.say(f"{elapsed:6.1f} s  enrolled {cfg.subscribers}; {cfg.workers} workers up")
            unsub = Unsubscriber(base_url)
            killer = Killer(workers, cfg.kill_every, random.Random(cfg.seed + 1))
            last_day = self.schedule.lessons[-1].day
            calendar_end = sim_start + timedelta(days=cfg.start_spread_days + last_day + 2)
            steps = int((calendar_end - sim_start) / STEP)
            crash_steps = sorted(
                self.rng.sample(range(steps // 3, 2 * steps // 3), cfg.redis_crashes)
            )
            # Kills at chosen busy steps too, however fast the run goes: each at the first
            # busy step from a step chosen before the last lesson's day (so one comes).
            kill_steps = sorted(self.rng.sample(range(0, max(1, last_day) * 24), cfg.min_kills))
            redis_crashes = 0
            killer.start()
            now, step = sim_start, 0
            busy_enough = max(1, min(20, cfg.subscribers // 50))
            while now <= calendar_end:
                result = self.tick(store, now, enqueue)
                for sub_id in unsub_at.pop(step, []):
                    unsub.post(sub_id, delay=self.rng.uniform(0.0, 1.0))
                if kill_steps and step >= kill_steps[0] and result.claimed >= busy_enough:
                    kill_steps.pop(0)
                    time.sleep(self.rng.uniform(0.05, 0.3))  # mid-delivery
                    killer.kill_one()
                if crash_steps and step >= crash_steps[0] and result.claimed >= busy_enough:
                    crash_steps.pop(0)
                    time.sleep(self.rng.uniform(0.1, 0.6))  # mid-delivery
                    crash_redis(var)
                    redis_crashes += 1
                    self.say(f"step {step}: redis-server SIGKILLed and restarted from its AOF")
                if result.batches:  # else the workers are as idle as the last step left them
                    self.settle(client, workers)
                if step % 24 == 0:
                    elapsed = time.monotonic() - started
                    self.say(
                        f"{elapsed:6.1f} s  day {step // 24:>3}: accepted {len(standin.records)},"
                        f" kills {killer.kills}, unsubscribed {len(unsub.answered)}"
                    )
                now, step = now + STEP, step + 1
            killer.stop()
            unsub.join()
            # Let retries and stale claims settle: the sweep calls a dead worker's send
            # uncertain and hands its unstarted claims out again.
            canaries = 0
            for step in range(cfg.settle_days * 24):
                waiting = cfg.events and _retrying(store.uncertain_counts)[0] > 0
                if waiting and step % 3 == 0:  # a new reader: a later send, its events
                    canary = enrol(store, self.schedule, f"canary{canaries}@chaos.example",
                                   None, cfg.zones[0], now)  # fmt: skip
                    self.canaries.add(canary.id)
                    canaries += 1
                self.tick(store, now, enqueue)
                self.settle(client, workers)
                if (not waiting and not _retrying(store.pending_count)
                        and not _retrying(lambda: store.due_count(None))):  # fmt: skip
                    break
                now += STEP
            report = self.check(store, standin, unsub.answered)
            report.counts.update(
                {
                    "worker kills": killer.kills,
                    "redis crashes": redis_crashes,
                    "unsubscribe posts": unsub.attempts,
                    "simulated days": round((now - sim_start) / timedelta(days=1), 1),
                    "wall seconds": round(time.monotonic() - started, 1),
                    "  waiting for workers": round(self.settle_seconds, 1),
                }
            )
            if cfg.events:
                report.counts["canary readers"] = canaries
            # Each kill can leave every send it had in flight without a known outcome; so can
            # a Redis crash, for every worker (the answer came, the ledger could not take it).
            # In flight per worker: up to send_concurrency requests of up to sendgrid_batch
            # emails each, from one batch.
            in_flight = min(cfg.send_concurrency * cfg.sendgrid_batch, cfg.batch_size)
            allowed = (killer.kills + cfg.workers * redis_crashes) * in_flight
            if cfg.hang_drops:  # each unanswered request is honestly uncertain too
                allowed += int(report.counts["hangs"])
            report.counts["uncertain allowed"] = allowed
            if report.counts["uncertain"] > allowed:
                report.violations["uncertain"].append(
                    f"{report.counts['uncertain']} uncertain > {allowed} allowed"
                )
            return report
        finally:
            if killer is not None and killer.is_alive():
                killer.stopping.set()
                killer.join()
            workers.stop()
            if web is not None:
                web.stop()
            standin.stop()
            app.close()
            client.close()
            stop_embedded_redis(var)

    def enrol(self, store: Store, sim_start: datetime) -> dict[int, list[str]]:
        """Subscribers confirmed at instants spread over the first days; returns who
        unsubscribes at which step (the step one of their lessons falls due)."""
        cfg = self.config
        lessons = self.schedule.lessons
        unsub_at: dict[int, list[str]] = defaultdict(list)
        leaving = set(self.rng.sample(range(cfg.subscribers),
                                      round(cfg.subscribers * cfg.unsubscribe_share)))  # fmt: skip
        spread = cfg.start_spread_days * 86400
        for index in range(cfg.subscribers):
            start = sim_start + timedelta(seconds=round(self.rng.uniform(0, spread)))
            zone = cfg.zones[index % len(cfg.zones)]
            sub = enrol(store, self.schedule, f"reader{index}@chaos.example", f"R{index}", zone,
                        start)  # fmt: skip
            if index in leaving:
                due = due_at(self.schedule, sub, self.rng.choice(lessons))
                unsub_at[int((due - sim_start) / STEP)].append(sub.id)
        return unsub_at

    def tick(self, store: Store, now: datetime, enqueue) -> engine.TickResult:
        def once() -> engine.TickResult:
            return engine.tick(store, self.schedule, now, enqueue, self.config.batch_size,
                               settle_window=self.settle_window)  # fmt: skip

        return _retrying(once)

    def settle(self, client: redis.Redis, workers: Workers, timeout: float = 600.0) -> None:
        """Until the queue is empty and no live worker holds a task, twice in a row."""
        began = time.monotonic()
        deadline = began + timeout
        quiet = 0
        while quiet < 2:
            if time.monotonic() > deadline:
                raise ChaosError(f"the workers did not finish within {timeout:.0f} s")
            try:
                empty = client.llen(QUEUE) == 0 and (self.poster is None or self.poster.idle())
                quiet = quiet + 1 if empty and workers.idle() else 0
            except Exception:  # Redis restarting; a worker going down mid-question
                quiet = 0
            time.sleep(0.02)
        self.settle_seconds += time.monotonic() - began

    def check(
        self, store: Store, standin: SendGridStandIn, answered: dict[str, float]
    ) -> ChaosReport:
        order = {lesson.id: index for index, lesson in enumerate(self.schedule.lessons)}
        records = standin.records
        accepted: Counter[tuple[str, str]] = Counter()
        by_sub: dict[str, list[tuple[float, str]]] = defaultdict(list)
        violations: dict[str, list[str]] = {
            rule: []
            for rule in (
                "twice",
                "after-unsub",
                "missing",
                "uncertain",
                "order",
                "phantom",
                "unfinished",
            )
        }
        for record in records:
            sub_id = record.custom_args["subscriber_id"]
            lesson_id = record.custom_args["lesson_id"]
            accepted[sub_id, lesson_id] += 1
            by_sub[sub_id].append((record.arrived, lesson_id))
            if sub_id in answered and record.arrived > answered[sub_id]:
                late = record.arrived - answered[sub_id]
                violations["after-unsub"].append(f"{sub_id}/{lesson_id} {late:.3f} s after")
        for (sub_id, lesson_id), times in accepted.items():
            if times > 1:
                violations["twice"].append(f"{sub_id}/{lesson_id} x{times}")
        for sub_id, got in by_sub.items():
            sequence = [order[lesson_id] for _, lesson_id in sorted(got)]
            if sequence != sorted(sequence):
                violations["order"].append(f"{sub_id}: {sequence}")

        ids = list(store.iter_ids())
        states: Counter[str] = Counter()
        uncertain_accepted = 0
        for sub_id, (_, ledger) in zip(ids, store.read_many(ids), strict=True):
            entries = {lesson: entry.state for lesson, entry in ledger.items()}
            states.update(entries.values())
            for lesson_id, state in entries.items():
                if state in UNFINISHED:
                    violations["unfinished"].append(f"{sub_id}/{lesson_id} {state}")
                if state == "sent" and not accepted[sub_id, lesson_id]:
                    violations["phantom"].append(f"{sub_id}/{lesson_id}")
                if state == "uncertain" and accepted[sub_id, lesson_id]:
                    uncertain_accepted += 1
            if sub_id in answered or sub_id in self.canaries:  # canaries: their course goes on
                continue
            excused = ("failed",) if self.config.events else ("uncertain",)
            for lesson_id in order:
                if accepted[sub_id, lesson_id] == 0 and entries.get(lesson_id) not in excused:
                    violations["missing"].append(f"{sub_id}/{lesson_id} {entries.get(lesson_id)}")
        pending = [split_member(m) for m in store.redis.zrange(store.pending_key, 0, -1)]
        retried = sum(store.send_stats(lesson_id).get("retried", 0) for lesson_id in order)
        faults = standin.fault_counts
        counts: dict[str, int | float] = {
            "subscribers": len(ids) - len(self.canaries),
            "emails accepted": len(records),
            "requests": standin.requests_seen,
            "429 answers": faults["429"],
            "500 answers": faults["500"],
            "hangs": faults["hang"],
            "retries": retried,
            "unsubscribed": len(answered),
            "uncertain": states["uncertain"],
            "  of them accepted": uncertain_accepted,
            "failed": states["failed"],
            "skipped": states["skipped"],
            "still pending": len(pending),
        }
        if self.poster is not None:
            hooks = store.webhook_stats()
            counts.update({
                "events posted": self.poster.posted,
                "reconciled": hooks.get("reconciled", 0),
                "re-sent": sum(store.send_stats(lesson_id).get("resent", 0) for lesson_id in order),
                "late after re-send": hooks.get("late_after_resend", 0),
            })  # fmt: skip
        return ChaosReport(counts=counts, violations=violations)


def run_chaos(config: ChaosConfig, say: Callable[[str], None] = print) -> ChaosReport:
    """One whole chaos run; the report says what happened and which rules broke."""
    if config.var_dir is not None:
        config.var_dir.mkdir(parents=True, exist_ok=True)
        return Chaos(config, config.var_dir, say).run()
    with tempfile.TemporaryDirectory(prefix="course-chaos-") as folder:
        return Chaos(config, Path(folder), say).run()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schedule", type=Path, default=ROOT / "schedule.yaml")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds, on average")
    parser.add_argument(
        "--min-kills", type=int, default=0, help="kills at as many busy steps besides those"
    )
    parser.add_argument("--redis-crashes", type=int, default=1)
    parser.add_argument("--unsubscribe-share", type=float, default=0.10)
    parser.add_argument("--rate-429", type=float, default=0.10)
    parser.add_argument("--rate-500", type=float, default=0.05)
    parser.add_argument("--rate-hang", type=float, default=0.01)
    parser.add_argument("--hang-s", type=float, default=0.3, help="how long a hang stalls")
    parser.add_argument("--batch-size", type=int, default=engine.TASK_BATCH_SIZE, help="per task")
    parser.add_argument(
        "--send-concurrency", type=int, default=Settings.send_concurrency,
        help="requests in flight per worker process",
    )  # fmt: skip
    parser.add_argument(
        "--sendgrid-batch", type=int, default=Settings.sendgrid_batch,
        help="emails of a lesson per SendGrid request (with --send-concurrency 1 and this 1:"
        " at most one uncertain per kill)",
    )  # fmt: skip
    parser.add_argument("--spread-days", type=float, default=3.0, help="of the confirmations")
    parser.add_argument(
        "--hang-drops", action="store_true", help="hangs end unanswered (uncertain sends)"
    )
    parser.add_argument("--var", type=Path, help="keep logs and Redis files here")
    parser.add_argument(
        "--events", action="store_true",
        help="the stand-in posts signed webhook events to the web app: uncertain sends settle",
    )  # fmt: skip
    parser.add_argument("--settle-window", type=int, default=Settings.settle_window,
                        help="simulated seconds (COURSE_SETTLE_WINDOW)")  # fmt: skip
    args = parser.parse_args(argv)
    if (min(args.subscribers, args.workers, args.batch_size, args.send_concurrency,
            args.sendgrid_batch) < 1 or args.kill_every <= 0):  # fmt: skip
        parser.error("--subscribers, --workers, --batch-size, --send-concurrency,"
                     " --sendgrid-batch: at least 1; --kill-every: above 0")  # fmt: skip
    if not 0 <= args.unsubscribe_share <= 1:
        parser.error("--unsubscribe-share must be between 0 and 1")
    try:
        config = ChaosConfig(
            subscribers=args.subscribers, workers=args.workers, seed=args.seed,
            schedule_path=args.schedule.resolve(), kill_every=args.kill_every,
            min_kills=max(0, args.min_kills),
            redis_crashes=args.redis_crashes, unsubscribe_share=args.unsubscribe_share,
            rate_429=args.rate_429, rate_500=args.rate_500, rate_hang=args.rate_hang,
            hang_for=args.hang_s, start_spread_days=args.spread_days, var_dir=args.var,
            batch_size=args.batch_size, hang_drops=args.hang_drops,
            send_concurrency=args.send_concurrency, sendgrid_batch=args.sendgrid_batch,
            events=args.events, settle_window=args.settle_window,
        )  # fmt: skip
        Faults(config.rate_429, config.rate_500, config.rate_hang)
    except ValueError as exc:
        parser.error(str(exc))
    # Ctrl-C or a SIGTERM stops the run through its clean-up (workers, web app, redis-server),
    # even when started in the background, where SIGINT is ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_chaos(config, say=lambda line: print(line, flush=True))
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        return 130
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
