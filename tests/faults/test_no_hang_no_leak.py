"""No hang, no leak: a server that never finishes its answer costs a bounded time, and closing
a client in the middle of a stalled revalidation leaves nothing of it running.

The bound is the documented one, ``(retry_count + 1) * timeout + BACKOFF_CAP``
(`ClientOptions.give_up_after`), plus `SLACK` for a noisy 2-core machine.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from promptory import APITimeoutError, AsyncPromptClient, PromptClient, PromptoryError
from promptory._options import BACKOFF_CAP
from sdk.conftest import API_KEY, wait_until

from .conftest import PROMPT_ID, ClientFactory
from .proxy import FaultProxy

#: A loaded CI runner can pause a thread for a second or more; the failures these tests
#: catch (no per-attempt deadline, close() waiting out a stalled attempt) cost many seconds.
SLACK = 2.0
TIMEOUT = 0.4
RETRIES = 1
GIVE_UP_AFTER = (RETRIES + 1) * TIMEOUT + BACKOFF_CAP


@pytest.mark.parametrize("mode", ["stall", "drip"])
def test_a_server_that_never_finishes_its_answer_fails_a_cold_get_within_the_bound(
    mode: str, proxy: FaultProxy, make_client: ClientFactory
) -> None:
    # drip sends a byte every 20 ms: each read is far quicker than the timeout, the whole
    # answer (several hundred bytes) takes seconds. Only a per-attempt deadline stops it.
    client = make_client(proxy.url, timeout=TIMEOUT, retry_count=RETRIES)
    proxy.set_mode(mode)

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        client.get(PROMPT_ID)
    elapsed = time.monotonic() - started

    assert proxy.attempts(mode) == RETRIES + 1
    assert (RETRIES + 1) * TIMEOUT <= elapsed <= GIVE_UP_AFTER + SLACK


def promptory_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("promptory")}


def test_closing_a_sync_client_during_a_stalled_revalidation_leaves_no_thread(
    proxy: FaultProxy,
) -> None:
    # A long timeout and many retries: the revalidation would run for 12 s if close() did not
    # stop it. close() waits for the attempt under way (at most one timeout), then stops.
    timeout = 1.0
    before = promptory_threads()
    client = PromptClient(proxy.url, API_KEY, cache_ttl=0.05, timeout=timeout, retry_count=3)
    try:
        client.get(PROMPT_ID)
        wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
        proxy.set_mode("stall")
        client.get(PROMPT_ID)
        wait_until(lambda: proxy.attempts("stall") == 1, what="the revalidation to stall")
        assert promptory_threads() - before, "the revalidation runs on a promptory thread"
    finally:
        started = time.monotonic()
        client.close()
        closed_in = time.monotonic() - started

    assert closed_in <= timeout + SLACK
    wait_until(lambda: not promptory_threads() - before, timeout=SLACK, what="no promptory thread")
    wait_until(lambda: proxy.open_connections() == 0, timeout=SLACK, what="sockets closed")
    assert proxy.attempts("stall") == 1  # no retry after close


def test_closing_an_async_client_during_a_stalled_revalidation_leaves_no_task(
    proxy: FaultProxy,
) -> None:
    timeout = 5.0

    async def main() -> tuple[float, set[asyncio.Task[object]]]:
        client = AsyncPromptClient(
            proxy.url, API_KEY, cache_ttl=0.05, timeout=timeout, retry_count=3
        )
        try:
            await client.get(PROMPT_ID)
            for _ in range(100):
                if client.cache_stats()["stale_entries"] == 1:
                    break
                await asyncio.sleep(0.01)
            proxy.set_mode("stall")
            await client.get(PROMPT_ID)
            for _ in range(100):
                if proxy.attempts("stall") == 1:
                    break
                await asyncio.sleep(0.01)
            assert proxy.attempts("stall") == 1, "the revalidation did not reach the proxy"
            assert len(asyncio.all_tasks()) > 1, "the revalidation runs as a task"
        finally:
            started = time.monotonic()
            await client.aclose()
            closed_in = time.monotonic() - started
        current = asyncio.current_task()
        return closed_in, {task for task in asyncio.all_tasks() if task is not current}

    closed_in, left = asyncio.run(main())

    assert closed_in <= SLACK  # cancelled, not waited for: far below the 5 s timeout
    assert left == set()
    wait_until(lambda: proxy.open_connections() == 0, timeout=SLACK, what="sockets closed")
    assert proxy.attempts("stall") == 1


def test_closing_a_sync_client_wakes_a_caller_waiting_on_a_queued_revalidation(
    proxy: FaultProxy,
) -> None:
    # One worker: the revalidation by id stalls on it, the one by name waits in the queue.
    # A caller whose copy is past max_stale waits on the queued one. close() cancels the
    # queue; the waiting caller must be told at once, not after its whole wait (issue 9,
    # item 14), and nothing is left in flight.
    timeout = 10.0
    client = PromptClient(
        proxy.url,
        API_KEY,
        cache_ttl=0.05,
        max_stale=0.2,
        timeout=timeout,
        retry_count=3,
        background_workers=1,
    )
    outcome: list[BaseException | None] = []
    try:
        client.get(PROMPT_ID)
        client.get_by_name("myorg", "myapp", "welcome")
        wait_until(lambda: client.cache_stats()["stale_entries"] == 2, what="staleness")
        proxy.set_mode("stall")
        client.get(PROMPT_ID)  # stale: its revalidation takes the only worker and stalls
        client.get_by_name("myorg", "myapp", "welcome")  # stale: queued behind it
        wait_until(lambda: proxy.attempts("stall") == 1, what="the first revalidation to stall")
        assert client.cache_stats()["in_flight"] == 2
        # Past max_stale the copy is no longer served: the caller waits on the queued flight.
        stored = time.monotonic()
        wait_until(lambda: time.monotonic() - stored > 0.3, what="max_stale to pass")

        def waiter() -> None:
            try:
                client.get_by_name("myorg", "myapp", "welcome")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        misses = client.cache_stats()["misses"]
        thread = threading.Thread(target=waiter)
        thread.start()
        # Its lookup missed: it is on its way to wait on the queued flight.
        wait_until(lambda: client.cache_stats()["misses"] == misses + 1, what="the waiter")
    finally:
        client.close()

    thread.join(timeout + SLACK)
    assert not thread.is_alive(), "a caller still waits after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], PromptoryError)
    assert client.cache_stats()["in_flight"] == 0
