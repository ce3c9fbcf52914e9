"""Fork safety: a client made before `os.fork()` works in the child (pre-fork servers)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from promptory import Prompt, PromptClient, rendering

from .conftest import API_KEY, GREETING_ID, wait_until
from .legacy_server import LegacyServer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Forking a process that has threads is exactly the situation under test.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def run_in_child(check) -> int:
    """Fork; run `check()` in the child (bounded by an alarm); return its exit status."""
    pid = os.fork()
    if pid == 0:  # the child
        signal.alarm(10)
        code = 3
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_revalidates_in_the_background_after_fork(legacy: LegacyServer) -> None:
    client = PromptClient(legacy.url, API_KEY, cache_ttl=0.05)
    client.get(GREETING_ID)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    client.get(GREETING_ID)  # the parent starts its pool of revalidation threads
    # The parent's revalidation must be over before counting, or its request would be
    # counted as the child's.
    wait_until(lambda: client.cache_stats()["in_flight"] == 0, what="the parent's revalidation")
    legacy.reset_requests()

    def child_check() -> bool:
        wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
        client.get(GREETING_ID)  # stale: the child's own background revalidation
        deadline = time.monotonic() + 5
        while client.cache_stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        return client.cache_stats()["fresh_entries"] == 1

    assert run_in_child(child_check) == 0
    assert legacy.count() == 1  # the child's revalidation reached the server
    client.close()


def test_locks_held_by_parent_threads_at_fork_do_not_deadlock_the_child(
    legacy: LegacyServer,
) -> None:
    client = PromptClient(legacy.url, API_KEY, cache_ttl=0.05)
    client.get(GREETING_ID)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    holding, release = threading.Event(), threading.Event()

    def hold_the_locks() -> None:
        with client._lock, client._core.cache._lock:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_locks)
    holder.start()
    holding.wait(5)
    try:

        def child_check() -> bool:
            client.get(GREETING_ID)  # stale hit: takes the client's lock to start a revalidation
            client.cache_invalidate_all()  # takes the cache's write lock
            return client.get(GREETING_ID).id == GREETING_ID

        assert run_in_child(child_check) == 0
    finally:
        release.set()
        holder.join(5)
        client.close()


def test_a_fork_while_another_thread_compiles_a_template_does_not_deadlock_the_child() -> None:
    # The compiled-template lock is the renderer's, shared by every prompt: a fork while a
    # thread holds it must leave the child a usable one (issue 9, item 15).
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with rendering._COMPILED_LOCK:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(5)
    try:

        def child_check() -> bool:
            prompt = Prompt(id="p", name="fresh", body="Hello {{ who }}, " + str(time.time()))
            return prompt.render({"who": "child"}).startswith("Hello child")

        assert run_in_child(child_check) == 0
    finally:
        release.set()
        holder.join(5)


def test_the_child_builds_its_http_client_on_first_use_not_in_the_fork_hook(
    legacy: LegacyServer,
) -> None:
    client = PromptClient(legacy.url, API_KEY, cache_ttl=300)
    client.get(GREETING_ID)
    legacy.reset_requests()

    def child_check() -> bool:
        if client._http is not None:  # the hook only forgot the parent's connections
            return False
        client.cache_invalidate_all()
        return client.get(GREETING_ID).id == GREETING_ID and client._http is not None

    try:
        assert run_in_child(child_check) == 0
        assert legacy.count() == 1  # the child's own request
    finally:
        client.close()
