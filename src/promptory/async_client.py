"""`AsyncPromptClient`: the asyncio client.

This module holds only I/O and task bookkeeping; every decision comes from
`_core.ClientCore`, shared with the sync client.

Tasks: a fresh hit never awaits anything real. A miss runs its request in a task that every
concurrent caller for that key awaits through `asyncio.shield` (single flight), so one
caller's cancellation does not cancel the others'; when the last caller is cancelled the
request is cancelled too, so nothing is left running for nobody. Stale hits start at most one
revalidation task per key. `aclose()` cancels and awaits every task it started.

HTTP/2 is used when the ``async`` extra (httpx with h2) is installed and the server offers it
(over TLS, by ALPN).

The policies are the sync client's (see `promptory.client`): a caller waiting on another's
request gives up after the longest a call can take; `_run` checks for close before each
attempt; `prefetch` runs at most `PREFETCH_CONCURRENCY` fetches at a time; the constructor
does no network I/O (``prefetch=`` runs on ``async with`` entry); at most
`background_workers` revalidations run at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from ._base import ClientBase
from ._cache import CacheEntry, CacheKey, describe_key
from ._core import Fallback, Miss, Stale
from ._fetch import Done, Fail, Fetch, PromptFetch, Retry
from ._options import MAX_RESPONSE_BYTES, PREFETCH_CONCURRENCY, prefetch_targets
from ._transport import new_async_http, transport_error
from ._watch import watch_async
from ._wire import AnswerBody, HttpRequest
from .exceptions import APITimeoutError, PromptoryError
from .prompt import Prompt

__all__ = ["AsyncPromptClient"]

logger = logging.getLogger("promptory")

_HTTP2_AVAILABLE = importlib.util.find_spec("h2") is not None


class _Flight:
    """One in-flight request for a key, with the number of callers awaiting it."""

    __slots__ = ("background", "task", "waiters")

    def __init__(self, task: asyncio.Task[Any], background: bool) -> None:
        self.task = task
        self.background = background
        self.waiters = 0


class AsyncPromptClient(ClientBase):
    """Fetch, cache and render prompts from a Promptory server (asyncio).

    Takes the same options as `PromptClient`, plus `http2` (None: use HTTP/2 when the
    ``async`` extra is installed). `get`, `get_by_name`, `render`, `prefetch`, `close` and
    `aclose` are coroutines; the ``cache_*`` methods are plain methods. With `prefetch`, the
    prompts are fetched on ``async with`` entry (or by awaiting `prefetch` yourself).
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
        http2: bool | None = None,
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
        self._http = new_async_http(
            self._core.options,
            self._headers(),
            self._ssl_context,
            proxy,
            _HTTP2_AVAILABLE if http2 is None else http2,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # Created on first need, inside the running loop (a semaphore binds to its loop).
        self._background_slots: asyncio.Semaphore | None = None
        self._watch = watch_async(self, self._ssl_context, proxy) if watch else None

    # -- fetching --

    async def get(
        self, prompt_id: str, *, ref: str | None = None, fallback: Fallback | None = None
    ) -> Prompt:
        """Fetch a prompt by id (UUID), from the cache when it can. See `PromptClient.get`."""
        state = self._lookup_id(prompt_id, ref)
        if state.__class__ is Prompt:  # a fresh hit: the hot path ends here
            return state
        return await self._resolve(state, fallback)  # type: ignore[arg-type]

    async def get_by_name(
        self,
        org: str,
        app: str,
        name: str,
        environment: str | None = None,
        *,
        ref: str | None = None,
        fallback: Fallback | None = None,
    ) -> Prompt:
        """Fetch a prompt by qualified name, from the cache when it can.
        See `PromptClient.get_by_name`."""
        state = self._lookup_name(org, app, name, environment, ref)
        if state.__class__ is Prompt:  # a fresh hit: the hot path ends here
            return state
        return await self._resolve(state, fallback)  # type: ignore[arg-type]

    async def render(
        self,
        prompt_id: str,
        variables: Mapping[str, Any] | None = None,
        *,
        ref: str | None = None,
    ) -> str:
        """Fetch a prompt and render it; includes are resolved by the server.
        See `PromptClient.render`."""
        prompt = await self.get(prompt_id, ref=ref)
        local = self._core.render_locally(prompt, variables)
        if local is not None:
            return local
        self._check_open()
        try:
            result = await self._run(self._core.render_fetch(prompt, variables, ref))
        except PromptoryError as error:
            return self._core.render_offline(prompt, variables, error)
        assert isinstance(result, str)
        return result

    async def prefetch(self, prompts: Iterable[Any]) -> dict[str, Prompt | PromptoryError]:
        """Fetch several prompts concurrently (a warm start). See `PromptClient.prefetch`."""
        targets = prefetch_targets(prompts)
        slots = asyncio.Semaphore(PREFETCH_CONCURRENCY)

        async def one(args: tuple[Any, ...]) -> Prompt | PromptoryError:
            async with slots:
                try:
                    if len(args) == 1:
                        return await self.get(args[0])
                    return await self.get_by_name(*args)
                except PromptoryError as error:
                    return error

        outcomes = await asyncio.gather(*(one(args) for _, args in targets))
        return {label: outcome for (label, _), outcome in zip(targets, outcomes, strict=True)}

    async def list_prompts(
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
        result = await self._run(self._core.list_fetch(org, app, environment, tag, ref))
        assert isinstance(result, list)
        return result

    # -- lifecycle --

    async def aclose(self) -> None:
        """Cancel background revalidations and in-flight requests, wait for them, and close
        the connections. Nothing this client started is left running afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.close(wait=0)  # never block the event loop on the stream's thread
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._core.flights.clear()
        await self._http.aclose()

    async def close(self) -> None:
        """The same as `aclose`."""
        await self.aclose()

    async def __aenter__(self) -> AsyncPromptClient:
        if self._prefetch:
            for label, outcome in (await self.prefetch(self._prefetch)).items():
                if isinstance(outcome, PromptoryError):
                    logger.warning("prefetch of %s failed: %s", label, outcome)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals --

    async def _resolve(self, state: Stale | Miss, fallback: Fallback | None) -> Prompt:
        if isinstance(state, Stale):
            self._revalidate_in_background(state.key, state.entry)
            return state.entry.prompt
        self._check_open()
        try:
            return await self._single_flight(state.key, state.entry)
        except PromptoryError as error:
            return self._core.recover(error, state.key, fallback)

    async def _single_flight(self, key: CacheKey, seen: CacheEntry | None) -> Prompt:
        flight = self._core.flights.get(key)
        if flight is None:
            flight = self._start(key, self._core.prompt_fetch(key, seen), background=False)
        flight.waiters += 1
        try:
            # Waiting on another caller's request gives up as the sync client does.
            result = await asyncio.wait_for(
                asyncio.shield(flight.task), self._core.options.give_up_after + 1.0
            )
        except asyncio.TimeoutError:
            raise APITimeoutError(
                f"gave up waiting for the request already in flight for {describe_key(key)}"
            ) from None
        except asyncio.CancelledError:
            if flight.task.cancelled() and self._closed:
                raise PromptoryError("the AsyncPromptClient was closed") from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.background and not flight.task.done():
                # Every caller gave up (cancelled): nobody wants this answer any more.
                self._forget(key, flight)
                flight.task.cancel()
        assert isinstance(result, Prompt)
        return result

    def _revalidate_in_background(self, key: CacheKey, seen: CacheEntry) -> None:
        if key in self._core.flights or self._closed:
            return
        self._core.revalidations += 1
        self._start(key, self._core.prompt_fetch(key, seen, background=True), background=True)

    async def _revalidate(self, fetch: PromptFetch) -> Any:
        # At most `background_workers` revalidations run at a time, as in the sync client.
        if self._background_slots is None:
            self._background_slots = asyncio.Semaphore(self._core.options.background_workers)
        async with self._background_slots:
            return await self._run(fetch)

    def _start(self, key: CacheKey, fetch: PromptFetch, *, background: bool) -> _Flight:
        task = asyncio.ensure_future(self._revalidate(fetch) if background else self._run(fetch))
        flight = _Flight(task, background)
        self._core.flights[key] = flight
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(key, flight, done))
        return flight

    def _finished(self, key: CacheKey, flight: _Flight, task: asyncio.Task[Any]) -> None:
        self._forget(key, flight)
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # always retrieved: no "exception never retrieved" noise
        if error is not None and flight.background:
            logger.warning("background revalidation of %s failed: %s", describe_key(key), error)

    def _forget(self, key: CacheKey, flight: _Flight) -> None:
        if self._core.flights.get(key) is flight:
            del self._core.flights[key]

    async def _run(self, fetch: Fetch) -> Any:
        """Send the fetch's requests until it is done: the only I/O loop of this client.

        `timeout` bounds each whole attempt (connect, send, receive and decode the answer)."""
        request = fetch.request
        timeout = self._core.options.timeout
        while True:
            if self._closed:
                raise PromptoryError(f"{fetch.label}: the client was closed")
            try:
                status, headers, content = await asyncio.wait_for(
                    self._attempt(request, fetch.label), timeout
                )
            except PromptoryError as error:  # the answer was too large or undecodable
                step = fetch.unanswered(error)
            except (httpx.HTTPError, OSError, asyncio.TimeoutError) as exc:
                step = fetch.unanswered(transport_error(exc, fetch.label, self._core.options))
            else:
                step = fetch.read(status, headers, content)
            step = self._core.settle(fetch, step)  # the answer reaches the cache here only
            if isinstance(step, Done):
                return step.value
            if isinstance(step, Retry):
                if step.delay:
                    await asyncio.sleep(step.delay)
                request = step.request
                continue
            assert isinstance(step, Fail)
            raise step.error

    async def _attempt(self, request: HttpRequest, label: str) -> tuple[int, httpx.Headers, bytes]:
        options = self._core.options
        # An absolute URL and no empty params: httpx then parses the URL once, not three
        # times (merging with its base URL and with empty params each parse it again).
        async with self._http.stream(
            request.method,
            options.base_url + request.path,
            params=request.params or None,
            headers=request.headers or None,
            content=request.content,
        ) as response:
            body = AnswerBody(response.headers, options.max_response_bytes, label)
            async for chunk in response.aiter_raw():
                body.feed(chunk)
            return response.status_code, response.headers, body.finish()
