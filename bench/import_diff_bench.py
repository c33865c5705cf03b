"""Import, diff and export at scale, each as a user runs it (the ``course`` command).

    .venv/bin/python bench/import_diff_bench.py [ROWS]      # default 100,000

Starts a redis-server of its own under a temporary folder, writes a CSV of ROWS subscribers
(varied zones, signups over the last 60 days, places in the course from ``last_lesson``), then
times, each in a fresh ``course`` process on the shipped schedule:
  import  - course subscribers import people.csv
  diff    - course diff schedule.yaml edited.yaml (a lesson added, one removed, an offset moved)
  export  - course subscribers export out.csv
Targets (issue 6): import well under a minute; the diff in seconds. On a busy machine the
wall-clock time is mostly waiting for a core: the CPU column is the process's own work.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.schedule import load_schedule  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC",
         "America/Los_Angeles", "Europe/London", "Asia/Kolkata"]  # fmt: skip


def write_csv(path: Path, rows: int, now: datetime, lessons: list[tuple[str, int]]) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,timezone,signup_time,consent_source,last_lesson\r\n")
        for n in range(rows):
            days = rng.uniform(0, 60)
            signup = now - timedelta(days=days)
            reached = [lesson_id for lesson_id, day in lessons if day < days - 1]
            last = reached[-1] if reached and n % 10 else ""  # a tenth catch up from the start
            out.write(f"p{n}@example.com,Pat,{rng.choice(ZONES)},"
                      f"{signup.isoformat()},bench list,{last}\r\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Import, diff and export at scale, timed.")
    parser.add_argument("rows", nargs="?", type=int, default=100_000, help="CSV rows")
    rows = parser.parse_args().rows
    if rows < 1:
        parser.error("ROWS must be at least 1")
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="course-bench-") as temp:
        folder = Path(temp)
        url = ensure_embedded_redis(folder / "redis")
        try:
            schedule = load_schedule(ROOT / "schedule.yaml")
            lessons = [(lesson.id, lesson.day) for lesson in schedule.lessons]
            people = folder / "people.csv"
            write_csv(people, rows, now, lessons)
            edited = edit_schedule(folder / "edited")
            env = {**os.environ, "REDIS_URL": url, "COURSE_SCHEDULE": str(ROOT / "schedule.yaml"),
                   "COURSE_VAR_DIR": str(folder / "var")}  # fmt: skip

            def course(*args: str) -> tuple[float, float]:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "course", *args], env=env,
                                      capture_output=True, text=True)  # fmt: skip
                elapsed = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                if done.returncode != 0:
                    raise SystemExit(f"course {' '.join(args)} failed:\n{done.stderr}")
                print(done.stdout.strip()[-1500:])
                return elapsed, cpu

            size = people.stat().st_size / 1e6
            timed = {"import": course("subscribers", "import", str(people))}
            timed["diff"] = course("diff", str(ROOT / "schedule.yaml"), str(edited),
                                   "--now", now.isoformat())  # fmt: skip
            timed["export"] = course("subscribers", "export", str(folder / "out.csv"))
            print(f"\n{rows:,} subscribers ({size:.1f} MB of CSV), each a fresh process")
            print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
            print("           wall    CPU of the course process (start-up included)")
            for name, (seconds, cpu) in timed.items():
                print(f"  {name:7s} {seconds:6.2f} s {cpu:6.2f} s")
        finally:
            stop_embedded_redis(folder / "redis")


def edit_schedule(folder: Path) -> Path:
    """The shipped schedule with a lesson renamed (removed and added) and an offset changed."""
    shutil.copytree(ROOT / "templates", folder / "templates")
    text = (ROOT / "schedule.yaml").read_text()
    schedule = load_schedule(ROOT / "schedule.yaml")
    removed = schedule.lesson("food-as-input")
    moved = schedule.lesson("gentle-movement")
    # 'food-as-input' renamed (a delete plus an add) and a day later; 'gentle-movement' moved.
    text = text.replace(f"- id: {removed.id}\n        day: {removed.day}\n",
                        f"- id: food-and-flares\n        day: {removed.day + 1}\n")  # fmt: skip
    text = text.replace(f"{moved.id}\n        day: {moved.day}\n",
                        f"{moved.id}\n        day: {moved.day + 2}\n")  # fmt: skip
    path = folder / "schedule.yaml"
    path.write_text(text)
    return path


if __name__ == "__main__":
    main()
