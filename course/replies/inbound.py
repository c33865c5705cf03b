"""One email as SendGrid's Inbound Parse posts it, read into an :class:`InboundMail`. Pure.

SendGrid posts ``multipart/form-data`` with these fields (its "Inbound Parse Webhook"
documentation): ``from`` and ``to`` (the header fields), ``subject``, ``text`` and ``html``
(the bodies), ``headers`` (the raw header block), ``envelope`` (JSON: ``to``, a list, and
``from``, the SMTP return path), ``charsets`` (JSON: the character set of each field),
``SPF`` and ``dkim`` (its checks of the sender), ``spam_score``, ``sender_ip``,
``attachments`` (a count), ``attachment-info`` and the files ``attachment1`` .. ``N``. With
"POST the raw, full MIME message" checked, the bodies and ``headers`` come instead as one
field, ``email``, holding the whole message. Both forms are read.

Attachments are never read here: the web route drops file parts as they stream past.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parseaddr

from course.mail.addresses import stored_address
from course.replies.text import MAX_SUBJECT, clean

MAX_MESSAGE_IDS = 50  # of In-Reply-To and References looked at, the latest first
MAX_CHECK = 200  # characters of SendGrid's SPF and dkim results kept
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,400})>")
# A DKIM result as SendGrid writes it: ``{@gmail.com : pass}``, one per signature.
_DKIM_PASS = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*pass\b", re.IGNORECASE)


class BadInbound(ValueError):
    """The post is not an email SendGrid would send: no sender, or a field unreadable."""


@dataclass(frozen=True)
class InboundMail:
    """What the course uses of one inbound email."""

    sender: str  # the header From's address, as the store keeps addresses ("" none)
    subject: str
    text: str  # the plain-text body as sent ("" none)
    html: str  # the HTML body as sent ("" none)
    message_id: str  # the email's own Message-ID ("" none), for spotting a repeated post
    references: tuple[str, ...]  # ids from In-Reply-To, then References (latest first)
    spf: str  # SendGrid's SPF result ("pass", "softfail", ...; "" none)
    dkim: str  # SendGrid's DKIM results, as posted ("" none)
    envelope_from: str  # the SMTP return path ("" none)
    attachments: int  # how many attachments SendGrid counted (none is kept)

    @property
    def verified(self) -> bool:
        """Whether SendGrid's checks vouch for the From address: a passing DKIM signature
        of its domain (or a parent domain), or SPF passing for a return path in that same
        domain. Anything else may be forged."""
        domain = self.sender.rpartition("@")[2]
        if not domain:
            return False
        for signed in _DKIM_PASS.findall(self.dkim):
            signed = signed.lower().rstrip(".")
            if domain == signed or domain.endswith("." + signed):
                return True
        return self.spf.lower() == "pass" and self.envelope_from.rpartition("@")[2] == domain


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:  # a character set Python does not know
        return raw.decode("utf-8", "replace")


def read_inbound(fields: Mapping[str, bytes]) -> InboundMail:
    """An :class:`InboundMail` from the posted fields (name -> bytes, files left out); each
    field decoded in the character set ``charsets`` names for it (UTF-8 otherwise)."""
    try:
        charsets = json.loads(fields.get("charsets", b"{}") or b"{}")
    except (ValueError, RecursionError):
        charsets = {}
    if not isinstance(charsets, dict):
        charsets = {}

    def text(name: str) -> str:
        charset = charsets.get(name)
        return _decode(fields.get(name, b""), charset if isinstance(charset, str) else "utf-8")

    raw = fields.get("email")
    message: Message = (
        BytesParser(policy=policy.default).parsebytes(raw)
        if raw
        else HeaderParser(policy=policy.default).parsestr(text("headers"))
    )
    plain, html = _bodies(message) if raw else (text("text"), text("html"))
    sender = _address(text("from")) or _address(_header(message, "from"))
    if not sender:
        raise BadInbound("from: no sender address")
    ids = _ids(_header(message, "in-reply-to")) + _ids(_header(message, "references"))[::-1]
    return InboundMail(
        sender=sender,
        subject=clean(text("subject") or _header(message, "subject"), MAX_SUBJECT),
        text=plain,
        html=html,
        message_id=(_ids(_header(message, "message-id")) or [""])[0],
        references=tuple(dict.fromkeys(ids))[:MAX_MESSAGE_IDS],
        spf=clean(text("SPF"), MAX_CHECK),
        dkim=clean(text("dkim"), MAX_CHECK),
        envelope_from=_envelope_from(text("envelope")),
        attachments=_count(text("attachments")),
    )


def _address(value: str) -> str:
    """The address of a header value (``Anna <anna@example.org>``), as the store keeps it."""
    pairs = getaddresses([value]) if value else []
    address = pairs[0][1] if pairs else parseaddr(value)[1]
    if "@" not in address or len(address) > 320:
        return ""
    return stored_address(address)


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the policy cannot parse
        return ""
    return str(value or "")


def _ids(value: str) -> list[str]:
    return _MESSAGE_ID.findall(value)[-MAX_MESSAGE_IDS:] if value else []


def _bodies(message: Message) -> tuple[str, str]:
    """The plain-text and HTML bodies of a whole MIME message (raw mode)."""
    if not isinstance(message, EmailMessage):
        return "", ""
    found = []
    for kind in ("plain", "html"):
        try:
            part = message.get_body(preferencelist=(kind,))
            found.append(part.get_content() if part is not None else "")
        except Exception:  # an unknown character set, a damaged part: whatever it raises
            found.append("")
    return found[0], found[1]


def _envelope_from(value: str) -> str:
    try:
        envelope = json.loads(value) if value else {}
    except (ValueError, RecursionError):
        return ""
    sender = envelope.get("from") if isinstance(envelope, dict) else None
    return _address(sender) if isinstance(sender, str) else ""


def _count(value: str) -> int:
    value = value.strip()
    return min(int(value), 1000) if value.isdigit() and len(value) < 6 else 0
