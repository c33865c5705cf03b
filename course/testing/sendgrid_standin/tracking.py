"""``tracking_settings`` of a Mail Send body, as SendGrid's OpenAPI description types it
(``twilio/sendgrid-oai``, ``spec/json/tsg_mail_v3.json``): an object of four settings, each an
object of typed fields (``open_tracking``: ``enable`` boolean, ``substitution_tag`` string).
Pure: no I/O."""

from __future__ import annotations

from typing import Any

HELP = (
    "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.tracking_settings"
)
_UTM = ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
TRACKING_SETTINGS: dict[str, dict[str, type]] = {
    "click_tracking": {"enable": bool, "enable_text": bool},
    "open_tracking": {"enable": bool, "substitution_tag": str},
    "subscription_tracking": {"enable": bool, "text": str, "html": str, "substitution_tag": str},
    "ganalytics": {"enable": bool, **dict.fromkeys(_UTM, str)},
}


def _error(message: str, field: str) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP}


def check_tracking_settings(value: object) -> list[dict[str, Any]]:
    """Every problem of a ``tracking_settings`` value, in SendGrid's error shape."""
    if not isinstance(value, dict):
        return [_error("tracking_settings must be an object.", "tracking_settings")]
    errors = []
    for name, setting in value.items():
        field = f"tracking_settings.{name}"
        fields = TRACKING_SETTINGS.get(name)
        if fields is None:
            errors.append(_error(f"{field} is not a tracking setting.", field))
            continue
        if not isinstance(setting, dict):
            errors.append(_error(f"{field} must be an object.", field))
            continue
        for key, item in setting.items():
            kind = fields.get(key)
            if kind is None:
                errors.append(_error(f"{field}.{key} is not a field of {name}.", f"{field}.{key}"))
            elif not isinstance(item, kind):
                what = "a boolean" if kind is bool else "a string"
                errors.append(_error(f"{field}.{key} must be {what}.", f"{field}.{key}"))
    return errors
