"""The fault proxy itself does what the fault tests rely on."""

from __future__ import annotations

import http.client
import socket
import time
from email.utils import parsedate_to_datetime

import pytest

from sdk.conftest import API_KEY
from sdk.legacy_server import LegacyServer

from .conftest import PROMPT_ID
from .proxy import GARBLED_BODY, FaultProxy

PROMPT_PATH = f"/api/v1/prompts/{PROMPT_ID}"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def connect(proxy: FaultProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)


def raw_request(proxy: FaultProxy) -> socket.socket:
    """A socket that has sent one GET of the prompt to the proxy."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.sendall(
        f"GET {PROMPT_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
    )
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_pass_mode_forwards_and_counts_each_request_of_a_keep_alive_connection(
    proxy: FaultProxy, legacy: LegacyServer
) -> None:
    conn = connect(proxy)
    try:
        for _ in range(3):
            conn.request("GET", PROMPT_PATH, headers=AUTH)
            response = conn.getresponse()
            assert response.status == 200
            assert PROMPT_ID.encode() in response.read()
    finally:
        conn.close()
    assert proxy.attempts() == proxy.attempts("pass") == 3
    assert proxy.connections_accepted() == 1
    assert legacy.count(PROMPT_PATH) == 3


def test_refuse_mode_refuses_connects_and_pass_mode_listens_again_on_the_same_port(
    proxy: FaultProxy,
) -> None:
    port = proxy.port
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    proxy.set_mode("pass")
    conn = connect(proxy)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert proxy.port == port
    assert proxy.attempts("refuse") == 0


def test_switching_mode_drops_kept_alive_connections(proxy: FaultProxy) -> None:
    conn = connect(proxy)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        proxy.set_mode("status:503")
        assert conn.sock is not None
        assert conn.sock.recv(1) == b""  # the proxy closed it: the next request reconnects
    finally:
        conn.close()


def test_reset_mode_sends_part_of_the_answer_then_a_tcp_reset(proxy: FaultProxy) -> None:
    proxy.set_mode("reset")
    sock = raw_request(proxy)
    try:
        with pytest.raises(ConnectionResetError):
            read_all(sock)
    finally:
        sock.close()
    assert proxy.attempts("reset") == 1


def test_truncate_mode_keeps_the_content_length_and_sends_half_the_body(
    proxy: FaultProxy,
) -> None:
    proxy.set_mode("truncate")
    sock = raw_request(proxy)
    try:
        data = read_all(sock)
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    assert len(body) == length // 2


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("garble", 200),
        ("status:500", 500),
        ("status:502", 502),
        ("status:503", 503),
        ("status:504", 504),
        ("429-seconds", 429),
        ("429-date", 429),
    ],
)
def test_answering_modes_send_a_well_formed_answer_of_their_own(
    proxy: FaultProxy, legacy: LegacyServer, mode: str, status: int
) -> None:
    proxy.set_mode(mode)
    conn = connect(proxy)
    try:
        conn.request("GET", PROMPT_PATH, headers=AUTH)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == status
    assert int(response.headers["Content-Length"]) == len(body)
    if mode == "garble":
        assert body == GARBLED_BODY
    if mode == "429-seconds":
        assert response.headers["Retry-After"] == "7"
    if mode == "429-date":
        ahead = parsedate_to_datetime(response.headers["Retry-After"]).timestamp() - time.time()
        assert 28 <= ahead <= 31
    assert legacy.count(PROMPT_PATH) == 0


def test_stop_ends_a_stalled_connection_promptly_and_leaves_no_thread(
    legacy: LegacyServer,
) -> None:
    host, port = legacy.url.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port))).start()
    sock = None
    try:
        proxy.set_mode("stall")
        sock = raw_request(proxy)
        deadline = time.monotonic() + 2
        while proxy.attempts("stall") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.attempts("stall") == 1
    finally:
        started = time.monotonic()
        proxy.stop()
        stopped_in = time.monotonic() - started
        if sock is not None:
            sock.close()
    # A stop that waited on the stalled connection would run to its 2 s join timeout (and
    # leave the thread, checked below); 1.5 s leaves a loaded machine room for its pauses.
    assert stopped_in < 1.5
    assert proxy.threads() == []
