"""`serve_workers`: N server processes on one host, sharing one listening socket.

Rules of this module:

* The parent binds the port, then forks the workers before creating any app or thread;
  each worker builds its own app (store, limiter, metrics) and runs uvicorn on a listening
  socket of its own bound with SO_REUSEPORT, so the kernel spreads the connections evenly
  (where SO_REUSEPORT is missing, all share the parent's listening socket).
* A worker following a remote keeps its own mirror (``<data dir>/worker-<i>``): two
  processes never write one repository. Share the rate limit with ``--redis-url``.
* The parent restarts a worker that dies, at most `MAX_RESTARTS` times a minute in all;
  beyond that it stops every worker and exits 1. SIGTERM or SIGINT stops the workers
  gracefully (uvicorn's own handling in each) and the parent exits 0. A parent killed
  outright takes its workers with it (Linux: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .mirror import default_data_dir

#: (app, port) -> the uvicorn configuration a worker serves `app` with.
MakeConfig = Callable[[Any, int], Any]

__all__ = ["MAX_RESTARTS", "serve_workers"]

logger = logging.getLogger("promptory.server")

#: Worker restarts allowed per minute before the parent gives up.
MAX_RESTARTS = 5

_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _free_port(host: str, port: int) -> int:
    """`port` (the one the kernel picks for 0), once a plain bind shows no one holds it.

    SO_REUSEPORT lets a second server bind a port in use and take half its connections;
    a bind without it fails as a single process's would.

    Raises:
        OSError: the port is in use (EADDRINUSE) or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _socket(host: str, port: int, *, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _REUSEPORT:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when the parent dies, however it dies
    (Linux; elsewhere a killed parent leaves its workers to be stopped by hand)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _run_worker(settings: object, sock: socket.socket, make_config: MakeConfig, index: int) -> int:
    import uvicorn

    from .app import ServerSettings, create_app

    assert isinstance(settings, ServerSettings)
    if settings.pull_from:
        base = Path(settings.data_dir or default_data_dir(settings.pull_from))
        settings = dataclasses.replace(settings, data_dir=base / f"worker-{index}")
    try:
        app = create_app(settings)
    except Exception as exc:
        logger.error("worker %d cannot start: %s", index, exc)
        return 1
    if _REUSEPORT:
        # A listening socket of its own on the shared port, opened only now that the app
        # is built, so no connection waits on a worker still starting: the kernel spreads
        # new connections evenly among the workers listening (one shared socket lets the
        # quickest worker take most of them).
        sock = _socket(*sock.getsockname()[:2], listen=True)
    server = uvicorn.Server(make_config(app, sock.getsockname()[1]))
    server.run(sockets=[sock])
    return 0 if server.started else 1


def serve_workers(
    settings: object, host: str, port: int, workers: int, make_config: MakeConfig
) -> int:
    """Serve with `workers` processes on `host`:`port` until SIGTERM or SIGINT; each
    worker runs uvicorn with ``make_config(app, port)`` (the connection bounds and TLS of
    a single process).

    Returns the exit code: 0 after a requested stop, 1 when workers kept dying.

    Raises:
        OSError: the address cannot be bound (EADDRINUSE: another server holds the port,
            even one whose workers share it with SO_REUSEPORT).
    """
    # With SO_REUSEPORT the parent's socket only holds the port (bound, never listening:
    # no connection is ever queued on it); without, it is the one socket all workers share.
    if _REUSEPORT:
        port = _free_port(host, port)
    sock = _socket(host, port, listen=not _REUSEPORT)
    parent = os.getpid()
    children: dict[int, int] = {}
    restarts: list[float] = []
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            _die_with_parent(parent)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = _run_worker(settings, sock, make_config, index)
            finally:
                os._exit(code)
        children[pid] = index

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for index in range(workers):
        spawn(index)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("serving on %s:%d with %d workers", host, port, workers)
    code = 0
    while children:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        if stopping or index < 0:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60.0] + [now]
        if len(restarts) > MAX_RESTARTS:
            logger.error("workers keep dying (%d restarts in a minute): stopping", len(restarts))
            code = 1
            stop(signal.SIGTERM, None)
            continue
        logger.warning("worker %d (pid %d) died: restarting it", index, pid)
        spawn(index)
    sock.close()
    return code
