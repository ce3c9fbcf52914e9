"""`FaultProxy`: a TCP proxy on 127.0.0.1 that forwards HTTP/1.1 to an upstream server, or
breaks the exchange in one of a few ways chosen at run time.

Modes (`FaultProxy.MODES`):

=============== ===========================================================================
``pass``        forward each request upstream and its answer back (keep-alive kept).
``refuse``      stop listening: connects get ECONNREFUSED (switching back listens again, on
                the same port).
``stall``       accept and read the request, never answer; the socket stays open until the
                client closes it or the proxy stops.
``reset``       forward the request, send the first half of the answer's head, then close
                with a TCP RST (``SO_LINGER`` 0).
``drip``        forward the answer one byte at a time, `drip_delay` seconds apart: every
                single read is quick, the whole answer takes far longer than a client timeout.
``truncate``    send the answer's head (keeping its Content-Length) and half its body, then
                close (FIN).
``garble``      answer 200 by itself, with well-formed headers and a body that is not JSON.
``status:NNN``  answer NNN by itself (500, 502, 503, 504) with a JSON error envelope.
``429-seconds`` answer 429 by itself with ``Retry-After: 7``.
``429-date``    answer 429 by itself with ``Retry-After`` as an HTTP date 30 s ahead.
``deep:NNN``    answer NNN (200, 404, 503) by itself with JSON nested `DEEP` levels deep.
``deep-model``  answer 200 with a valid prompt whose ``model`` nests `DEEP_MODEL` levels.
``bomb``        answer 200 with ``Content-Encoding: gzip``: a small body that inflates to a
                valid prompt of `BOMB_BYTES` bytes.
``endless``     answer 200 without a length and send body bytes until the client closes,
                the proxy stops, or `STALL_LIMIT` passes; `sent_bytes` counts them.
=============== ===========================================================================

``reset``, ``drip`` and ``truncate`` drop ``If-None-Match`` from the request they forward, so
the upstream answers in full and there is a body to damage (a 304 has none).

Rules of this module:
- Every request is counted (an *attempt*) under the mode it met, once its head and body have
  been read; requests are delimited by their head and Content-Length, so several on one
  keep-alive connection count one each. ``refuse`` sees no request, so it counts none.
- Switching mode drops every open client connection (a FIN), so the next request meets the
  new mode on a new connection instead of riding a keep-alive connection of the old one.
- One thread accepts; one thread serves each connection. Every blocking call polls with a
  short timeout and every loop ends on `stop()`, on the peer closing, or at a time limit, so
  `stop()` returns promptly and leaves no thread behind (it raises if one is left).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import socket
import struct
import threading
import time
from collections import Counter
from email.utils import formatdate
from types import TracebackType

__all__ = ["FaultProxy"]

#: How long any blocking socket call waits before the loop around it looks at the stop flag.
POLL = 0.05
#: A keep-alive connection with no new request for this long is closed (as servers do).
IDLE_LIMIT = 30.0
#: A stalled connection is held at most this long, even if the proxy is never stopped.
STALL_LIMIT = 60.0
#: Reading one request, or one answer from the upstream, may take at most this long.
EXCHANGE_LIMIT = 5.0
#: The largest request or answer head accepted, in bytes.
MAX_HEAD = 64 * 1024

GARBLED_BODY = b"<html><body>502 Bad Gateway (not JSON)</body></html>"
RETRY_AFTER_SECONDS = "7"
RETRY_AFTER_DATE_AHEAD = 30.0

_REASONS = {
    200: "OK",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_DAMAGING = frozenset({"reset", "drip", "truncate"})
#: How deep ``deep:NNN`` nests its JSON: far past any recursion limit.
DEEP = 100_000
#: How deep ``deep-model`` nests the prompt's ``model``: parseable, too deep to walk.
DEEP_MODEL = 990
#: What ``bomb`` inflates to, in bytes: past the SDK's default 10 MB bound.
BOMB_BYTES = 30 * 1024 * 1024
#: The prompt id the self-answered prompts carry (the fault suite's `PROMPT_ID`).
ANSWERED_ID = "22222222-2222-4222-8222-222222222222"


class _Closed(Exception):
    """The connection ended (peer closed, dropped by a mode switch, proxy stopping)."""


class _Message:
    """One HTTP/1.1 message as read from a socket: its head and its body."""

    __slots__ = ("body", "head", "status")

    def __init__(self, head: bytes, body: bytes, status: int | None = None) -> None:
        self.head = head
        self.body = body
        self.status = status

    @property
    def raw(self) -> bytes:
        return self.head + self.body


class FaultProxy:
    """A fault-injecting HTTP/1.1 proxy on 127.0.0.1, forwarding to `upstream`.

    Use it as a context manager (or call `start` and `stop`); read `url`; switch `mode`
    with `set_mode`; count requests with `attempts`.
    """

    MODES = (
        "pass",
        "refuse",
        "stall",
        "reset",
        "drip",
        "truncate",
        "garble",
        "status:500",
        "status:502",
        "status:503",
        "status:504",
        "429-seconds",
        "429-date",
        "deep:200",
        "deep:404",
        "deep:503",
        "deep-model",
        "bomb",
        "endless",
    )

    def __init__(self, upstream: tuple[str, int], *, drip_delay: float = 0.02) -> None:
        self.upstream = upstream
        self.drip_delay = drip_delay
        self.port = 0
        self._mode = "pass"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._attempts: Counter[str] = Counter()
        self._connections: set[socket.socket] = set()
        self._accept_thread: threading.Thread | None = None
        self._conn_threads: list[threading.Thread] = []
        self._started = False
        # A mode switch bumps `_wanted`; the accept thread opens or closes the listener and
        # reports the generation it has applied, so set_mode returns once it holds.
        self._wanted = 0
        self._applied = 0
        self._applied_changed = threading.Condition(self._lock)
        self._served = 0
        self._sent_endless = 0

    # -- lifecycle --

    def start(self) -> FaultProxy:
        """Listen on a free port of 127.0.0.1 and start accepting."""
        if self._started:
            raise RuntimeError("the proxy is already started")
        self._started = True
        listener = self._listen()
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="faultproxy-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, end every connection and wait for every thread (bounded)."""
        self._stopping.set()
        with self._lock:
            self._applied_changed.notify_all()
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)  # no connection starts after this
        self._drop_connections()
        with self._lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads()]
        if alive:
            raise RuntimeError(f"fault proxy threads still running after stop(): {alive}")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def open_connections(self) -> int:
        """Client connections open now."""
        with self._lock:
            return len(self._connections)

    def connections_accepted(self) -> int:
        """Client connections accepted since the start."""
        return self._served

    def threads(self) -> list[threading.Thread]:
        """The proxy's threads that are still running."""
        with self._lock:
            threads = [self._accept_thread, *self._conn_threads]
        return [t for t in threads if t is not None and t.is_alive()]

    # -- modes and counts --

    @property
    def mode(self) -> str:
        """The current mode."""
        return self._mode

    def set_mode(self, mode: str, timeout: float = 2.0) -> None:
        """Switch to `mode`; returns once the listener is open or closed as the mode needs.
        Every open client connection is dropped."""
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {self.MODES}")
        with self._lock:
            self._mode = mode
            self._wanted += 1
            wanted = self._wanted
            deadline = time.monotonic() + timeout
            while self._applied < wanted:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise RuntimeError(f"the proxy did not switch to {mode!r} in {timeout} s")
                self._applied_changed.wait(left)
        self._drop_connections()

    def attempts(self, mode: str | None = None) -> int:
        """Requests received (in `mode`, or in all modes)."""
        with self._lock:
            return self._attempts[mode] if mode is not None else sum(self._attempts.values())

    def sent_bytes(self) -> int:
        """Body bytes sent so far by ``endless``."""
        with self._lock:
            return self._sent_endless

    def reset_attempts(self) -> None:
        """Forget the requests counted so far."""
        with self._lock:
            self._attempts.clear()

    # -- accepting --

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # The same port is bound again after `refuse`; connections of the previous
            # listener may linger in TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listener.settimeout(POLL)
        except BaseException:
            listener.close()
            raise
        return listener

    def _accept_loop(self, listener: socket.socket | None) -> None:
        # This thread alone opens, uses and closes the listener, so no socket is closed under
        # a call blocked on it in another thread.
        try:
            while not self._stopping.is_set():
                with self._lock:
                    wanted, refuse = self._wanted, self._mode == "refuse"
                if refuse and listener is not None:
                    listener.close()
                    listener = None
                elif not refuse and listener is None:
                    listener = self._listen()
                with self._lock:
                    if self._applied < wanted:
                        self._applied = wanted
                        self._applied_changed.notify_all()
                if listener is None:
                    self._stopping.wait(POLL)
                    continue
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        return
                    raise
                self._served += 1
                conn.settimeout(POLL)
                thread = threading.Thread(
                    target=self._serve,
                    args=(conn,),
                    name=f"faultproxy-conn-{self._served}",
                    daemon=True,
                )
                with self._lock:
                    self._connections.add(conn)
                    self._conn_threads = [t for t in self._conn_threads if t.is_alive()]
                    self._conn_threads.append(thread)
                thread.start()
        finally:
            if listener is not None:
                listener.close()

    def _drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Wakes the serving thread (its next read sees EOF); that thread closes the socket.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- serving one connection --

    def _serve(self, conn: socket.socket) -> None:
        upstream: list[socket.socket] = []  # the connection's own upstream connection, if any
        buffer = bytearray()
        rst = False
        try:
            while not self._stopping.is_set():
                request = _read_message(conn, buffer, self._stopping, IDLE_LIMIT, request=True)
                with self._lock:
                    mode = self._mode
                    self._attempts[mode] += 1
                if mode == "pass":
                    conn.sendall(self._forward(upstream, request.raw).raw)
                elif mode == "refuse":
                    return  # a request that beat the switch: no answer
                elif mode == "stall":
                    self._hold(conn)
                    return
                elif mode == "reset":
                    answer = self._forward(upstream, _unconditional(request.raw))
                    conn.sendall(answer.head[: max(1, len(answer.head) // 2)])
                    rst = True
                    return
                elif mode == "drip":
                    self._drip(conn, self._forward(upstream, _unconditional(request.raw)).raw)
                elif mode == "endless":
                    self._endless(conn)
                    return
                elif mode == "truncate":
                    answer = self._forward(upstream, _unconditional(request.raw))
                    conn.sendall(answer.head + answer.body[: len(answer.body) // 2])
                    return
                else:
                    conn.sendall(_own_answer(mode))
        except (_Closed, OSError):
            return
        finally:
            with self._lock:
                self._connections.discard(conn)
            if rst:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            for sock in upstream:
                sock.close()

    def _hold(self, conn: socket.socket) -> None:
        """`stall`: keep the connection open, unanswered, until it or the proxy ends."""
        deadline = time.monotonic() + STALL_LIMIT
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                if not conn.recv(4096):
                    return  # the client gave up and closed
            except TimeoutError:
                continue

    def _endless(self, conn: socket.socket) -> None:
        """`endless`: a 200 head without a length, then body bytes for as long as allowed."""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        chunk = b'{"id": "' + b"a" * 65536
        deadline = time.monotonic() + STALL_LIMIT
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                conn.sendall(chunk)  # raises once the client has closed
            except TimeoutError:
                continue
            with self._lock:
                self._sent_endless += len(chunk)

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if self._stopping.wait(self.drip_delay):
                raise _Closed
            conn.sendall(data[index : index + 1])  # raises once the client has closed

    def _forward(self, upstream: list[socket.socket], request: bytes) -> _Message:
        """Send `request` on this connection's upstream connection; return the answer.
        A kept-alive upstream connection that turns out closed is replaced once."""
        for reused in (bool(upstream), False):
            if not upstream:
                upstream.append(socket.create_connection(self.upstream, timeout=EXCHANGE_LIMIT))
                upstream[0].settimeout(POLL)
            sock = upstream[0]
            try:
                sock.sendall(request)
                answer = _read_message(sock, bytearray(), self._stopping, EXCHANGE_LIMIT)
            except (_Closed, OSError):
                upstream.pop().close()
                if reused and not self._stopping.is_set():
                    continue
                raise
            if b"\r\nconnection: close" in answer.head.lower():
                upstream.pop().close()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover


# -- HTTP/1.1 framing ------------------------------------------------------------------------


def _read_message(
    sock: socket.socket,
    buffer: bytearray,
    stopping: threading.Event,
    limit: float,
    *,
    request: bool = False,
) -> _Message:
    """Read one message (head, then Content-Length bytes of body) from `sock`.

    `buffer` holds bytes already read past the previous message and keeps those read past
    this one. Raises `_Closed` when the peer closes, the proxy stops, or `limit` passes.
    """
    deadline = time.monotonic() + limit

    def more() -> None:
        while True:
            if stopping.is_set() or time.monotonic() > deadline:
                raise _Closed
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise _Closed
            buffer.extend(chunk)
            return

    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise _Closed
        more()
    head = bytes(buffer[: end + 4])
    del buffer[: end + 4]
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = None if request else int(lines[0].split()[1])
    if "transfer-encoding" in headers:
        raise _Closed  # neither httpx (for these requests) nor the test server sends chunks
    if "content-length" in headers:
        length = int(headers["content-length"])
    elif request or status in (204, 304) or (status is not None and status < 200):
        length = 0
    else:
        length = -1  # delimited by the connection's end
    if length < 0:
        with contextlib.suppress(_Closed):
            while True:
                more()
        body = bytes(buffer)
        buffer.clear()
        return _Message(head, body, status)
    while len(buffer) < length:
        more()
    body = bytes(buffer[:length])
    del buffer[:length]
    return _Message(head, body, status)


def _unconditional(request: bytes) -> bytes:
    """`request` without If-None-Match, so the upstream answers with a body."""
    head, sep, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"if-none-match:")]
    return b"\r\n".join(lines) + sep + body


def _prompt(**fields: object) -> dict[str, object]:
    return {"id": ANSWERED_ID, "name": "welcome", "body": "Welcome.", **fields}


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"k": value}
    return value


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(json.dumps(_prompt(body="x" * BOMB_BYTES)).encode(), compresslevel=9)


def _own_answer(mode: str) -> bytes:
    """The answer of a mode that answers by itself."""
    headers = {"Content-Type": "application/json"}
    if mode == "garble":
        status, body = 200, GARBLED_BODY
    elif mode.startswith("deep:"):
        status = int(mode.partition(":")[2])
        body = b"[" * DEEP + b"]" * DEEP
    elif mode == "deep-model":
        # Written by hand: json.dumps itself would recurse too deep.
        status = 200
        model = b'{"k": ' * DEEP_MODEL + b"{}" + b"}" * DEEP_MODEL
        body = json.dumps(_prompt(model="@")).encode().replace(b'"@"', model)
    elif mode == "bomb":
        status = 200
        body = _bomb()
        headers["Content-Encoding"] = "gzip"
    else:
        if mode.startswith("status:"):
            status = int(mode.partition(":")[2])
            code = "UPSTREAM_FAILURE"
        else:
            status, code = 429, "RATE_LIMITED"
            if mode == "429-seconds":
                headers["Retry-After"] = RETRY_AFTER_SECONDS
            else:
                headers["Retry-After"] = formatdate(
                    time.time() + RETRY_AFTER_DATE_AHEAD, usegmt=True
                )
        body = json.dumps(
            {"error": {"code": code, "message": f"injected by the fault proxy ({mode})"}}
        ).encode()
    headers["Content-Length"] = str(len(body))
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return (head + "\r\n").encode("latin-1") + body
