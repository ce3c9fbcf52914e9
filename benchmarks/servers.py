"""Servers the benchmarks talk to, all on 127.0.0.1 and a free port.

* `thread_server`: our server (`create_app` + `BackgroundServer`) in a thread of this
  process, for figures where the server only warms a cache or is driven from another process.
* `process_server`: the same server in a child process (``python -m benchmarks.servers``),
  for figures that time a client against it, so the server does not share this process's GIL.
* `bare_app`: the baseline of the server figures, a Starlette app with one route answering
  constant bytes.
* `SlowApp`: an ASGI wrapper that delays every HTTP request and counts how many are in
  flight at once (the stale-while-revalidate figure).

Every server stops when its block ends; the child process also stops by itself when its
standard input closes or after `MAX_LIFETIME` seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing
from promptory.server.renderpool import RenderCapacity
from promptory.server.runner import BackgroundServer

__all__ = [
    "MAX_LIFETIME",
    "LocalServer",
    "SlowApp",
    "bare_app",
    "process_server",
    "serve_app",
    "thread_server",
]

#: A child server exits by itself after this many seconds, whatever happens to its parent.
MAX_LIFETIME = 900.0
_KEY_VARIABLE = "PROMPTORY_BENCH_API_KEY"
_OPTIONS_VARIABLE = "PROMPTORY_BENCH_SERVER"  # JSON: {"keys": [...], "render": {...}}
# The servers the benchmarks start never see a new commit unless a figure makes one and
# refreshes the store itself, so polling is slow: it would only add noise.
_QUIET_POLL = 30.0


@dataclass
class LocalServer:
    """A server running for a benchmark.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        api_key: a key it accepts.
        app: the ASGI app served (None for a server in another process).
    """

    url: str
    api_key: str
    app: Any = None

    def headers(self) -> dict[str, str]:
        """The Authorization header for `api_key`."""
        return {"Authorization": f"Bearer {self.api_key}"}


def _settings(
    repo: Path, api_key: str, *, extra_keys: tuple[str, ...] = (), **settings: Any
) -> ServerSettings:
    settings.setdefault("rate_limit", 0)
    settings.setdefault("poll_interval", _QUIET_POLL)
    keyring = KeyRing([KeyRecord.for_key(key) for key in (api_key, *extra_keys)])
    return ServerSettings(repo=repo, keyring=keyring, **settings)


@contextmanager
def thread_server(
    repo: Path, api_key: str, *, wrap: Any = None, **settings: Any
) -> Iterator[LocalServer]:
    """Our server over `repo` in a thread of this process; `wrap(app)` may wrap the app."""
    app: Any = create_app(_settings(repo, api_key, **settings))
    served = wrap(app) if wrap is not None else app
    with BackgroundServer(served) as background:
        yield LocalServer(url=background.url, api_key=api_key, app=served)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Any ASGI app served by `BackgroundServer` (the same uvicorn settings as ours);
    yields its URL."""
    with BackgroundServer(app) as background:
        yield background.url


@contextmanager
def process_server(
    repo: Path,
    api_key: str,
    *,
    timeout: float = 30.0,
    extra_keys: tuple[str, ...] = (),
    render: dict[str, Any] | None = None,
    rate_limit: int = 0,
) -> Iterator[LocalServer]:
    """Our server over `repo` in a child process, stopped when the block ends.

    Args:
        extra_keys: more keys it accepts.
        render: `RenderCapacity` fields.
        rate_limit: requests per minute per key (0: off).
    """
    env = dict(os.environ)
    env[_KEY_VARIABLE] = api_key
    options = {"keys": list(extra_keys), "render": render or {}, "rate_limit": rate_limit}
    env[_OPTIONS_VARIABLE] = json.dumps(options)
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers", str(repo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = _read_line(child, timeout)
        if not line.startswith("http://"):
            raise RuntimeError(f"the server process did not start: {line!r}")
        yield LocalServer(url=line.strip(), api_key=api_key)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout)
        if child.stdout is not None:
            child.stdout.close()


def _read_line(child: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line of output, waiting at most `timeout` seconds."""
    result: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        result.append(child.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def bare_app(body: bytes) -> Starlette:
    """A bare Starlette app: ``GET /constant`` answers `body` as ``application/json``."""

    async def constant(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/constant", constant, methods=["GET"])])


class SlowApp:
    """Delays every HTTP request by `delay` seconds before passing it on, and counts the
    requests in flight (`active`, `max_active`) and in all (`requests`)."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.requests = 0

    def reset(self) -> None:
        """Start counting afresh (the counters are read and reset between figures)."""
        self.max_active = self.active
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One event loop runs every request, so these counters need no lock.
        self.requests += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def _child_main(repo: str) -> int:
    """Serve `repo` until standard input closes (or `MAX_LIFETIME` passes)."""
    api_key = os.environ[_KEY_VARIABLE]
    options = json.loads(os.environ.get(_OPTIONS_VARIABLE, "{}"))
    settings = _settings(
        Path(repo),
        api_key,
        extra_keys=tuple(options.get("keys", ())),
        render=RenderCapacity(**options.get("render", {})),
        rate_limit=options.get("rate_limit", 0),
    )
    app = create_app(settings)
    with BackgroundServer(app) as background:
        print(background.url, flush=True)
        done = threading.Event()

        def wait_for_eof() -> None:
            sys.stdin.read()
            done.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
        done.wait(MAX_LIFETIME)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
