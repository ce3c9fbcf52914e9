"""`ClientCore`: a client's state and the decisions about it, free of I/O — the cache and
its lookups (fresh, stale, miss), the stale policy (stale-while-revalidate and
stale-if-error, RFC 5861), what a caller falls back on when the server cannot be reached,
and whether a render happens locally or on the server. Both clients hold one.

The hot path is `lookup_id` / `lookup_name`: a hit that needs nothing else returns the
`Prompt` itself; otherwise a named state, `Stale` (serve it and start a background
revalidation) or `Miss` (fetch in the caller, conditionally when an entry is known).

Time comes from the `clock` given to the core (a monotonic clock in production) and jitter
from its `rng`, so tests drive every rule without sleeping. No httpx and no asyncio here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ._cache import CacheEntry, CacheKey, PromptCache, describe_key
from ._fetch import (
    Done,
    Evict,
    Fail,
    Fetch,
    ListFetch,
    PromptFetch,
    Refresh,
    RenderFetch,
    Retry,
    Step,
    Store,
    backoff,
    cooldown,
)
from ._options import ClientOptions
from ._wire import check_environment
from .exceptions import (
    APIConnectionError,
    InvalidArgumentError,
    PromptoryError,
    RateLimitError,
    ServerError,
)
from .prompt import Prompt
from .snapshot import PromptSnapshot

__all__ = ["ClientCore", "Fallback", "Lookup", "Miss", "Stale"]

logger = logging.getLogger("promptory")
cache_logger = logging.getLogger("promptory.cache")

# What the fast getters' marker parameter holds unless a caller filled it positionally.
_POSITIONAL_END = object()

Fallback = str | Prompt | Callable[[PromptoryError], str | Prompt]
"""A per-call fallback: a body, a `Prompt`, or a callable given the error that returns one."""

#: The errors a cached copy, a fallback or the snapshot may stand in for: the server could
#: not be reached or could not answer. Never 4xx: those are the server's word.
_SERVER_UNAVAILABLE = (APIConnectionError, ServerError, RateLimitError)


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
        snapshot: PromptSnapshot | None = None,
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

    def sync_getters(
        self, resolve: Callable[[Stale | Miss, Fallback | None], Prompt]
    ) -> tuple[Callable[..., Prompt], Callable[..., Prompt]]:
        """`get` and `get_by_name` for a synchronous client, whose slow path is
        `resolve(state, fallback)`.

        The hit on the entry used last (the common case of a hot prompt) is answered in
        the getter's own frame: one Python call per hit, where going through `lookup_*`
        costs two (benchmarks/client_hot.py, "hot.sync.plain"). Anything else goes through
        `lookup_id`/`lookup_name`, which count and decide as always. An environment that is
        not valid can never be a cached key, so the fast branch needs no check of it.
        """
        get, cache, clock, core = self._get, self.cache, self.clock, self
        lookup_id, lookup_name = self.lookup_id, self.lookup_name
        # `ref` and `fallback` are keyword-only in the documented signatures, but CPython
        # (3.11 to 3.13) never specialises a call to a function with keyword-only
        # parameters (`function_kind` in Python/specialize.c), which costs a hit about a
        # tenth of its time. So the getters hold a marker where the `*` would be, and refuse
        # a call that fills it positionally, as Python would.
        end = _POSITIONAL_END

        def get_by_id(
            prompt_id: str,
            _positional_end: object = end,
            ref: str | None = None,
            fallback: Fallback | None = None,
        ) -> Prompt:
            entry = get(("id", prompt_id, ref))
            if (
                entry is not None
                and entry is cache.last
                and _positional_end is end
                and clock() < entry.fresh_until
            ):
                core.hits += 1
                return entry.prompt
            if _positional_end is not end:
                raise TypeError(
                    "get() takes 1 positional argument (prompt_id); give ref and "
                    "fallback by keyword"
                )
            state = lookup_id(prompt_id, ref)
            if state.__class__ is Prompt:
                return state
            return resolve(state, fallback)  # type: ignore[arg-type]

        def get_by_name(
            org: str,
            app: str,
            name: str,
            environment: str | None = None,
            _positional_end: object = end,
            ref: str | None = None,
            fallback: Fallback | None = None,
        ) -> Prompt:
            entry = get(("name", org, app, name, environment, ref))
            if (
                entry is not None
                and entry is cache.last
                and _positional_end is end
                and clock() < entry.fresh_until
            ):
                core.hits += 1
                return entry.prompt
            if _positional_end is not end:
                raise TypeError(
                    "get_by_name() takes at most 4 positional arguments (org, app, "
                    "name, environment); give ref and fallback by keyword"
                )
            state = lookup_name(org, app, name, environment, ref)
            if state.__class__ is Prompt:
                return state
            return resolve(state, fallback)  # type: ignore[arg-type]

        return get_by_id, get_by_name

    def lookup_id(self, prompt_id: str, ref: str | None = None) -> Lookup:
        """Look `prompt_id` up: the `Prompt` when fresh, else `Stale` or `Miss`."""
        return self.lookup(("id", prompt_id, ref))

    def lookup_name(
        self, org: str, app: str, name: str, environment: str | None = None, ref: str | None = None
    ) -> Lookup:
        """Look a qualified name up: the `Prompt` when fresh, else `Stale` or `Miss`.

        Raises:
            InvalidArgumentError: `environment` is not one of development, staging,
                production.
        """
        if environment is not None:
            check_environment(environment)
        return self.lookup(("name", org, app, name, environment, ref))

    def lookup(self, key: CacheKey) -> Lookup:
        """Look `key` up, marking it most recently used: the `Prompt` when fresh, else
        `Stale` or `Miss`. Counts the hit or miss."""
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
            cache_logger.debug("%s: expired, revalidating in the caller", describe_key(key))
            return Miss(key, entry)
        self.stale_hits += 1
        if key in self.flights or now < entry.retry_at:
            # Revalidating already, or cooling down after failures: just serve the copy.
            return entry.prompt
        cache_logger.debug("%s: stale, revalidating in the background", describe_key(key))
        return Stale(key, entry)

    # -- fetching --

    def settle(self, fetch: Fetch, step: Step) -> Step:
        """Apply the cache change a fetch's step calls for, and return the step the client
        acts on: the one place where answers reach the cache, for both clients."""
        if isinstance(step, Retry):
            return step
        effect = step.effect
        if effect is None:
            return step
        cache = self.cache
        key_name = describe_key(effect.key)
        if isinstance(effect, Store):
            stored = cache.put(
                effect.key,
                effect.prompt,
                effect.etag,
                self.clock(),
                generation=effect.generation,
                pinned=effect.pinned,
            )
            if stored is not None:
                cache_logger.debug("%s: stored (200)", key_name)
            return step
        if isinstance(effect, Refresh):
            entry = cache.refresh(effect.key, effect.seen, effect.etag, self.clock())
            if entry is not None:
                cache_logger.debug("%s: not modified (304), age restarted", key_name)
                return Done(entry.prompt)
            assert isinstance(fetch, PromptFetch)
            return fetch.refetch()
        assert isinstance(effect, Evict)
        assert isinstance(step, Fail)
        if cache.evict(effect.key):
            cache_logger.debug("%s: evicted (%d)", key_name, effect.status)
        return step

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
        return backoff(attempt, slept, self.rng)

    def cooldown(self, failures: int, retry_after: float | None) -> float:
        """How long to wait before the next background revalidation of a failing key."""
        return cooldown(failures, retry_after, self.rng)

    # -- after a failure --

    def serve_stale(
        self, key: CacheKey, error: PromptoryError, *, background: bool
    ) -> Prompt | None:
        """Stale-if-error (RFC 5861 §4): the cached copy to serve in place of `error`, if the
        error is one the cache may cover and the copy is not too stale; logs one warning."""
        if not isinstance(error, _SERVER_UNAVAILABLE):
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
                describe_key(key),
                error,
                now - entry.stored_at,
                wait,
            )
        else:
            self.stale_if_error += 1
            logger.warning(
                "could not refresh %s: %s; serving the cached copy (age %.0f s)",
                describe_key(key),
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
        if isinstance(error, _SERVER_UNAVAILABLE):
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
                    describe_key(key),
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

    # -- rendering --

    def render_locally(self, prompt: Prompt, variables: Mapping[str, Any] | None) -> str | None:
        """The one place that decides where `client.render` renders: locally (the same
        sandbox as the server, so the same string) when the prompt includes nothing, or
        when it came from the snapshot, which holds its includes; None: on the server."""
        if not prompt.needs_server_render() or prompt._include_renderer is not None:
            return prompt.render(variables)
        return None

    def render_offline(
        self, prompt: Prompt, variables: Mapping[str, Any] | None, error: PromptoryError
    ) -> str:
        """A server render failed with `error`: when the server could not be reached and the
        snapshot holds the prompt, render it from the snapshot; otherwise raise `error`."""
        if isinstance(error, _SERVER_UNAVAILABLE) and self.snapshot is not None:
            copy = self.snapshot.find_id(prompt.id)
            if copy is not None and copy.body == prompt.body:
                self.fallbacks += 1
                logger.warning(
                    "%s: %s; rendering it from the snapshot file", prompt.qualified_name, error
                )
                return self.snapshot.render(copy, variables)
        raise error

    def stats(self) -> dict[str, Any]:
        """`cache_stats()`: the cache's keys (README "Caching"), then counters."""
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
