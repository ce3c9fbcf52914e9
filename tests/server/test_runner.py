"""BackgroundServer: uvicorn in a thread on a free port, started and stopped within bounds."""

from __future__ import annotations

import socket

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from promptory.server.runner import BackgroundServer


async def _hello(request: object) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def _running(server: BackgroundServer) -> bool:
    return server.running


def _app() -> Starlette:
    return Starlette(routes=[Route("/", _hello)])


def test_serves_on_a_free_loopback_port_until_stopped() -> None:
    with BackgroundServer(_app()) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url).json() == {"hello": "world"}
        assert _running(server)
    assert not _running(server)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


def test_two_servers_get_two_ports() -> None:
    with BackgroundServer(_app()) as first, BackgroundServer(_app()) as second:
        assert first.port != second.port


def test_stop_without_start_releases_the_port() -> None:
    server = BackgroundServer(_app())
    server.stop()
    assert not server.running
