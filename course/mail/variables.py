"""The variables lesson templates are filled with, and the error every template mistake is
reported as: shared by the renderer (:mod:`course.mail.render`) and its checks
(:mod:`course.mail.trial`)."""

from __future__ import annotations

from course.models.email import Recipient

RECIPIENT_VARIABLES = frozenset(
    {"first_name", "progress", "unsubscribe_url", "pause_url", "roadmap_url", "email"}
)
# The confirmation email also has the link that confirms the subscription.
CONFIRMATION_VARIABLES = RECIPIENT_VARIABLES | {"confirm_url"}
COMPILE_VARIABLES = frozenset(
    {"course", "lesson", "phase", "disclaimer", "body", "sources", "call_to_action"}
)


class RenderError(Exception):
    """A lesson or layout template cannot be compiled or filled, or does what the sandbox
    (``course.sandbox``) refuses; the message names file and line."""


def fill_context(recipient: Recipient, progress: str, confirm_url: str) -> dict[str, object]:
    """The variables a lesson's templates are filled with for ``recipient``."""
    return {
        "first_name": recipient.first_name,
        "progress": progress,
        "unsubscribe_url": recipient.unsubscribe_url,
        "pause_url": recipient.pause_url,
        "roadmap_url": recipient.roadmap_url,
        "email": recipient.email,
        "confirm_url": confirm_url,
    }
