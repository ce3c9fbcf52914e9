"""`PromptClient`: the synchronous client.

This module holds only I/O, locks and background threads; every decision comes from
`_core.ClientCore`, shared with the async client.

Threads: a `PromptClient` is safe to share. A fresh cache hit takes no lock. Concurrent
misses on one key share one request (single flight); stale hits start at most one background
revalidation per key, on a small pool of `background_workers` threads created on first need.
After `os.fork()` the child gets new locks and a new thread pool, and builds a new HTTP
client on its first request (reusing the parent's TLS context), so pre-fork servers
(gunicorn, uWSGI) work with a client created before the fork.

`PromptClient` and `AsyncPromptClient` are one design driven two ways: every decision is a
step of `_fetch` or a method of `_core.ClientCore`, and each client's `_run` is the single
loop that sends a request, reads its answer through `_wire.AnswerBody` and applies the step.
They differ only in how they wait (threads and events here, tasks there).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from ._base import ClientBase
from ._cache import CacheEntry, CacheKey, describe_key
from ._core import Fallback, Miss, Stale
from ._fetch import Done, Fail, Fetch, Retry
from ._options import MAX_RESPONSE_BYTES, PREFETCH_CONCURRENCY, prefetch_targets
from ._transport import attempt_deadline, new_sync_http, transport_error
from ._watch import watch_sync
from ._wire import AnswerBody, HttpRequest
from .exceptions import APITimeoutError, PromptoryError
from .prompt import Prompt

__all__ = ["PromptClient"]

logger = logging.getLogger("promptory")


class _Flight:
    """One in-flight fetch for a key; other callers wait on it instead of sending their own."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Prompt | None = None
        self.error: BaseException | None = None


class PromptClient(ClientBase):
    """Fetch, cache and render prompts from a Promptory server (synchronous).

    Args:
        base_url: the server's URL, e.g. ``http://localhost:8000``.
        api_key: an API key starting with ``pm_live_`` or ``pm_test_``.
        cache_ttl: seconds a cached prompt is fresh. Past it, the stale copy is still
            returned at once while one background request revalidates it. 0 revalidates
            on every call (a conditional request: cheap when nothing changed).
        cache_max_size: prompts kept in the LRU cache; 0 caches nothing.
        timeout: seconds one attempt (connect, send, receive the whole answer) may take.
        retry_count: retries after the first attempt on connection errors, timeouts and
            502/503/504, with exponential backoff and jitter (at most 2 s of waiting in all).
        max_stale: seconds past its TTL after which a cached prompt is no longer served,
            neither while revalidating nor when the server fails; None (the default) serves
            it for as long as the server cannot be reached.
        fallback: a snapshot file written by ``promptory pull``, served when the server
            cannot be reached and the cache holds nothing for the prompt.
        prefetch: prompts to fetch concurrently on entering ``with`` (see `prefetch`);
            the constructor itself does no network I/O.
        background_workers: threads that revalidate stale prompts.
        verify: TLS verification, as httpx takes it (True, False, a CA bundle file or
            directory, an `ssl.SSLContext`); one context is built per client.
        proxy: an HTTP proxy URL; without one, ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``
            apply as httpx reads them.
        max_response_bytes: the largest answer accepted, in decoded bytes (10 MB by
            default); a larger one raises `ResponseTooLargeError` as soon as it passes.
        watch: follow the server's change stream (``/api/v1/watch``) in one background
            thread, so a changed prompt is revalidated within about a second of its
            commit being served; against a server without the stream, the TTL alone.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        cache_ttl: float = 300,
        cache_max_size: int = 1000,
        timeout: float = 10.0,
        retry_count: int = 3,
        *,
        max_stale: float | None = None,
        fallback: str | os.PathLike[str] | None = None,
        prefetch: Iterable[Any] = (),
        background_workers: int = 2,
        verify: ssl.SSLContext | str | bool = True,
        proxy: str | None = None,
        watch: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            cache_ttl,
            cache_max_size,
            timeout,
            retry_count,
            max_stale=max_stale,
            fallback=fallback,
            background_workers=background_workers,
            max_response_bytes=max_response_bytes,
            prefetch=prefetch,
            verify=verify,
        )
        self._proxy = proxy
        self._http: httpx.Client | None = None  # built on first use: see `_client`
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        # Named per client, so a process with several clients can tell their threads apart.
        self._pool_name = f"promptory-revalidate-{id(self):x}"
        _LIVE_CLIENTS.add(self)
        # The hot path: per-instance getters from the core, one Python frame per cache hit.
        # The methods below document the same calls and hand `PromptClient.get(client, ...)`
        # to these.
        get, get_by_name = self._core.sync_getters(self._resolve)
        setattr(self, "get", get)  # noqa: B010 - shadowing the method on purpose
        setattr(self, "get_by_name", get_by_name)  # noqa: B010
        self._watch = watch_sync(self, self._ssl_context, proxy) if watch else None

    def _client(self) -> httpx.Client:
        """The HTTP client, built on first use (after a fork too: the child builds its own
        when it first needs it, not inside the fork hook)."""
        http = self._http
        if http is None:
            with self._lock:
                if self._closed:
                    raise PromptoryError(f"the {type(self).__name__} was closed; create a new one")
                http = self._http
                if http is None:
                    http = self._http = new_sync_http(
                        self._core.options, self._headers(), self._ssl_context, self._proxy
                    )
        return http

    # -- fetching --

    def get(
        self, prompt_id: str, *, ref: str | None = None, fallback: Fallback | None = None
    ) -> Prompt:
        """Fetch a prompt by id (UUID), from the cache when it can.

        Args:
            prompt_id: the prompt's id.
            ref: a commit sha or tag: the prompt as it was there (cached for good).
            fallback: what to return if the server cannot be reached and nothing is cached:
                a body string, a `Prompt`, or a callable given the error that returns one.

        Raises:
            NotFoundError: no such prompt. See `promptory.exceptions` for the others.
        """
        # The instance's own getter (see __init__): this method only documents it.
        getter: Callable[..., Prompt] = self.__dict__["get"]
        return getter(prompt_id, ref=ref, fallback=fallback)

    def get_by_name(
        self,
        org: str,
        app: str,
        name: str,
        environment: str | None = None,
        *,
        ref: str | None = None,
        fallback: Fallback | None = None,
    ) -> Prompt:
        """Fetch a prompt by its qualified name, from the cache when it can.

        Args:
            org: organization name.
            app: application name.
            name: prompt name.
            environment: ``development``, ``staging`` or ``production``; None picks the most
                promoted one the app has.
            ref: a commit sha or tag: the prompt as it was there (cached for good).
            fallback: as for `get`.
        """
        getter: Callable[..., Prompt] = self.__dict__["get_by_name"]
        return getter(org, app, name, environment, ref=ref, fallback=fallback)

    def render(
        self,
        prompt_id: str,
        variables: Mapping[str, Any] | None = None,
        *,
        ref: str | None = None,
    ) -> str:
        """Fetch a prompt and render it; includes are resolved by the server.

        A prompt without includes is rendered locally from the cache, in the same sandbox
        the server uses, so the result is the same string without a request.
        """
        prompt = self.get(prompt_id, ref=ref)
        local = self._core.render_locally(prompt, variables)
        if local is not None:
            return local
        self._check_open()
        try:
            result = self._run(self._core.render_fetch(prompt, variables, ref))
        except PromptoryError as error:
            return self._core.render_offline(prompt, variables, error)
        assert isinstance(result, str)
        return result

    def prefetch(self, prompts: Iterable[Any]) -> dict[str, Prompt | PromptoryError]:
        """Fetch several prompts at once (a warm start), one request per prompt.

        Args:
            prompts: ids, ``"org/app/name"`` strings, or ``(org, app, name[, environment])``
                tuples.

        Returns:
            For each entry, by its label, the `Prompt` or the error it failed with. These
            fetches share their requests with concurrent `get` calls (single flight).
        """
        targets = prefetch_targets(prompts)
        results: dict[str, Prompt | PromptoryError] = {}

        def one(args: tuple[Any, ...]) -> Prompt | PromptoryError:
            try:
                return self.get(args[0]) if len(args) == 1 else self.get_by_name(*args)
            except PromptoryError as error:
                return error

        if not targets:
            return results
        workers = min(PREFETCH_CONCURRENCY, len(targets))
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="promptory-prefetch"
        ) as pool:
            for (label, _), outcome in zip(
                targets, pool.map(one, [t[1] for t in targets]), strict=True
            ):
                results[label] = outcome
        return results

    def list_prompts(
        self,
        org: str | None = None,
        app: str | None = None,
        *,
        environment: str | None = None,
        tag: str | None = None,
        ref: str | None = None,
    ) -> list[Prompt]:
        """The prompts this key may read, sorted by org, app, name and environment; filtered
        by org (and app), environment and tag when given. Not cached."""
        self._check_open()
        result = self._run(self._core.list_fetch(org, app, environment, tag, ref))
        assert isinstance(result, list)
        return result

    # -- lifecycle --

    def close(self) -> None:
        """Stop background revalidations, wait for the running ones, and close connections.
        Afterwards nothing is in flight and no caller waits: a caller waiting on a request
        that close() cut short gets a `PromptoryError` saying the client was closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        self._stop.set()  # a read in progress ends within STOP_POLL; no retry starts
        if self._watch is not None:
            self._watch.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        # Revalidations cancelled before they ran never end their flights themselves.
        with self._lock:
            flights = list(self._core.flights.values())
            self._core.flights.clear()
            http, self._http = self._http, None
        for flight in flights:
            if not flight.done.is_set():
                flight.error = PromptoryError(f"the {type(self).__name__} was closed")
                flight.done.set()
        if http is not None:
            http.close()
        _LIVE_CLIENTS.discard(self)

    def __enter__(self) -> PromptClient:
        if self._prefetch:
            for label, outcome in self.prefetch(self._prefetch).items():
                if isinstance(outcome, PromptoryError):
                    logger.warning("prefetch of %s failed: %s", label, outcome)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --

    def _resolve(self, state: Stale | Miss, fallback: Fallback | None) -> Prompt:
        if isinstance(state, Stale):
            self._revalidate_in_background(state.key, state.entry)
            return state.entry.prompt
        self._check_open()
        try:
            return self._single_flight(state.key, state.entry)
        except PromptoryError as error:
            return self._core.recover(error, state.key, fallback)

    def _single_flight(self, key: CacheKey, seen: CacheEntry | None) -> Prompt:
        with self._lock:
            flight = self._core.flights.get(key)
            leader = flight is None
            if leader:
                flight = self._core.flights[key] = _Flight()
        assert flight is not None
        if not leader:
            if not flight.done.wait(self._core.options.give_up_after + 1.0):
                raise APITimeoutError(
                    f"gave up waiting for the request already in flight for {describe_key(key)}"
                )
            return _outcome(flight, key)
        try:
            result = self._run(self._core.prompt_fetch(key, seen))
            assert isinstance(result, Prompt)
            flight.result = result
            return result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._core.flights.pop(key, None)
            flight.done.set()

    def _revalidate_in_background(self, key: CacheKey, seen: CacheEntry) -> None:
        with self._lock:
            if key in self._core.flights or self._closed:
                return
            flight = self._core.flights[key] = _Flight()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._core.options.background_workers,
                    thread_name_prefix=self._pool_name,
                )
            executor = self._executor
        self._core.revalidations += 1
        try:
            executor.submit(self._revalidate, key, seen, flight)
        except RuntimeError:  # shut down by close() meanwhile
            with self._lock:
                self._core.flights.pop(key, None)
            flight.done.set()

    def _revalidate(self, key: CacheKey, seen: CacheEntry, flight: _Flight) -> None:
        try:
            result = self._run(self._core.prompt_fetch(key, seen, background=True))
            assert isinstance(result, Prompt)
            flight.result = result
        except PromptoryError as error:
            flight.error = error
            if not self._closed:  # a revalidation cut short by close() is no news
                logger.warning("background revalidation of %s failed: %s", describe_key(key), error)
        except BaseException as exc:  # pragma: no cover - a bug, but never kill the worker
            flight.error = exc
            logger.exception("background revalidation of %s crashed", describe_key(key))
        finally:
            with self._lock:
                self._core.flights.pop(key, None)
            flight.done.set()

    def _run(self, fetch: Fetch) -> Any:
        """Send the fetch's requests until it is done: the only I/O loop of this client."""
        request = fetch.request
        while True:
            if self._stop.is_set():
                raise PromptoryError(f"{fetch.label}: the client was closed")
            try:
                status, headers, content = self._attempt(request, fetch.label)
            except PromptoryError as error:  # the answer was too large or undecodable
                step = fetch.unanswered(error)
            except (httpx.HTTPError, OSError) as exc:
                step = fetch.unanswered(transport_error(exc, fetch.label, self._core.options))
            except RuntimeError as exc:  # httpx refuses a closed client
                if not self._closed:
                    raise
                step = fetch.unanswered(transport_error(exc, fetch.label, self._core.options))
            else:
                step = fetch.read(status, headers, content)
            step = self._core.settle(fetch, step)  # the answer reaches the cache here only
            if isinstance(step, Done):
                return step.value
            if isinstance(step, Retry):
                if step.delay:
                    self._stop.wait(step.delay)  # close() cuts the wait short
                request = step.request
                continue
            assert isinstance(step, Fail)
            raise step.error

    def _attempt(self, request: HttpRequest, label: str) -> tuple[int, httpx.Headers, bytes]:
        """One attempt, bounded by `timeout` from connecting to the last decoded byte."""
        options = self._core.options
        deadline = time.monotonic() + options.timeout
        with (
            attempt_deadline(options.timeout, self._stop),
            # An absolute URL and no empty params: httpx then parses the URL once, not three
            # times (merging with its base URL and with empty params each parse it again).
            self._client().stream(
                request.method,
                options.base_url + request.path,
                params=request.params or None,
                headers=request.headers or None,
                content=request.content,
            ) as response,
        ):
            body = AnswerBody(response.headers, options.max_response_bytes, label)
            for chunk in response.iter_raw():
                body.feed(chunk)
                if time.monotonic() > deadline:  # decoding counts against the attempt too
                    raise httpx.ReadTimeout("the attempt's time ran out while decoding")
            return response.status_code, response.headers, body.finish()

    def _after_fork_in_child(self) -> None:
        # Locks may have been held by threads that do not exist in the child; the pool's
        # threads are gone; the connections are shared with the parent. Start over, keeping
        # the cached prompts (they are still valid data).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._core.cache.reset_lock()
        self._core.flights.clear()
        self._executor = None
        # The parent's connections are abandoned, not closed (closing would shut sockets
        # the parent still uses); `_client` builds a new HTTP client on first use.
        self._http = None


def _outcome(flight: _Flight, key: CacheKey) -> Prompt:
    """What a caller that waited on another's flight gets: its result or its error."""
    error = flight.error
    if error is None:
        assert flight.result is not None
        return flight.result
    if isinstance(error, PromptoryError):
        raise error
    raise PromptoryError(
        f"the request in flight for {describe_key(key)} failed: {type(error).__name__}"
    ) from error


_LIVE_CLIENTS: weakref.WeakSet[PromptClient] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for client in list(_LIVE_CLIENTS):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
