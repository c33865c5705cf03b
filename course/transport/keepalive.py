"""Kept-alive connections: the check that a peer dropped an idle socket (shared by SMTP and
HTTP), and the pool of kept-alive HTTP(S) connections the SendGrid transport posts over."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

MAX_IDLE = 30.0  # seconds a kept-alive API connection may sit unused before it is reopened


class NoAnswer(Exception):
    """A request went out whole and no answer came back."""


def socket_dropped(sock: socket.socket | None) -> bool:
    """True when a kept-alive socket has been closed by the peer (or has unread bytes).

    An idle server closing its end is the normal way a kept-alive connection dies; checking
    first means a send never starts on a dead socket, so no send has to be retried blindly.
    """
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class KeepAliveConnection:
    """One HTTP(S) connection to the API host, reused across requests.

    A new connection per request would cost TCP and TLS handshakes on every send; this keeps
    one open and reopens it when the server has closed it. ``request`` answers the status,
    headers and body of any status: sorting them is the caller's business.
    """

    def __init__(self, host: str, timeout: float) -> None:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SENDGRID_HOST: expected http(s)://host[:port], got {host!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if (
            self._conn is not None
            and self._conn.sock is not None
            and (
                socket_dropped(self._conn.sock)
                # A connection idle this long may have been dropped silently on the way (a
                # NAT or load balancer): a request lost there would look like no answer.
                or time.monotonic() - self._last_used > MAX_IDLE
            )
        ):
            self.close()
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
        except BaseException:
            # A half-sent request cannot have been accepted; this connection is unusable.
            self.close()
            raise
        try:
            response = conn.getresponse()
            payload = response.read()
        except Exception as exc:
            # The request went out whole: the API may have accepted it.
            self.close()
            raise NoAnswer(str(exc) or type(exc).__name__) from exc
        self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, response.headers, payload

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ConnectionPool:
    """Kept-alive connections to the API host, one per request in flight at a time.

    A request borrows an idle connection (the most recently used, so a sequential sender
    keeps using one) or opens a new one, and gives it back when its answer has been read.
    """

    def __init__(self, host: str, timeout: float) -> None:
        KeepAliveConnection(host, timeout)  # checks the host once, here
        self._host = host
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: list[KeepAliveConnection] = []

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = KeepAliveConnection(self._host, self.timeout)
        try:
            return conn.request(method, url, body, headers, timeout)
        finally:
            with self._lock:
                self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections (a later request opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
