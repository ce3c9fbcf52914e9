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

This module is the SDK's boundary with httpx and httpcore: it builds both clients' HTTP
clients (one `ssl.SSLContext` per promptory client, proxies from the environment as httpx
reads them) and maps the HTTP layer's exceptions to ours (`transport_error`). It uses their
public APIs only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.request import getproxies

import httpcore
import httpx

from ._options import ClientOptions
from .exceptions import APIConnectionError, APITimeoutError, MalformedResponseError, PromptoryError

__all__ = [
    "DeadlineTransport",
    "attempt_deadline",
    "environment_proxies",
    "new_async_http",
    "new_sync_http",
    "ssl_context",
    "transport_error",
]

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


def ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    """The one TLS context of a client, from `verify` as httpx documents it: True (the
    system's or certifi's CAs, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), False (no checks), a
    CA bundle file or directory, or a ready `ssl.SSLContext`. Built once per client and kept
    across a fork: setting TLS up costs tens of milliseconds."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=bool(verify))


def environment_proxies() -> dict[str, str | None]:
    """The proxies the environment asks for (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``), as httpx's URL patterns: ``"https://"`` -> proxy URL, ``"all://*host"``
    -> None (no proxy). The same rules as httpx's own reading of them (curl's ``NO_PROXY``
    rules), so both clients reach the network the same way."""
    info = getproxies()
    patterns: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        url = info.get(scheme)
        if url:
            patterns[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (h.strip() for h in info.get("no", "").split(",")):
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            patterns[host] = None
            continue
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if isinstance(address, ipaddress.IPv6Address):
            patterns[f"all://[{host}]"] = None
        elif address is not None or host.lower() == "localhost":
            patterns[f"all://{host}"] = None
        else:
            patterns[f"all://*{host}"] = None
    return patterns


#: httpcore's exceptions and httpx's equivalents, most specific first (httpx's own transport
#: maps them the same way, so callers see httpx exceptions whichever transport ran).
_HTTPCORE_TO_HTTPX: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for ours, theirs in _HTTPCORE_TO_HTTPX:
            if isinstance(exc, ours):
                raise theirs(str(exc)) from exc
        raise


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport over httpcore's pool (or proxy) on a deadline-aware network
    backend: every socket operation honours `attempt_deadline`."""

    def __init__(self, context: ssl.SSLContext, *, proxy: str | None = None) -> None:
        backend = _DeadlineBackend()
        limits = _LIMITS
        common: dict[str, typing.Any] = {
            "ssl_context": context,
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": backend,
        }
        self._connections: httpcore.ConnectionPool
        if proxy is None:
            self._connections = httpcore.ConnectionPool(**common)
        else:
            url = httpx.URL(proxy)
            if url.scheme in ("socks5", "socks5h"):
                self._connections = httpcore.SOCKSProxy(proxy_url=str(url), **common)
            else:
                self._connections = httpcore.HTTPProxy(proxy_url=str(url), **common)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the pool (httpx's own transport does the same)."""
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._connections.handle_request(core_request)
        assert isinstance(response.stream, typing.Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._connections.close()


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: typing.Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def new_sync_http(
    options: ClientOptions,
    headers: dict[str, str],
    context: ssl.SSLContext,
    proxy: str | None,
) -> httpx.Client:
    """The sync client's HTTP client: deadline-aware transports, the explicit `proxy` or the
    environment's proxies (`environment_proxies`), TLS from `context`."""
    mounts: dict[str, httpx.BaseTransport | None]
    if proxy is not None:
        mounts = {"all://": DeadlineTransport(context, proxy=proxy)}
    else:
        mounts = {
            pattern: None if url is None else DeadlineTransport(context, proxy=url)
            for pattern, url in environment_proxies().items()
        }
    return httpx.Client(
        base_url=options.base_url,
        headers=headers,
        timeout=options.timeout,
        transport=DeadlineTransport(context),
        mounts=mounts,
        follow_redirects=False,
    )


def new_async_http(
    options: ClientOptions,
    headers: dict[str, str],
    context: ssl.SSLContext,
    proxy: str | None,
    http2: bool,
) -> httpx.AsyncClient:
    """The async client's HTTP client: httpx's own transports, which read the environment's
    proxies themselves; TLS from `context`."""
    return httpx.AsyncClient(
        base_url=options.base_url,
        headers=headers,
        timeout=options.timeout,
        http2=http2,
        verify=context,
        proxy=proxy,
        limits=_LIMITS,
        follow_redirects=False,
    )


_TIMEOUTS = (httpx.TimeoutException, httpcore.TimeoutException, TimeoutError, asyncio.TimeoutError)
_CONNECTION = (httpx.TransportError, httpcore.NetworkError, httpcore.ProtocolError, OSError)


def transport_error(exc: BaseException, label: str, options: ClientOptions) -> PromptoryError:
    """Our error for an exception of the HTTP layer; the original is chained as the cause.
    The URL is shown with its credentials masked."""
    error: PromptoryError
    where = options.shown_url
    if isinstance(exc, _TIMEOUTS):
        error = APITimeoutError(
            f"{label}: no complete answer from {where} within {options.timeout:g} s "
            f"({type(exc).__name__})",
            prompt=label,
        )
    elif isinstance(exc, httpx.DecodingError):
        error = MalformedResponseError(
            f"{label}: the answer could not be decoded: {exc}",
            prompt=label,
            code="MALFORMED_RESPONSE",
        )
    elif isinstance(exc, _CONNECTION):
        detail = str(exc) or type(exc).__name__
        error = APIConnectionError(
            f"{label}: could not get an answer from {where}: {detail}", prompt=label
        )
    else:
        error = APIConnectionError(
            f"{label}: request failed: {type(exc).__name__}: {exc}", prompt=label
        )
    error.__cause__ = exc
    return error
