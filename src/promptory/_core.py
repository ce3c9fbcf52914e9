"""The decisions shared by `PromptClient` and `AsyncPromptClient`, free of I/O.

The two clients hold only I/O, locks, sleeping and background work; every decision is made
here, once, so a fix lands in both:

* `ClientCore.lookup_id` / `lookup_name` — the hot path. A hit that needs nothing else
  returns the `Prompt` itself; otherwise a named state: `Stale` (serve it and start a
  background revalidation) or `Miss` (fetch in the caller, conditionally when an entry is
  known).
* `PromptFetch` / `RenderFetch` — one logical request and its retries. The client sends
  `fetch.request`, then reports what happened with `answered(...)` or `failed(...)` and gets a
  `Step` back: `Done(value)`, `Retry(delay, request)` or `Fail(error)`.
* `ClientCore.recover` — what a caller does with a final error: its own fallback, the snapshot
  file, or the error itself.

Time comes from the `clock` given to the core (a monotonic clock in production) and jitter
from its `rng`, so tests can drive every rule without sleeping.

Where the rules come from: CONTRACT §1 of this project; stale-while-revalidate and
stale-if-error from RFC 5861; conditional requests from RFC 9110 §13 (the client sends the
ETag back byte for byte: the existing server compares by exact string equality).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ._cache import CacheEntry, CacheKey, PromptCache, key_text
from ._version import __version__
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    InvalidArgumentError,
    MalformedResponseError,
    NotFoundError,
    PromptoryError,
    RateLimitError,
    RenderError,
    ServerError,
)
from .prompt import ENVIRONMENTS, Prompt
from .snapshot import Snapshot

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_MAX_DELAY",
    "ClientCore",
    "ClientOptions",
    "Done",
    "Fail",
    "Fallback",
    "HttpRequest",
    "ListFetch",
    "Miss",
    "PromptFetch",
    "RenderFetch",
    "Retry",
    "Stale",
]

logger = logging.getLogger("promptory")
cache_logger = logging.getLogger("promptory.cache")

#: First retry delay, in seconds; each further retry doubles it.
BACKOFF_BASE = 0.1
#: No single retry waits longer than this, in seconds.
BACKOFF_MAX_DELAY = 1.0
#: The waits of one call add up to at most this, in seconds. With the per-attempt `timeout`,
#: a call against a dead or stalled server ends within (retry_count + 1) * timeout + BACKOFF_CAP.
BACKOFF_CAP = 2.0
#: After a failed background revalidation, the next one for that key waits this long,
#: doubling with each failure up to COOLDOWN_MAX (seconds).
COOLDOWN_BASE = 1.0
COOLDOWN_MAX = 60.0

RETRY_STATUSES = frozenset({502, 503, 504})
API_KEY_PREFIXES = ("pm_live_", "pm_test_")
_ENVIRONMENT_SET = frozenset(ENVIRONMENTS)
_JSON_TYPE = {"Content-Type": "application/json"}

Fallback = str | Prompt | Callable[[PromptoryError], str | Prompt]
"""A per-call fallback: a body, a `Prompt`, or a callable given the error that returns one."""


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientOptions:
    """A client's checked settings. Build with `ClientOptions.build`, which refuses bad ones."""

    base_url: str
    cache_ttl: float
    cache_max_size: int
    timeout: float
    retry_count: int
    max_stale: float | None
    background_workers: int

    @classmethod
    def build(
        cls,
        *,
        base_url: Any,
        api_key: Any,
        cache_ttl: Any,
        cache_max_size: Any,
        timeout: Any,
        retry_count: Any,
        max_stale: Any = None,
        background_workers: Any = 2,
    ) -> ClientOptions:
        """Check every setting; raise `InvalidArgumentError` naming the first bad one."""
        check_api_key(api_key)
        return cls(
            base_url=_check_base_url(base_url),
            cache_ttl=_number("cache_ttl", cache_ttl, minimum=0),
            cache_max_size=_integer("cache_max_size", cache_max_size, minimum=0),
            timeout=_number("timeout", timeout, minimum=0, inclusive=False),
            retry_count=_integer("retry_count", retry_count, minimum=0),
            max_stale=None if max_stale is None else _number("max_stale", max_stale, minimum=0),
            background_workers=_integer("background_workers", background_workers, minimum=1),
        )

    @property
    def give_up_after(self) -> float:
        """The longest one call can take against a dead or stalled server, in seconds."""
        return (self.retry_count + 1) * self.timeout + BACKOFF_CAP


def check_api_key(api_key: Any) -> str:
    """Refuse a key without a known prefix. The message never repeats the key."""
    if not isinstance(api_key, str) or not api_key.startswith(API_KEY_PREFIXES):
        raise InvalidArgumentError(
            "api_key must be a Promptory API key starting with 'pm_live_' or 'pm_test_'",
            code="INVALID_API_KEY",
        )
    if len(api_key) <= len("pm_live_") or not all(33 <= ord(c) <= 126 for c in api_key):
        raise InvalidArgumentError(
            "api_key must be a Promptory API key: the prefix 'pm_live_' or 'pm_test_' followed "
            "by the key's characters (printable ASCII, no spaces)",
            code="INVALID_API_KEY",
        )
    return api_key


def mask_key(api_key: str) -> str:
    """The key as shown in a repr: its prefix only."""
    return api_key[: len("pm_live_")] + "…"


def _check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str):
        raise InvalidArgumentError(
            "base_url must be a string such as 'http://localhost:8000', not "
            f"{type(base_url).__name__}",
            code="INVALID_BASE_URL",
        )
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError when out of range
        httpx.URL(base_url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidArgumentError(
            f"base_url is not a valid URL ({exc}): {base_url!r}", code="INVALID_BASE_URL"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"base_url must be an absolute http:// or https:// URL, got {base_url!r}",
            code="INVALID_BASE_URL",
        )
    if parts.query or parts.fragment:
        raise InvalidArgumentError(
            f"base_url must not have a query or fragment, got {base_url!r}",
            code="INVALID_BASE_URL",
        )
    return base_url.rstrip("/")


def _number(name: str, value: Any, *, minimum: float, inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(
            f"{name} must be a finite number of seconds, got {value!r}", code="INVALID_OPTION"
        )
    if value < minimum or (not inclusive and value == minimum):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {value!r}", code="INVALID_OPTION")
    return value  # as given: cache_stats() shows the ttl as the caller wrote it


def _integer(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be a whole number, got {value!r}", code="INVALID_OPTION"
        )
    if value < minimum:
        raise InvalidArgumentError(
            f"{name} must be >= {minimum}, got {value!r}", code="INVALID_OPTION"
        )
    return value


# --- states of a lookup ----------------------------------------------------------------------


class Stale:
    """A cached prompt past its TTL, with no revalidation under way for it: serve it now and
    start one in the background. (A stale hit while one is under way, or while the key cools
    down after failures, is answered with the `Prompt` itself, like a fresh hit.)"""

    __slots__ = ("entry", "key")

    def __init__(self, key: CacheKey, entry: CacheEntry) -> None:
        self.key = key
        self.entry = entry


class Miss:
    """Nothing servable is cached: fetch in the caller (conditionally if `entry` is known)."""

    __slots__ = ("entry", "key")

    def __init__(self, key: CacheKey, entry: CacheEntry | None) -> None:
        self.key = key
        self.entry = entry


Lookup = Prompt | Stale | Miss


# --- requests and steps ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request to send, relative to the base URL (path already percent-encoded)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The fetch is over: `value` is the result (a `Prompt`, or a rendered string)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Retry:
    """Wait `delay` seconds, then send `request`."""

    delay: float
    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Fail:
    """The fetch failed for good: raise `error`."""

    error: PromptoryError


Step = Done | Retry | Fail


# --- the core --------------------------------------------------------------------------------


class ClientCore:
    """The cache and every decision about it, shared by the sync and async clients.

    `flights` maps a key to the client's in-flight fetch for it (a foreground fetch or a
    background revalidation); the clients add and remove flights, the core reads the map to
    decide whether a stale hit starts a revalidation.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        snapshot: Snapshot | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self.cache = PromptCache(ttl=options.cache_ttl, max_size=options.cache_max_size)
        self.snapshot = snapshot
        self.clock = clock
        self.rng = rng
        self.flights: dict[CacheKey, Any] = {}
        # Bound methods of the cache's dict: a hit costs two C calls and no Python frame.
        self._get, self._touch = self.cache.hot_path()
        self._ttl_zero = options.cache_ttl == 0
        self.hits = 0
        self.stale_hits = 0
        self.misses = 0
        self.revalidations = 0
        self.revalidation_failures = 0
        self.stale_if_error = 0
        self.fallbacks = 0
        self.errors = 0

    # -- the hot path --

    # lookup_id and lookup_name repeat the same dozen lines on purpose: a shared helper
    # would add a Python call to every cache hit, a sixth of its cost.

    def lookup_id(self, prompt_id: str, ref: str | None = None) -> Lookup:
        """Look `prompt_id` up: the `Prompt` when fresh, else `Stale` or `Miss`."""
        key = ("id", prompt_id, ref)
        entry = self._get(key)
        if entry is not None:
            cache = self.cache
            if entry is not cache.last:  # already the most recently used: nothing to move
                try:
                    self._touch(key)
                except KeyError:  # evicted by another thread in between
                    pass
                cache.last = entry
            now = self.clock()
            if now < entry.fresh_until:
                self.hits += 1
                return entry.prompt
            return self._expired(key, entry, now)
        self.misses += 1
        return Miss(key, None)

    def lookup_name(
        self, org: str, app: str, name: str, environment: str | None = None, ref: str | None = None
    ) -> Lookup:
        """Look a qualified name up: the `Prompt` when fresh, else `Stale` or `Miss`.

        Raises:
            InvalidArgumentError: `environment` is not one of development, staging,
                production.
        """
        if environment is not None and environment not in _ENVIRONMENT_SET:
            raise InvalidArgumentError(
                f"environment must be one of {', '.join(ENVIRONMENTS)} (or None for the most "
                f"promoted), got {environment!r}",
                code="INVALID_ENVIRONMENT",
            )
        key = ("name", org, app, name, environment, ref)
        entry = self._get(key)
        if entry is not None:
            cache = self.cache
            if entry is not cache.last:  # already the most recently used: nothing to move
                try:
                    self._touch(key)
                except KeyError:  # evicted by another thread in between
                    pass
                cache.last = entry
            now = self.clock()
            if now < entry.fresh_until:
                self.hits += 1
                return entry.prompt
            return self._expired(key, entry, now)
        self.misses += 1
        return Miss(key, None)

    def _expired(self, key: CacheKey, entry: CacheEntry, now: float) -> Lookup:
        max_stale = self.options.max_stale
        if self._ttl_zero or (max_stale is not None and now - entry.fresh_until > max_stale):
            # TTL 0 revalidates in the caller; past max_stale the old copy may not be served.
            self.misses += 1
            cache_logger.debug("%s: expired, revalidating in the caller", key_text(key))
            return Miss(key, entry)
        self.stale_hits += 1
        if key in self.flights or now < entry.retry_at:
            # Revalidating already, or cooling down after failures: just serve the copy.
            return entry.prompt
        cache_logger.debug("%s: stale, revalidating in the background", key_text(key))
        return Stale(key, entry)

    # -- fetching --

    def prompt_fetch(
        self, key: CacheKey, seen: CacheEntry | None, *, background: bool = False
    ) -> PromptFetch:
        """Start the fetch of the prompt for `key`; `seen` is the cached entry, if any."""
        return PromptFetch(self, key, seen, background)

    def render_fetch(
        self, prompt: Prompt, variables: Mapping[str, Any] | None, ref: str | None
    ) -> RenderFetch:
        """Start a server-side render of `prompt` with `variables`."""
        return RenderFetch(self, prompt, variables, ref)

    def list_fetch(
        self,
        org: str | None,
        app: str | None,
        environment: str | None,
        tag: str | None,
        ref: str | None,
    ) -> ListFetch:
        """Start listing the prompts the key may read, filtered as given."""
        return ListFetch(self, org, app, environment, tag, ref)

    def backoff(self, attempt: int, slept: float) -> float:
        """The wait before retry number `attempt` (0-based), given `slept` seconds so far:
        exponential from BACKOFF_BASE, each at most BACKOFF_MAX_DELAY, drawn in [d/2, d]
        (jitter, so clients that failed together do not retry together), and never past
        BACKOFF_CAP in all."""
        ceiling = min(BACKOFF_MAX_DELAY, math.ldexp(BACKOFF_BASE, attempt))
        delay = ceiling * (0.5 + 0.5 * self.rng())
        return max(0.0, min(delay, BACKOFF_CAP - slept))

    def cooldown(self, failures: int, retry_after: float | None) -> float:
        """How long to wait before the next background revalidation of a failing key."""
        delay = min(COOLDOWN_MAX, math.ldexp(COOLDOWN_BASE, max(failures - 1, 0)))
        delay *= 0.5 + 0.5 * self.rng()
        return max(delay, retry_after or 0.0)

    # -- after a failure --

    def serve_stale(
        self, key: CacheKey, error: PromptoryError, *, background: bool
    ) -> Prompt | None:
        """Stale-if-error (RFC 5861 §4): the cached copy to serve in place of `error`, if the
        error is one the cache may cover and the copy is not too stale; logs one warning."""
        if not isinstance(error, (APIConnectionError, ServerError, RateLimitError)):
            return None
        entry = self.cache.peek(key)
        if entry is None:
            return None
        now = self.clock()
        max_stale = self.options.max_stale
        if max_stale is not None and now - entry.fresh_until > max_stale:
            return None
        if background:
            wait = self.note_revalidation_failure(key, error)
            logger.warning(
                "could not revalidate %s: %s; serving the cached copy (age %.0f s), "
                "next attempt in %.1f s",
                key_text(key),
                error,
                now - entry.stored_at,
                wait,
            )
        else:
            self.stale_if_error += 1
            logger.warning(
                "could not refresh %s: %s; serving the cached copy (age %.0f s)",
                key_text(key),
                error,
                now - entry.stored_at,
            )
        return entry.prompt

    def note_revalidation_failure(self, key: CacheKey, error: PromptoryError) -> float:
        """Count a failed background revalidation and start the key's cooldown, so stale hits
        do not send a new request each while the server keeps failing. Returns the wait."""
        self.revalidation_failures += 1
        entry = self.cache.peek(key)
        if entry is None:
            return 0.0
        entry.failures += 1
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        wait = self.cooldown(entry.failures, retry_after)
        entry.retry_at = self.clock() + wait
        return wait

    def recover(self, error: PromptoryError, key: CacheKey, fallback: Fallback | None) -> Prompt:
        """A caller's last resort after a failed fetch: its own `fallback`, else the snapshot
        file, when the server could not be reached; otherwise `error` is raised."""
        if isinstance(error, (APIConnectionError, ServerError, RateLimitError)):
            prompt = None
            if fallback is not None:
                prompt = self._call_fallback(fallback, key, error)
            elif self.snapshot is not None:
                if key[0] == "id":
                    prompt = self.snapshot.find_id(key[1])
                else:
                    prompt = self.snapshot.find_name(*key[1:5])
            if prompt is not None:
                self.fallbacks += 1
                logger.warning(
                    "%s: %s; serving a fallback%s",
                    key_text(key),
                    error,
                    " from the snapshot file" if fallback is None else "",
                )
                return prompt
        self.errors += 1
        raise error

    def _call_fallback(self, fallback: Fallback, key: CacheKey, error: PromptoryError) -> Prompt:
        value: Any = fallback
        if callable(value) and not isinstance(value, Prompt):
            value = value(error)
        if isinstance(value, Prompt):
            return value if value.is_fallback else replace(value, is_fallback=True)
        if isinstance(value, str):
            if key[0] == "id":
                return Prompt(id=key[1], name=key[1], body=value, is_fallback=True)
            _, org, app, name, environment = key[:5]
            return Prompt(
                id="",
                name=name,
                org=org,
                app=app,
                environment=environment or "",
                body=value,
                is_fallback=True,
            )
        raise InvalidArgumentError(
            f"fallback must be a body string, a Prompt, or a callable returning one; got "
            f"{type(value).__name__}",
            code="INVALID_FALLBACK",
        ) from error

    # -- requests --

    def request_for(self, key: CacheKey, etag: str | None) -> HttpRequest:
        """The GET for `key`, conditional on `etag` when one is known."""
        params: dict[str, str] = {}
        if key[0] == "id":
            path = f"/api/v1/prompts/{path_segment(key[1], 'prompt_id')}"
        else:
            _, org, app, name, environment = key[:5]
            path = (
                f"/api/v1/prompts/by-name/{path_segment(org, 'org')}/"
                f"{path_segment(app, 'app')}/{path_segment(name, 'name')}"
            )
            if environment is not None:
                params["environment"] = environment
        ref = key[-1]
        if ref is not None:
            params["ref"] = _check_ref(ref)
        headers = {"If-None-Match": etag} if etag else {}
        return HttpRequest("GET", path, params, headers)

    def stats(self) -> dict[str, Any]:
        """`cache_stats()`: the contract's keys, then counters."""
        stats = self.cache.stats(self.clock())
        stats.update(
            hits=self.hits,
            stale_hits=self.stale_hits,
            misses=self.misses,
            revalidations=self.revalidations,
            revalidation_failures=self.revalidation_failures,
            stale_served_on_error=self.stale_if_error,
            fallbacks_served=self.fallbacks,
            errors=self.errors,
            evictions=self.cache.evictions,
            in_flight=len(self.flights),
        )
        return stats

    def invalidate(self, name: str) -> int:
        """`cache_invalidate(name)`."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(
                "cache_invalidate needs a non-empty prompt name, id prefix or org[/app[/name]]; "
                "use cache_invalidate_all() to clear everything",
                code="INVALID_ARGUMENT",
            )
        removed = self.cache.invalidate(name)
        cache_logger.debug("invalidated %d entries matching %r", removed, name)
        return removed


def path_segment(value: Any, what: str) -> str:
    """`value` percent-encoded as exactly one URL path segment: `/` is encoded and a `.` or
    `..` segment is spelled `%2E`, so no id can reach another route."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(
            f"{what} must be a non-empty string, got {value!r}", code="INVALID_ARGUMENT"
        )
    segment = quote(value, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return segment


def _check_ref(ref: Any) -> str:
    if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
        raise InvalidArgumentError(
            f"ref must be a commit sha or a tag name, got {ref!r}", code="INVALID_ARGUMENT"
        )
    return ref


def describe(key: CacheKey) -> str:
    """How messages name the prompt of `key`."""
    if key[0] == "id":
        text = f"prompt id {key[1]!r}"
    else:
        _, org, app, name, environment = key[:5]
        text = f"prompt {org}/{app}/{name}"
        if environment is not None:
            text += f" (environment {environment})"
    ref = key[-1]
    return f"{text} at ref {ref}" if ref is not None else text


# --- one fetch and its retries ---------------------------------------------------------------


class _Attempts:
    """Retry bookkeeping shared by the prompt and render fetches."""

    request: HttpRequest
    label: str

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.attempt = 0
        self.slept = 0.0

    def failed(self, exc: Exception) -> Step:
        """The request raised instead of answering (connection, timeout, protocol...)."""
        return self._failure(transport_error(exc, self.label, self.core.options), retryable=True)

    def _failure(self, error: PromptoryError, *, retryable: bool) -> Step:
        if retryable and self.attempt < self.core.options.retry_count:
            delay = self.core.backoff(self.attempt, self.slept)
            self.attempt += 1
            self.slept += delay
            logger.debug("%s: %s; retry %d in %.2f s", self.label, error, self.attempt, delay)
            return Retry(delay, self.request)
        return self._give_up(error)

    def _give_up(self, error: PromptoryError) -> Step:
        return Fail(error)


class PromptFetch(_Attempts):
    """Fetching one prompt for one cache key: conditional when an ETag is known, retried on
    transport errors and 502/503/504, and settled into the cache as the answer says."""

    def __init__(
        self, core: ClientCore, key: CacheKey, seen: CacheEntry | None, background: bool
    ) -> None:
        super().__init__(core)
        self.key = key
        self.seen = seen
        self.background = background
        self.label = describe(key)
        self.request = core.request_for(key, seen.etag if seen is not None else None)
        # Noted as the request leaves: an invalidation after this wins over its answer.
        self.generation = core.cache.generation
        self._refetched = False

    def answered(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        core = self.core
        if status == 200:
            try:
                prompt = _parse_prompt(content, self.key, self.label)
            except MalformedResponseError as malformed:
                return self._fail(malformed)  # never cached, never retried: the server said this
            # A tag or commit answers `immutable` and is cached for good; a branch moves, so
            # it ages like any other entry.
            pinned = self.key[-1] is not None and "immutable" in headers.get("cache-control", "")
            stored = core.cache.put(
                self.key,
                prompt,
                headers.get("etag"),
                core.clock(),
                generation=self.generation,
                pinned=pinned,
            )
            if stored is not None:
                cache_logger.debug("%s: stored (200)", key_text(self.key))
            return Done(prompt)
        if status == 304:
            entry = None
            if self.seen is not None:
                entry = core.cache.refresh(self.key, self.seen, headers.get("etag"), core.clock())
            if entry is not None:
                cache_logger.debug("%s: not modified (304), age restarted", key_text(self.key))
                return Done(entry.prompt)
            if self._refetched:
                return Fail(
                    MalformedResponseError(
                        f"{self.label}: the server answered 304 Not Modified to a request that "
                        "was not conditional",
                        status_code=304,
                        code="UNEXPECTED_304",
                        prompt=self.label,
                    )
                )
            # The entry was evicted or invalidated while the request was out: ask afresh.
            cache_logger.debug(
                "%s: 304 for an entry no longer cached, refetching", key_text(self.key)
            )
            self._refetched = True
            self.seen = None
            self.request = core.request_for(self.key, None)
            self.generation = core.cache.generation
            return Retry(0.0, self.request)
        error = error_from_status(status, headers, content, self.label)
        if status in (401, 403, 404):
            # A deleted prompt or a revoked key must not keep reading through the cache.
            if core.cache.evict(self.key):
                cache_logger.debug("%s: evicted (%d)", key_text(self.key), status)
            return self._fail(error)
        return self._failure(error, retryable=status in RETRY_STATUSES)

    def _give_up(self, error: PromptoryError) -> Step:
        prompt = self.core.serve_stale(self.key, error, background=self.background)
        if prompt is not None:
            return Done(prompt)
        return self._fail(error)

    def _fail(self, error: PromptoryError) -> Step:
        if self.background:
            self.core.note_revalidation_failure(self.key, error)
        return Fail(error)


class RenderFetch(_Attempts):
    """A server-side render (`POST /api/v1/prompts/{id}/render`): includes resolved there."""

    def __init__(
        self,
        core: ClientCore,
        prompt: Prompt,
        variables: Mapping[str, Any] | None,
        ref: str | None,
    ) -> None:
        super().__init__(core)
        self.prompt = prompt
        self.label = describe(("id", prompt.id, ref))
        try:
            content = json.dumps({"variables": dict(variables or {})}).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{self.label}: variables must be JSON-serializable to render on the server: {exc}",
                code="INVALID_ARGUMENT",
                prompt=self.label,
            ) from exc
        params = {"ref": _check_ref(ref)} if ref is not None else {}
        path = f"/api/v1/prompts/{path_segment(prompt.id, 'prompt_id')}/render"
        self.request = HttpRequest("POST", path, params, _JSON_TYPE, content)

    def answered(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        if status == 200:
            try:
                data = json.loads(content)
            except ValueError:
                data = None
            rendered = data.get("rendered_body") if isinstance(data, dict) else None
            if not isinstance(rendered, str):
                return Fail(
                    MalformedResponseError(
                        f"{self.label}: malformed render answer: expected a JSON object with a "
                        "string 'rendered_body'",
                        status_code=status,
                        code="MALFORMED_RESPONSE",
                        prompt=self.label,
                    )
                )
            return Done(rendered)
        error = error_from_status(status, headers, content, self.label)
        if status == 400 and not isinstance(error, RenderError):
            # The render endpoint's 400s are about the template or its variables.
            error = RenderError(error.message, status_code=400, code=error.code, prompt=self.label)
        return self._failure(error, retryable=status in RETRY_STATUSES)


class ListFetch(_Attempts):
    """Listing prompts (`GET /api/v1/prompts`): not cached, retried like any fetch."""

    def __init__(
        self,
        core: ClientCore,
        org: str | None,
        app: str | None,
        environment: str | None,
        tag: str | None,
        ref: str | None,
    ) -> None:
        super().__init__(core)
        if environment is not None and environment not in _ENVIRONMENT_SET:
            raise InvalidArgumentError(
                f"environment must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}",
                code="INVALID_ENVIRONMENT",
            )
        if app is not None and org is None:
            raise InvalidArgumentError("listing an app needs its org too", code="INVALID_ARGUMENT")
        filters = {"org": org, "app": app, "environment": environment, "tag": tag}
        params = {name: value for name, value in filters.items() if value is not None}
        if ref is not None:
            params["ref"] = _check_ref(ref)
        where = "/".join(p for p in (org, app) if p) or "every app"
        self.label = f"prompts of {where}"
        self.request = HttpRequest("GET", "/api/v1/prompts", params, {})

    def answered(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        if status != 200:
            error = error_from_status(status, headers, content, self.label)
            return self._failure(error, retryable=status in RETRY_STATUSES)
        try:
            data = json.loads(content)
            items = data["prompts"]
            if not isinstance(items, list):
                raise TypeError("'prompts' is not a list")
            prompts = [Prompt.from_api(item) for item in items]
        except (ValueError, KeyError, TypeError, MalformedResponseError) as exc:
            return Fail(
                MalformedResponseError(
                    f"{self.label}: malformed list answer: {exc}",
                    status_code=status,
                    code="MALFORMED_RESPONSE",
                    prompt=self.label,
                )
            )
        return Done(prompts)


def _parse_prompt(content: bytes, key: CacheKey, label: str) -> Prompt:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise MalformedResponseError(
            f"{label}: malformed answer from the server: not JSON ({exc})",
            status_code=200,
            code="MALFORMED_RESPONSE",
            prompt=label,
        ) from None
    try:
        prompt = Prompt.from_api(data)
    except MalformedResponseError as exc:
        raise MalformedResponseError(
            f"{label}: {exc.message}", status_code=200, code=exc.code, prompt=label
        ) from None
    # The answer must be the prompt that was asked for: a mixed-up answer must not be cached
    # under this key.
    if key[0] == "id":
        mismatch = not _same_id(prompt.id, key[1])
    else:
        _, org, app, name, environment = key[:5]
        mismatch = (
            prompt.name != name
            or (prompt.org not in ("", org))
            or (prompt.app not in ("", app))
            or (environment is not None and prompt.environment not in ("", environment))
        )
    if mismatch:
        raise MalformedResponseError(
            f"{label}: the server answered with another prompt "
            f"({prompt.qualified_name}, id {prompt.id!r}, environment {prompt.environment!r})",
            status_code=200,
            code="MALFORMED_RESPONSE",
            prompt=label,
        )
    return prompt


def _same_id(answered: str, asked: str) -> bool:
    """Ids are equal as written, or as UUIDs (``550E8400-...``, ``{...}`` and the hex form
    name the same prompt; the server answers with the canonical spelling)."""
    if answered == asked:
        return True
    try:
        return uuid.UUID(answered) == uuid.UUID(asked)
    except ValueError:
        return False


# --- errors ----------------------------------------------------------------------------------

_REASONS = {
    400: "bad request",
    401: "the API key was refused",
    403: "the API key may not read this prompt",
    404: "not found",
    429: "rate limited",
}


def read_error_envelope(content: bytes) -> tuple[str | None, str | None]:
    """The server's error code and message, from ``{"error": {...}}``,
    ``{"detail": {"error": {...}}}`` or ``{"detail": "text"}``; else the text itself."""
    try:
        data = json.loads(content)
    except ValueError:
        text = content[:300].decode("utf-8", "replace").strip()
        return None, text or None
    if isinstance(data, dict):
        detail = data.get("detail")
        error = data.get("error")
        if error is None and isinstance(detail, dict):
            error = detail.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            return (
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
            )
        if isinstance(detail, str):
            return None, detail
    return None, None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds, from delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_status(
    status: int, headers: Mapping[str, str], content: bytes, label: str
) -> PromptoryError:
    """The exception for an HTTP error answer: one table for both clients."""
    code, message = read_error_envelope(content)
    reason = _REASONS.get(status) or ("server error" if status >= 500 else "unexpected status")
    text = f"{label}: {reason} (HTTP {status}{' ' + code if code else ''})"
    if message:
        text += f": {message}"
    kwargs: dict[str, Any] = {"status_code": status, "code": code, "prompt": label}
    if status == 401:
        return AuthenticationError(text, **kwargs)
    if status == 403:
        return ForbiddenError(text, **kwargs)
    if status == 404:
        return NotFoundError(text, **kwargs)
    if status == 429:
        return RateLimitError(
            text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs
        )
    if status == 400 and code == "RENDER_ERROR":
        return RenderError(text, **kwargs)
    if 400 <= status < 500:
        return BadRequestError(text, **kwargs)
    if status >= 500:
        return ServerError(text, **kwargs)
    return MalformedResponseError(text, **kwargs)


def transport_error(exc: Exception, label: str, options: ClientOptions) -> PromptoryError:
    """Our error for an exception of the HTTP layer; the original is chained as the cause."""
    error: PromptoryError
    if isinstance(exc, (httpx.TimeoutException, TimeoutError, asyncio.TimeoutError)):
        error = APITimeoutError(
            f"{label}: no complete answer from {options.base_url} within {options.timeout:g} s "
            f"({type(exc).__name__})",
            prompt=label,
        )
    elif isinstance(exc, (httpx.TransportError, OSError)):
        detail = str(exc) or type(exc).__name__
        error = APIConnectionError(
            f"{label}: could not get an answer from {options.base_url}: {detail}", prompt=label
        )
    elif isinstance(exc, httpx.DecodingError):
        error = MalformedResponseError(
            f"{label}: the answer could not be decoded: {exc}",
            prompt=label,
            code="MALFORMED_RESPONSE",
        )
    else:
        error = APIConnectionError(
            f"{label}: request failed: {type(exc).__name__}: {exc}", prompt=label
        )
    error.__cause__ = exc
    return error


def user_agent() -> str:
    """The User-Agent every request carries."""
    return f"promptory-python/{__version__}"


def prefetch_targets(items: Iterable[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """Read `prefetch` specs: an id, ``"org/app/name"``, or a tuple ``(org, app, name[, env])``.

    Returns ``(label, args)`` pairs: args of `get` (one element) or of `get_by_name`.
    """
    targets: list[tuple[str, tuple[Any, ...]]] = []
    for item in items:
        if isinstance(item, str) and "/" in item:
            parts = item.split("/")
            if len(parts) != 3 or not all(parts):
                raise InvalidArgumentError(
                    f"prefetch entry {item!r}: a qualified name is 'org/app/name'",
                    code="INVALID_ARGUMENT",
                )
            targets.append((item, tuple(parts)))
        elif isinstance(item, str) and item:
            targets.append((item, (item,)))
        elif (
            isinstance(item, tuple)
            and len(item) in (3, 4)
            and all(isinstance(p, (str, type(None))) for p in item)
        ):
            targets.append(("/".join(p for p in item if p), item))
        else:
            raise InvalidArgumentError(
                f"prefetch entry {item!r}: expected an id, 'org/app/name', or "
                "(org, app, name[, environment])",
                code="INVALID_ARGUMENT",
            )
    return targets
