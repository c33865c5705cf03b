"""The short form of bench/chaos.py: the crash and fault test on a small course, in the suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_chaos():
    spec = importlib.util.spec_from_file_location("chaos_bench", ROOT / "bench" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_kills_a_redis_crash_and_a_faulty_provider_break_none_of_the_sending_rules(
    tmp_path, make_course
):
    chaos = load_chaos()
    config = chaos.ChaosConfig(
        subscribers=200,
        workers=3,
        seed=11,
        schedule_path=make_course(tmp_path / "course"),
        kill_every=1.5,  # uniform 0.75-2.25 s apart
        min_kills=2,  # and two at busy steps, however fast the run
        # Batches of 10: a 429 holds back less of a batch, so fewer simulated hours go by
        # with retries alone (bench/chaos.py defaults to the engine's 50).
        batch_size=10,
        # Day 0 in a few ticks and one time zone: fewer busy steps to wait through.
        start_spread_days=0.25,
        zones=("Europe/Berlin",),
        var_dir=tmp_path / "chaos",
        # The stand-in posts signed events to the web app: uncertain sends settle, so every
        # due lesson must be accepted (an uncertain one is missing).
        events=True,
    )

    report = chaos.run_chaos(config, say=lambda line: None)

    assert report.ok, "\n".join(report.lines())
    counts = report.counts
    assert counts["subscribers"] == 200
    assert counts["worker kills"] >= 2
    assert counts["redis crashes"] == 1
    assert counts["unsubscribed"] == 20
    assert counts["429 answers"] > 0 and counts["500 answers"] > 0 and counts["hangs"] > 0
    assert counts["retries"] > 0
    # 180 stay for all four lessons; 20 leave somewhere along the way.
    settled = counts["emails accepted"] + counts["uncertain"] - counts["  of them accepted"]
    assert 180 * 4 <= settled - counts["canary readers"] <= 200 * 4 + counts["canary readers"]
    assert counts["events posted"] > 0 and report.violations["missing"] == []
