"""What SendGrid makes of an accepted Mail Send request (one checked by :mod:`.contract`): one
email per personalization, its subject, headers and ``custom_args`` over the message's own and
its ``substitutions`` filled in. Pure: no I/O."""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class Message(NamedTuple):
    """One email as SendGrid makes it from an accepted payload: one per personalization."""

    to: list[dict[str, str]]
    subject: str
    headers: dict[str, str]
    custom_args: dict[str, str]
    text: str
    html: str


def messages(payload: dict[str, Any]) -> list[Message]:
    """The emails a valid payload asks for, as the provider builds them: a personalization's
    subject, headers and ``custom_args`` over the message's own, and its ``substitutions``
    replaced in the subject and the content, each occurrence once (a value put in is not
    searched again)."""
    content = {block["type"].lower(): block["value"] for block in payload.get("content", [])}
    out = []
    for item in payload["personalizations"]:
        subs = item.get("substitutions") or {}
        pattern = (
            re.compile("|".join(re.escape(k) for k in sorted(subs, key=len, reverse=True)))
            if subs
            else None
        )

        def fill(text: str, pattern: re.Pattern[str] | None = pattern, subs: dict = subs) -> str:
            return pattern.sub(lambda m: subs[m.group(0)], text) if pattern else text

        out.append(
            Message(
                to=list(item["to"]),
                subject=fill(item.get("subject") or payload.get("subject") or ""),
                headers={**(payload.get("headers") or {}), **(item.get("headers") or {})},
                custom_args={
                    **(payload.get("custom_args") or {}),
                    **(item.get("custom_args") or {}),
                },
                text=fill(content.get("text/plain", "")),
                html=fill(content.get("text/html", "")),
            )
        )
    return out
