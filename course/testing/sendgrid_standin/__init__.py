"""A local stand-in for SendGrid's v3 Mail Send API, for tests and benchmarks.

It follows SendGrid's own OpenAPI description of ``POST /v3/mail/send`` (repository
``twilio/sendgrid-oai``, ``spec/json/tsg_mail_v3.json``): bearer authentication, the request
body's required fields and limits, ``202`` with an ``X-Message-Id`` header, and error bodies
shaped ``{"errors": [{"message", "field", "help"}]}``. Where the spec types message-level
``custom_args`` as a string, the stand-in follows the live API: an object of strings.

Where things live: :mod:`.contract` (the request validation and what an accepted payload
becomes, pure), :mod:`.replies` (scripted and random answers), :mod:`.server` (the HTTP server
and what it records), :mod:`.__main__` (the command line).

Tests script what comes next::

    with SendGridStandIn() as standin:
        standin.enqueue(Reply(status=429, reset_in=2.0))
        ...  # the next request gets a 429, the one after is handled normally
        standin.accepted  # payloads of the accepted sends

Or let it misbehave at random, reproducibly (a seeded generator)::

    SendGridStandIn(faults=Faults(rate_429=0.1, rate_500=0.05, rate_hang=0.01, seed=7))

:attr:`SendGridStandIn.records` keeps, for every accepted personalization, when its request
arrived, the recipient and the ``custom_args`` (``keep_payloads=False`` keeps only those,
for runs too long to hold every payload).

With ``events=EventPoster(url)`` it posts signed Event Webhook events (``processed``,
``delivered``, some ``deferred`` or ``bounce``) for every accepted email back to ``url``, with
delays (:mod:`.events`); the web app is given ``poster.public_key``.

Run it by hand with ``python -m course.testing.sendgrid_standin --port 8090 --latency-ms 30``
(``--rate-429 0.1 --rate-500 0.05 --rate-hang 0.01 --seed 7`` for random faults).
"""

from course.testing.sendgrid_standin.contract import MAIL_SEND_PATH, validate_mail_send
from course.testing.sendgrid_standin.events import EventPoster, EventRates, Signer
from course.testing.sendgrid_standin.messages import Message, messages
from course.testing.sendgrid_standin.replies import Faults, Reply
from course.testing.sendgrid_standin.server import Acceptance, SendGridStandIn

__all__ = [
    "MAIL_SEND_PATH",
    "Acceptance",
    "EventPoster",
    "EventRates",
    "Faults",
    "Message",
    "Reply",
    "SendGridStandIn",
    "Signer",
    "messages",
    "validate_mail_send",
]
