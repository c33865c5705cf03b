"""The :class:`Store`: one object composed of the store's parts (subscribers, due index,
ledger, counters, web state), so callers write ``store.method(...)`` whatever part it is in.
"""

from __future__ import annotations

import redis

from course.store.counters import Counters
from course.store.due import DueIndex
from course.store.errors import StoreError
from course.store.keys import DEFAULT_PREFIX
from course.store.ledger import CLAIM_SCRIPT, FINISH_SCRIPT, START_SEND_SCRIPT, Ledger
from course.store.subscribers import (
    ADD_MANY_SCRIPT,
    ADD_SCRIPT,
    COUNT_STATUSES_SCRIPT,
    SUPPRESS_SCRIPT,
    UPDATE_SCRIPT,
    SubscriberRecords,
)
from course.store.web_state import WebState


class Store(SubscriberRecords, DueIndex, Ledger, Counters, WebState):
    """Redis access for subscribers, the due index and the ledger. The client is passed in."""

    Error = StoreError  # ``except store.Error`` without importing redis

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.redis = client
        self.prefix = prefix
        self._add_many = client.register_script(ADD_MANY_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._start_send = client.register_script(START_SEND_SCRIPT)
        self._finish = client.register_script(FINISH_SCRIPT)
        self._update = client.register_script(UPDATE_SCRIPT)
        self._add = client.register_script(ADD_SCRIPT)
        self._suppress = client.register_script(SUPPRESS_SCRIPT)
        self._count_statuses = client.register_script(COUNT_STATUSES_SCRIPT)
