"""The per-key token bucket, on a clock the test moves."""

from __future__ import annotations

from promptory.server.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_burst_up_to_the_limit_then_waits() -> None:
    limiter = RateLimiter(60, clock=Clock())
    assert [limiter.check("k") for _ in range(60)] == [0] * 60
    assert limiter.check("k") == 1


def test_tokens_come_back_at_the_limit_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    for _ in range(6):
        limiter.check("k")
    assert limiter.check("k") == 10
    clock.now += 4
    assert limiter.check("k") == 6
    clock.now += 6
    assert limiter.check("k") == 0
    assert limiter.check("k") == 10


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(1, clock=Clock())
    assert limiter.check("a") == 0
    assert limiter.check("a") == 60
    assert limiter.check("b") == 0


def test_zero_turns_limiting_off() -> None:
    limiter = RateLimiter(0)
    assert not limiter.enabled
    assert all(limiter.check("k") == 0 for _ in range(10_000))
    assert len(limiter) == 0


def test_memory_stays_bounded_by_dropping_idle_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(10, max_buckets=100, clock=clock)
    for index in range(1000):
        limiter.check(f"key-{index}")
        clock.now += 1
    assert len(limiter) <= 100


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter(100_000, clock=Clock())
    for _ in range(100_000):
        limiter.check("k")
    assert limiter.check("k") == 1
