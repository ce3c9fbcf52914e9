"""The SDK's watch thread against a hostile event stream (a raw socket server on
127.0.0.1): it survives any data, stays bounded in memory, honours the server's waits
within bounds, and `close()` ends it even before the response headers come."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from promptory import PromptClient
from promptory._watch import Watcher

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
    b"connection: close\r\n\r\n"
)
Scenario = Callable[[socket.socket, threading.Event], None]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


class HostileServer:
    """Answers connection N with scenario N (the last one for every later connection)."""

    def __init__(self, scenarios: list[Scenario]) -> None:
        self.scenarios = scenarios
        self.accepted: list[float] = []
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            scenario = self.scenarios[min(len(self.accepted), len(self.scenarios) - 1)]
            self.accepted.append(time.monotonic())
            thread = threading.Thread(target=self.answer, args=(conn, scenario), daemon=True)
            self.threads.append(thread)
            thread.start()

    def answer(self, conn: socket.socket, scenario: Scenario) -> None:
        with conn:
            conn.settimeout(10)
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                scenario(conn, self.stop)
            except OSError:
                pass  # the client went away: that is its right


@contextmanager
def hostile(scenarios: list[Scenario]) -> Iterator[HostileServer]:
    server = HostileServer(scenarios)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(10)
        for answering in server.threads:
            answering.join(10)
        server.listener.close()


def sends(*parts: bytes) -> Scenario:
    def scenario(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(OK)
        for part in parts:
            conn.sendall(part)

    return scenario


def holds(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(OK + b"event: hello\ndata: {}\n\n")
    while not stop.wait(0.2):
        conn.sendall(b": ping\n\n")


def endless_line(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(OK + b"data: ")
    chunk = b"a" * 65536
    for _ in range(600):  # 39 MB without a line ending
        if stop.is_set():
            return
        conn.sendall(chunk)


def huge_event(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(OK + b"event: commit\n")
    line = b"data: " + b"b" * 100_000 + b"\n"
    for _ in range(200):  # 20 MB of data lines in one event
        if stop.is_set():
            return
        conn.sendall(line)
    conn.sendall(b"\n")


def watcher_of(client: PromptClient, url: str) -> Watcher:
    return Watcher(
        core=client._core,
        base_url=url,
        headers=client._headers(),
        revalidate=weakref.WeakMethod(client._revalidate_in_background),
        name="hostile-watch",
    )


def test_the_watch_thread_survives_any_stream_and_stays_bounded(server: Any) -> None:
    scenarios: list[Scenario] = [
        sends(b"retry: \xc2\xb2\n", b"retry: " + b"9" * 5000 + b"\n", b"retry: -1\n\n"),
        sends(
            b'event: commit\nid: x\0y\ndata: {"prompts": [{"org": [1], "app": {}, '
            b'"name": "n", "environment": [], "id": [2], "etag": 3}]}\n\n'
        ),
        sends(b"event: commit\ndata: {not json\n\n", b"event: commit\ndata: [1]\n\n"),
        sends(b"event: commit\ndata: " + b"[" * 100_000 + b"\n\n"),
        sends(b"\xff\xfe\r\n\r\r\n", b"id: " + b"i" * 500_000 + b"\n\n"),
        endless_line,
        huge_event,
        holds,
    ]
    with (
        PromptClient(server.url, server.api_key, cache_ttl=300) as client,
        hostile(scenarios) as bad,
    ):
        before = client.get(MEDITATION_ID)
        tracemalloc.start()
        try:
            watcher = watcher_of(client, bad.url).start()
            wait_until(lambda: len(bad.accepted) >= len(scenarios), 60, "every scenario")
            wait_until(watcher.connected.is_set, 30, "the last stream open")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert watcher.running
        assert peak < 16 * 1024 * 1024, peak  # 39 MB line and 20 MB event sent
        assert client.get(MEDITATION_ID).body == before.body
        watcher.close(wait=0)
        wait_until(lambda: not watcher.running, 30, "close() ended the thread")


def test_a_429_retry_after_and_the_retry_field_set_the_waits(server: Any) -> None:
    too_many = (
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n"
    )

    def refuse(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(too_many)

    retry = sends(b"retry: 4000\nevent: hello\ndata: {}\n\n")
    with (
        PromptClient(server.url, server.api_key) as client,
        hostile([refuse, retry, holds]) as bad,
    ):
        watcher = watcher_of(client, bad.url).start()
        wait_until(lambda: len(bad.accepted) >= 3, 60, "three connections")
        watcher.close()
        first, second, third = bad.accepted[:3]
    assert second - first >= 2.9  # Retry-After: 3 (never less; jitter only adds)
    assert third - second >= 1.9  # retry: 4000 ms, with jitter down to half


def test_close_interrupts_a_wait_for_the_response_headers(server: Any) -> None:
    def silent(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(60)

    with PromptClient(server.url, server.api_key) as client, hostile([silent]) as bad:
        watcher = watcher_of(client, bad.url).start()
        wait_until(lambda: len(bad.accepted) >= 1, 30, "connected")
        closed_at = time.monotonic()
        watcher.close(wait=0)
        wait_until(lambda: not watcher.running, 30, "the thread ended")
        # Without the interruption it waits for the 45 s read timeout.
        assert time.monotonic() - closed_at < 30
