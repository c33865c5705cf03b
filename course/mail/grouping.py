"""Emails of one lesson that can go to the provider as one request.

SendGrid's Mail Send takes up to 1,000 ``personalizations`` in one request: one shared body
(subject, HTML and text) and, per recipient, their own ``to``, headers, ``custom_args`` and
``substitutions`` (tag -> value, replaced in the body by the provider). One request for a
batch instead of one per email removes most of the per-email cost of a send.

The shared body is the lesson filled with *tags* in place of the recipient's values (first
name, links, address; one tag for the HTML part and another for the text part, because the
HTML part carries escaped values). Nothing is assumed about how a template uses them: every
recipient's email is also rendered in full as usual, and a recipient joins a group only when
the group's body with their substitutions gives exactly that email, byte for byte. Anyone else
(a template that transforms the name, say) goes out in a request of their own with their own
full email, so a recipient always gets what a one-by-one send would have given them. The
readers of each subject of a subject experiment share requests of their own.

Pure: no I/O. The engine claims and records; the transport builds the request.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import escape

from course.mail.render import CompiledLesson, Recipient
from course.models.email import Email

# The recipient's values a shared body leaves to the provider, by context variable.
PERSONAL = ("first_name", "unsubscribe_url", "pause_url", "email", "roadmap_url")
# SendGrid's limits per personalization.
MAX_SUBSTITUTIONS_BYTES = 10_000
MAX_PERSONALIZATIONS = 1000


@dataclass(frozen=True)
class Member:
    """One recipient of a group: their email as a one-by-one send would have it, and the
    values the provider puts in place of the group's tags for them (empty: no tags)."""

    subscriber_id: str
    email: Email
    substitutions: dict[str, str]


@dataclass(frozen=True)
class EmailGroup:
    """Emails with one shared body; each member is one personalization of one request."""

    subject: str
    from_email: str
    from_name: str | None
    reply_to: str | None
    html: str
    text: str
    members: tuple[Member, ...]


class Tags:
    """The substitution tags of one process: ``-hr<nonce><n><h|t>-``.

    Letters, digits and hyphens only, so HTML escaping and line wrapping leave them whole; the
    random nonce keeps lesson text from ever holding one by chance.
    """

    def __init__(self, nonce: str | None = None) -> None:
        self.nonce = nonce or secrets.token_hex(4)
        self.prefix = f"-hr{self.nonce}"
        self.html = {name: f"{self.prefix}{i}h-" for i, name in enumerate(PERSONAL)}
        self.text = {name: f"{self.prefix}{i}t-" for i, name in enumerate(PERSONAL)}
        self.pattern = re.compile(f"({re.escape(self.prefix)}[0-9][ht]-)")

    def values(self, context: dict[str, object]) -> dict[str, str]:
        """Tag -> value for one recipient's fill context."""
        subs: dict[str, str] = {}
        for name in PERSONAL:
            value = context[name]
            if value is None:
                continue
            subs[self.html[name]] = str(escape(value))
            subs[self.text[name]] = str(value)
        return subs


class _Variant:
    """A lesson filled with tags for recipients who have a first name (or with the same
    missing name), split once so that each member's check is a join and a compare."""

    def __init__(
        self, compiled: CompiledLesson, tags: Tags, sample: Recipient, email: Email
    ) -> None:
        self.envelope = _envelope(email)
        context = compiled.context(sample)
        html_context = dict(context)
        text_context = dict(context)
        for name in PERSONAL:
            if context[name]:
                html_context[name] = tags.html[name]
                text_context[name] = tags.text[name]
        self.members: list[Member] = []
        self.addresses: set[str] = set()
        try:
            self.html = compiled.html.render(html_context)
            self.text = compiled.text.render(text_context)
        except Exception:  # a template that cannot take a tag for a value: no shared body
            self.usable = False
            return
        self.usable = True
        self._html_parts = tags.pattern.split(self.html)
        self._text_parts = tags.pattern.split(self.text)
        self.used = set(self._html_parts[1::2]) | set(self._text_parts[1::2])

    def fits(self, email: Email, subs: dict[str, str]) -> bool:
        return (
            self.usable
            and _envelope(email) == self.envelope
            and _joined(self._html_parts, subs) == email.html
            and _joined(self._text_parts, subs) == email.text
        )


def _envelope(email: Email) -> tuple[str, str, str | None, str | None]:
    """What members of a group share besides the body."""
    return (email.subject, email.from_email, email.from_name, email.reply_to)


def _joined(parts: list[str], subs: dict[str, str]) -> str | None:
    out = list(parts)
    try:
        out[1::2] = [subs[tag] for tag in parts[1::2]]
    except KeyError:
        return None
    return "".join(out)


def group_emails(
    compiled: CompiledLesson,
    tags: Tags,
    recipients: Iterable[tuple[Recipient, Email]],
    max_size: int = MAX_PERSONALIZATIONS,
) -> list[EmailGroup]:
    """The requests for one lesson's emails, in the order of ``recipients``' first members.

    ``recipients`` pairs each recipient with their email from ``Renderer.render`` (same
    lesson). Members share a group when the shared body expands to their email exactly and
    their substitutions fit the provider's limits; any other recipient gets a group of their
    own without tags.
    """
    variants: dict[tuple[object, ...], _Variant] = {}
    order: list[_Variant | Member] = []
    for recipient, email in recipients:
        context = compiled.context(recipient)
        subs = tags.values(context)
        # A tag stands for any true value; a missing one is filled in as it is. Emails with
        # another subject (a subject experiment's variants) share no request.
        key = (email.subject, *(True if context[name] else context[name] for name in PERSONAL))
        variant = variants.get(key)
        if variant is None:
            variant = variants[key] = _Variant(compiled, tags, recipient, email)
        address = email.to_email.lower()  # SendGrid takes an address once per request
        if (
            address not in variant.addresses
            and _shareable(subs, tags)
            and variant.fits(email, subs)
        ):
            variant.addresses.add(address)
            if not variant.members:
                order.append(variant)
            used = {tag: value for tag, value in subs.items() if tag in variant.used}
            variant.members.append(Member(recipient.subscriber_id, email, used))
        else:
            order.append(Member(recipient.subscriber_id, email, {}))
    groups: list[EmailGroup] = []
    for entry in order:
        if isinstance(entry, Member):
            groups.append(_group(entry.email, entry.email.html, entry.email.text, [entry]))
            continue
        first = entry.members[0].email
        for start in range(0, len(entry.members), max_size):
            chunk = entry.members[start : start + max_size]
            groups.append(_group(first, entry.html, entry.text, chunk))
    return groups


def _shareable(subs: dict[str, str], tags: Tags) -> bool:
    """Within SendGrid's size limit, and no value that holds a tag of ours (a provider that
    scanned replaced text again would then change it)."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
    return size <= MAX_SUBSTITUTIONS_BYTES and not any(tags.prefix in v for v in subs.values())


def _group(email: Email, html: str, text: str, members: Sequence[Member]) -> EmailGroup:
    return EmailGroup(
        subject=email.subject,
        from_email=email.from_email,
        from_name=email.from_name,
        reply_to=email.reply_to,
        html=html,
        text=text,
        members=tuple(members),
    )
