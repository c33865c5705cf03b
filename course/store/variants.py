"""Subject experiments in Redis: the counts per lesson and variant (``P variant:lesson:{id}``),
who clicked (``P variant:clicked:{id}``), the decisions of ``winner: auto``
(``P variant:winners``), the looks taken (``P variant:looks``) and the hourly turn
(``P variant:check``). The rule itself is pure: :mod:`course.experiments`.

Memory: a few keys per lesson that has ``subject_variants``; the clicked set holds the ids
of the readers who clicked that lesson's email (a few per cent of its readers).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import redis

from course.experiments import Winner
from course.store.codec import as_str
from course.store.keys import Keys

FIELDS = ("sent", "clicks", "clicked", "checkins", "unsubscribed")

# KEYS: the lesson's variant hash, its clicked set
# ARGV: variant letter, subscriber id
# One click event: counted, and the reader counted once among those who clicked.
# Returns 1 when it was the reader's first click on that lesson, else 0.
CLICK_SCRIPT = """
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':clicks', 1)
if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':clicked', 1)
  return 1
end
return 0
"""

# KEYS: the looks hash
# ARGV: lesson id, look
# Takes look ARGV[2] of a lesson's experiment unless it (or a later one) was taken: each look
# is tested once, even by two ticks at the same time. Returns 1 when taken here, else 0.
LOOK_SCRIPT = """
local taken = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local look = tonumber(ARGV[2])
if look < taken then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], look + 1)
return 1
"""


class VariantRecords(Keys):
    """The counts and decisions of subject experiments."""

    redis: redis.Redis

    def count_variant_sends(
        self, lesson_id: str, n: int, pin: str | None, letters: Iterable[str]
    ) -> None:
        """Count emails of ``lesson_id`` finished ``sent``, one letter each; keep the number
        of variants ``n`` and the pinned letter, so a reader's variant can be recomputed."""
        counts = Counter(letters)
        if not counts:
            return
        key = self.variant_key(lesson_id)
        pipe = self.redis.pipeline(transaction=False)
        for letter, amount in counts.items():
            pipe.hincrby(key, f"{letter}:sent", amount)
        pipe.hset(key, "n", n)
        if pin:
            pipe.hset(key, "pin", pin)
        else:
            pipe.hdel(key, "pin")
        pipe.execute()

    def count_variant_click(self, lesson_id: str, letter: str, sub_id: str) -> bool:
        """One click event on variant ``letter``; True when it is the reader's first."""
        keys = [self.variant_key(lesson_id), self.variant_clicked_key(lesson_id)]
        return bool(self.redis.eval(CLICK_SCRIPT, 2, *keys, letter, sub_id))

    def count_variant_reader(self, lesson_id: str, letter: str, field: str) -> None:
        """Count one reader under ``field`` (checkins, unsubscribed) of variant ``letter``."""
        if field not in FIELDS:
            raise ValueError(field)
        self.redis.hincrby(self.variant_key(lesson_id), f"{letter}:{field}", 1)

    def variant_basis(self, lesson_id: str) -> tuple[int, str | None]:
        """(number of variants, pinned letter) as of the lesson's last counted send;
        (0, None) when no email of it was ever sent as part of an experiment."""
        n, pin = self.redis.hmget(self.variant_key(lesson_id), "n", "pin")
        return (int(n) if n else 0), (as_str(pin) if pin else None)

    def variant_counts(self, lesson_ids: Iterable[str]) -> dict[str, dict[str, dict[str, int]]]:
        """lesson -> letter -> field -> count, in one round trip; lessons without counts
        are left out."""
        ids = list(lesson_ids)
        pipe = self.redis.pipeline(transaction=False)
        for lesson_id in ids:
            pipe.hgetall(self.variant_key(lesson_id))
        found: dict[str, dict[str, dict[str, int]]] = {}
        for lesson_id, raw in zip(ids, pipe.execute(), strict=True):
            by_letter: dict[str, dict[str, int]] = {}
            for key, value in raw.items():
                letter, _, field = as_str(key).partition(":")
                if field in FIELDS:
                    by_letter.setdefault(letter, {})[field] = int(value)
            if by_letter:
                found[lesson_id] = by_letter
        return found

    def experiment_winners(self) -> dict[str, Winner]:
        """Every decision of ``winner: auto``, by lesson."""
        raw = self.redis.hgetall(self.variant_winners_key)
        winners = {}
        for key, value in raw.items():
            data = json.loads(value)
            winners[as_str(key)] = Winner(
                data["variant"], float(data["at"]), int(data["look"]), data["reason"]
            )
        return winners

    def record_winner(self, lesson_id: str, winner: Winner) -> bool:
        """Store a decision unless one is stored (it never changes); True when stored here."""
        value = json.dumps({"variant": winner.variant, "at": winner.at, "look": winner.look,
                            "reason": winner.reason})  # fmt: skip
        return bool(self.redis.hsetnx(self.variant_winners_key, lesson_id, value))

    def looks_taken(self, lesson_id: str) -> int:
        value = self.redis.hget(self.variant_looks_key, lesson_id)
        return int(value) if value else 0

    def take_look(self, lesson_id: str, look: int) -> bool:
        """Take look ``look`` of a lesson's experiment; False when it was taken already."""
        return bool(self.redis.eval(LOOK_SCRIPT, 1, self.variant_looks_key, lesson_id, look))

    def claim_experiment_turn(self, seconds: int = 3600) -> bool:
        """True for the first caller in each ``seconds``: the experiments are looked at then."""
        return bool(self.redis.set(self.variant_check_key, "1", nx=True, ex=seconds))
