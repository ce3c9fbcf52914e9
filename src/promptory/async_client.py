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
from ._cache import CacheEntry, CacheKey, key_text
from ._core import (
    Done,
    Fail,
    Fallback,
    ListFetch,
    Miss,
    PromptFetch,
    RenderFetch,
    Retry,
    Stale,
    prefetch_targets,
)
from ._watch import watch_async
from .exceptions import PromptoryError
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
        )
        self._prefetch = list(prefetch)
        prefetch_targets(self._prefetch)  # refuse bad entries now, not on entry
        self._http = httpx.AsyncClient(
            base_url=self._core.options.base_url,
            headers=self._headers(),
            timeout=self._core.options.timeout,
            http2=_HTTP2_AVAILABLE if http2 is None else http2,
            verify=verify,
            proxy=proxy,
            follow_redirects=False,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch = watch_async(self, verify, proxy) if watch else None

    # -- fetching --

    async def get(
        self, prompt_id: str, *, ref: str | None = None, fallback: Fallback | None = None
    ) -> Prompt:
        """Fetch a prompt by id (UUID), from the cache when it can. See `PromptClient.get`."""
        state = self._core.lookup_id(prompt_id, ref)
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
        state = self._core.lookup_name(org, app, name, environment, ref)
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
        if not prompt.needs_server_render():
            return prompt.render(variables)
        self._check_open()
        result = await self._run(self._core.render_fetch(prompt, variables, ref))
        assert isinstance(result, str)
        return result

    async def prefetch(self, prompts: Iterable[Any]) -> dict[str, Prompt | PromptoryError]:
        """Fetch several prompts concurrently (a warm start). See `PromptClient.prefetch`."""
        targets = prefetch_targets(prompts)

        async def one(args: tuple[Any, ...]) -> Prompt | PromptoryError:
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
            result = await asyncio.shield(flight.task)
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

    def _start(self, key: CacheKey, fetch: PromptFetch, *, background: bool) -> _Flight:
        task = asyncio.ensure_future(self._run(fetch))
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
            logger.warning("background revalidation of %s failed: %s", key_text(key), error)

    def _forget(self, key: CacheKey, flight: _Flight) -> None:
        if self._core.flights.get(key) is flight:
            del self._core.flights[key]

    async def _run(self, fetch: PromptFetch | RenderFetch | ListFetch) -> Any:
        """Send the fetch's requests until it is done: the only I/O loop of this client.

        `timeout` bounds each whole attempt (connect, send, receive the full answer)."""
        request = fetch.request
        timeout = self._core.options.timeout
        # An absolute URL and no empty params: httpx then parses the URL once, not three
        # times (merging with its base URL and with empty params each parse it again).
        base_url = self._core.options.base_url
        while True:
            try:
                response = await asyncio.wait_for(
                    self._http.request(
                        request.method,
                        base_url + request.path,
                        params=request.params or None,
                        headers=request.headers or None,
                        content=request.content,
                    ),
                    timeout,
                )
            except (httpx.HTTPError, OSError, asyncio.TimeoutError) as exc:
                step = fetch.failed(exc)
            else:
                step = fetch.answered(response.status_code, response.headers, response.content)
            if isinstance(step, Done):
                return step.value
            if isinstance(step, Retry):
                if step.delay:
                    await asyncio.sleep(step.delay)
                request = step.request
                continue
            assert isinstance(step, Fail)
            raise step.error
