"""The production flags of ``promptory serve``, through the real command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from promptory.server.keys import generate_key
from support.remote import Remote
from support.services import free_port

from .test_webhooks import PUSH, github


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptory", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_serve_needs_a_path_or_a_remote_and_not_both(tmp_path: Path) -> None:
    neither = serve()
    assert neither.returncode == 2
    assert "give the repository PATH or --pull-from URL" in neither.stderr
    both = serve(str(tmp_path), "--pull-from", str(tmp_path))
    assert both.returncode == 2
    ref = serve("--pull-from", str(tmp_path), "--ref", "v1")
    assert ref.returncode == 2
    assert "use --branch" in ref.stderr


def test_pull_from_with_the_webhook_secret_from_the_environment(
    remote: Remote, tmp_path: Path
) -> None:
    key = generate_key(test=True)
    port = free_port()
    env = {
        **os.environ,
        "PROMPTORY_API_KEYS": key,
        "PROMPTORY_WEBHOOK_SECRET": "s3cret-for-tests",
        "HOME": str(tmp_path / "home"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            "--pull-from",
            remote.url,
            "--pull-interval",
            "600",
            "--data-dir",
            str(tmp_path / "mirror"),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready within 30 s"
            time.sleep(0.05)
        remote.write_prompt("myorg", "myapp", "via_cli", "hello\n")
        sha = remote.push("through the command")
        answer = httpx.post(f"{url}/api/v1/webhooks/git", content=PUSH, headers=github(PUSH))
        assert answer.status_code == 202
        while httpx.get(f"{url}/ready").json()["commit"] != sha:
            assert time.monotonic() < deadline + 30, "the push was not served"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert (tmp_path / "mirror" / "HEAD").exists()


def test_watch_streams_leave_half_the_connections_for_requests(
    prompt_repo: Any, tmp_path: Path
) -> None:
    key = generate_key(test=True)
    port = free_port()
    env = {**os.environ, "PROMPTORY_API_KEYS": key, "HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(prompt_repo.path),
            "--port",
            str(port),
            "--max-connections",
            "10",
            "--watch-max-total",
            "8",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready within 30 s"
            time.sleep(0.05)
        with ExitStack() as streams:
            for _ in range(5):
                http = streams.enter_context(httpx.Client(base_url=url, headers=headers))
                opened = streams.enter_context(http.stream("GET", "/api/v1/watch"))
                assert opened.status_code == 200
            refused = httpx.get(f"{url}/api/v1/watch", headers=headers)
            assert refused.status_code == 429
            assert "has 5 watch streams open" in refused.json()["error"]["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert "--watch-max-total 8 lowered to 5" in stderr
