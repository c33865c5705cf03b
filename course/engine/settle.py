"""Settling uncertain sends, as part of the tick: each ``uncertain`` entry whose time has
come is looked at by the store's settle script (:mod:`course.store.settle`), which re-claims
it once when a later send's event proved the webhook is flowing past it and a whole settling
window has passed with no event for it. Re-claimed entries go to the workers like any claim;
``start_send`` checks once more that the reader may still be mailed (unsubscribe wins).

The cost grows with the number of uncertain entries due a look, never with subscribers.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial

from course.engine.ports import Item, LedgerStore
from course.logs import log_event

log = logging.getLogger("course.engine")
_log = partial(log_event, log)

DEFAULT_WINDOW = 30 * 60  # seconds: COURSE_SETTLE_WINDOW
RECHECK_AFTER = 60.0  # seconds before an entry still waiting for events is looked at again
ANSWERS = {1: "resent", 2: "armed", 0: "settled", -1: "not_mailable", -2: "waiting",
           -3: "paused", -4: "armed"}  # fmt: skip


def settle_uncertain(
    store: LedgerStore, ts: float, window: float, stale_after: float, limit: int = 10_000
) -> tuple[list[Item], Counter[str]]:
    """The entries re-claimed for a second send, and what happened to each one looked at."""
    items = store.uncertain_due(ts, limit)
    answers = store.settle_many(items, ts, window, ts + stale_after, ts + RECHECK_AFTER)
    counts: Counter[str] = Counter()
    work: list[Item] = []
    for (sub_id, lesson_id), answer in zip(items, answers, strict=True):
        counts[ANSWERS.get(answer, "other")] += 1
        if answer == 1:
            work.append((sub_id, lesson_id))
            _log(logging.WARNING, "resend", subscriber=sub_id, lesson=lesson_id,
                 reason="no event for it while a later send's event came")  # fmt: skip
        elif answer == 2:
            _log(logging.INFO, "settle_armed", subscriber=sub_id, lesson=lesson_id)
    return work, counts
