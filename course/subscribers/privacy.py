"""GDPR: everything held about one address (export), and erasing it for good.

A person may have had several subscriber records: each re-signup after an unsubscribe,
bounce or complaint makes a new one (a new consent record), and the ``email`` hash maps only
the newest. Each new record names the one it replaced in its ``prior`` field, so the chain
from the current holder finds them all. Records made before that field existed are found
only by reading every record (``scan=True``, the CLI's ``--scan``).

Erasing deletes every record of the address with its ledger, its check-ins, its replies (the
emails the person sent the course), its due, pending, listing and quarantine entries, the address
mapping and the per-address rate-limit counters, and adds the address's
:func:`~course.store.suppression_hash` to ``P suppressed``: nothing can be added for it
again (a later signup gets the usual neutral answer and nothing is sent).
The suppression entry goes in first, so no signup can slip in while the records go. Then
every record is suppressed (status ``unsubscribed``, as an unsubscribe would: no send can
start for it any more), and a lesson already on its way is waited for
(:func:`course.subscribers.lifecycle.wait_for_sends`) before the records are deleted: after the
erase has answered, nothing more is sent to the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from course.models.subscriber import LedgerEntry, to_instant
from course.store import ADDRESS_WINDOW, Store, normalise_address
from course.subscribers.lifecycle import SEND_SETTLE, wait_for_sends
from course.subscribers.signup import address_key
from course.subscribers.variants import count_reader

MAX_CHAIN = 1000  # records one address may have had; a guard against a damaged chain
SCAN_BATCH = 1000


@dataclass(frozen=True)
class Erased:
    address: str
    records: list[str]  # ids of the records removed
    keys: int  # Redis keys deleted (records, ledgers, counters)
    already: bool  # the address was suppressed before this erase


def _iso(epoch: float | None) -> str | None:
    return to_instant(epoch).isoformat() if epoch is not None else None


def record_ids(store: Store, address: str, scan: bool = False) -> list[str]:
    """Every subscriber record that held ``address``, newest first.

    The current holder and the records it replaced (``prior``); with ``scan`` also any
    record whose ``email`` field is the address, read from every record (slow: for data
    made before the ``prior`` field existed)."""
    address = normalise_address(address)
    found: list[str] = []
    sub_id = store.address_holder(address)
    while sub_id and sub_id not in found and len(found) < MAX_CHAIN:
        email, prior = store.email_and_prior(sub_id)
        if email is None:  # vanished: the chain ends here
            break
        if email == address:
            found.append(sub_id)
        sub_id = prior
    if scan:
        batch: list[str] = []
        for sub_id in store.iter_ids(SCAN_BATCH):
            batch.append(sub_id)
            if len(batch) >= SCAN_BATCH:
                found += _matching(store, batch, address, found)
                batch = []
        found += _matching(store, batch, address, found)
    return found


def _matching(store: Store, ids: list[str], address: str, known: list[str]) -> list[str]:
    emails = store.emails_of(ids) if ids else []
    return [
        sub_id
        for sub_id, email in zip(ids, emails, strict=True)
        if email is not None and email == address and sub_id not in known
    ]


def rate_limit_keys(store: Store, address: str, now: float) -> list[str]:
    """The web app's per-address signup counters that may exist now (this window and the
    last: they expire a minute after their window)."""

    key = address_key(normalise_address(address))
    return [store.rate_key("addr", key, ADDRESS_WINDOW, now - back) for back in (0, ADDRESS_WINDOW)]


def export_data(store: Store, address: str, now: datetime, scan: bool = False) -> dict | None:
    """Everything held about ``address`` as plain data, or None when nothing is.

    Each record with all its fields, its consent record, its ledger (lesson, state, time,
    attempts, the provider's message id or the reason), its check-ins (lesson, answer, time),
    what is due, pending or in quarantine, the replies the person sent (their words as kept, the
    lesson answered and SendGrid's checks of the sender), and the per-address signup counters."""
    address = normalise_address(address)
    ts = now.timestamp()
    records = [_record(store, sub_id, address) for sub_id in record_ids(store, address, scan)]
    counters = []
    for key in rate_limit_keys(store, address, ts):
        found = store.counter(key)
        if found is not None:
            counters.append({"key": key, "count": found[0], "ttl_seconds": found[1]})
    if not records and not counters:
        return None
    return {
        "address": address,
        "exported_at": now.isoformat(),
        "records": [r for r in records if r is not None],
        "signup_counters": counters,
        "erased_before": store.is_erased(address),
        "notes": [
            "Messages queued for the workers carry a subscriber id and lesson id only, and "
            "are dropped unsent once the record is gone.",
            "Signup counters per IP address (an hour each) count everyone signing up from "
            "that address; the IP of each signup is in its consent record above.",
            "The email provider keeps its own delivery logs for the emails listed.",
            "Replies: the last 20 per record are kept, their attachments never; they came "
            "through the email provider's inbound service.",
        ],
    }


def _record(store: Store, sub_id: str, address: str) -> dict | None:
    sub = store.get(sub_id)
    raw = store.raw_fields(sub_id)
    if sub is None or not raw:
        return None
    entries = sorted(store.ledger(sub_id).values(), key=lambda e: e.at)
    pending = store.pending_scores(sub_id, [e.lesson_id for e in entries])
    return {
        "id": sub_id,
        "current": store.address_holder(address) == sub_id,
        "fields": dict(sorted(raw.items())),
        "status": sub.status,
        "created_at": _iso(sub.created),
        "started_at": _iso(sub.start),
        "consent": {**sub.consent_record, "at": _iso(sub.created)},
        "due_at": _iso(store.due_score(sub_id)),
        "quarantine": store.quarantine_reason(sub_id),
        "ledger": [_entry(e, at) for e, at in zip(entries, pending, strict=True)],
        "checkins": [
            {"lesson_id": c.lesson_id, "answer": c.answer, "at": _iso(c.at)}
            for c in store.checkins(sub_id)
        ],
        "replies": [
            {**reply.as_dict(), "at": _iso(reply.at)} for reply in store.replies_of(sub_id)
        ],
    }


def _entry(entry: LedgerEntry, pending_at: float | None) -> dict:
    row: dict = {
        "lesson_id": entry.lesson_id,
        "state": entry.state,
        "at": _iso(entry.at),
        "attempts": entry.attempt,
    }
    if entry.detail:
        row["provider_message_id" if entry.state == "sent" else "detail"] = entry.detail
    if pending_at is not None:
        row["pending_until"] = _iso(pending_at)
    return row


def erase(
    store: Store,
    address: str,
    now: datetime,
    scan: bool = False,
    also: tuple[str, ...] = (),
    timeout: float = SEND_SETTLE,
) -> Erased:
    """Remove everything held about ``address`` and suppress it for good. Idempotent.

    ``also`` names records known to hold the address that the chain may not reach (the one
    an operator is looking at); any whose address differs is left alone. Each record is
    suppressed first, then a send already on its way is waited for (up to ``timeout``
    seconds: one that takes longer belongs to a worker that died), then the records go.
    Deliveries still queued for an erased record find no ledger entry and send nothing."""
    address = normalise_address(address)
    already = not store.suppress_address(address)
    ids = record_ids(store, address, scan)
    for sub_id in also:
        held = store.email_of(sub_id)
        if sub_id not in ids and held is not None and held == address:
            ids.append(sub_id)
    for sub_id in ids:  # no send can start from here on (a record already suppressed stays so)
        last = store.get(sub_id)
        if store.suppress(sub_id, "unsubscribed") == 1 and last is not None:
            count_reader(store, sub_id, last.last_lesson, "unsubscribed")  # an experiment's
    # One wait per record, yet at most ``timeout`` in all: every send waited for started
    # before the suppression above, and a send older than ``timeout`` is not waited for.
    for sub_id in ids:
        wait_for_sends(store, sub_id, timeout)
    deleted = 0
    for sub_id in ids:
        deleted += store.erase_record(sub_id, address)
        # After the record: a check-in needs a record that has not left, so none can come now.
        deleted += store.erase_checkins(sub_id)
    store.drop_vanished_holder(address)  # a mapping to a vanished record
    counters = rate_limit_keys(store, address, now.timestamp())
    deleted += store.drop_counters(counters)
    return Erased(address, ids, deleted, already)
