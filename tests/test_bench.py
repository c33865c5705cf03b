"""The benchmarks still run: tiny tick and throughput benchmarks end to end (own servers)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from course.schedule import load_schedule

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


def test_the_record_profile_explains_each_record_to_the_byte():
    """The field-by-field split of a record adds up to what the server says it takes."""
    command = [sys.executable, str(ROOT / "bench" / "record_profile.py")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = {line[:32].strip(): line[32:].split() for line in done.stdout.splitlines()[1:]}
    totals = [int(n) for n in rows["total (MEMORY USAGE)"]]
    assert len(totals) == 6 and all(total > 100 for total in totals)
    assert all(abs(int(n)) <= 2 for n in rows["not explained by the model"])
    parts = [name for name in rows if not name.startswith(("total", "(", "not explained"))]
    for column, total in enumerate(totals):
        explained = sum(int(rows[name][column]) for name in parts)
        assert abs(total - explained) <= 2
    completed = int(rows["(ledger entries: count)"][2])  # every lesson of the course
    assert completed == len(load_schedule(ROOT / "schedule.yaml").lessons)
    assert int(rows["ledger entries"][2]) < 9 * completed  # numbered fields, bare epochs


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


def test_web_benchmark_runs_small_beside_its_bare_endpoints_and_prints_the_ratios_last():
    """Every signup queued, every unsubscribe applied, no errors (or it exits 1); the table
    has the four scenarios with their Redis commands per request, and the ratios come last.
    Timings are not checked: only that they are printed."""
    command = [sys.executable, str(ROOT / "bench" / "web_bench.py")]
    command += ["--requests", "40", "--connections", "4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    assert lines[header].split() == ["scenario", "requests", "seconds", "req/s", "p50", "ms",
                                     "p99", "ms", "cmds/req", "errors"]  # fmt: skip
    rows = {}
    for line in lines[header + 1 : header + 5]:
        name, numbers = re.match(r"(\D+?)\s+(\d.*)", line).groups()
        rows[name] = numbers.split()
    assert list(rows) == ["signup", "signup bare", "unsubscribe", "unsubscribe bare"]
    for numbers in rows.values():
        assert numbers[0] == "40" and numbers[-1] == "0"  # requests, errors
        assert all(float(value) >= 0 for value in numbers[1:-1])
    # The bare endpoints do the same Redis work as the routes they stand beside (give or take
    # the set-up of a new connection now and then: a few commands over a whole run).
    for name in ("signup", "unsubscribe"):
        assert abs(float(rows[name][5]) - float(rows[f"{name} bare"][5])) < 1, rows
    assert "errors: 0 (ok)" in lines
    ratio = r"(\d+\.\d\d)x \(p50 (\d+\.\d\d)x, p99 (\d+\.\d\d)x\)"
    assert re.fullmatch(
        rf"bare / ours requests per second \(target <= 2x\): signup {ratio}; unsubscribe {ratio}",
        lines[-1],
    ), lines[-1]


def test_signup_timing_probe_runs_small_and_prints_the_median_difference_last():
    command = [sys.executable, str(ROOT / "bench" / "signup_timing.py"), "--pairs", "6"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"median answer, active address: \d+\.\d\d ms", lines[-3])
    assert re.fullmatch(r"median answer, new address: +\d+\.\d\d ms", lines[-2])
    assert re.fullmatch(r"median of \(new - active\) per pair: [+-]\d+\.\d\d ms", lines[-1])


def test_segment_benchmark_runs_small_and_prints_its_ratio_last():
    command = [sys.executable, str(ROOT / "bench" / "segment_bench.py")]
    command += ["--total", "400", "--small", "100", "--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"segment count per subscriber over 400 / over 100 = [\d.]+x", lines[-1])
    assert "status:active not-received:sleep-first" in done.stdout
    assert "redis://" not in done.stdout  # the throwaway server's password stays out


def test_broadcast_benchmark_runs_small_and_prints_its_rates_last():
    """Every recipient claimed once, a re-run claims nobody, every email accepted once by the
    stand-in and counted sent in the ledger (or the benchmark exits 1)."""
    command = [sys.executable, str(ROOT / "bench" / "broadcast_bench.py")]
    command += ["--count", "100", "--others", "10"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"claim rate [\d,]+/s, send rate [\d,]+/s", lines[-1]), lines[-1]
    assert any(line.startswith("claim: 100 in ") and "re-run claimed 0" in line for line in lines)
    assert any(line.startswith("send: 100 in ") and "{'sent': 100}" in line for line in lines)
