"""Serving the app with uvicorn: its configuration with our connection bounds, binding, and
`BackgroundServer`, the app served in a daemon thread on a free port.

Rules of this module:

* Every server, ``promptory serve`` and `BackgroundServer` alike, runs with `server_config`:
  uvicorn's httptools protocol with the bounds of `connections.ConnectionLimits`.

* The socket is bound before uvicorn starts (127.0.0.1, port 0 unless told otherwise), so
  the real port is known at once and no other process can take it in between.
* Starting waits for uvicorn's startup (lifespan included) for at most `start_timeout`
  seconds; stopping asks uvicorn to exit gracefully and waits at most `stop_timeout`.
* The thread is a daemon: a test run that forgets to stop a server still exits.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from .connections import ConnectionLimits, descriptor_limit, guarded_protocol

__all__ = ["BackgroundServer", "ServerStartError", "bind_socket", "server_config"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (`host`, `port`), ready for uvicorn to listen on.

    Raises:
        OSError: the address cannot be bound (``errno`` says why: in use, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may bind while old connections sit in TIME_WAIT; a
        # socket still listening on the port is refused all the same.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


def server_config(
    app: Any,
    limits: ConnectionLimits,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for `app` with the connection bounds of `limits`."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        **options,
    )


class ServerStartError(RuntimeError):
    """The server did not start in time, or its thread died while starting."""


class BackgroundServer:
    """Serve `app` with uvicorn in a daemon thread.

    Usage::

        with BackgroundServer(create_app(settings)) as server:
            httpx.get(f"{server.url}/health")

    Args:
        app: an ASGI app.
        host: the address to bind.
        port: the port to bind; 0 picks a free one (see `port`).
        log_level: uvicorn's log level.
        start_timeout: seconds to wait for startup.
        stop_timeout: seconds to wait for a graceful stop.
        limits: the connection bounds (default: `ConnectionLimits()` fitted to the file
            descriptor limit).
        config: more `uvicorn.Config` options.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        start_timeout: float = 60.0,
        stop_timeout: float = 5.0,
        limits: ConnectionLimits | None = None,
        **config: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._socket = bind_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        """The port served (the real one, also when 0 was asked for)."""
        if limits is None:
            limits = ConnectionLimits().fitted(descriptor_limit())
        self.limits = limits
        self._config = server_config(
            app, limits, host=host, port=self.port, log_level=log_level, **config
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between a successful `start()` and `stop()`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackgroundServer:
        """Start serving; returns once uvicorn has started.

        Raises:
            ServerStartError: startup took longer than `start_timeout` or failed.
        """
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._socket.close()
                raise ServerStartError(f"server on {self.url} stopped while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"server on {self.url} did not start within {self.start_timeout:g} s"
                )
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop gracefully (waiting at most `stop_timeout` seconds), then release the port."""
        thread = self._thread
        if thread is not None:
            self._server.should_exit = True
            thread.join(self.stop_timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(self.stop_timeout)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
