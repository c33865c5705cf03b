"""The Redis key layout: every key the store uses, its type and what it holds, and the
key templates (:class:`Keys`). Nothing outside this module builds a key string.

Key layout (``P`` is the key prefix, ``hr:`` by default):

``P sub:{id}``       hash    one subscriber: the fields of course.models.subscriber.Subscriber
                              (and prior: the record that held the address before, on a
                              re-signup) under the short names of course.store.codec
                              STORED_NAMES (``s`` status, ``ls`` last_sent...; long names in
                              layouts 1-3). Absent or empty means "not set". And the
                              reader's ledger: see "ledger entries" below.
``P e:{bucket}``     hash    address -> subscriber id for the addresses whose bucket
                              (course.store.codec.email_bucket: CRC-16, 4 hex digits,
                              EMAIL_BUCKETS of them) it is: small ziplists (~61 addresses at
                              1,000,000) instead of one hashtable (``P email``, layouts 1-2).
``P subs:count``     string  how many ``P sub:{id}`` records there are, kept by the scripts
                              that add and erase them (layouts 1-4 had ``P subs``, a zset of
                              id -> created: listing now SCANs ``P sub:*``).
``P due:{bucket}``   zset    subscriber id -> epoch at which their next lesson is due, for
                              the ids whose bucket (:func:`due_bucket`: CRC-16 of the id, low
                              14 bits, DUE_BUCKETS of them, 4 hex digits) it is; only active
                              subscribers with a lesson left are in it, so a tick reads only
                              what is due (``ZRANGEBYSCORE -inf now`` in each bucket, 512
                              buckets per script call: course.store.due). Small zsets stay
                              listpacks (~61 entries at 1,000,000 active, under redis'
                              default zset-max-listpack-entries 128); beyond ~2,000,000
                              active a bucket outgrows it and becomes a skiplist: still
                              correct, only bigger. Layouts 1-5 had one zset, ``P due``.
ledger entries (in ``P sub:{id}``) the reader's ledger (layout 7; layouts 1-6 had
                              ``P ledger:{id}``, a hash of lesson id -> entry): one field per
                              entry, named by the entry's number (``P entries:number``; digits,
                              so never a subscriber field), valued ``state|epoch|attempt|detail``
                              (epoch in whole seconds; older entries have milliseconds) or, for
                              a send that went through at the first attempt, its bare epoch
                              (course.store.entries). State is one of claimed, sending, retry,
                              sent (the provider's message id as detail only once the settling
                              re-sent it), failed (detail: reason), uncertain, skipped.
``P entries:number`` hash  entry id (a lesson id, ``b:{id}`` for a broadcast) -> its number,
                              given once by the first script that writes such an entry (the
                              next after the highest), never changed.
``P entries:name``   hash    number -> entry id (the same pairs the other way round).
``P pending``        zset    ``{id}|{lesson}`` -> epoch at which that unfinished ledger entry
                              needs attention: a retry falls due, or a claim or send has
                              gone stale (its worker died) and the tick must look at it.
``P uncertain``      zset    ``{id}|{lesson}`` -> epoch at which the settling looks at that
                              ``uncertain`` entry next (first: the instant of its send). Kept
                              by the finish script (an entry joins when it becomes uncertain,
                              leaves when it is settled) and the settle script
                              (course.store.settle); the settling's cost grows with it only.
``P settle:mark``    hash    the latest send that a provider event proved went through: at
                              (epoch its send started), event (``{id}|{lesson}``), seen
                              (when that event came); last_seen, events (count of events
                              that named a send). Empty: no event ever came, nothing is re-sent.
``P settle:proof``   hash    ``{id}|{lesson}`` -> ``armed|n|epoch|mark at|mark event`` when a
                              later send's event was seen and none for this one, then
                              ``resent|n|epoch|mark at|mark event`` once it was claimed again
                              (``n``: re-sends so far, at most course.store.settle.MAX_RESENDS):
                              the proof, kept while the record is.
``P tick:last``      string  ISO instant of the last tick, for health checks.
``P tick:stats``     hash    every tick adds to it: count, seconds_total (time spent
                              ticking), and sets last_at (epoch of its ``now``),
                              last_duration (seconds), last_due (subscribers it found due),
                              last_claimed. Read by ``/metrics``.
``P beat:last``      string  epoch at which beat last showed it runs (started, or sent a
                              tick), for beat's health check (``course health beat``).
``P quarantine``     hash    subscriber id -> why a tick could not handle them (a damaged
                              record); they are out of the due index until an operator looks.
``P schedule:*``     the published course: versions, the live pointer and its log, the draft,
                              the old snapshot (listed in :mod:`course.store.versions`).
``P rl:{scope}:{key}:{window}`` string  a fixed-window rate-limit counter of the web app
                              (scope ``ip`` per hour, ``addr`` per day keyed by a hash of
                              the address, ``admin`` admin sign-in attempts per IP per 15
                              minutes, ``admin-device`` the same per browser that signed in
                              before (its signed device cookie), counted before the token is
                              compared; a correct one is taken off again; ``api`` REST API
                              requests per token name per minute, ``api-heavy`` its reads of
                              every record (stats, segment counts) per minute, ``api-fail``
                              wrong API tokens per IP per 15 minutes); expires with its
                              window.
``P admin:session:{id}`` string  a signed-in admin page session (value ``1``), expiring with
                              it (12 hours); its id is in the signed session cookie and is
                              checked on every request, and signing out deletes it, so a
                              copied cookie stops working too (course.web.admin).
``P sg:event:{sg_event_id}`` string  a SendGrid event already handled (kept 7 days), so a
                              redelivered webhook batch is not counted twice.
``P stats:lesson:{lesson}`` hash  event name (delivered, open, click, bounce, blocked,
                              dropped, spamreport, unsubscribe, ...) -> count, from the
                              SendGrid Event Webhook.
``P stats:sends:{lesson}`` hash  ledger outcomes of that lesson, kept by the scripts that
                              write them: sent, failed, uncertain (net of those settled
                              later), skipped -> entries now in that state; retried -> every
                              retry scheduled. Read by ``course stats`` and ``/metrics``.
``P stats:exits``    hash    ``{lesson}|{status}`` -> how many subscribers left the course
                              (status unsubscribed, bounced or complained) while that was
                              their last lesson; lesson ``""`` before the first lesson.
                              Counted by the suppress script, only on the change from a
                              mailable status, so a repeated unsubscribe counts once.
``P schedule:status`` hash   ``{role}@{host}:{pid}`` -> JSON of the schedule that process
                              runs: version (its id), fingerprint (the same id), loaded_at,
                              error and error_at of the latest version it could not load,
                              seen_at (see course.store.snapshot.ScheduleStatusBoard).
``P broadcast:{id}`` hash  one broadcast (its fields, recipients, counts: course.store.broadcasts)
``P broadcasts``     zset    broadcast id -> epoch it was created (the list of broadcasts).
``P checkin:{id}``   hash    one reader's check-ins: lesson id -> ``answer|epoch`` (answer
                              flare, same or better; the latest wins). Only readers who
                              answered have one; erased with the record.
``P stats:checkin:{lesson}`` hash  answer -> readers whose latest answer to that lesson's
                              check-in it is (so the fields add up to the readers who answered).
``P stats:checkin:readers`` hash  phase id -> readers who answered a check-in of that phase
                              (the phase as the schedule had it when they first did); ``*`` ->
                              readers who answered any. Written with the answers, by one script
                              (course.store.checkins).
``P stats:webhook``  hash    received, duplicate, unknown_subscriber, unknown_lesson,
                              invalid, reconciled -> count (webhook bookkeeping).
``P stats:webhooks:out`` hash  ``{host}|{outcome}`` -> outbound webhook posts (course.webhooks).
``P replies:{id}``   list    that reader's replies to the course's emails, newest first, at
                              most 20 (course.store.replies.MAX_PER_READER): JSON of
                              course.models.reply.Reply (id, at, subject, text, lesson_id,
                              trimmed, verified, spf, dkim, attachments). Erased with the record.
``P replies``        zset    subscriber id -> epoch of their latest reply: the admin's
                              Replies list reads the newest readers' lists only.
``P inbound:seen:{hash}`` string  a kept reply's Message-ID (SHA-256, 32 hex digits), for 7
                              days: SendGrid posting the same email again keeps nothing new.
``P stats:replies``  hash    lesson id -> replies kept that answered that lesson (quoting its
                              Message-ID), counted by the add-reply script as it keeps one (a
                              repeated post counts nothing). Anonymous: an erase deletes the
                              replies but leaves these counts, as it does the check-in counts.
``P stats:inbound``  hash    the Inbound Parse webhook's counts: received, kept,
                              unknown_sender (dropped: not a subscriber), duplicate,
                              invalid, refused (a wrong or missing secret).
``P suppressed``     set     :func:`suppression_hash` of every address erased on request
                              (course.subscribers.privacy): the only trace of them; no record can be
                              added for such an address again.
``P retention:ended`` zset  subscriber id -> epoch at which that reader completed the course
                              or left it (unsubscribed, bounced, complained): written by the
                              scripts that make those changes (claim of the last lesson,
                              update, suppress, import); the retention sweep reads only
                              what is older than the policy (course.subscribers.retention).
``P retention:unconfirmed`` zset  subscriber id -> epoch of a signup still waiting for its
                              confirmation; taken out when the status changes.
``P retention:backfill`` hash  cursor (SCAN cursor over ``P sub:*``), done (``1``): the one
                              pass that indexes records made before the two indexes above.
``P retention:lock`` string  held (with a TTL) by the retention run in progress, so a second
                              beat's run does nothing at the same time.
``P stats:retention`` hash   left, completed, pending -> records erased by retention for that
                              reason, ever; last_at (epoch), last_erased, last_seconds of the
                              latest run. No address, no id.
``P variant:lesson:{lesson}`` hash  a subject experiment's counts (course.store.variants):
                              ``{v}:sent`` emails sent with variant ``v``'s subject (a to d;
                              counted when the ledger entry is finished ``sent``),
                              ``{v}:clicks`` click events, ``{v}:clicked`` readers who
                              clicked (each once), ``{v}:checkins`` readers who answered the
                              lesson's check-in (each once), ``{v}:unsubscribed`` readers who
                              unsubscribed while it was their last lesson; ``n`` the number of
                              variants and ``pin`` the pinned letter (or absent) at the last
                              counted send, for recomputing a reader's variant.
``P variant:clicked:{lesson}`` set  subscriber ids that clicked that lesson's email (only
                              lessons with variants): a reader's clicks count once in
                              ``{v}:clicked``. A few per cent of the lesson's readers.
``P variant:winners`` hash   lesson id -> JSON ``{"variant", "at", "look", "reason"}``: the
                              decision of ``winner: auto``, written once (HSETNX), never changed.
``P variant:looks``  hash    lesson id -> looks taken by the rule of ``winner: auto``
                              (course.experiments): each look is tested once.
``P variant:check``  string  held for an hour (SET NX EX) by the tick that evaluated the
                              experiments, so they are looked at at most once an hour.

``P layout``         string  the layout version (course.store.layout); absent on layout 1 and
                              on an empty store (stamped by the first process that starts).
``P migrate:state``  hash    ``course migrate``'s step in progress: from, cursor (of its
                              scan), seen, changed; deleted as ``P layout`` moves on.

Encoding of the values: :mod:`course.store.codec`.

Every change of a subscriber bumps ``version``; the claim is a compare-and-set on it, so a
tick or worker that read old state can never claim on top of a newer change.
"""

from __future__ import annotations

import binascii
from typing import overload

from course.store.codec import email_bucket

DUE_BUCKETS = 16384  # buckets of the due index; a power of two: the CRC's low bits


def due_bucket(sub_id: str) -> int:
    """The due index bucket of a subscriber id (stable across processes and releases)."""
    return binascii.crc_hqx(sub_id.encode(), 0) & (DUE_BUCKETS - 1)


DEFAULT_PREFIX = "hr:"


def member(sub_id: str, lesson_id: str) -> str:
    """The pending index's member for one ledger entry (``{id}|{lesson}``)."""
    return f"{sub_id}|{lesson_id}"


def split_member(value: str) -> tuple[str, str]:
    """A pending index member back into (subscriber id, lesson id)."""
    sub_id, _, lesson_id = value.partition("|")
    return sub_id, lesson_id


class Key:
    """A fixed key under the owner's prefix: ``pending_key = Key("pending")``: ``hr:pending``."""

    def __init__(self, suffix: str):
        self.suffix = suffix

    @overload
    def __get__(self, owner: None, cls: type) -> Key: ...
    @overload
    def __get__(self, owner: object, cls: type) -> str: ...
    def __get__(self, owner: object | None, cls: type) -> Key | str:
        if owner is None:
            return self
        return f"{owner.prefix}{self.suffix}"  # type: ignore[attr-defined]


class Keys:
    """The key templates under one prefix; every part of the store builds its keys here."""

    prefix: str

    def sub_key(self, sub_id: str) -> str:
        return f"{self.prefix}sub:{sub_id}"

    def legacy_ledger_key(self, sub_id: str) -> str:  # layouts 1-6 (course migrate folds it)
        return f"{self.prefix}ledger:{sub_id}"

    entry_numbers_key = Key("entries:number")
    entry_names_key = Key("entries:name")

    def due_key(self, sub_id: str) -> str:  # the due index bucket that holds ``sub_id``
        return self.due_bucket_key(due_bucket(sub_id))

    def due_bucket_key(self, bucket: int) -> str:  # bucket number 0 .. DUE_BUCKETS - 1
        return f"{self.prefix}due:{bucket:04x}"

    legacy_due_key = Key("due")  # layouts 1-5: one zset (course migrate moves it)
    pending_key = Key("pending")
    uncertain_key = Key("uncertain")
    settle_mark_key = Key("settle:mark")
    settle_proof_key = Key("settle:proof")

    def email_key(self, address: str) -> str:  # the bucket that holds ``address``
        return f"{self.prefix}e:{email_bucket(address)}"

    def email_bucket_key(self, bucket: int) -> str:  # bucket number 0 .. EMAIL_BUCKETS - 1
        return f"{self.prefix}e:{bucket:04x}"

    legacy_email_key = Key("email")  # layouts 1 and 2: one hash (course migrate moves it)
    subs_key = Key("subs")  # layouts 1-4: id -> created (course migrate deletes it)
    subs_count_key = Key("subs:count")
    sub_pattern = Key("sub:*")  # a SCAN pattern for every ``P sub:{id}``
    quarantine_key = Key("quarantine")
    suppressed_key = Key("suppressed")
    snapshot_key = Key("schedule:snapshot")

    def sub_id_of(self, key: str) -> str:  # ``P sub:{id}`` back to the id
        return key[len(self.prefix) + 4 :]

    def version_files_key(self, version_id: str) -> str:
        return f"{self.prefix}schedule:version:{version_id}"

    def version_info_key(self, version_id: str) -> str:
        return f"{self.prefix}schedule:version:{version_id}:info"

    versions_key = Key("schedule:versions")
    live_key = Key("schedule:live")
    draft_key = Key("schedule:draft")
    live_log_key = Key("schedule:live:log")

    def rate_key(self, scope: str, key: str, window: int, now: float) -> str:
        return f"{self.prefix}rl:{scope}:{key}:{int(now // window)}"

    def admin_session_key(self, session_id: str) -> str:
        return f"{self.prefix}admin:session:{session_id}"

    def event_key(self, event_id: str) -> str:
        return f"{self.prefix}sg:event:{event_id}"

    def lesson_stats_key(self, lesson_id: str) -> str:
        return f"{self.prefix}stats:lesson:{lesson_id}"

    def send_stats_key(self, lesson_id: str) -> str:
        return f"{self.prefix}stats:sends:{lesson_id}"

    def broadcast_key(self, broadcast_id: str) -> str:
        return f"{self.prefix}broadcast:{broadcast_id}"

    broadcasts_key = Key("broadcasts")

    def variant_key(self, lesson_id: str) -> str:
        return f"{self.prefix}variant:lesson:{lesson_id}"

    def variant_clicked_key(self, lesson_id: str) -> str:
        return f"{self.prefix}variant:clicked:{lesson_id}"

    variant_winners_key = Key("variant:winners")
    variant_looks_key = Key("variant:looks")
    variant_check_key = Key("variant:check")

    def checkin_key(self, sub_id: str) -> str:
        return f"{self.prefix}checkin:{sub_id}"

    def checkin_stats_key(self, lesson_id: str) -> str:
        return f"{self.prefix}stats:checkin:{lesson_id}"

    checkin_readers_key = Key("stats:checkin:readers")
    exits_key = Key("stats:exits")
    scheduled_lessons_key = Key("schedule:snapshot:lessons")
    schedule_status_key = Key("schedule:status")
    webhook_stats_key = Key("stats:webhook")
    outbound_stats_key = Key("stats:webhooks:out")

    def replies_key(self, sub_id: str) -> str:
        return f"{self.prefix}replies:{sub_id}"

    replied_key = Key("replies")

    def inbound_seen_key(self, digest: str) -> str:
        return f"{self.prefix}inbound:seen:{digest}"

    reply_stats_key = Key("stats:replies")
    inbound_stats_key = Key("stats:inbound")
    tick_stats_key = Key("tick:stats")

    def stats_key_pattern(self, kind: str) -> str:
        """A SCAN pattern for every ``stats:{kind}:{lesson}`` key (``sends`` or ``lesson``)."""
        return f"{self.prefix}stats:{kind}:*"

    tick_last_key = Key("tick:last")
    beat_last_key = Key("beat:last")
    ended_key = Key("retention:ended")
    unconfirmed_key = Key("retention:unconfirmed")
    retention_backfill_key = Key("retention:backfill")
    retention_lock_key = Key("retention:lock")
    retention_stats_key = Key("stats:retention")
    layout_key = Key("layout")
    migrate_state_key = Key("migrate:state")
