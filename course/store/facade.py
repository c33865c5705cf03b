"""The :class:`Store`: one object composed of the store's parts (subscribers, due index,
ledger, counters, check-ins, web state, schedule state, privacy, replies, retention, subject
experiments), so callers write ``store.method(...)`` whatever part it is in; and
:func:`connect`, which makes the Redis client it is given.
"""

from __future__ import annotations

from typing import Any

import redis

from course.store.broadcasts import CLAIM_SCRIPT as CLAIM_BROADCAST_SCRIPT
from course.store.broadcasts import BroadcastRecords
from course.store.checkins import RECORD_SCRIPT, CheckIns
from course.store.counters import Counters
from course.store.due import DueIndex
from course.store.errors import StoreError
from course.store.keys import DEFAULT_PREFIX
from course.store.layout import LayoutRecords
from course.store.ledger import (
    CLAIM_SCRIPT,
    ENTRY_SCRIPT,
    FINISH_SCRIPT,
    START_SEND_SCRIPT,
    Ledger,
)
from course.store.listing import COUNT_STATUSES_SCRIPT, SubscriberListing
from course.store.migrate import Migrations
from course.store.privacy import ERASE_SCRIPT, PrivacyRecords
from course.store.replies import ADD_REPLY_SCRIPT, ReplyRecords
from course.store.retention import (
    BACKFILL_SCRIPT,
    RELEASE_SCRIPT,
    RETIRE_SCRIPT,
    RetentionRecords,
)
from course.store.segments import FACTS_SCRIPT, SegmentReads
from course.store.settle import MARK_SCRIPT, SETTLE_SCRIPT, Settling
from course.store.snapshot import ScheduleState
from course.store.subscribers import (
    ADD_MANY_SCRIPT,
    ADD_SCRIPT,
    SUPPRESS_SCRIPT,
    UPDATE_SCRIPT,
    SubscriberRecords,
)
from course.store.variants import VariantRecords
from course.store.web_state import WebState

Client = redis.Redis  # what :func:`connect` returns, for annotations outside the store


def connect(url: str, **options: Any) -> Client:
    """A client for the Redis at ``url``; ``options`` are redis-py's (timeouts, decoding)."""
    return redis.Redis.from_url(url, **options)


class Store(
    SubscriberRecords,
    SubscriberListing,
    DueIndex,
    Ledger,
    Settling,
    Counters,
    CheckIns,
    WebState,
    ScheduleState,
    PrivacyRecords,
    ReplyRecords,
    RetentionRecords,
    SegmentReads,
    LayoutRecords,
    Migrations,
    BroadcastRecords,
    VariantRecords,
):
    """Redis access for subscribers, the due index and the ledger. The client is passed in."""

    Error = StoreError  # ``except store.Error`` without importing redis

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.redis = client
        self.prefix = prefix
        self._add_many = client.register_script(ADD_MANY_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._start_send = client.register_script(START_SEND_SCRIPT)
        self._finish = client.register_script(FINISH_SCRIPT)
        self._entry = client.register_script(ENTRY_SCRIPT)
        self._update = client.register_script(UPDATE_SCRIPT)
        self._add = client.register_script(ADD_SCRIPT)
        self._suppress = client.register_script(SUPPRESS_SCRIPT)
        self._count_statuses = client.register_script(COUNT_STATUSES_SCRIPT)
        self._erase = client.register_script(ERASE_SCRIPT)
        self._add_reply = client.register_script(ADD_REPLY_SCRIPT)
        self._record_checkin = client.register_script(RECORD_SCRIPT)
        self._retire = client.register_script(RETIRE_SCRIPT)
        self._backfill = client.register_script(BACKFILL_SCRIPT)
        self._release_lock = client.register_script(RELEASE_SCRIPT)
        self._settle = client.register_script(SETTLE_SCRIPT)
        self._mark = client.register_script(MARK_SCRIPT)
        self._facts = client.register_script(FACTS_SCRIPT)
        self._claim_broadcast = client.register_script(CLAIM_BROADCAST_SCRIPT)

    def ping(self) -> None:
        """Ask Redis whether it answers: raises :data:`StoreError` when it does not."""
        self.redis.ping()

    def server_facts(self) -> dict[str, str]:
        """What ``course doctor`` checks of the server, read from INFO (a hardened server,
        the embedded one included, refuses CONFIG): ``redis_version``, ``aof_enabled``
        (``"1"`` or ``"0"``) and ``maxmemory_policy``."""
        info = {**self.redis.info("server"), **self.redis.info("persistence")}
        info.update(self.redis.info("memory"))
        names = ("redis_version", "aof_enabled", "maxmemory_policy")
        return {name: str(info.get(name, "")) for name in names}
