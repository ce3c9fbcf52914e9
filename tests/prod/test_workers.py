"""``promptory serve --workers N``: N processes answer on one port; a dead one is replaced;
SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from promptory.server.keys import generate_key
from support.services import free_port

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
QUIET_WORKERS = ("--workers", "2", "--log-level", "warning")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def workers(
    prompt_repo: object, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    key = generate_key(test=True)
    port = free_port()
    env = {**os.environ, "PROMPTORY_API_KEYS": key, "HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(prompt_repo.path),  # type: ignore[attr-defined]
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield process, url, key
    finally:
        workers = psutil.Process(process.pid).children() if process.poll() is None else []
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        # Workers, and any orphan of this server (found by its repository's path).
        mine = str(prompt_repo.path)  # type: ignore[attr-defined]
        for candidate in psutil.process_iter(["cmdline"]):
            if candidate in workers or mine in (candidate.info["cmdline"] or []):
                try:
                    candidate.kill()
                except psutil.NoSuchProcess:
                    pass


def children(process: subprocess.Popen[bytes]) -> set[int]:
    return {child.pid for child in psutil.Process(process.pid).children()}


def listening(process: subprocess.Popen[bytes]) -> int:
    """Workers with a listening socket (each opens its own once its app is built)."""
    return sum(
        1
        for pid in children(process)
        if any(c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections())
    )


def test_two_workers_answer_on_one_port_and_a_dead_one_is_replaced(
    workers: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    process, url, key = workers
    headers = {"Authorization": f"Bearer {key}"}
    wait_until(lambda: len(children(process)) == 2, what="two workers")
    wait_until(lambda: listening(process) == 2, what="two workers listening")
    wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, what="ready")
    statuses = {
        httpx.get(f"{url}/api/v1/prompts/{MEDITATION_ID}", headers=headers).status_code
        for _ in range(20)
    }
    assert statuses == {200}
    # Connections are spread among the workers (16 connections: all on one worker would
    # happen once in 2**15 runs were the kernel spreading them at random).
    connections = [httpx.Client(headers=headers) for _ in range(16)]
    try:
        for http in connections:
            assert http.get(f"{url}/api/v1/prompts/{MEDITATION_ID}").status_code == 200
        per_worker = [
            sum(1 for c in psutil.Process(pid).net_connections() if c.status == "ESTABLISHED")
            for pid in children(process)
        ]
    finally:
        for http in connections:
            http.close()
    assert all(count >= 1 for count in per_worker), per_worker
    first = children(process)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(children(process)) == 2 and victim not in children(process),
        what="the dead worker replaced",
    )
    wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, what="ready again")


def test_a_killed_parent_takes_its_workers_with_it(
    workers: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    process, _, _ = workers
    wait_until(lambda: listening(process) == 2, what="two workers listening")
    pids = children(process)
    process.kill()
    process.wait(10)

    def gone() -> bool:
        return not [
            pid
            for pid in pids
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]

    wait_until(gone, what="the orphaned workers gone")


def test_sigterm_stops_every_worker(workers: tuple[subprocess.Popen[bytes], str, str]) -> None:
    process, url, _ = workers
    wait_until(lambda: len(children(process)) == 2, what="two workers")
    wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, what="ready")
    pids = children(process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert not [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]


def test_a_second_server_on_the_port_of_running_workers_fails_as_a_port_in_use(
    workers: tuple[subprocess.Popen[bytes], str, str], prompt_repo: object, tmp_path: Path
) -> None:
    """SO_REUSEPORT would let it bind and silently take half the connections."""
    process, url, key = workers
    wait_until(lambda: listening(process) == 2, what="two workers listening")
    port = url.rsplit(":", 1)[1]
    env = {**os.environ, "PROMPTORY_API_KEYS": key, "HOME": str(tmp_path / "home2")}
    repo = str(prompt_repo.path)  # type: ignore[attr-defined]
    second = subprocess.Popen(
        [sys.executable, "-m", "promptory", "serve", repo, "--port", port, *QUIET_WORKERS],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(second.pid).children():
            child.kill()
        second.kill()
        second.communicate(timeout=10)
        raise AssertionError("a second server bound the port of running workers") from None
    assert second.returncode == 3, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
