"""Real Redis for the state tests (127.0.0.1:6379 unless DISTILLGUARD_TEST_REDIS says otherwise)."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("DISTILLGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {REDIS_URL} ({error}); start one with `redis-server --daemonize yes`")
    return REDIS_URL
