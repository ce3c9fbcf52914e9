"""``redis_url``: the per-key rate limit is counted in Redis by every server sharing it;
without Redis each server limits on its own, logs it once and never answers 500."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.services import RedisServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
PROMPT = f"/api/v1/prompts/{MEDITATION_ID}"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def wait_until(condition: Any, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_two_servers_count_one_key_together(
    redis: RedisServer, start_server: Any, prompt_repo: Any
) -> None:
    one = start_server(prompt_repo, rate_limit=10, redis_url=redis.url)
    two = start_server(prompt_repo, rate_limit=10, redis_url=redis.url)
    with one.client() as a, two.client() as b:
        statuses = [(a if i % 2 else b).get(PROMPT).status_code for i in range(10)]
        assert statuses == [200] * 10
        for http in (a, b):
            refused = http.get(PROMPT)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_without_redis_each_server_limits_alone(start_server: Any, prompt_repo: Any) -> None:
    one = start_server(prompt_repo, rate_limit=10)
    two = start_server(prompt_repo, rate_limit=10)
    with one.client() as a, two.client() as b:
        statuses = [(a if i % 2 else b).get(PROMPT).status_code for i in range(12)]
    assert statuses == [200] * 12  # 6 each: neither reached 10


def test_redis_going_away_limits_locally_logs_once_and_comes_back(
    redis: RedisServer,
    start_server: Any,
    prompt_repo: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(prompt_repo, rate_limit=1000, redis_url=redis.url)
    limiter = server.background.app.state.limiter
    with server.client() as http, caplog.at_level(logging.INFO, logger="promptory.server"):
        assert http.get(PROMPT).status_code == 200
        redis.stop()
        statuses = {http.get(PROMPT).status_code for _ in range(30)}
        assert statuses == {200}
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1
        assert redis.url.split("//")[1].split("/")[0] in unreachable[0].getMessage()
        assert limiter.shared is False
        text = http.get("/metrics").text
        assert "promptory_rate_limit_local_fallbacks_total 1.0" in text
        assert "promptory_rate_limit_shared 0.0" in text
        redis.start()
        wait_until(lambda: limiter.shared, what="the limit shared again")
        assert any("is back" in r.getMessage() for r in caplog.records)
        assert http.get(PROMPT).status_code == 200
        assert "promptory_rate_limit_shared 1.0" in http.get("/metrics").text


def test_a_dead_redis_still_limits_each_server(start_server: Any, prompt_repo: Any) -> None:
    from support.services import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = start_server(prompt_repo, rate_limit=3, redis_url=dead)
    with server.client() as http:
        statuses = [http.get(PROMPT).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
