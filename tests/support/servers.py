"""Running promptory servers over `PromptRepo` repositories, on 127.0.0.1, for tests.

`running_server(repo, keys)` starts `create_app(...)` with `BackgroundServer` on a free
port and stops it on exit. The `RunningServer` it yields knows its URL, its repository, a
key it accepts, and how to wait (bounded) for a commit to be served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing
from promptory.server.runner import BackgroundServer
from promptory.server.store import PromptStore

from .gitrepo import PromptRepo

__all__ = ["EXAMPLES", "RunningServer", "copy_examples", "running_server"]

#: The example prompts shipped in the package (``<org>/<app>/<name>.md``).
EXAMPLES = Path(str(resources.files("promptory") / "examples"))


def copy_examples(repo: PromptRepo) -> None:
    """Write the shipped example prompts into `repo`'s work tree and stage them."""
    for source in sorted(EXAMPLES.rglob("*.md")):
        relative = source.relative_to(EXAMPLES).as_posix()
        repo.write(relative, source.read_bytes())


@dataclass
class RunningServer:
    """A promptory server running in a thread for a test.

    Attributes:
        url: base URL, ``http://127.0.0.1:<port>``.
        repo: the repository it serves.
        api_key: an unscoped key it accepts.
        store: its prompt store (``app.state.store``), for checks below HTTP.
        background: the uvicorn runner.
    """

    url: str
    repo: PromptRepo
    api_key: str
    store: PromptStore
    background: BackgroundServer

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client for this server, sending `key` (default: `api_key`)."""
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **options)

    def wait_for_commit(self, sha: str, timeout: float = 2.0) -> float:
        """Wait until `/health` reports commit `sha`; returns the seconds it took.

        Raises:
            AssertionError: not served within `timeout` seconds.
        """
        started = time.monotonic()
        deadline = started + timeout
        with httpx.Client(base_url=self.url, timeout=timeout) as client:
            while True:
                if client.get("/health").json()["commit"] == sha:
                    return time.monotonic() - started
                if time.monotonic() > deadline:
                    raise AssertionError(f"commit {sha} not served within {timeout} s")
                time.sleep(0.01)


@contextmanager
def running_server(
    repo: PromptRepo,
    api_key: str,
    *,
    keys: list[KeyRecord] | None = None,
    **settings: Any,
) -> Iterator[RunningServer]:
    """Serve `repo` on 127.0.0.1 (a free port) until the block ends.

    Args:
        api_key: an unscoped key the server accepts.
        keys: more key records it accepts (scoped ones, say).
        settings: `ServerSettings` fields (`rate_limit`, `org`, `app`, `ref`...);
            `poll_interval` defaults to 0.05 s so reload tests are quick.
    """
    settings.setdefault("poll_interval", 0.05)
    keyring = KeyRing([KeyRecord.for_key(api_key), *(keys or [])])
    app = create_app(ServerSettings(repo=repo.path, keyring=keyring, **settings))
    with BackgroundServer(app) as background:
        yield RunningServer(
            url=background.url,
            repo=repo,
            api_key=api_key,
            store=app.state.store,
            background=background,
        )
