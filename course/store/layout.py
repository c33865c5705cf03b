"""The store's layout version (``P layout``) and the check every process makes as it starts.

Layout 1 is the layout of the release before layouts were recorded (a store with subscribers
and no ``P layout`` key is layout 1). Layout 2 is layout 1 with the version key and every
``uncertain`` ledger entry in the ``P uncertain`` index. Layout 3 splits the email index (one
``P email`` hash) into small hashes ``P e:{bucket}`` (course.store.codec.EMAIL_BUCKETS of
them). Layout 4 names a record's fields with one or two letters (course.store.codec
STORED_NAMES). Layout 5 has no signup index (``P subs``): listing SCANs the records and
``P subs:count`` counts them. Layout 6 splits the due index (one ``P due`` zset) into
small zsets ``P due:{bucket}`` (course.store.keys.DUE_BUCKETS of them). Layout 7 keeps each
reader's ledger in their record's hash (no ``P ledger:{id}``), each entry under a number
(``P entries:number``) and a first-attempt ``sent`` entry as its bare epoch
(course.store.entries). :data:`LAYOUT` is
the layout this release reads and writes; ``course migrate``
(:mod:`course.store.migrate`) moves an older store to it. A store with no subscriber is
stamped with :data:`LAYOUT` when a process first starts on it, and by the scripts that add
subscribers.
"""

from __future__ import annotations

import redis

from course.store.codec import as_str
from course.store.errors import LayoutMismatch
from course.store.keys import Keys

LAYOUT = 7  # the layout this release reads and writes


def older_message(found: int) -> str:
    return (
        f"store layout {found} is older than this release's layout {LAYOUT}: stop the workers "
        "and run `course migrate`"
    )


def newer_message(found: int) -> str:
    return (
        f"store layout {found} was written by a newer release (this one knows layout "
        f"{LAYOUT}): run that release, or restore the backup made before the upgrade"
    )


class LayoutRecords(Keys):
    """``P layout``: what layout the store is in, and stamping an empty one."""

    redis: redis.Redis

    def stored_layout(self) -> int | None:
        """The store's layout: the version key, else 1 when it holds layout 1's subscriber
        indexes, else None (no subscriber yet: any layout fits).
        Raises :class:`LayoutMismatch` for a version key that is not a number."""
        raw = self.redis.get(self.layout_key)
        if raw is not None:
            text = as_str(raw)
            if not text.isdigit():
                raise LayoutMismatch(
                    f"store layout {text!r} ({self.layout_key}) is not a layout this release "
                    "knows: restore the backup made before the upgrade"
                )
            return int(text)
        if self.redis.exists(self.subs_key, self.legacy_email_key, self.legacy_due_key):
            return 1
        return None

    def require_layout(self) -> int:
        """Check, as a process starts, that the store is in this release's layout; an empty
        store is stamped with it. Raises :class:`LayoutMismatch` with the one line to print."""
        found = self.stored_layout()
        if found is None:
            self.redis.set(self.layout_key, LAYOUT, nx=True)
            found = self.stored_layout()
        if found is None or found == LAYOUT:
            return LAYOUT
        raise LayoutMismatch(older_message(found) if found < LAYOUT else newer_message(found))

    def set_layout(self, layout: int) -> None:
        self.redis.set(self.layout_key, layout)
