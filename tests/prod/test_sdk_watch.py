"""``watch=True``: a client follows the server's change stream, so a changed prompt reaches
callers (from memory) within about a second of its commit being served."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from promptory import AsyncPromptClient, PromptClient
from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing
from promptory.server.runner import BackgroundServer
from sdk.legacy_server import running_legacy_server

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def change_meditation(repo: Any, body: str) -> str:
    repo.write_prompt(
        "myorg", "myapp", "meditation_script_relax", body, id=MEDITATION_ID, version="9.9.9"
    )
    return str(repo.commit(f"meditation: {body.strip()}"))


def watch_threads(client: Any) -> list[threading.Thread]:
    prefix = f"promptory-watch-{id(client):x}"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_a_changed_prompt_reaches_callers_without_waiting_for_the_ttl(server: Any) -> None:
    with (
        PromptClient(server.url, server.api_key, cache_ttl=300, watch=True) as watching,
        PromptClient(server.url, server.api_key, cache_ttl=300) as plain,
    ):
        assert watching.get(MEDITATION_ID).version != "9.9.9"
        by_name = watching.get_by_name("myorg", "myapp", "meditation_script_relax")
        plain.get(MEDITATION_ID)
        assert watching._watch is not None
        wait_until(watching._watch.connected.is_set, what="the stream open")
        server.wait_for_commit(change_meditation(server.repo, "changed\n"))
        wait_until(lambda: watching.get(MEDITATION_ID).body == "changed\n", what="by id")
        wait_until(
            lambda: (
                watching.get_by_name("myorg", "myapp", "meditation_script_relax").body
                == "changed\n"
            ),
            what="by name",
        )
        assert by_name.body != "changed\n"
        # Without watch, the cache serves the old prompt until its TTL runs out.
        assert plain.get(MEDITATION_ID).body != "changed\n"
        stats = watching.cache_stats()
        assert stats["misses"] == 2  # the first two calls; every later answer came from memory


def test_the_async_client_follows_the_stream_too(server: Any) -> None:
    async def scenario() -> None:
        async with AsyncPromptClient(server.url, server.api_key, watch=True) as client:
            await client.get(MEDITATION_ID)
            assert client._watch is not None
            deadline = time.monotonic() + 10
            while not client._watch.connected.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            sha = change_meditation(server.repo, "async change\n")
            await asyncio.to_thread(server.wait_for_commit, sha)
            while time.monotonic() < deadline + 10:
                if (await client.get(MEDITATION_ID)).body == "async change\n":
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the async client never saw the change")

    asyncio.run(scenario())


def test_against_a_server_without_the_stream_it_quietly_keeps_the_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "pm_test_" + "k" * 43
    with (
        caplog.at_level(logging.INFO, logger="promptory"),
        running_legacy_server(key) as legacy,
        PromptClient(legacy.url, key, watch=True) as client,
    ):
        assert client._watch is not None
        wait_until(lambda: client._watch is not None and client._watch.gone, what="gone")
        wait_until(lambda: not watch_threads(client), what="the thread ended")
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_close_ends_the_stream(server: Any) -> None:
    client = PromptClient(server.url, server.api_key, watch=True)
    hub = server.background.app.state.watch
    assert client._watch is not None
    wait_until(client._watch.connected.is_set, what="the stream open")
    assert hub.subscribers == 1
    client.close()
    # close() waits 2 s for the thread; a loaded machine may need longer.
    wait_until(lambda: not watch_threads(client), timeout=30, what="the thread ended")
    wait_until(lambda: hub.subscribers == 0, timeout=30, what="the server saw it go")


def test_a_client_collected_without_close_ends_its_stream(server: Any) -> None:
    hub = server.background.app.state.watch
    client = PromptClient(server.url, server.api_key, watch=True)
    assert client._watch is not None
    wait_until(client._watch.connected.is_set, what="the stream open")
    prefix = f"promptory-watch-{id(client):x}"
    del client
    gc.collect()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith(prefix)],
        timeout=30,
        what="the thread ended",
    )
    wait_until(lambda: hub.subscribers == 0, timeout=30, what="the server saw it go")


def test_it_reconnects_after_the_server_restarts_and_catches_up(
    prompt_repo: Any, api_key: str
) -> None:
    keyring = KeyRing([KeyRecord.for_key(api_key)])

    def app() -> Any:
        return create_app(
            ServerSettings(repo=prompt_repo.path, keyring=keyring, poll_interval=0.05)
        )

    first = BackgroundServer(app()).start()
    port = first.port
    client = PromptClient(first.url, api_key, watch=True)
    try:
        client.get(MEDITATION_ID)
        assert client._watch is not None
        wait_until(client._watch.connected.is_set, what="the stream open")
        first.app.state.watch.close_threadsafe()
        first.stop()
        change_meditation(prompt_repo, "while it was down\n")
        with BackgroundServer(app(), port=port):
            waited = wait_until(
                lambda: client.get(MEDITATION_ID).body == "while it was down\n",
                timeout=20,
                what="the change made while the server was down",
            )
    finally:
        client.close()
    assert waited < 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_own_stream(server: Any) -> None:
    client = PromptClient(server.url, server.api_key, watch=True)
    try:
        client.get(MEDITATION_ID)
        assert client._watch is not None
        wait_until(client._watch.connected.is_set, what="the stream open")
        pid = os.fork()
        if pid == 0:  # the child: exit 0 once it sees the parent's commit
            code = 1
            try:
                signal.alarm(30)
                deadline = time.monotonic() + 25
                while time.monotonic() < deadline:
                    if client.get(MEDITATION_ID).body == "after fork\n":
                        code = 0 if watch_threads(client) else 3
                        break
                    time.sleep(0.01)
            finally:
                os._exit(code)
        change_meditation(server.repo, "after fork\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        client.close()
