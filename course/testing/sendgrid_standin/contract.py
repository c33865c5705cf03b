"""SendGrid's v3 Mail Send contract, as its own OpenAPI description states it (repository
``twilio/sendgrid-oai``, ``spec/json/tsg_mail_v3.json``): what a request body must be
(:func:`validate_mail_send`, every problem with its field, in SendGrid's error shape); what the
provider makes of an accepted one is in :mod:`.messages`. Where the spec types message-level
``custom_args`` as a string, this follows the live API: an object of strings. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from course.testing.sendgrid_standin.tracking import check_tracking_settings

MAIL_SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc in one personalization
MAX_SUBSTITUTIONS = 100  # per personalization
MAX_SUBSTITUTIONS_BYTES = 10_000  # keys and values together, per personalization
MAX_BODY_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole message
HELP_BASE = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
# Headers SendGrid will not let a sender override (from the spec's description of `headers`).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
# Deliberately loose, like SendGrid's: one @, no spaces or brackets, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+$")


def _error(message: str, field: str | None, anchor: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP_BASE + anchor if anchor else None}


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_address(
    value: object, field: str, anchor: str, errors: list[dict[str, Any]], what: str
) -> None:
    """A ``{"email", "name"?}`` object, as MailFrom and MailTo are in the spec."""
    if not isinstance(value, dict):
        errors.append(
            _error(f"The {what} must be an object with an email property.", field, anchor)
        )
        return
    email = value.get("email")
    if not isinstance(email, str) or not email:
        errors.append(_error(f"The {what} requires an email parameter.", f"{field}.email", anchor))
    elif not _EMAIL.match(email):
        errors.append(_error("Does not contain a valid address.", f"{field}.email", anchor))
    if "name" in value and not isinstance(value["name"], str):
        errors.append(_error("The name must be a string.", f"{field}.name", anchor))


def _check_string_map(
    value: object, field: str, anchor: str, errors: list[dict[str, Any]], what: str
) -> None:
    """An object whose values are all strings (custom_args, headers, substitutions)."""
    if not isinstance(value, dict):
        errors.append(_error(f"{what} must be an object, not {_type_name(value)}.", field, anchor))
        return
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(
                _error(
                    f"{what} values must be strings; {key!r} is {_type_name(item)}.",
                    f"{field}.{key}",
                    anchor,
                )
            )


def _check_substitutions(value: object, field: str, errors: list[dict[str, Any]]) -> None:
    _check_string_map(value, field, "substitutions", errors, "Substitutions")
    if not isinstance(value, dict):
        return
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in value.items())
    if len(value) > MAX_SUBSTITUTIONS or size > MAX_SUBSTITUTIONS_BYTES:
        errors.append(
            _error(
                f"A personalization may have at most {MAX_SUBSTITUTIONS} substitutions, of at"
                f" most {MAX_SUBSTITUTIONS_BYTES} bytes together (these: {len(value)},"
                f" {size} bytes).",
                field,
                "substitutions",
            )
        )


def _check_headers(value: object, field: str, errors: list[dict[str, Any]]) -> None:
    _check_string_map(value, field, "headers", errors, "Headers")
    if isinstance(value, dict):
        for key in value:
            if key.lower() in RESERVED_HEADERS:
                errors.append(
                    _error(f"The {key} header is reserved and cannot be set.", field, "headers")
                )


def _check_recipients(
    value: object, field: str, errors: list[dict[str, Any]], *, required: bool
) -> int:
    if value is None and not required:
        return 0
    if not isinstance(value, list) or (required and not value):
        errors.append(
            _error(
                "The to array is required for all personalization objects, and must have at"
                " least one email object with a valid email address.",
                field,
                "personalizations.to",
            )
        )
        return 0
    for index, item in enumerate(value):
        _check_address(item, f"{field}.{index}", "personalizations.to", errors, "recipient")
    return len(value)


def _check_personalization(
    item: object, index: int, errors: list[dict[str, Any]]
) -> dict[str, Any] | None:
    field = f"personalizations.{index}"
    if not isinstance(item, dict):
        errors.append(_error("Each personalization must be an object.", field, "personalizations"))
        return None
    count = _check_recipients(item.get("to"), f"{field}.to", errors, required=True)
    for kind in ("cc", "bcc"):
        count += _check_recipients(item.get(kind), f"{field}.{kind}", errors, required=False)
    if count > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"A personalization may have at most {MAX_RECIPIENTS} recipients (to, cc, bcc).",
                field,
                "personalizations",
            )
        )
    if "from" in item:
        _check_address(item["from"], f"{field}.from", "from", errors, "from object")
    if "subject" in item and (not isinstance(item["subject"], str) or not item["subject"]):
        errors.append(
            _error(
                "The subject must be a string at least one character long.",
                f"{field}.subject",
                "subject",
            )
        )
    if "headers" in item:
        _check_headers(item["headers"], f"{field}.headers", errors)
    if "substitutions" in item:
        _check_substitutions(item["substitutions"], f"{field}.substitutions", errors)
    if "custom_args" in item:
        _check_string_map(
            item["custom_args"], f"{field}.custom_args", "custom_args", errors, "Custom args"
        )
    if "send_at" in item and not _is_int(item["send_at"]):
        errors.append(
            _error("send_at must be a Unix timestamp (integer).", f"{field}.send_at", "send_at")
        )
    return item


def _check_unique_addresses(items: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for item in items:
        for kind in ("to", "cc", "bcc"):
            for address in item.get(kind) or []:
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str):
                    continue
                if email.lower() in seen:
                    errors.append(
                        _error(
                            "Each unique email address in the personalizations array should"
                            " only be included once. You have included email address more"
                            " than once.",
                            "personalizations",
                            "personalizations",
                        )
                    )
                    return
                seen.add(email.lower())


def _check_content(value: object, errors: list[dict[str, Any]]) -> None:
    if not isinstance(value, list) or not value:
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required."
                " There must be at least one defined content block.",
                "content",
                "contents",
            )
        )
        return
    types: list[str] = []
    for index, block in enumerate(value):
        field = f"content.{index}"
        if not isinstance(block, dict):
            errors.append(_error("Each content block must be an object.", field, "contents"))
            continue
        kind, text = block.get("type"), block.get("value")
        if not isinstance(kind, str) or not kind:
            errors.append(
                _error(
                    "The content type must be a string at least one character in length.",
                    f"{field}.type",
                    "contents.type",
                )
            )
        else:
            types.append(kind.lower())
        if not isinstance(text, str) or not text:
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"{field}.value",
                    "contents.value",
                )
            )
    for kind in ("text/plain", "text/html"):
        if types.count(kind) > 1:
            errors.append(
                _error(f"If present, {kind} may only be provided once.", "content", "contents")
            )
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(
            _error(
                "The text/plain content type must be first, followed by any other content type"
                " (text/html comes after text/plain).",
                "content",
                "contents",
            )
        )


def validate_mail_send(payload: object) -> list[dict[str, Any]]:
    """Every problem SendGrid would report for this Mail Send body (empty when it is valid)."""
    errors: list[dict[str, Any]] = []
    if not isinstance(payload, dict):
        return [_error("The request body must be a JSON object.", None)]

    personalizations = payload.get("personalizations")
    valid_items: list[dict[str, Any]] = []
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one"
                " personalization.",
                "personalizations",
                "personalizations",
            )
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            _error(
                f"The personalizations field may have at most {MAX_PERSONALIZATIONS} items;"
                f" it has {len(personalizations)}.",
                "personalizations",
                "personalizations",
            )
        )
    else:
        for index, item in enumerate(personalizations):
            checked = _check_personalization(item, index, errors)
            if checked is not None:
                valid_items.append(checked)
        _check_unique_addresses(valid_items, errors)

    if "from" not in payload:
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that"
                " requires the email parameter, but may also contain a name parameter."
                ' e.g. {"email" : "example@example.com"}',
                "from",
                "from",
            )
        )
    else:
        _check_address(payload["from"], "from", "from", errors, "from object")

    if "reply_to" in payload:
        _check_address(payload["reply_to"], "reply_to", "reply_to", errors, "reply_to object")
        if "reply_to_list" in payload:
            errors.append(
                _error("Use reply_to or reply_to_list, not both.", "reply_to_list", "reply_to")
            )

    has_template = isinstance(payload.get("template_id"), str) and bool(payload["template_id"])
    if "template_id" in payload and not has_template:
        errors.append(
            _error("template_id must be a non-empty string.", "template_id", "template_id")
        )
    subject = payload.get("subject")
    if "subject" in payload and (not isinstance(subject, str) or not subject):
        errors.append(
            _error(
                "The subject must be a string at least one character long.", "subject", "subject"
            )
        )
    elif subject is None and not has_template:
        every_item_has_one = bool(valid_items) and all(
            isinstance(item.get("subject"), str) and item["subject"] for item in valid_items
        )
        if not every_item_has_one and personalizations:
            errors.append(
                _error(
                    "The subject is required. You can get around this requirement if you use a"
                    " template with a subject defined or if every personalization has a subject"
                    " defined.",
                    "subject",
                    "subject",
                )
            )

    if "content" in payload or not has_template:
        _check_content(payload.get("content"), errors)
    if "headers" in payload:
        _check_headers(payload["headers"], "headers", errors)
    if "custom_args" in payload:
        _check_string_map(
            payload["custom_args"], "custom_args", "custom_args", errors, "Custom args"
        )
    if "tracking_settings" in payload:
        errors += check_tracking_settings(payload["tracking_settings"])
    if "send_at" in payload and not _is_int(payload["send_at"]):
        errors.append(_error("send_at must be a Unix timestamp (integer).", "send_at", "send_at"))
    categories = payload.get("categories")
    if categories is not None and (
        not isinstance(categories, list)
        or len(categories) > 10
        or len(set(map(str, categories))) != len(categories)
        or not all(isinstance(c, str) and len(c) <= 255 for c in categories)
    ):
        errors.append(
            _error(
                "categories must be at most 10 unique strings of at most 255 characters.",
                "categories",
                "categories",
            )
        )
    for index, attachment in enumerate(payload.get("attachments") or []):
        if not isinstance(attachment, dict) or not all(
            isinstance(attachment.get(key), str) and attachment[key]
            for key in ("content", "filename")
        ):
            errors.append(
                _error(
                    "Each attachment needs a base64 content string and a filename.",
                    f"attachments.{index}",
                    "attachments",
                )
            )
    return errors
