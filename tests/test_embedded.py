"""The embedded default: our own redis-server under var/, started once and reused."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import redis

from course.store.embedded import (
    _free_port,
    check_server_version,
    ensure_embedded_redis,
    redact_url,
    redis_binary,
    resolve_redis_url,
    running_url,
    stop_embedded_redis,
)


def open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that a group or other user can use."""
    paths = [root, *root.rglob("*")]
    return [f"{p} {stat.filemode(p.stat().st_mode)}" for p in paths if p.stat().st_mode & 0o077]


def test_embedded_redis_starts_with_aof_and_is_reused(tmp_path):
    var = tmp_path / "var"
    try:
        url = ensure_embedded_redis(var)
        client = redis.Redis.from_url(url, decode_responses=True)
        # CONFIG is off (see the next test): INFO says what the checks need.
        assert client.info("persistence")["aof_enabled"] == 1
        assert client.info("memory")["maxmemory_policy"] == "noeviction"
        check_server_version(client)
        client.set("kept", "1")
        client.close()
        assert ensure_embedded_redis(var) == url  # reused, not a second server
        assert running_url(var) == url
        assert (var / "redis" / "redis.pid").exists()
    finally:
        assert stop_embedded_redis(var)
    assert running_url(var) is None
    # Started again, the AOF brings the data back.
    try:
        client = redis.Redis.from_url(ensure_embedded_redis(var), decode_responses=True)
        assert client.get("kept") == "1"
        client.close()
    finally:
        stop_embedded_redis(var)


def test_redis_url_when_set_is_used_as_is(tmp_path):
    assert resolve_redis_url("redis://example.invalid:6390/3", tmp_path) == (
        "redis://example.invalid:6390/3"
    )
    assert not (tmp_path / "redis").exists()


def test_a_restarted_embedded_redis_keeps_its_address(tmp_path):
    var = tmp_path / "var"
    try:
        url = ensure_embedded_redis(var)
        stop_embedded_redis(var)
        assert ensure_embedded_redis(var) == url
    finally:
        stop_embedded_redis(var)


def test_embedded_redis_wants_its_password_and_refuses_config(tmp_path):
    var = tmp_path / "var"
    try:
        url = ensure_embedded_redis(var)
        password = (var / "redis" / "password").read_text().strip()
        assert len(password) >= 40 and url.startswith(f"redis://:{password}@127.0.0.1:")
        bare = redis.Redis.from_url(url.replace(f":{password}@", ""))
        with pytest.raises(redis.AuthenticationError):
            bare.ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url.replace(password, "guess")).ping()
        bare.close()
        client = redis.Redis.from_url(url)
        # With the password, still no way to write files as the app or load code.
        refused = [("CONFIG", "SET", "dir", str(tmp_path)), ("CONFIG", "GET", "dir"),
                   ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST"),
                   ("REPLICAOF", "127.0.0.1", "1"), ("SLAVEOF", "127.0.0.1", "1")]  # fmt: skip
        for command in refused:
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        client.close()
        # The password is on no command line: another user sees those in ps.
        pid = int((var / "redis" / "redis.pid").read_text())
        assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        assert redact_url(url) == url.replace(password, "***")
        assert password not in redact_url(url)
    finally:
        stop_embedded_redis(var)


def test_var_and_the_embedded_redis_files_are_the_app_users_only(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)  # a var/ left open by an older version is closed
    try:
        url = ensure_embedded_redis(var)
        client = redis.Redis.from_url(url)
        client.set("personal", "data")  # into the AOF
        client.close()
        assert stat.S_IMODE((var / "redis" / "password").stat().st_mode) == 0o600
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        assert stat.S_IMODE((var / "redis").stat().st_mode) == 0o700
        assert list((var / "redis").rglob("*.aof"))  # redis's own files are checked too
        assert open_to_others(var) == []
        # The password is made once and kept: a restart reuses it.
        stop_embedded_redis(var)
        assert ensure_embedded_redis(var) == url
    finally:
        stop_embedded_redis(var)


def test_an_embedded_redis_from_before_passwords_is_restarted_with_one(tmp_path):
    """Upgrading: the server an older version left running (no password, CONFIG on) is shut
    down, its AOF kept, and started again on its port with a password."""
    folder = tmp_path / "var" / "redis"
    folder.mkdir(parents=True)
    port = _free_port()
    subprocess.run([redis_binary(), "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", str(folder), "--appendonly", "yes", "--save", "",
                    "--daemonize", "yes", "--pidfile", str(folder / "redis.pid"),
                    "--logfile", str(folder / "redis.log")], check=True)  # fmt: skip
    (folder / "port").write_text(str(port))
    old = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        deadline = time.monotonic() + 10
        while not (folder / "redis.pid").exists() or not old.set("kept", "1"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert running_url(tmp_path / "var") is None  # not ours as we run now
        url = ensure_embedded_redis(tmp_path / "var")
        assert url.endswith(f"@127.0.0.1:{port}/0")
        with pytest.raises(redis.AuthenticationError):
            old.ping()
        client = redis.Redis.from_url(url)
        assert client.get("kept") == b"1"
        client.close()
    finally:
        old.close()
        stop_embedded_redis(tmp_path / "var")
        if (folder / "redis.pid").exists():  # the old one, if the test failed before the swap
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int((folder / "redis.pid").read_text()), 15)


def test_stop_also_stops_an_embedded_redis_from_before_passwords(tmp_path):
    folder = tmp_path / "var" / "redis"
    folder.mkdir(parents=True)
    port = _free_port()
    subprocess.run([redis_binary(), "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", str(folder), "--save", "", "--daemonize", "yes",
                    "--pidfile", str(folder / "redis.pid")], check=True)  # fmt: skip
    (folder / "port").write_text(str(port))
    old = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + 10
    while not (folder / "redis.pid").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        assert old.ping()
        assert stop_embedded_redis(tmp_path / "var")
        with pytest.raises(redis.ConnectionError):
            old.ping()
    finally:
        old.close()
        with contextlib.suppress(OSError, ValueError):  # if the test failed
            os.kill(int((folder / "redis.pid").read_text()), 15)
