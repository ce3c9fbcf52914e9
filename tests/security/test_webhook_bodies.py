"""Unauthenticated webhook senders cannot make the server hold a body per connection.

``POST /api/v1/webhooks/git`` read up to 5 MB of body before checking its signature, for
anyone, on every open connection (1,024 by default): gigabytes held by senders with no
secret. Bodies are now read only when a secret is configured and a signature header is
present, `MAX_WEBHOOK_READS` at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import pytest

from promptory.server.webhooks import MAX_WEBHOOK_BODY

MAX_WEBHOOK_READS = 8  # the documented bound

# Far longer than an answer to a request already complete takes on a loaded machine;
# far shorter than the server's 10 s wait for a body that never comes.
ANSWER_WITHIN = 5.0


def _start_upload(url: str, headers: dict[str, str]) -> socket.socket:
    """A webhook POST announcing a 4 MB body, of which only 1 KB is sent."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_WITHIN)
    head = [
        "POST /api/v1/webhooks/git HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {MAX_WEBHOOK_BODY - 1024}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"{" * 1024)
    return sock


def _status(sock: socket.socket) -> int | None:
    """The status line's code, or None when nothing came within `ANSWER_WITHIN`."""
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    return int(data.split(b" ", 2)[1]) if data else None


@pytest.fixture
def uploads() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    with ExitStack() as stack:
        stack.callback(lambda: [sock.close() for sock in opened])
        yield opened


def test_an_unsigned_webhook_is_refused_before_its_body(
    start_server: Any, prompt_repo: Any, uploads: list[socket.socket]
) -> None:
    server = start_server(prompt_repo, webhook_secret="s3cret-for-tests")
    sock = _start_upload(server.url, {})
    uploads.append(sock)
    assert _status(sock) == 401, "the server waited for the body of an unsigned webhook"


def test_webhook_bodies_read_at_once_are_bounded(
    start_server: Any, prompt_repo: Any, uploads: list[socket.socket]
) -> None:
    server = start_server(prompt_repo, webhook_secret="s3cret-for-tests")
    signed = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    for _ in range(MAX_WEBHOOK_READS):
        uploads.append(_start_upload(server.url, signed))
    # The server takes them up in its own time: try a few more (bounded) until it refuses.
    statuses = []
    for _ in range(3):
        extra = _start_upload(server.url, signed)
        uploads.append(extra)
        statuses.append(_status(extra))
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, f"more slow webhook bodies were read: {statuses}"
