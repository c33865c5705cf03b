"""Subject experiments, the pure part: stable, balanced assignment and the rule of
``winner: auto`` on simulated data (course.experiments)."""

from __future__ import annotations

import math
import random

import pytest

from course.experiments import (
    ALPHA,
    MIN_SAMPLE,
    Figures,
    choose_variant,
    decide,
    look_due,
    served_variant,
    two_proportion_p,
    variant_for,
    wilson,
)

# Chi-square critical values at p = 0.001 for 1..3 degrees of freedom: a fair assignment
# fails this test one time in a thousand, and the ids are fixed, so it never flakes.
CHI2_999 = {1: 10.828, 2: 13.816, 3: 16.266}


@pytest.mark.parametrize("n", [2, 3, 4])
def test_assignment_is_balanced_over_10000_ids(n):
    counts = [0] * n
    for i in range(10_000):
        counts[variant_for(f"sub{i:05d}", "sleep-first", n)] += 1
    expected = 10_000 / n
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < CHI2_999[n - 1], counts


def test_assignment_is_stable_and_independent_between_lessons():
    ids = [f"id-{i}" for i in range(2000)]
    first = [variant_for(i, "welcome", 2) for i in ids]
    assert first == [variant_for(i, "welcome", 2) for i in ids]  # same answer every time
    assert variant_for("abc", "welcome", 2) == variant_for("abc", "welcome", 2)
    other = [variant_for(i, "sleep-first", 2) for i in ids]
    same = sum(a == b for a, b in zip(first, other, strict=True))
    assert 900 < same < 1100  # about half: not the same readers in group a every time


def test_assignment_refuses_no_variants():
    with pytest.raises(ValueError):
        variant_for("x", "y", 0)


def test_served_variant_follows_the_winner_from_its_decision_on():
    own = served_variant("r1", "welcome", 2)
    other = "b" if own == "a" else "a"
    assert served_variant("r1", "welcome", 2, other, winner_at=100.0, sent_at=50.0) == own
    assert served_variant("r1", "welcome", 2, other, winner_at=100.0, sent_at=150.0) == other
    assert served_variant("r1", "welcome", 2, other) == other  # pinned: always


def test_choose_variant_pinned_then_decided_then_own():
    own = "ab"[variant_for("r1", "welcome", 2)]
    assert choose_variant(0, None, None, "r1", "welcome") is None
    assert choose_variant(2, None, None, "r1", "welcome") == own
    assert choose_variant(2, "auto", "b", "r1", "welcome") == "b"
    assert choose_variant(2, "a", "b", "r1", "welcome") == "a"
    # a winner decided among three, then the schedule kept two: not a winner any more
    assert choose_variant(2, "auto", "c", "r1", "welcome") == own


def test_wilson_interval_matches_known_values():
    low, high = wilson(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4)
    assert high == pytest.approx(0.1744, abs=1e-4)
    assert wilson(0, 0) is None
    low, high = wilson(0, 50)
    assert low == pytest.approx(0.0) and 0 < high < 0.08


def test_two_proportion_p_value():
    # 20/200 against 40/200: pooled 0.15, z = -2.80, p = 0.0051
    assert two_proportion_p(20, 200, 40, 200) == pytest.approx(0.0051, abs=1e-4)
    assert two_proportion_p(0, 100, 0, 100) == 1.0


def test_no_winner_before_the_minimum_sample():
    # a huge difference, but variant b has one send short of the minimum
    figures = [Figures(MIN_SAMPLE, 250), Figures(MIN_SAMPLE - 1, 5)]
    decision = decide(figures)
    assert decision.winner is None and decision.look is None
    assert "waiting" in decision.reason


def test_a_clear_winner_is_found():
    decision = decide([Figures(1000, 30), Figures(1000, 80), Figures(1000, 35)])
    assert decision.winner == "b"
    assert decision.look == 1
    assert len(decision.p_values) == 2


def test_a_leader_that_beats_only_one_other_does_not_win():
    decision = decide([Figures(600, 60), Figures(600, 58), Figures(600, 20)])
    assert decision.winner is None
    assert decision.reason.startswith("a leads")


def test_each_look_is_taken_once():
    figures = [Figures(1200, 30), Figures(1100, 31)]
    assert look_due(figures, 0) == 1  # the smallest has 2.2x the minimum
    assert look_due(figures, 2) == -1  # taken already
    assert decide(figures, looks_taken=2).look is None


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in ``n`` trials, by jumping from one success to the next."""
    count, position, log_q = 0, 0, math.log(1 - p)
    while True:
        position += int(math.log(1 - rng.random()) / log_q) + 1
        if position > n:
            return count
        count += 1


def _run(rng: random.Random, rates: list[float], looks: int = 4) -> str | None:
    """One experiment, looked at as the rule does, at every doubling of the sample."""
    sent = [0] * len(rates)
    clicked = [0] * len(rates)
    taken = 0
    for look in range(looks):
        target = MIN_SAMPLE * 2**look
        for i, rate in enumerate(rates):
            clicked[i] += _binomial(rng, target - sent[i], rate)
            sent[i] = target
        decision = decide([Figures(s, c) for s, c in zip(sent, clicked, strict=True)], taken)
        assert decision.look == look
        taken = look + 1
        if decision.winner:
            return decision.winner
    return None


@pytest.mark.parametrize("rates", [[0.04, 0.04], [0.05, 0.05, 0.05]])
def test_equal_subjects_rarely_produce_a_winner(rates):
    rng = random.Random(18)
    runs = 1000
    false = sum(_run(rng, rates) is not None for _ in range(runs))
    # at most ALPHA by construction; allow the sampling error of 1000 runs (3 sigma)
    assert false / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs), false


def test_a_better_subject_usually_wins_and_the_worse_almost_never():
    rng = random.Random(7)
    winners = [_run(rng, [0.03, 0.05]) for _ in range(300)]
    assert winners.count("b") / 300 > 0.9
    assert winners.count("a") <= 3
