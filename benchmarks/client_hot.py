"""Figure 1: a warm cache hit, `get_by_name`, sync and async.

* Sync: `client.get_by_name("myorg", "myapp", "greeting")` on a warm cache, against the
  physical floor of the operation: an object whose `get_by_name` has the same signature and
  returns ``d.get(KEY)`` — one dict lookup by the same constant key the cache uses — called
  exactly the same way, from the same loop. Target: at most 5x.
* Async: ``await client.get_by_name(...)`` against the sync hit plus one trivial ``await``
  (``sync_client.get_by_name(...); await trivial()``), both in a coroutine on one event
  loop. Target: at most 1.5x.
* Sync against the plainest floor: a plain function ``lookup()`` returning ``d.get(KEY)``
  for a constant key, called with no arguments from the same loop. Target: at most 5x
  (issue 10 measured 7.5-8.6x before the hot path was trimmed).

Our server (in a thread) only warms the caches; no request is made while timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns
from typing import Any, Protocol

from promptory import AsyncPromptClient, Prompt, PromptClient

from .measure import Figure, calibrate, interleave, per_op
from .servers import thread_server
from .session import Session

__all__ = ["run"]

ORG, APP, NAME = "myorg", "myapp", "greeting"


class _ByName(Protocol):
    def get_by_name(self, org: str, app: str, name: str, /) -> Any: ...


def floor_client(d: dict[Any, Any], key: Any) -> _ByName:
    """An object whose `get_by_name` has the client's signature and returns ``d.get(key)``."""

    class FloorClient:
        def get_by_name(
            self,
            org: str,
            app: str,
            name: str,
            environment: str | None = None,
            *,
            ref: str | None = None,
            fallback: Any = None,
        ) -> Any:
            return d.get(key)

    return FloorClient()


def plain_floor(d: dict[Any, Any], key: Any) -> Callable[[], Any]:
    """A plain function of no arguments returning ``d.get(key)``: one call, one lookup."""

    def lookup() -> Any:
        return d.get(key)

    return lookup


def plain_loop(lookup: Callable[[], Any]) -> Callable[[int], int]:
    """`n` calls of ``lookup()``; returns the nanoseconds taken."""

    def run(n: int) -> int:
        started = perf_counter_ns()
        for _ in repeat(None, n):
            lookup()
        return perf_counter_ns() - started

    return run


def hit_loop(client: _ByName) -> Callable[[int], int]:
    """`n` calls of ``client.get_by_name(ORG, APP, NAME)``; returns the nanoseconds taken."""

    def run(n: int) -> int:
        started = perf_counter_ns()
        for _ in repeat(None, n):
            client.get_by_name(ORG, APP, NAME)
        return perf_counter_ns() - started

    return run


async def trivial() -> None:
    """The cheapest coroutine: what one ``await`` costs at least."""


def _sync_figure(client: PromptClient, prompt: Prompt) -> Figure:
    key = ("name", ORG, APP, NAME, None, None)
    floor = floor_client({key: prompt}, key)
    assert floor.get_by_name(ORG, APP, NAME) is prompt
    ours_run, floor_run = hit_loop(client), hit_loop(floor)
    n = calibrate(floor_run)
    ours, base = interleave(per_op(ours_run, n), per_op(floor_run, n))
    return Figure.from_samples(
        "hot.sync",
        "warm hit, get_by_name, sync",
        "ns/op",
        ours,
        base,
        baseline_label="same-signature function returning d.get(KEY)",
        op="<=",
        target=5.0,
        notes=[
            f"{n:,} calls per sample; KEY is the cache's own key tuple for the prompt, "
            "built once (its hash is computed per lookup, as the cache's is)"
        ],
        extra={"calls_per_sample": n},
    )


def _plain_figure(client: PromptClient, prompt: Prompt) -> Figure:
    key = ("name", ORG, APP, NAME, None, None)
    lookup = plain_floor({key: prompt}, key)
    assert lookup() is prompt
    ours_run, floor_run = hit_loop(client), plain_loop(lookup)
    n = calibrate(floor_run)
    ours, base = interleave(per_op(ours_run, n), per_op(floor_run, n))
    return Figure.from_samples(
        "hot.sync.plain",
        "warm hit, get_by_name, sync, vs a plain function",
        "ns/op",
        ours,
        base,
        baseline_label="plain function returning d.get(KEY) for a constant key",
        op="<=",
        target=5.0,
        notes=[f"{n:,} calls per sample; the floor takes no arguments"],
        extra={"calls_per_sample": n},
    )


def _async_figure(url: str, api_key: str, sync_client: PromptClient) -> Figure:
    loop = asyncio.new_event_loop()
    try:
        client = AsyncPromptClient(url, api_key)
        try:
            warm = loop.run_until_complete(client.get_by_name(ORG, APP, NAME))
            assert warm == sync_client.get_by_name(ORG, APP, NAME)

            async def ours_loop(n: int) -> int:
                started = perf_counter_ns()
                for _ in repeat(None, n):
                    await client.get_by_name(ORG, APP, NAME)
                return perf_counter_ns() - started

            async def base_loop(n: int) -> int:
                started = perf_counter_ns()
                for _ in repeat(None, n):
                    sync_client.get_by_name(ORG, APP, NAME)
                    await trivial()
                return perf_counter_ns() - started

            def ours_run(n: int) -> int:
                return loop.run_until_complete(ours_loop(n))

            def base_run(n: int) -> int:
                return loop.run_until_complete(base_loop(n))

            n = calibrate(base_run)
            ours, base = interleave(per_op(ours_run, n), per_op(base_run, n))
            stats = client.cache_stats()
        finally:
            loop.run_until_complete(client.aclose())
    finally:
        loop.close()
    assert stats["misses"] == 1, stats  # every timed call was a hit
    return Figure.from_samples(
        "hot.async",
        "warm hit, get_by_name, async",
        "ns/op",
        ours,
        base,
        baseline_label="sync hit + one trivial await",
        op="<=",
        target=1.5,
        notes=[f"{n:,} calls per sample, in a coroutine on one asyncio event loop"],
        extra={"calls_per_sample": n},
    )


def run(session: Session) -> list[Figure]:
    """Figure 1 (sync and async warm hits, and the sync hit against a plain function)."""
    with (
        thread_server(session.small_repo(), session.api_key) as server,
        PromptClient(server.url, server.api_key) as client,
    ):
        prompt = client.get_by_name(ORG, APP, NAME)
        session.log("hot: sync warm hit vs d.get floor")
        sync = _sync_figure(client, prompt)
        session.log("hot: sync warm hit vs a plain function returning d.get(KEY)")
        plain = _plain_figure(client, prompt)
        assert client.cache_stats()["misses"] == 1  # every timed call was a hit
        session.log("hot: async warm hit vs sync hit + trivial await")
        asynchronous = _async_figure(server.url, server.api_key, client)
    return [sync, plain, asynchronous]
