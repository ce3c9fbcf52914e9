"""Warm start: prefetching prompts concurrently, at construction or on demand."""

from __future__ import annotations

import asyncio
import threading

import pytest

from promptory import AsyncPromptClient, InvalidArgumentError, NotFoundError, Prompt, PromptClient

from .conftest import API_KEY, GREETING_ID, SdkFactory, wait_until
from .legacy_server import LegacyPrompt, LegacyServer


def add_prompts(legacy: LegacyServer, count: int) -> list[str]:
    return [legacy.add(LegacyPrompt(name=f"p{i}", body=f"body {i}")).id for i in range(count)]


def test_prefetch_fetches_every_prompt_once_and_concurrently(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    ids = add_prompts(legacy, 6)
    client = sdk(legacy.url)
    results: dict[str, object] = {}
    # The server holds every answer: a prefetch that fetched one after the other would
    # have a single request under way, so two arriving together shows concurrency without
    # timing anything.
    legacy.hold = threading.Event()
    prefetching = threading.Thread(target=lambda: results.update(client.prefetch(ids)))
    prefetching.start()
    try:
        wait_until(lambda: legacy.count() >= 2, what="two fetches under way at once")
    finally:
        legacy.hold.set()
        prefetching.join(30)
    assert not prefetching.is_alive()
    assert all(isinstance(results[i], Prompt) for i in ids)
    assert legacy.count() == 6
    legacy.reset_requests()
    for prompt_id in ids:
        client.get(prompt_id)
    assert legacy.count() == 0


def test_prefetch_takes_ids_qualified_names_and_tuples(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    client = sdk(legacy.url)
    results = client.prefetch(
        [
            GREETING_ID,
            "myorg/myapp/meditation_script_relax",
            ("myorg", "myapp", "greeting", "development"),
        ]
    )
    assert results[GREETING_ID].name == "greeting"
    assert results["myorg/myapp/meditation_script_relax"].name == "meditation_script_relax"
    assert results["myorg/myapp/greeting/development"].environment == "development"
    legacy.reset_requests()
    client.get_by_name("myorg", "myapp", "greeting", environment="development")
    assert legacy.count() == 0


def test_prefetch_reports_failures_per_prompt_without_raising(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    results = sdk(legacy.url).prefetch([GREETING_ID, "no-such-id"])
    assert isinstance(results[GREETING_ID], Prompt)
    assert isinstance(results["no-such-id"], NotFoundError)


@pytest.mark.parametrize("bad", ["a/b", "/x/y", ("a", "b"), 42])
def test_prefetch_refuses_entries_it_cannot_read(
    sdk: SdkFactory, legacy: LegacyServer, bad
) -> None:
    with pytest.raises(InvalidArgumentError, match="prefetch"):
        sdk(legacy.url).prefetch([bad])


def test_prefetch_shares_its_request_with_a_concurrent_get(legacy: LegacyServer) -> None:
    legacy.hold = threading.Event()  # the get's answer waits until the prefetch has come
    with PromptClient(legacy.url, API_KEY) as client:
        getter = threading.Thread(target=client.get, args=(GREETING_ID,))
        prefetcher = threading.Thread(target=client.prefetch, args=([GREETING_ID],))
        try:
            getter.start()
            wait_until(lambda: legacy.count() == 1, what="the get to reach the server")
            misses = client.cache_stats()["misses"]
            prefetcher.start()
            # Its lookup missed while the get's request is held: it joins that request.
            wait_until(lambda: client.cache_stats()["misses"] == misses + 1, what="the prefetch")
        finally:
            legacy.hold.set()
            getter.join(timeout=10)
            prefetcher.join(timeout=10)
    assert legacy.count() == 1


def test_sync_constructor_option_prefetches_before_returning(legacy: LegacyServer) -> None:
    with PromptClient(
        legacy.url, API_KEY, prefetch=[GREETING_ID, "myorg/myapp/greeting"]
    ) as client:
        assert legacy.count() == 2
        client.get(GREETING_ID)
        client.get_by_name("myorg", "myapp", "greeting")
        assert legacy.count() == 2
        assert client.cache_stats()["hits"] == 2


def test_async_constructor_option_prefetches_on_entry(legacy: LegacyServer) -> None:
    async def main() -> int:
        async with AsyncPromptClient(legacy.url, API_KEY, prefetch=[GREETING_ID]) as client:
            before = legacy.count()
            await client.get(GREETING_ID)
            return before - legacy.count()

    assert asyncio.run(main()) == 0
    assert legacy.count() == 1


def test_constructor_prefetch_failure_is_logged_not_raised(
    legacy: LegacyServer, caplog: pytest.LogCaptureFixture
) -> None:
    with PromptClient(legacy.url, API_KEY, prefetch=["no-such-id"]):
        pass
    assert any("prefetch of no-such-id failed" in r.getMessage() for r in caplog.records)
