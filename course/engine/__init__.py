"""The sending engine: what a tick claims and what a worker does with a claimed lesson.

The engine works on the ports it is given (:mod:`course.engine.ports`: a ledger store and a
messenger, plus a schedule, a renderer and an ``enqueue`` callable) and takes ``now`` as a
parameter; Celery and the CLI are thin edges around it.

At most once: a tick (:mod:`course.engine.tick`) *claims* a lesson for a subscriber with one
atomic script (only while the subscriber is active and the lesson is not in their ledger yet),
which also moves the due index forward. A worker (:mod:`course.engine.deliver`) moves a claimed
entry to ``sending`` with a second atomic step that checks the subscriber may still be mailed
(unsubscribe wins), then hands the email to the provider. An entry left in ``sending`` by a
worker that died is marked ``uncertain`` by a later tick; with a signed webhook, the tick
re-sends it once when later sends' events prove the provider never had it
(:mod:`course.engine.settle`).
"""

from course.engine.deliver import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MAX_ATTEMPTS,
    SKIP_REASONS,
    DeliverResult,
    backoff,
    deliver,
)
from course.engine.ports import Enqueue, Item, LedgerStore, LinkMaker, Messenger
from course.engine.tick import RACE_ROUNDS, STALE_AFTER, TASK_BATCH_SIZE, TickResult, tick

# Older call sites import it from here; its home is course.progress.
from course.progress import next_send

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_ATTEMPTS",
    "RACE_ROUNDS",
    "SKIP_REASONS",
    "STALE_AFTER",
    "TASK_BATCH_SIZE",
    "DeliverResult",
    "Enqueue",
    "Item",
    "LedgerStore",
    "LinkMaker",
    "Messenger",
    "TickResult",
    "backoff",
    "deliver",
    "next_send",
    "tick",
]
