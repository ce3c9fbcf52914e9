"""Slow and idle clients against a real ``promptory serve`` with a low descriptor limit.

The server runs as a child process whose ``RLIMIT_NOFILE`` is 128 (soft and hard), so the
connection cap is fitted to 128 - 64 = 64. Sockets that send nothing, or only part of a
request, must neither deny service to a real client nor stay open past the request timeout;
sockets beyond the cap are answered 503 at once; commits are still picked up afterwards.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import promptory
from promptory.server.connections import FD_RESERVE, ConnectionLimits
from support.gitrepo import PromptRepo
from support.servers import RunningServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_NOFILE")

SRC = str(Path(promptory.__file__).resolve().parents[1])
KEY = "pm_live_" + "c" * 43
DESCRIPTORS = 128
CAP = DESCRIPTORS - FD_RESERVE
REQUEST_TIMEOUT = 2.0


@dataclass
class Served:
    url: str
    port: int
    repo: PromptRepo
    process: subprocess.Popen[str]

    def get(self, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)


@contextmanager
def _serve(
    tmp_path: Path, descriptors: tuple[int, int] = (DESCRIPTORS, DESCRIPTORS)
) -> Iterator[Served]:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("myorg", "myapp", "greeting", "Hey {{ name }}\n")
    repo.commit()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["HOME"] = str(tmp_path / "home")
    env["PROMPTORY_API_KEYS"] = KEY
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(repo.path),
            "--port",
            str(port),
            "--request-timeout",
            str(REQUEST_TIMEOUT),
            "--keep-alive-timeout",
            "1",
            "--poll-interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, descriptors),
    )
    served = Served(f"http://127.0.0.1:{port}", port, repo, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the server stopped while starting"
            try:
                httpx.get(f"{served.url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=15)
        served.stderr = stderr  # type: ignore[attr-defined]


def _open(port: int, count: int, stack: ExitStack, first: bytes = b"") -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if first:
            sock.sendall(first)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset); reads and drops any answer."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_for_commit(served: Served, sha: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while served.get("/health").json()["commit"] != sha:
        assert time.monotonic() < deadline, f"commit {sha} not served within {timeout} s"
        time.sleep(0.05)


def test_slow_and_idle_sockets_do_not_deny_service_and_are_closed_after_the_timeout(
    tmp_path: Path,
) -> None:
    with _serve(tmp_path) as served, ExitStack() as stack:
        started = time.monotonic()
        idle = _open(served.port, 15, stack)
        partial = _open(served.port, 15, stack, b"GET /health HTTP/1.1\r\nHost: x\r\n")
        body = _open(
            served.port,
            10,
            stack,
            b"POST /api/v1/prompts/x/render HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        )
        slow = idle + partial + body

        asked = time.monotonic()
        answer = served.get("/api/v1/prompts/by-name/myorg/myapp/greeting")
        assert answer.status_code == 200
        assert time.monotonic() - asked < 5.0  # a bound with room for a loaded machine

        # Trickle: one more header byte now and then keeps a socket busy, not alive.
        open_sockets = list(slow)
        deadline = time.monotonic() + REQUEST_TIMEOUT + 15
        while open_sockets and time.monotonic() < deadline:
            for sock in partial:
                if sock in open_sockets:
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass
            open_sockets = [s for s in open_sockets if not _closed_by_server(s)]
            time.sleep(0.1)
        closed_after = time.monotonic() - started
        assert not open_sockets, f"{len(open_sockets)} slow sockets still open"
        assert closed_after >= REQUEST_TIMEOUT * 0.9  # closed by the timeout, not before

        sha = served.repo.write_prompt("myorg", "myapp", "later", "New\n") and served.repo.commit()
        _wait_for_commit(served, sha, timeout=15)


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(tmp_path: Path) -> None:
    with _serve(tmp_path) as served, ExitStack() as stack:
        [sock] = _open(served.port, 1, stack)
        sock.setblocking(True)
        sock.settimeout(15)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):  # the whole JSON answer
            chunk = sock.recv(65536)
            assert chunk, "closed before answering"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server, --keep-alive-timeout 1
        assert time.monotonic() - answered >= 0.9


def test_connections_beyond_the_cap_get_503_and_service_comes_back(tmp_path: Path) -> None:
    with _serve(tmp_path) as served, ExitStack() as stack:
        held = _open(served.port, 300, stack)
        # The first CAP are held; the others are answered 503 at once.
        busy = 0
        deadline = time.monotonic() + 15
        pending = list(held)
        while time.monotonic() < deadline and busy < 300 - CAP:
            for sock in list(pending):
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    pending.remove(sock)
                    continue
                pending.remove(sock)
                if data.startswith(b"HTTP/1.1 503"):
                    assert b"SERVER_BUSY" in data
                    assert b"retry-after: 1" in data.lower()
                    busy += 1
            time.sleep(0.05)
        assert busy >= 300 - CAP - 5, f"only {busy} connections were answered 503"

        # A real client is answered 503 while the cap is full, never reset; 200 once the
        # idle sockets are closed by the request timeout.
        deadline = time.monotonic() + REQUEST_TIMEOUT + 20
        statuses = []
        while True:
            status = served.get("/api/v1/prompts/by-name/myorg/myapp/greeting").status_code
            statuses.append(status)
            if status == 200:
                break
            assert status == 503
            assert time.monotonic() < deadline, "the server never served again"
            time.sleep(0.1)

        sha = served.repo.write_prompt("myorg", "myapp", "later", "New\n") and served.repo.commit()
        _wait_for_commit(served, sha, timeout=15)
    stderr: str = served.stderr  # type: ignore[attr-defined]
    assert f"at most {CAP} connections" in stderr
    assert "Too many open files" not in stderr
    assert "Traceback" not in stderr


def test_the_descriptor_limit_is_raised_to_the_hard_limit_at_start(tmp_path: Path) -> None:
    with _serve(tmp_path, descriptors=(100, 200)) as served:
        assert served.get("/health").status_code == 200
    stderr: str = served.stderr  # type: ignore[attr-defined]
    # Fitted to the hard limit (200 - 64), not to the soft one it started with (100 - 64).
    assert f"at most {200 - FD_RESERVE} connections" in stderr


def test_a_request_head_over_the_limit_is_answered_431_and_closed(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.background.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"a" * 4000 + b"\r\n"
        sent = 0
        try:
            while sent < 8 * ConnectionLimits().max_head:  # bounded: closed well before
                sock.sendall(line)
                sent += len(line)
        except OSError:
            pass  # closed by the server while we were still sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"HEADERS_TOO_LARGE" in answer


def test_a_large_body_is_not_counted_as_head(server: RunningServer) -> None:
    # ~500 KB of variables: the chunk that ends the headers carries much of the body.
    variables = {"name": "Ann", "filler": "x" * 500_000}
    with server.client() as client:
        answer = client.post(
            "/api/v1/prompts/550e8400-e29b-41d4-a716-446655440000/render",
            json={"variables": variables},
        )
    assert answer.status_code == 200, answer.text[:300]
