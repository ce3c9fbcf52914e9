"""`SharedRateLimiter`: the per-key rate limit shared by every replica and worker through
Redis, with the `limits` package (moving window, Redis storage).

Rules of this module:

* The limit is `per_minute` requests per key in any 60-second window (a moving window: no
  burst at a window's edge), counted in Redis under ``promptory:ratelimit`` so every
  process following the same Redis counts together.
* Redis is asked on the request's thread with short socket timeouts (`REDIS_TIMEOUT`): on
  loopback or a LAN a check is one round trip.
* If Redis fails, the request is limited locally (`ratelimit.RateLimiter`, same numbers,
  this process only) and never answered 500. The outage is logged once; until Redis
  answers a probe again (a background thread, every `PROBE_INTERVAL` seconds) requests
  don't touch Redis at all, so a dead Redis costs nothing per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from .mirror import redact
from .ratelimit import RateLimiter

__all__ = ["PROBE_INTERVAL", "REDIS_TIMEOUT", "SharedRateLimiter"]

logger = logging.getLogger("promptory.server")

#: Seconds a Redis connect or command may take before the check goes local.
REDIS_TIMEOUT = 0.25
#: Seconds between probes of a Redis that failed.
PROBE_INTERVAL = 0.5


class SharedRateLimiter:
    """Moving-window limits by key id in Redis, local token buckets while Redis is away.

    Args:
        per_minute: requests allowed per key per minute; 0 disables.
        redis_url: ``redis://host:port/db`` (``rediss://`` for TLS).
        on_fallback: called each time limiting goes local (for a metric).
    """

    def __init__(
        self,
        per_minute: int,
        redis_url: str,
        *,
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.shown_url = redact(redis_url)
        self._item = RateLimitItemPerMinute(max(per_minute, 1))
        self._storage = RedisStorage(
            redis_url,
            key_prefix="promptory:ratelimit",
            wrap_exceptions=True,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._local = RateLimiter(per_minute)
        self._on_fallback = on_fallback
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()
        self.shared = True
        """False while Redis is away and the limit is local."""

    @property
    def enabled(self) -> bool:
        """False when limiting is off."""
        return self.per_minute > 0

    def check(self, key: str) -> int:
        """Count a request of `key`: 0 when it may go ahead, else whole seconds (at least 1)
        until it may."""
        if not self.per_minute:
            return 0
        if self.shared:
            try:
                if self._limiter.hit(self._item, key):
                    return 0
                stats = self._limiter.get_window_stats(self._item, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
            except Exception as exc:  # any Redis failure: limit here, never answer 500
                self._went_away(exc)
        return self._local.check(key)

    def _went_away(self, exc: Exception) -> None:
        with self._lock:
            if not self.shared:
                return
            self.shared = False
            logger.warning(
                "Redis at %s is unreachable (%s): limiting per process until it is back",
                self.shown_url,
                type(exc).__name__,
            )
            if self._on_fallback is not None:
                self._on_fallback()
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=self._probe, name="promptory-redis-probe", daemon=True
                )
                self._prober.start()

    def _probe(self) -> None:
        while not self._closed.wait(PROBE_INTERVAL):
            try:
                ok = self._storage.check()
            except Exception:
                ok = False
            if ok:
                with self._lock:
                    self.shared = True
                logger.info("Redis at %s is back: the rate limit is shared again", self.shown_url)
                return

    def close(self) -> None:
        """Stop probing."""
        self._closed.set()
