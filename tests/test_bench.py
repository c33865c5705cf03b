"""The benchmarks still run: a tiny tick benchmark end to end (its own redis-server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tick_benchmark_runs_small_and_prints_its_ratio_last():
    command = [sys.executable, str(ROOT / "bench" / "tick_bench.py")]
    command += ["--total", "300", "--due", "30", "--rounds", "1"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("tick over 300 / over 30 = ")
    assert "Memory, fresh" in done.stdout and "Memory, mix" in done.stdout
    assert "over        30 stored:" in done.stdout  # each tick claimed all 30, or it exits 1
