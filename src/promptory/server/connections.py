"""Connection bounds: how many sockets the server holds, and for how long a slow one may stay.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but nothing else: a socket that connects and sends nothing, or
trickles its headers or body a byte at a time, is held for ever, and enough of them use up
the process's file descriptors. `guarded_protocol` returns uvicorn's httptools protocol with
three bounds added:

* A connection cap. Beyond `ConnectionLimits.max_connections` open connections, a new one is
  answered ``503`` (our JSON error envelope, ``Retry-After: 1``, ``Connection: close``) at
  once, without waiting for its request. Its socket lingers for at most `_LINGER` seconds,
  reading and dropping what the client sends, so the client reads the 503 instead of a
  reset; at most `_MAX_LINGERING` such sockets linger at once, beyond that they close at once.
* A request deadline. A request must arrive whole, headers and body, within
  `ConnectionLimits.request_timeout` seconds of its first byte (of the connection, for the
  first request); otherwise the connection is closed.
* A write deadline. A client that stops reading our answer (the transport's buffer stays
  full) for `request_timeout` seconds is disconnected.
* A head size. httptools keeps every header it is sent: a request line and headers over
  `ConnectionLimits.max_head` bytes are answered ``431`` and the connection is closed.

`descriptor_limit()` raises the soft ``RLIMIT_NOFILE`` to the hard one, and
`ConnectionLimits.fitted()` lowers a cap the descriptor limit cannot hold, keeping
`FD_RESERVE` descriptors for the repository, the render workers and the logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, replace
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .._protocol import error_envelope

__all__ = [
    "FD_RESERVE",
    "ConnectionLimits",
    "descriptor_limit",
    "guarded_protocol",
    "raise_descriptor_limit",
]

logger = logging.getLogger("promptory.server")

#: File descriptors kept aside from connections: the listening socket, the repository's
#: files and packs, render workers' pipes, logs, the event loop's own.
FD_RESERVE = 64
# How long a refused connection may linger to deliver its 503, and how many may at once.
_LINGER = 1.0
_MAX_LINGERING = 32


def _envelope_bytes(code: str, message: str) -> bytes:
    """The error envelope as the raw protocol writes it, before any app runs."""
    return json.dumps(error_envelope(code, message), separators=(",", ":")).encode("ascii")


_BUSY_BODY = _envelope_bytes(
    "SERVER_BUSY", "the server holds as many connections as it may; retry in 1 s"
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode("ascii") + b"\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n\r\n" + _BUSY_BODY
)


def _too_large(limit: int) -> bytes:
    body = _envelope_bytes(
        "HEADERS_TOO_LARGE", f"the request line and headers are over the limit of {limit:,} bytes"
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds on client connections.

    Attributes:
        max_connections: open connections at most; one more is answered 503.
        request_timeout: seconds a request may take to arrive whole (headers and body), and
            a client may leave our answer unread.
        keep_alive_timeout: seconds an idle keep-alive connection is kept between requests.
        max_head: bytes of request line and headers at most.
    """

    max_connections: int = 1024
    request_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_head: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be 1 or more")
        if not self.request_timeout > 0 or not self.keep_alive_timeout > 0:
            raise ValueError("timeouts must be more than 0 seconds")

    def fitted(self, descriptors: int | None) -> ConnectionLimits:
        """These limits with `max_connections` lowered to what `descriptors` (the soft
        ``RLIMIT_NOFILE``; None when unknown) can hold beside `FD_RESERVE`."""
        if descriptors is None:
            return self
        room = max(1, descriptors - FD_RESERVE)
        if self.max_connections <= room:
            return self
        logger.warning(
            "at most %d connections (not %d): the file descriptor limit is %d and %d are kept "
            "for the repository and workers; raise it with `ulimit -n`",
            room,
            self.max_connections,
            descriptors,
            FD_RESERVE,
        )
        return replace(self, max_connections=room)


def descriptor_limit() -> int | None:
    """The soft limit on open file descriptors, or None where it cannot be read."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_descriptor_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit in force."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS refuses RLIM_INFINITY
            logger.debug("cannot raise the descriptor limit from %d to %s: %s", soft, hard, exc)
    return descriptor_limit()


class _Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection cap and the deadlines."""

    limits: ConnectionLimits = ConnectionLimits()
    lingering = 0  # refused sockets delivering their 503, across all connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._in_head = True  # between a request's first byte and the end of its headers
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    # --- the cap ---------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        if len(self.connections) >= self.limits.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._arm()

    def _refuse(self, transport: Any) -> None:
        self._refused = True
        self.transport = transport
        transport.write(_BUSY)
        cls = type(self)
        if cls.lingering >= _MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        # Half-close and drop what comes until the client closes (EOF closes the transport)
        # or the linger ends: closing with unread data would reset the connection.
        cls.lingering += 1
        transport.write_eof()
        self._deadline = self.loop.call_later(_LINGER, transport.close)

    # --- the deadlines ---------------------------------------------------------------------

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.debug("closing a connection whose request did not arrive in time")
            self.transport.close()

    def _close_slow_reader(self) -> None:
        self._write_deadline = None
        if not self.transport.is_closing():
            logger.debug("closing a connection that left our answer unread too long")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped while the 503 is delivered
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing: a chunk that ends the headers may carry a body.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head:
                self.transport.write(_too_large(self.limits.max_head))
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.request_timeout, self._close_slow_reader
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
                type(self).lingering -= 1
            return
        self._disarm()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().connection_lost(exc)


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """An HTTP protocol class for `uvicorn.Config(http=...)` that enforces `limits`
    (pass ``timeout_keep_alive=limits.keep_alive_timeout`` to the config as well)."""
    return type("GuardedHttpProtocol", (_Guarded,), {"limits": limits, "lingering": 0})
