"""The outbox transport: every email becomes one RFC 5322 ``.eml`` file (dev and demos)."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from course.models.email import Email
from course.private_files import open_private, private_dir
from course.transport.errors import (
    PermanentSendError,
    TransientSendError,
    refuse_undeliverable,
)
from course.transport.protocol import SendResult

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxTransport:
    """Writes each email as one RFC 5322 ``.eml`` file into ``directory`` (for dev and demos).

    File names start with a nanosecond timestamp, so a directory listing sorts in send order;
    the file appears atomically (written to a hidden temporary file, then renamed). Emails
    carry personal links (unsubscribe, pause): the folder is 0700 and each file 0600.
    """

    name = "outbox"
    concurrent = False  # a demo's outbox lists in send order
    max_group = 1

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        private_dir(self.directory)
        self._lock = threading.Lock()
        self._last_ns = 0

    def send(self, email: Email) -> SendResult:
        refuse_undeliverable(email.to_email)
        try:
            data = email.to_mime().as_bytes()
        except (ValueError, TypeError) as exc:
            raise PermanentSendError(f"cannot build the message: {exc}") from exc
        with self._lock:
            # Two sends within one clock tick must still get distinct, ordered names.
            stamp = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = stamp
        slug = _UNSAFE_FILENAME_CHARS.sub("_", email.message_id.strip("<> "))[:80] or "message"
        stem = f"{stamp}-{slug}"
        final = self.directory / f"{stem}.eml"
        temporary = self.directory / f".{stem}.eml.tmp"
        try:
            fd = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransientSendError(f"outbox {self.directory}: {exc}") from exc
        return SendResult(provider_message_id=stem)

    def close(self) -> None:
        """Nothing to release: every send opens and closes its own file."""
