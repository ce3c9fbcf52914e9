"""`ServerMetrics`: the server's Prometheus metrics, in a registry of their own.

Rules of this module:

* Names are ``promptory_<what>_<unit>``: counters end in ``_total``, durations are
  histograms in seconds (prometheus_client's conventions; no hand-written text format).
* One registry per app, so two apps in one process (tests) never share counts.
* Labels are bounded: the route is the route's template (never the raw path), the status
  an HTTP status code. Children are cached per (route, status), so counting a request is a
  dict lookup and an increment.
* Gauges that describe state (served commit, time since the last fetch, subscribers) are
  read at scrape time from callables, never updated on the request path.
* Each worker process has its own registry: with ``--workers N`` a scrape sees the worker
  that answered it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

#: The Content-Type of a scrape.
CONTENT_TYPE = CONTENT_TYPE_LATEST

_RENDER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_GIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """The metrics of one server app."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "promptory_requests_total",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.not_modified = Counter(
            "promptory_not_modified_total",
            "304 Not Modified answers (conditional GETs whose ETag matched)",
            registry=registry,
        )
        self.rate_limited = Counter(
            "promptory_rate_limited_total",
            "requests answered 429: over the per-key rate limit or a key's render cap "
            "(RATE_LIMITED), or over the open watch streams (TOO_MANY_WATCHERS)",
            registry=registry,
        )
        self.rate_limit_fallbacks = Counter(
            "promptory_rate_limit_local_fallbacks_total",
            "times the shared (Redis) rate limit was unreachable and limiting went local",
            registry=registry,
        )
        self.rate_limit_shared = Gauge(
            "promptory_rate_limit_shared",
            "1 while the rate limit is counted in Redis, 0 while it is local (-1: no Redis)",
            registry=registry,
        )
        self.rate_limit_shared.set(-1)
        self.render_seconds = Histogram(
            "promptory_render_seconds",
            "server-side render time",
            buckets=_RENDER_BUCKETS,
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            "promptory_fetch_seconds",
            "time to fetch the followed remote",
            buckets=_GIT_BUCKETS,
            registry=registry,
        )
        self.index_seconds = Histogram(
            "promptory_index_seconds",
            "time to index a fetched commit and swap it in",
            buckets=_GIT_BUCKETS,
            registry=registry,
        )
        self.fetch_failures = Counter(
            "promptory_fetch_failures_total",
            "fetches or indexes of the followed remote that failed (the last good commit "
            "kept serving)",
            registry=registry,
        )
        self.commits = Counter(
            "promptory_commits_served_total",
            "commits swapped in since the start",
            registry=registry,
        )
        self.served_commit = Info(
            "promptory_served_commit", "the commit being served", registry=registry
        )
        self.since_fetch = Gauge(
            "promptory_seconds_since_last_fetch",
            "seconds since the last successful fetch of the followed remote (-1: none yet, "
            "or not following a remote)",
            registry=registry,
        )
        self.since_fetch.set(-1)
        self.skipped_files = Gauge(
            "promptory_skipped_files",
            "prompt files of the served commit skipped while indexing (unreadable)",
            registry=registry,
        )
        self.prompt_files = Gauge(
            "promptory_prompt_files", "prompt files of the served commit", registry=registry
        )
        self.watch_subscribers = Gauge(
            "promptory_watch_subscribers",
            "open /api/v1/watch streams",
            registry=registry,
        )
        self._children: dict[tuple[str, int], Callable[[], None]] = {}

    def count(self, route: str, status: int) -> None:
        """Count one answered request."""
        inc = self._children.get((route, status))
        if inc is None:
            inc = self._children[(route, status)] = self.requests.labels(route, str(status)).inc
        inc()
        if status == 304:
            self.not_modified.inc()
        elif status == 429:
            self.rate_limited.inc()

    def set_served(self, commit: str | None, files: int, skipped: int) -> None:
        """Record the commit now served."""
        self.served_commit.info({"commit": commit or ""})
        self.prompt_files.set(files)
        self.skipped_files.set(skipped)

    def track_last_fetch(self, last_success: Callable[[], float | None]) -> None:
        """Read the time since the last successful fetch from `last_success` at scrape."""

        def since() -> float:
            last = last_success()
            return -1.0 if last is None else time.time() - last

        self.since_fetch.set_function(since)

    def scrape(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
