"""The benchmarks still run: tiny tick and throughput benchmarks end to end (own servers)."""

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


def test_throughput_benchmark_runs_small_and_prints_its_ratio_last():
    """Both pipelines deliver every email exactly once (or the benchmark exits 1)."""
    command = [sys.executable, str(ROOT / "bench" / "throughput_bench.py")]
    command += ["--count", "200", "--naive-count", "40", "--latencies", "0", "--chart", ""]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("ours / naive emails per second (target >= 10x): 0 ms: ")
    assert any(line.startswith("ours ") and " 200 " in line for line in lines)
    assert any(line.startswith("naive ") and " 40 " in line for line in lines)
