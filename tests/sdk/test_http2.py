"""HTTP/2: the async client speaks it to a server that offers it (over TLS, by ALPN)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptory import AsyncPromptClient, PromptClient

from .conftest import API_KEY, GREETING_ID, CountingApp

trustme = pytest.importorskip("trustme")
hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
hypercorn_config = pytest.importorskip("hypercorn.config")
pytest.importorskip("h2")


class VersionRecorder(CountingApp):
    """Records the HTTP version of every request next to the request itself."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.versions: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.versions.append(scope["http_version"])
        await super().__call__(scope, receive, send)


@pytest.fixture
def tls_server(
    promptory_backend: Any, tmp_path: Path
) -> Iterator[tuple[str, VersionRecorder, Any]]:
    """promptory's app served by hypercorn over TLS (HTTP/2 offered by ALPN) on 127.0.0.1."""
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    app = VersionRecorder(promptory_backend.counter.app)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = hypercorn_config.Config()
    config.bind = [f"fd://{listener.fileno()}"]
    config.certfile, config.keyfile = str(cert_path), str(key_path)
    config.loglevel = "WARNING"

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def serve() -> None:
        started.set()
        await hypercorn_asyncio.serve(app, config, shutdown_trigger=stop.wait)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    started.wait(5)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    try:
        yield f"https://127.0.0.1:{port}", app, context
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
        listener.detach()  # hypercorn owns the descriptor and has closed it


def test_async_client_uses_http2_when_the_server_offers_it(tls_server) -> None:
    url, recorder, context = tls_server

    async def main() -> None:
        async with AsyncPromptClient(url, API_KEY, verify=context) as client:
            await asyncio.gather(
                *(client.get_by_name("myorg", "myapp", "greeting") for _ in range(5))
            )
            await client.get(GREETING_ID)

    asyncio.run(main())
    assert recorder.versions
    assert set(recorder.versions) == {"2"}


def test_async_client_can_be_told_to_stay_on_http1(tls_server) -> None:
    url, recorder, context = tls_server

    async def main() -> None:
        async with AsyncPromptClient(url, API_KEY, verify=context, http2=False) as client:
            await client.get(GREETING_ID)

    asyncio.run(main())
    assert recorder.versions == ["1.1"]


def test_sync_client_speaks_https_with_a_custom_ca(tls_server) -> None:
    url, recorder, context = tls_server
    with PromptClient(url, API_KEY, verify=context) as client:
        assert client.get(GREETING_ID).name == "greeting"
    assert recorder.versions == ["1.1"]
