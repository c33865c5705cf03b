"""Subject experiments inside the course: who gets which subject, and when one has won.

Pure: no I/O. The store keeps the counts (``course.store.variants``), the tick asks
:func:`decide` at most once an hour (``course.engine.experiments``), ``course stats`` shows
:func:`wilson` intervals.

**Assignment.** A lesson with ``subject_variants`` has variants ``a``, ``b``, ``c``, ``d`` (in
the order listed). A reader's variant is :func:`variant_for`: SHA-256 of their id and the
lesson id, modulo the number of variants. It never changes for that reader and lesson (a
redelivery, a retry, a re-render all give the same subject) and it is independent between
lessons, so the same readers are not always in group ``a``.

**The rule of ``winner: auto``.** The measure is the *click rate*: readers who clicked a
link in the email (each once) over the emails sent with that subject. Opens are never used.

- Nothing is decided until every variant has been sent at least :data:`MIN_SAMPLE` times.
- The leader is the variant with the highest click rate (a tie: no leader, no winner).
- It wins when a two-proportion z-test (pooled, two-sided) against *each* other variant is
  significant at ``alpha / (k - 1)`` (Bonferroni for the k - 1 comparisons), where
  ``alpha`` is the share this *look* may spend (below).
- The counts are looked at again and again as sends come in, and each look is another
  chance of a false winner. So looks are counted: look ``j`` is taken once the smallest
  variant has ``MIN_SAMPLE * 2**j`` sends, each look is tested once, and look ``j`` spends
  ``ALPHA / 2**(j + 1)`` of the overall :data:`ALPHA` = 0.05 (0.025, 0.0125, ...: together at
  most 0.05). With equal subjects the chance that any look ever names a winner stays
  under 5 %.
- A decision is stored once and never changes; from then on every reader gets the winner's
  subject.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

VARIANT_NAMES = "abcd"  # variant letters, in the order ``subject_variants`` lists them
MIN_VARIANTS, MAX_VARIANTS = 2, 4
MIN_SAMPLE = 500  # sends per variant before ``winner: auto`` looks at all
ALPHA = 0.05  # the chance of naming a winner between equal subjects, over all looks
AUTO = "auto"
Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal: a 95 % interval


def variant_for(subscriber_id: str, lesson_id: str, n: int) -> int:
    """The index (0-based) of the variant ``subscriber_id`` gets for ``lesson_id`` among
    ``n``: SHA-256 of ``{subscriber_id}|{lesson_id}`` modulo ``n``. Stable and even."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    digest = hashlib.sha256(f"{subscriber_id}|{lesson_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def variant_letter(index: int) -> str:
    return VARIANT_NAMES[index]


def served_variant(
    subscriber_id: str,
    lesson_id: str,
    n: int,
    winner: str | None = None,
    winner_at: float | None = None,
    sent_at: float | None = None,
) -> str:
    """The letter of the subject a reader was sent: the winner's when one was decided
    before their send (``winner_at`` None: pinned, always), else their own variant."""
    if winner and (winner_at is None or (sent_at is not None and sent_at >= winner_at)):
        return winner
    return variant_letter(variant_for(subscriber_id, lesson_id, n))


def choose_variant(
    variants: int, pinned: str | None, decided: str | None, subscriber_id: str, lesson_id: str
) -> str | None:
    """The letter of the subject to send: None without variants; else the pinned letter
    (``winner: b``), else the stored decision of ``winner: auto``, else the reader's own."""
    if variants < MIN_VARIANTS:
        return None
    letters = VARIANT_NAMES[:variants]
    if pinned and pinned != AUTO and pinned in letters:
        return pinned
    if decided and decided in letters:  # a winner the schedule since lost is not one
        return decided
    return variant_letter(variant_for(subscriber_id, lesson_id, variants))


# -- statistics ---------------------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The two-sided p-value of a pooled two-proportion z-test of x1/n1 against x2/n2."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0  # both all or nothing: no evidence of a difference
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


# -- the rule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One variant's counts: emails sent with its subject, readers who clicked."""

    sent: int
    clicked: int

    @property
    def rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None


@dataclass(frozen=True)
class Winner:
    """A stored decision of ``winner: auto`` (``course.store.variants``)."""

    variant: str
    at: float  # epoch of the decision: sends from then on carry the winner's subject
    look: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """What one evaluation found. ``winner`` is a letter or None; ``look`` is the look taken
    (None: no look was due); ``reason`` says why, in one line."""

    winner: str | None
    look: int | None
    reason: str
    p_values: tuple[float, ...] = ()  # the leader against each other variant


def look_due(figures: Sequence[Figures], looks_taken: int, min_sample: int = MIN_SAMPLE) -> int:
    """The look that may be taken now (``looks_taken`` or later), or -1: none is due.

    Look ``j`` is due once every variant has ``min_sample * 2**j`` sends; when several
    thresholds were crossed since the last look, only the latest is taken (the ones
    skipped are not spent, which only makes the test stricter)."""
    smallest = min((f.sent for f in figures), default=0)
    if smallest < min_sample:
        return -1
    reached = (smallest // min_sample).bit_length() - 1  # floor(log2(smallest / min))
    return reached if reached >= looks_taken else -1


def decide(
    figures: Sequence[Figures],
    looks_taken: int = 0,
    min_sample: int = MIN_SAMPLE,
    alpha: float = ALPHA,
) -> Decision:
    """Apply the rule of ``winner: auto`` (see the module) to the variants' ``figures``,
    in variant order, of which ``looks_taken`` looks were taken before."""
    k = len(figures)
    if k < 2:
        return Decision(None, None, "fewer than two variants")
    look = look_due(figures, looks_taken, min_sample)
    if look < 0:
        smallest = min(f.sent for f in figures)
        if smallest < min_sample:
            return Decision(None, None, f"waiting: {smallest} of {min_sample} sends per variant")
        return Decision(None, None, f"waiting for look {looks_taken + 1}")
    rates = [f.rate or 0.0 for f in figures]
    best = max(rates)
    leaders = [i for i, rate in enumerate(rates) if rate == best]
    if len(leaders) > 1:
        return Decision(None, look, "no single leader")
    leader = leaders[0]
    level = alpha / 2 ** (look + 1) / (k - 1)
    lead = figures[leader]
    p_values = tuple(
        two_proportion_p(lead.clicked, lead.sent, other.clicked, other.sent)
        for i, other in enumerate(figures)
        if i != leader
    )
    letter = variant_letter(leader)
    if all(p < level for p in p_values):
        worst = max(p_values)
        return Decision(letter, look, f"{letter} leads, p <= {worst:.2g} < {level:.2g}", p_values)
    return Decision(None, look, f"{letter} leads, not significant at {level:.2g}", p_values)
