"""Fixtures for production serving: a bare remote that commits are pushed to, and servers
that follow it (``--pull-from``) on 127.0.0.1.

* `remote` -> `Remote`: a bare repository holding the example prompts (branch ``main``),
  and a work repository that pushes to it: ``remote.write_prompt(...)``, then
  ``remote.push("message")`` commits and pushes, returning the new sha.
* `follow` -> ``follow(remote, **settings)``: a running server following `remote` (its
  mirror in a fresh temporary data directory), stopped at teardown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing
from promptory.server.runner import BackgroundServer
from support.remote import Remote

WEBHOOK_SECRET = "s3cret-for-tests"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    """A bare remote holding the example prompts."""
    return Remote(tmp_path / "git")


@dataclass
class Follower:
    """A server following a remote."""

    url: str
    api_key: str
    app: Starlette
    background: BackgroundServer

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client sending `key` (default: the server's unscoped key)."""
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **options)

    def wait_for_commit(self, sha: str, timeout: float = 10.0) -> float:
        """Wait (bounded) until /ready reports `sha`; return the seconds it took."""
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=5.0) as http:
            while True:
                answer = http.get("/ready")
                if answer.status_code == 200 and answer.json()["commit"] == sha:
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"{sha} not served within {timeout} s: {answer.text}")
                time.sleep(0.02)


@contextmanager
def following(
    remote_url: str,
    api_key: str,
    data_dir: Path,
    *,
    keys: list[KeyRecord] | None = None,
    **settings: Any,
) -> Iterator[Follower]:
    """A server following `remote_url`, its mirror in `data_dir`."""
    settings.setdefault("poll_interval", 0.05)
    settings.setdefault("pull_interval", 30.0)
    settings.setdefault("webhook_secret", WEBHOOK_SECRET)
    keyring = KeyRing([KeyRecord.for_key(api_key), *(keys or [])])
    app = create_app(
        ServerSettings(
            repo="", keyring=keyring, pull_from=remote_url, data_dir=data_dir, **settings
        )
    )
    with BackgroundServer(app) as background:
        try:
            yield Follower(background.url, api_key, app, background)
        finally:
            app.state.watch.close_threadsafe()


@pytest.fixture
def follow(api_key: str, tmp_path: Path) -> Iterator[Callable[..., Follower]]:
    """Start servers following a remote; all are stopped at teardown."""
    with ExitStack() as stack:
        count = 0

        def start(remote: Remote | str, **settings: Any) -> Follower:
            nonlocal count
            count += 1
            url = remote.url if isinstance(remote, Remote) else remote
            data_dir = settings.pop("data_dir", tmp_path / f"mirror-{count}")
            return stack.enter_context(following(url, api_key, data_dir, **settings))

        yield start
