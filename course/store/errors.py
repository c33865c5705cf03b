"""The store's errors: what callers outside the store catch instead of redis's own.

:data:`StoreError` is redis's base error (an alias, not a wrapper): every failure of the
connection or a command raised through the store is one, so ``except StoreError`` and an
older ``except redis.RedisError`` catch the same things.
"""

from __future__ import annotations

import redis

StoreError = redis.RedisError
StoreConnectionError = redis.ConnectionError


class DuplicateSubscriber(ValueError):
    """A subscriber with this email address already exists."""


class ErasedAddress(DuplicateSubscriber):
    """The address was erased on request: nothing may be added for it, ever."""


class LayoutMismatch(Exception):
    """The store's layout is not this release's: older (run ``course migrate``), newer, or
    unknown. Its message is the one line a process prints as it refuses to start."""
