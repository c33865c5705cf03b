"""Subscriber state in Redis: the only package that speaks Redis.

:mod:`course.store.keys` documents every key; :class:`Store` (:mod:`course.store.facade`)
is the one object callers use, made of one part per concept: subscriber records
(:mod:`.subscribers`), its layout version (:mod:`.layout`, moved on by :mod:`.migrate`), the
due index (:mod:`.due`), the ledger (:mod:`.ledger`; its entries live in the records' hashes
under numbers: :mod:`.entries`), counters (:mod:`.counters`), readers' check-ins
(:mod:`.checkins`), the web app's state (:mod:`.web_state`), the schedule's snapshot and
status board (:mod:`.snapshot`) and what an erase needs (:mod:`.privacy`). Records are
encoded in :mod:`.codec`; the errors to catch are in :mod:`.errors`.
"""

from course.store.codec import encode_subscriber, normalise_address, suppression_hash
from course.store.errors import (
    DuplicateSubscriber,
    ErasedAddress,
    LayoutMismatch,
    StoreConnectionError,
    StoreError,
)
from course.store.facade import Client, Store, connect
from course.store.keys import DEFAULT_PREFIX, member, split_member
from course.store.ledger import FINISH_FROM, Claim, Outcome
from course.store.web_state import ADDRESS_WINDOW

__all__ = [
    "ADDRESS_WINDOW",
    "DEFAULT_PREFIX",
    "FINISH_FROM",
    "Claim",
    "Client",
    "DuplicateSubscriber",
    "ErasedAddress",
    "LayoutMismatch",
    "Outcome",
    "Store",
    "StoreConnectionError",
    "StoreError",
    "connect",
    "encode_subscriber",
    "member",
    "normalise_address",
    "split_member",
    "suppression_hash",
]
