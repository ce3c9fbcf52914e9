"""One logical request and its retries, as steps: the clients' I/O loops drive these.

A client sends `fetch.request`, then reports what happened, once per attempt:

* ``fetch.read(status, headers, content)`` when an answer came (its body already read
  through `_wire.AnswerBody`, so bounded), or
* ``fetch.unanswered(error)`` when none did (`_transport.transport_error` has mapped the
  HTTP layer's exception to ours),

and gets a `Step` back: `Done(value)`, `Retry(delay, request)` or `Fail(error)`, with the
cache change the answer calls for as data (`Store`, `Refresh`, `Evict`). A fetch never
writes the cache itself: each client hands every step to `ClientCore.settle`, the one place
that applies them, in its one loop (`PromptClient._run`, `AsyncPromptClient._run`); the two
loops differ only in how they wait.

Retry policy (README, "Retries"): transport errors, timeouts and 502/503/504 are retried up
to `retry_count` times with exponential backoff and jitter, never more than `BACKOFF_CAP`
seconds of waiting in all; any other status ends the fetch. A `PromptFetch` settles its
answer into the cache (store a 200, refresh on a 304, evict on 401/403/404) and serves the
cached copy when the server fails (stale-if-error, RFC 5861 §4).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cache import CacheEntry, CacheKey, describe_key
from ._options import BACKOFF_BASE, BACKOFF_CAP, BACKOFF_MAX_DELAY
from ._wire import (
    RETRY_STATUSES,
    HttpRequest,
    error_from_status,
    list_request,
    prompt_request,
    read_listing,
    read_prompt,
    read_rendered,
    render_request,
)
from .exceptions import APIConnectionError, MalformedResponseError, PromptoryError, RenderError
from .prompt import Prompt

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = [
    "COOLDOWN_BASE",
    "COOLDOWN_MAX",
    "Done",
    "Effect",
    "Evict",
    "Fail",
    "Fetch",
    "ListFetch",
    "PromptFetch",
    "Refresh",
    "RenderFetch",
    "Retry",
    "Step",
    "Store",
    "backoff",
    "cooldown",
]

logger = logging.getLogger("promptory")
cache_logger = logging.getLogger("promptory.cache")

#: After a failed background revalidation, the next one for that key waits this long,
#: doubling with each failure up to COOLDOWN_MAX (seconds).
COOLDOWN_BASE = 1.0
COOLDOWN_MAX = 60.0


@dataclass(frozen=True, slots=True)
class Store:
    """Store `prompt` (a 200) under `key`, unless an invalidation came after `generation`."""

    key: CacheKey
    prompt: Prompt
    etag: str | None
    pinned: bool
    generation: int


@dataclass(frozen=True, slots=True)
class Refresh:
    """A 304 for the entry `seen`: restart its age, adopt `etag` if given. If `seen` is no
    longer cached, the fetch asks afresh (`PromptFetch.refetch`)."""

    key: CacheKey
    seen: CacheEntry
    etag: str | None


@dataclass(frozen=True, slots=True)
class Evict:
    """Remove the entry for `key` (a 401, 403 or 404)."""

    key: CacheKey
    status: int


Effect = Store | Refresh | Evict


@dataclass(frozen=True, slots=True)
class Done:
    """The fetch is over: `value` is the result (a `Prompt`, a rendered string, a list).
    With a `Refresh`, the value is the refreshed entry's prompt, known once it is applied."""

    value: Any
    effect: Store | Refresh | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Wait `delay` seconds, then send `request`."""

    delay: float
    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Fail:
    """The fetch failed for good: raise `error`."""

    error: PromptoryError
    effect: Evict | None = None


Step = Done | Retry | Fail


def backoff(attempt: int, slept: float, rng: Callable[[], float]) -> float:
    """The wait before retry number `attempt` (0-based), given `slept` seconds so far:
    exponential from BACKOFF_BASE, each at most BACKOFF_MAX_DELAY, drawn in [d/2, d] (jitter,
    so clients that failed together do not retry together), never past BACKOFF_CAP in all."""
    ceiling = min(BACKOFF_MAX_DELAY, math.ldexp(BACKOFF_BASE, attempt))
    delay = ceiling * (0.5 + 0.5 * rng())
    return max(0.0, min(delay, BACKOFF_CAP - slept))


def cooldown(failures: int, retry_after: float | None, rng: Callable[[], float]) -> float:
    """How long to wait before the next background revalidation of a failing key."""
    delay = min(COOLDOWN_MAX, math.ldexp(COOLDOWN_BASE, max(failures - 1, 0)))
    delay *= 0.5 + 0.5 * rng()
    return max(delay, retry_after or 0.0)


class Fetch:
    """What every fetch shares: the retry bookkeeping. Subclasses read the answers."""

    request: HttpRequest
    label: str

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.attempt = 0
        self.slept = 0.0

    def read(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` (read with lower-case names) and the
        decoded `content`: the next step, to hand to `ClientCore.settle`."""
        raise NotImplementedError

    def unanswered(self, error: PromptoryError) -> Step:
        """No answer came (or it could not be read): `error` says why. Connection errors
        and timeouts are retried; anything else (an answer too large) ends the fetch."""
        return self._retry_or_end(error, retryable=isinstance(error, APIConnectionError))

    def _retry_or_end(self, error: PromptoryError, *, retryable: bool) -> Step:
        if retryable and self.attempt < self.core.options.retry_count:
            delay = self.core.backoff(self.attempt, self.slept)
            self.attempt += 1
            self.slept += delay
            logger.debug("%s: %s; retry %d in %.2f s", self.label, error, self.attempt, delay)
            return Retry(delay, self.request)
        return self._end(error)

    def _end(self, error: PromptoryError) -> Step:
        """The last attempt failed with `error`."""
        return Fail(error)


class PromptFetch(Fetch):
    """Fetching one prompt for one cache key: conditional when an ETag is known, retried on
    transport errors and 502/503/504, and settled into the cache as the answer says."""

    def __init__(
        self, core: ClientCore, key: CacheKey, seen: CacheEntry | None, background: bool
    ) -> None:
        super().__init__(core)
        self.key = key
        self.seen = seen
        self.background = background
        self.label = describe_key(key)
        self.request = prompt_request(key, seen.etag if seen is not None else None)
        # Noted as the request leaves: an invalidation after this wins over its answer.
        self.generation = core.cache.generation
        self._refetched = False

    def read(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        if status == 200:
            try:
                prompt = read_prompt(content, self.key, self.label)
            except MalformedResponseError as malformed:
                return self._end_uncovered(malformed)  # never cached, never retried
            # A tag or commit answers `immutable` and is cached for good; a branch moves, so
            # it ages like any other entry.
            pinned = self.key[-1] is not None and "immutable" in headers.get("cache-control", "")
            store = Store(self.key, prompt, headers.get("etag"), pinned, self.generation)
            return Done(prompt, store)
        if status == 304:
            if self.seen is None:
                return self.refetch()
            return Done(None, Refresh(self.key, self.seen, headers.get("etag")))
        error = error_from_status(status, headers, content, self.label)
        if status in (401, 403, 404):
            # A deleted prompt or a revoked key must not keep reading through the cache.
            step = self._end_uncovered(error)
            assert isinstance(step, Fail)
            return Fail(step.error, Evict(self.key, status))
        return self._retry_or_end(error, retryable=status in RETRY_STATUSES)

    def refetch(self) -> Step:
        """A 304 that no cached entry can take (evicted or invalidated while the request was
        out, or the request was not conditional): ask afresh, once."""
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
        cache_logger.debug(
            "%s: 304 for an entry no longer cached, refetching", describe_key(self.key)
        )
        self._refetched = True
        self.seen = None
        self.request = prompt_request(self.key, None)
        self.generation = self.core.cache.generation
        return Retry(0.0, self.request)

    def _end(self, error: PromptoryError) -> Step:
        # Stale-if-error: the cached copy, when the error is one the cache may cover.
        prompt = self.core.serve_stale(self.key, error, background=self.background)
        if prompt is not None:
            return Done(prompt)
        return self._end_uncovered(error)

    def _end_uncovered(self, error: PromptoryError) -> Step:
        """End with `error`, the cache not covering for it."""
        if self.background:
            self.core.note_revalidation_failure(self.key, error)
        return Fail(error)


class RenderFetch(Fetch):
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
        self.label = describe_key(("id", prompt.id, ref))
        self.request = render_request(prompt.id, variables, ref, self.label)

    def read(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        if status == 200:
            try:
                return Done(read_rendered(content, self.label))
            except MalformedResponseError as malformed:
                return Fail(malformed)
        error = error_from_status(status, headers, content, self.label)
        if status == 400 and not isinstance(error, RenderError):
            # The render endpoint's 400s are about the template or its variables.
            error = RenderError(error.message, status_code=400, code=error.code, prompt=self.label)
        return self._retry_or_end(error, retryable=status in RETRY_STATUSES)


class ListFetch(Fetch):
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
        self.request = list_request(org, app, environment, tag, ref)
        where = "/".join(p for p in (org, app) if p) or "every app"
        self.label = f"prompts of {where}"

    def read(self, status: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The server answered `status` with `headers` and `content`."""
        if status != 200:
            error = error_from_status(status, headers, content, self.label)
            return self._retry_or_end(error, retryable=status in RETRY_STATUSES)
        try:
            return Done(read_listing(content, self.label))
        except MalformedResponseError as malformed:
            return Fail(malformed)
