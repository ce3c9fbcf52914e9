"""The SDK's watch stream against a hostile server (a raw socket on 127.0.0.1): an endless
line, deeply nested event data and an event id no header can carry must neither grow the
client's memory without bound nor end its watch for good."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from promptory import PromptClient

KEY = "pm_test_" + "a" * 40
_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-store\r\nconnection: close\r\n\r\n"
)


class HostileStream:
    """Answers every connection to /api/v1/watch with `script(conn)`; counts connections."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10.0)
                try:
                    request = b""
                    while b"\r\n\r\n" not in request and len(request) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    if b"/api/v1/watch" not in request.split(b"\r\n", 1)[0]:
                        conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                        continue
                    self.connections += 1
                    conn.sendall(_HEAD)
                    self.script(conn)
                except OSError:
                    pass

    @contextmanager
    def running(self) -> Iterator[HostileStream]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5.0)
            self.listener.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def test_an_endless_line_is_not_buffered_without_bound() -> None:
    sent = [0]
    budget = 64 * 1024 * 1024
    chunk = b"x" * 65536

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"data: ")
        while sent[0] < budget:
            conn.sendall(chunk)
            sent[0] += len(chunk)

    hostile = HostileStream(endless)
    with hostile.running(), PromptClient(hostile.url, KEY, watch=True) as client:
        assert client._watch is not None
        # Done when the client has hung up (the server's send failed) or all was sent.
        wait_until(
            lambda: hostile.connections >= 2 or sent[0] >= budget,
            60.0,
            "the client hung up or read everything",
        )
    assert sent[0] < 16 * 1024 * 1024, f"the client read a {sent[0]:,}-byte line"


def _then_reconnect_check(first: bytes) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(first)

    hostile = HostileStream(script)
    with hostile.running(), PromptClient(hostile.url, KEY, watch=True) as client:
        assert client._watch is not None
        # A stream that ends is opened again; a watch thread that died never comes back.
        wait_until(lambda: hostile.connections >= 2, 30.0, "the watch reconnected")


def test_deeply_nested_event_data_does_not_end_the_watch() -> None:
    _then_reconnect_check(b"event: commit\ndata: " + b"[" * 200_000 + b"\n\n")


def test_an_event_id_no_header_can_carry_does_not_end_the_watch() -> None:
    _then_reconnect_check("event: reset\nid: caf\u00e9\u2603\ndata: {}\n\n".encode())


def test_a_huge_event_id_is_not_sent_back() -> None:
    seen: list[int] = []

    def script(conn: socket.socket) -> None:
        conn.sendall(b"event: reset\nid: " + b"a" * 200_000 + b"\ndata: {}\n\n")

    hostile = HostileStream(script)
    with hostile.running(), PromptClient(hostile.url, KEY, watch=True) as client:
        assert client._watch is not None
        wait_until(lambda: hostile.connections >= 2, 30.0, "the watch reconnected")
        seen.append(len(client._watch.last_event_id))
    assert seen[0] <= 1024


def test_split_lines_keeps_every_line_ending_across_chunks() -> None:
    from promptory._sse import LineSplitter, LineTooLong

    splitter = LineSplitter(max_line=100)
    chunks = [b"data: a\r", b"\ndata: b\rdata: c\n", b"\n", b"tail\n"]
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    assert lines == ["data: a", "data: b", "data: c", "", "tail"]
    bounded = LineSplitter(max_line=100)
    bounded.feed(b"x" * 50)
    try:
        bounded.feed(b"x" * 51)
    except LineTooLong:
        pass
    else:
        raise AssertionError("a 101-byte line passed a 100-byte bound")
