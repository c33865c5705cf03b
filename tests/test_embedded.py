"""The embedded default: our own redis-server under var/, started once and reused."""

from __future__ import annotations

import redis

from course.store.embedded import (
    check_server_version,
    ensure_embedded_redis,
    resolve_redis_url,
    running_url,
    stop_embedded_redis,
)


def test_embedded_redis_starts_with_aof_and_is_reused(tmp_path):
    var = tmp_path / "var"
    try:
        url = ensure_embedded_redis(var)
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
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
