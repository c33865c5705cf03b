"""The stand-in's Event Webhook: :class:`EventPoster` posts signed events for every accepted
personalization back to a URL (the web app's ``/webhooks/sendgrid``), as SendGrid does.

Each accepted email gets a ``processed`` event soon after its request, then ``delivered``;
some are ``deferred`` first (delivered later) and some ``bounce`` instead (seeded, so a run
can be repeated). Events go in JSON batches, each signed as SendGrid's Signed Event Webhook
signs them: ECDSA P-256 with SHA-256 over ``timestamp + payload``, in the headers
``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER) and ``-Timestamp``. The key pair is
made here; :attr:`EventPoster.public_key` is what ``SENDGRID_WEBHOOK_PUBLIC_KEY`` takes. A
batch that is not answered 2xx is posted again a second later, as SendGrid retries.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_BATCH = 1000  # events in one post, as SendGrid's batches
RETRY_AFTER = 1.0  # seconds before a refused batch is posted again


@dataclass(frozen=True)
class EventRates:
    """How events follow an accepted email: ``processed`` after up to ``delay`` seconds,
    then ``delivered`` after up to ``2 * delay`` more; a share ``deferred`` first (delivered
    after up to ``8 * delay``), a share ``bounce`` instead of delivered. Seeded."""

    delay: float = 1.0
    deferred: float = 0.0
    bounce: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.delay < 0 or not 0 <= self.deferred <= 1 or not 0 <= self.bounce <= 1:
            raise ValueError("delay must be zero or more and rates between 0 and 1")


class Signer:
    """An EC P-256 key pair, as SendGrid's Signed Event Webhook uses."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()  # what SendGrid's settings show

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
        }


@dataclass
class EventPoster:
    """Posts events for accepted emails to ``url`` from a background thread (:meth:`start`,
    :meth:`stop`). The stand-in calls :meth:`accepted` for each accepted personalization."""

    url: str
    rates: EventRates = field(default_factory=EventRates)
    signer: Signer = field(default_factory=Signer)
    posted: int = 0  # events answered 2xx
    refused: int = 0  # posts not answered 2xx (each retried)
    counts: dict[str, int] = field(default_factory=dict)  # events made, by name

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):  # urllib would open file: too
            raise ValueError(f"events URL: not http(s): {self.url!r}")
        self._rng = random.Random(self.rates.seed)
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._posting = False

    @property
    def public_key(self) -> str:
        return self.signer.public_key

    def start(self) -> EventPoster:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="standin-events")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def idle(self) -> bool:
        """No event waiting and no post on its way (every event made so far was answered)."""
        with self._lock:
            return not self._queue and not self._posting

    def pending(self) -> int:
        """Events made but not posted yet (waiting for their time, or for a retry)."""
        with self._lock:
            return len(self._queue)

    def accepted(self, arrived: float, message_id: str, index: int, to: str,
                 custom_args: dict[str, str]) -> None:  # fmt: skip
        """Make the events of one accepted personalization (``index`` in its request)."""
        rates, rng = self.rates, self._rng
        base = {"email": to, "sg_message_id": f"{message_id}.filter0001.{index}.0",
                **custom_args}  # fmt: skip
        with self._lock:
            at = arrived + rng.uniform(0, rates.delay)
            self._add(at, base, "processed")
            if rng.random() < rates.bounce:
                reason = "550 5.1.1 The email account does not exist"
                self._add(at + rng.uniform(0, 2 * rates.delay), base, "bounce",
                          type="bounce", reason=reason)  # fmt: skip
                return
            if rng.random() < rates.deferred:
                at += rng.uniform(0, 2 * rates.delay)
                self._add(at, base, "deferred", response="421 try again later", attempt="1")
                at += rng.uniform(0, 6 * rates.delay)
            self._add(at + rng.uniform(0, 2 * rates.delay), base, "delivered")
        self._wake.set()

    def _add(self, at: float, base: dict[str, Any], name: str, **extra: str) -> None:
        n = next(self._order)
        event = {**base, "event": name, "timestamp": int(at), "sg_event_id": f"standin-{n}",
                 **extra}  # fmt: skip
        self.counts[name] = self.counts.get(name, 0) + 1
        heapq.heappush(self._queue, (at, n, event))

    def _due(self, now: float) -> list[tuple[float, int, dict[str, Any]]]:
        with self._lock:
            due = []
            while self._queue and self._queue[0][0] <= now and len(due) < MAX_BATCH:
                due.append(heapq.heappop(self._queue))
            self._posting = bool(due)  # until answered: idle() must not say done meanwhile
            return due

    def _run(self) -> None:
        while not self._stopping.is_set():
            due = self._due(time.time())
            if not due:
                with self._lock:
                    wait = self._queue[0][0] - time.time() if self._queue else 1.0
                self._wake.wait(max(0.01, min(wait, 1.0)))
                self._wake.clear()
                continue
            if not self._post([event for _, _, event in due]):
                with self._lock:  # posted again later, as SendGrid retries a refused batch
                    for at, n, event in due:
                        heapq.heappush(self._queue, (max(at, time.time() + RETRY_AFTER), n, event))
                    self._posting = False
                self._stopping.wait(RETRY_AFTER)

    def _post(self, events: list[dict[str, Any]]) -> bool:
        body = json.dumps(events).encode()
        request = urllib.request.Request(
            self.url, data=body, headers=self.signer.headers(body), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                good = 200 <= answer.status < 300
        except (urllib.error.URLError, OSError):
            good = False
        with self._lock:
            if good:
                self.posted += len(events)
                self._posting = False
            else:
                self.refused += 1
        return good
