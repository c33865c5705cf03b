"""How records are written to Redis and read back: subscriber hashes, hash values and
sorted-set scores, and the normalised and suppression forms of an address.

A subscriber's hash names its fields with one or two letters (:data:`STORED_NAMES`: ``s`` for
``status``, ``ls`` for ``last_sent``...): a fresh record's names took 90 bytes, now 17. The
Lua scripts spell a field ``@status`` and get the stored name from :func:`with_fields`, so no
name is spelled twice. A subscriber field without a value (None, a zero counter) is not stored,
"" or absent reads as "not set"; instants in hashes and ledger entries are whole epoch seconds
(Redis keeps an integer string in a small hash as an integer), sorted-set scores keep
milliseconds. Records written before kept every field and milliseconds; they read the same.
Records of layouts 1 to 3 had the long names: ``course migrate`` renames them.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import MISSING, fields

from course.models.subscriber import Subscriber

FIELD_NAMES = {f.name for f in fields(Subscriber)} - {"id", "version"}
FLOAT_FIELDS = {"created", "start", "paused", "paused_at", "paused_until", "last_sent",
                "anchor_paused"}  # fmt: skip
INT_FIELDS = {"sent_that_day", "last_day", "anchor", "anchor_day"}
# Values that mean "not set" and are not stored: empty, or the default of a field. A record
# that never had a field (one written before it existed) reads its default.
UNSET = {
    "paused": ("", "0"),
    "sent_that_day": ("", "0"),
    "v": ("", "0"),
    "pace": ("", "standard"),
    "anchor_day": ("", "0"),
    "anchor_paused": ("", "0"),
}
# What an unset field reads as: its default; for a field without one, None (a number, the
# first name) or "" (text).
_DEFAULTS = {
    f.name: f.default
    if f.default is not MISSING
    else (None if f.name in FLOAT_FIELDS | INT_FIELDS | {"first_name"} else "")
    for f in fields(Subscriber)
}


# The name in the hash of each field (``version`` is the record's version, ``prior`` the record
# that held the address before this one). Append only: a name once used keeps its meaning.
STORED_NAMES = {
    "email": "e", "first_name": "n", "tz": "z", "status": "s", "created": "c", "start": "t",
    "paused": "p", "paused_at": "pa", "paused_until": "pu", "last_sent": "ls",
    "sent_that_day": "sd", "last_lesson": "ll", "last_day": "ld", "version": "v", "source": "o",
    "consent": "k", "pace": "pc", "send_time": "st", "anchor": "a", "anchor_day": "ad",
    "anchor_paused": "ap", "prior": "pr",
}  # fmt: skip
FIELD_OF = {short: name for name, short in STORED_NAMES.items()}


def stored_name(name: str) -> str:
    """The hash field of a subscriber field (``status`` -> ``s``)."""
    return STORED_NAMES[name]


def with_fields(script: str) -> str:
    """A Lua script with each ``@name`` replaced by that field's stored name."""
    return re.sub(r"@(\w+)", lambda m: STORED_NAMES[m.group(1)], script)


EMAIL_BUCKETS = 16384  # buckets of the email index; a power of two: the CRC's low bits


def email_bucket(address: str) -> str:
    """The bucket of a normalised address in the email index (``P e:{bucket}``): 4 hex
    digits, so that each bucket stays a small hash."""
    return f"{binascii.crc_hqx(address.encode(), 0) & (EMAIL_BUCKETS - 1):04x}"


SUPPRESSION_DOMAIN = "healing-roadmap:suppressed:"


def normalise_address(email: str) -> str:
    """The form every key and hash of an address uses."""
    return email.strip().lower()


def suppression_hash(email: str) -> str:
    """Plain SHA-256 of the normalised address behind a fixed domain prefix.

    Not keyed with the secret key: a keyed hash would stop matching after a key rotation,
    and an erased person could then be mailed again. The prefix keeps it from matching the
    lists of plain e-mail hashes that circulate; what a plain hash still allows (someone
    holding the database can test an address they already know) is the price of a
    suppression that never expires."""
    return hashlib.sha256((SUPPRESSION_DOMAIN + normalise_address(email)).encode()).hexdigest()


def encode_value(value: object) -> str:
    """A hash field's value. Instants and durations are whole epoch seconds: nothing reads
    them finer than a second, and Redis keeps an integer string in a hash as an integer
    (5 bytes instead of 14). Records written before kept milliseconds; they decode alike."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value))  # never negative: epochs and durations
    return str(value)


def encode_score(value: float) -> str:
    """A sorted-set score (due, pending, signup order): precision costs nothing there."""
    return f"{value:.3f}"


def encode_subscriber(sub: Subscriber) -> dict[str, str]:
    """The fields of ``sub``'s hash (``P sub:{id}``), version included, as the store writes
    them (stored names): a field without a value (None, a zero counter) is left out, read
    back as unset."""
    mapping = {name: encode_value(getattr(sub, name)) for name in FIELD_NAMES}
    mapping["v"] = str(sub.version)
    return {
        STORED_NAMES.get(name, name): text
        for name, text in mapping.items()
        if text not in UNSET.get(name, ("",))
    }


def decode_subscriber(sub_id: str, raw: dict[str, str]) -> Subscriber:
    values: dict[str, object] = {}
    for name in FIELD_NAMES:
        text = raw.get(STORED_NAMES[name], "")
        if not text:
            values[name] = _DEFAULTS[name]
        elif name in FLOAT_FIELDS:
            values[name] = float(text)
        elif name in INT_FIELDS:
            values[name] = int(text)
        else:
            values[name] = text
    return Subscriber(id=sub_id, version=int(raw.get("v", 0)), **values)  # type: ignore[arg-type]


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_text(raw: dict) -> dict[str, str]:
    return {as_str(k): as_str(v) for k, v in raw.items()}
