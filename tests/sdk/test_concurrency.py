"""Single flight and bounded background work, counted at the server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from promptory import AsyncPromptClient, NotFoundError, PromptClient

from .conftest import API_KEY, GREETING_ID, wait_until
from .legacy_server import LegacyServer


def run_threads(count: int, target) -> list[object]:
    """Run `target` in `count` threads released together; return their results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def worker(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = target()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return results


def test_32_threads_on_a_cold_key_make_one_request(legacy: LegacyServer) -> None:
    legacy.delay = 0.2
    with PromptClient(legacy.url, API_KEY) as client:
        results = run_threads(32, lambda: client.get_by_name("myorg", "myapp", "greeting"))
    assert legacy.count() == 1
    assert all(r is results[0] for r in results)


def test_32_threads_on_a_missing_key_share_one_not_found(legacy: LegacyServer) -> None:
    legacy.delay = 0.2
    with PromptClient(legacy.url, API_KEY) as client:
        results = run_threads(32, lambda: client.get("missing"))
    assert legacy.count() == 1
    assert all(isinstance(r, NotFoundError) for r in results)


def test_200_tasks_on_a_cold_key_make_one_request(legacy: LegacyServer) -> None:
    legacy.delay = 0.2

    async def main() -> list[object]:
        async with AsyncPromptClient(legacy.url, API_KEY) as client:
            return await asyncio.gather(
                *(client.get_by_name("myorg", "myapp", "greeting") for _ in range(200))
            )

    results = asyncio.run(main())
    assert legacy.count() == 1
    assert all(r is results[0] for r in results)


def test_a_stale_key_hit_by_32_threads_makes_one_revalidation(legacy: LegacyServer) -> None:
    with PromptClient(legacy.url, API_KEY, cache_ttl=0.05) as client:
        client.get(GREETING_ID)
        wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
        # The server holds the revalidation's answer until every thread is done: a thread
        # that waited for the revalidation would still be waiting (until HOLD_LIMIT), so
        # the check below counts what finished instead of timing anyone.
        legacy.hold = threading.Event()
        try:
            results = run_threads(32, lambda: client.get(GREETING_ID))
            assert all(not isinstance(r, Exception) for r in results), results
            assert client.cache_stats()["in_flight"] == 1  # nobody waited for the revalidation
        finally:
            legacy.hold.set()
        wait_until(lambda: client.cache_stats()["in_flight"] == 0, what="the revalidation")
        assert legacy.count() == 2
        assert client.cache_stats()["revalidations"] == 1


def test_stale_hits_on_many_keys_do_not_grow_the_thread_count(legacy: LegacyServer) -> None:
    from .legacy_server import LegacyPrompt

    ids = [legacy.add(LegacyPrompt(name=f"p{i}", body=f"body {i}")).id for i in range(40)]
    with PromptClient(legacy.url, API_KEY, cache_ttl=0.05, background_workers=2) as client:
        pool_prefix = client._pool_name
        for prompt_id in ids:
            client.get(prompt_id)
        wait_until(lambda: client.cache_stats()["stale_entries"] == 40, what="staleness")
        legacy.delay = 0.05
        most = 0
        for _ in range(5):
            for prompt_id in ids:
                client.get(prompt_id)
                pool = [t for t in threading.enumerate() if t.name.startswith(pool_prefix)]
                most = max(most, len(pool))
        names = sorted(t.name for t in threading.enumerate())
        assert 1 <= most <= 2, names  # the pool of background_workers, whatever the keys
        wait_until(lambda: client.cache_stats()["in_flight"] == 0, timeout=20, what="revalidations")


def test_async_stale_hits_start_one_revalidation_task_per_key(legacy: LegacyServer) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncPromptClient(legacy.url, API_KEY, cache_ttl=0.05) as client:
            await client.get(GREETING_ID)
            await asyncio.sleep(0.1)
            legacy.delay = 0.2
            await asyncio.gather(*(client.get(GREETING_ID) for _ in range(200)))
            in_flight = client.cache_stats()["in_flight"]
            for _ in range(100):
                if not client.cache_stats()["in_flight"]:
                    break
                await asyncio.sleep(0.05)
            return in_flight, client.cache_stats()["revalidations"]

    in_flight, revalidations = asyncio.run(main())
    assert in_flight == 1
    assert revalidations == 1
    assert legacy.count() == 2


def test_cancelling_an_async_get_leaves_no_task_behind(legacy: LegacyServer) -> None:
    # The server holds the answer far longer than the test waits: a request task that was
    # not cancelled would still be there when the test looks.
    legacy.delay = 5.0

    async def main() -> tuple[int, int]:
        async with AsyncPromptClient(legacy.url, API_KEY) as client:
            baseline = len(asyncio.all_tasks())
            caller = asyncio.ensure_future(client.get(GREETING_ID))
            deadline = time.monotonic() + 5
            while legacy.count() == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polls a condition: the request reached the server
            assert legacy.count() == 1, "the request never reached the server"
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            in_flight = client.cache_stats()["in_flight"]
            # The cancelled request task ends within a few loop turns, long before the
            # server would answer.
            deadline = time.monotonic() + 2
            while len(asyncio.all_tasks()) > baseline and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return in_flight, len(asyncio.all_tasks()) - baseline

    assert asyncio.run(main()) == (0, 0)


def test_one_cancelled_caller_does_not_cancel_the_others(legacy: LegacyServer) -> None:
    legacy.delay = 0.3

    async def main() -> object:
        async with AsyncPromptClient(legacy.url, API_KEY) as client:
            first = asyncio.ensure_future(client.get(GREETING_ID))
            second = asyncio.ensure_future(client.get(GREETING_ID))
            deadline = time.monotonic() + 5
            while legacy.count() == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polls a condition: the shared request is under way
            assert legacy.count() == 1, "the request never reached the server"
            first.cancel()
            return await second

    assert getattr(asyncio.run(main()), "id", None) == GREETING_ID
    assert legacy.count() == 1


def test_closing_the_sync_client_leaves_no_thread_behind(legacy: LegacyServer) -> None:
    before = {t.ident for t in threading.enumerate()}
    client = PromptClient(legacy.url, API_KEY, cache_ttl=0.05)
    client.get(GREETING_ID)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    legacy.delay = 0.3
    client.get(GREETING_ID)  # starts a background revalidation
    client.close()
    leftover = [
        t for t in threading.enumerate() if t.ident not in before and t.name.startswith("promptory")
    ]
    assert leftover == []
    assert client.cache_stats()["in_flight"] == 0


def test_closing_the_sync_client_does_not_wait_out_a_stalled_revalidation(
    legacy: LegacyServer,
) -> None:
    client = PromptClient(legacy.url, API_KEY, cache_ttl=0.05, timeout=5, retry_count=2)
    client.get(GREETING_ID)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    legacy.hold = threading.Event()  # the revalidation waits on a server that never answers
    try:
        client.get(GREETING_ID)
        wait_until(lambda: legacy.count() == 2, what="the revalidation to reach the server")
        started = time.monotonic()
        client.close()
        closed_in = time.monotonic() - started
    finally:
        legacy.hold.set()
    # A close() that waited out the stalled attempt would take its whole 5 s timeout; the
    # bound is half of that so a loaded machine's pauses never reach it.
    assert closed_in < 2.5
    assert not [t for t in threading.enumerate() if t.name.startswith("promptory-revalidate")]


def test_closing_the_async_client_cancels_its_revalidations(legacy: LegacyServer) -> None:
    async def main() -> int:
        client = AsyncPromptClient(legacy.url, API_KEY, cache_ttl=0.05)
        await client.get(GREETING_ID)
        await asyncio.sleep(0.1)
        legacy.hold = hold  # the revalidation's answer never comes while we close
        baseline = len(asyncio.all_tasks())
        await client.get(GREETING_ID)  # starts a background revalidation
        assert len(asyncio.all_tasks()) == baseline + 1
        started = time.monotonic()
        await client.aclose()
        closed_in.append(time.monotonic() - started)
        return len(asyncio.all_tasks()) - baseline

    closed_in: list[float] = []
    hold = threading.Event()
    try:
        assert asyncio.run(main()) == 0
    finally:
        hold.set()
    # Cancelled, not waited for: a close that waited would take the whole default timeout
    # (10 s, the answer being held); the bound leaves a loaded machine seconds of pauses.
    assert closed_in[0] < 2.5
