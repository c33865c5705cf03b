"""Schemathesis against the web app's own OpenAPI description: whatever it is sent, no 5xx.

Each operation's cases are drawn with Hypothesis from ``APIOperation.as_strategy()`` (the
pytest plugin's lazy fixture schema does not work with this pytest)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from course.web import create_app

EXAMPLES = 12  # per operation: a few seconds for the whole description


def test_no_input_makes_any_operation_fail(settings, store):
    # With replies on: the inbound routes check what they are sent rather than answer 404.
    tuned = settings.with_(signup_limit_per_ip=10_000, inbound_secret="s" * 32)
    app = create_app(tuned, send_task=lambda *a, **k: None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case):
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
