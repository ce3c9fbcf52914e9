"""A sync httpx transport whose `timeout` bounds a whole attempt, not each socket read.

httpx's timeouts apply to each connect, read and write. A server that drips its answer one
byte at a time, each within the read timeout, would hold a sync call forever. Here every
socket operation of an attempt gets at most the time left until the attempt's deadline,
which the client sets for the current thread with `attempt_deadline` (a context variable,
so threads sharing one pool do not see each other's deadlines).

A read also looks at the client's stop event every `STOP_POLL` seconds, so `close()` ends
a read stalled on a silent server at once instead of after `timeout`.

The async client needs none of this: it bounds the whole attempt with `asyncio.wait_for`,
and closing cancels its tasks.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

__all__ = ["DeadlineTransport", "attempt_deadline"]

_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
#: While an attempt reads, it looks at its client's stop event this often (seconds), so
#: closing a client ends a read stalled on a silent server within this time.
STOP_POLL = 0.1


class _Attempt:
    __slots__ = ("deadline", "stop")

    def __init__(self, deadline: float, stop: threading.Event | None) -> None:
        self.deadline = deadline
        self.stop = stop


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("promptory_attempt", default=None)


@contextmanager
def attempt_deadline(seconds: float, stop: threading.Event | None = None) -> Iterator[None]:
    """Bound every socket operation inside the block to end within `seconds` from now, and
    end a read early once `stop` is set (the client is closing)."""
    token = _ATTEMPT.set(_Attempt(time.monotonic() + seconds, stop))
    try:
        yield
    finally:
        _ATTEMPT.reset(token)


def _remaining(timeout: float | None, expired: type[Exception]) -> float | None:
    attempt = _ATTEMPT.get()
    if attempt is None:
        return timeout
    left = attempt.deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's time ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        attempt = _ATTEMPT.get()
        if attempt is None or attempt.stop is None:
            return self._stream.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))
        # Wait in slices, looking at the stop event between them. A recv that times out has
        # consumed nothing, so the next slice carries on where the last one left off.
        started = time.monotonic()
        while True:
            wait = attempt.deadline - time.monotonic()
            if timeout is not None:
                wait = min(wait, started + timeout - time.monotonic())
            if wait <= 0:
                raise httpcore.ReadTimeout("the attempt's time ran out")
            try:
                return self._stream.read(max_bytes, min(wait, STOP_POLL))
            except httpcore.ReadTimeout:
                if attempt.stop.is_set():
                    raise httpcore.ReadError("the client was closed") from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, _remaining(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host,
            port,
            _remaining(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - the SDK speaks TCP
        stream = self._backend.connect_unix_socket(
            path, _remaining(timeout, httpcore.ConnectTimeout), socket_options=socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's own retries are off
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` over a connection pool whose sockets honour `attempt_deadline`."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        limits: httpx.Limits = _LIMITS,
        proxy: str | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, proxy=proxy)
        if proxy is None:
            # The parent built a plain pool; rebuild it on the deadline-aware backend. Proxied
            # connections keep httpx's pool (and its per-operation timeouts).
            self._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(verify=verify),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=True,
                http2=False,
                network_backend=_DeadlineBackend(),
            )
