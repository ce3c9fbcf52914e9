"""Per-key rate limiting: a token bucket per API key.

Rules of this module:

* Each key may make `per_minute` requests a minute, in bursts of up to `per_minute`: its
  bucket holds that many tokens and refills at `per_minute / 60` tokens a second.
* Time is `time.monotonic()`: wall-clock jumps neither grant nor take tokens.
* A refused request learns how long until its next token, in whole seconds, at least 1 (for
  ``Retry-After``).
* `per_minute = 0` turns limiting off.
* Memory is bounded: buckets that have refilled completely are the same as new ones, so they
  are dropped when the table grows past `max_buckets`; if every bucket is still busy, the
  oldest one is dropped, which only ever gives a key more room, never less.
* One lock guards the table; a check is a dict lookup and a little arithmetic under it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets by key id.

    Args:
        per_minute: requests allowed per key per minute (and the burst size); 0 disables.
        max_buckets: how many buckets to keep before dropping idle ones.
        clock: seconds from a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_buckets: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be 0 (off) or more")
        self.per_minute = per_minute
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._max_buckets = max_buckets
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [tokens, time of last update]; insertion order approximates age.
        self._buckets: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        """False when limiting is off."""
        return self.per_minute > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> int:
        """Take a token for `key`.

        Returns:
            0 when the request may go ahead, else the whole seconds (at least 1) until the
            key's next token.
        """
        if not self.per_minute:
            return 0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_buckets:
                    self._sweep(now)
                self._buckets[key] = [self._capacity - 1.0, now]
                return 0
            tokens = min(self._capacity, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0
            bucket[0] = tokens
            return max(1, math.ceil((1.0 - tokens) / self._rate))

    def _sweep(self, now: float) -> None:
        """Drop full (idle) buckets; if none is full, the oldest. Called under the lock."""
        full = [
            key
            for key, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self._rate >= self._capacity
        ]
        for key in full:
            del self._buckets[key]
        if not full:
            del self._buckets[next(iter(self._buckets))]
