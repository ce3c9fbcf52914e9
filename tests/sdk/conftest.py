"""Fixtures for the SDK's integration tests.

`sdk` makes clients of either kind behind one interface, so each behaviour is written once
and runs against `PromptClient` and `AsyncPromptClient`:

    def test_x(sdk, legacy):
        client = sdk(legacy.url)          # a Driver
        prompt = client.get("...")        # for async, runs on the driver's event loop

An async driver owns an event loop in a thread; every call is run there, awaited if it is a
coroutine. `legacy` is a real HTTP server on 127.0.0.1 that behaves like the existing
Promptory server (see legacy_server.py).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promptory import AsyncPromptClient, PromptClient
from support.refused import refused_address

from .legacy_server import LegacyPrompt, LegacyServer, running_legacy_server

API_KEY = "pm_test_" + "s" * 43
GREETING_ID = "11111111-1111-4111-8111-111111111111"


class Driver:
    """One client of either kind, called synchronously."""

    kind: str

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self.client, name)  # type: ignore[no-any-return]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until no request of the client is in flight."""
        deadline = time.monotonic() + timeout
        while self.cache_stats()["in_flight"]:
            if time.monotonic() > deadline:
                raise AssertionError("requests still in flight after the wait")
            time.sleep(0.01)

    def shutdown(self) -> None:
        """Close the client (and, for async, stop its loop): fixture teardown."""
        self.client.close()


class SyncDriver(Driver):
    kind = "sync"


class AsyncDriver(Driver):
    """Runs an AsyncPromptClient on its own event loop thread."""

    kind = "async"

    def __init__(self, factory: Callable[[], AsyncPromptClient]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def build() -> AsyncPromptClient:
            return factory()

        super().__init__(self.run(build()))

    def run(self, coroutine: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute  # type: ignore[no-any-return]

        def call(*args: Any, **kwargs: Any) -> Any:
            async def on_loop() -> Any:
                result = attribute(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result

            return self.run(on_loop())

        return call

    def shutdown(self) -> None:
        try:
            self.run(self.client.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


SdkFactory = Callable[..., Driver]


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest) -> Iterator[SdkFactory]:
    """A factory of clients of one kind (the test runs once per kind)."""
    kind = request.param
    made: list[Driver] = []

    def make(base_url: str, api_key: str = API_KEY, **options: Any) -> Driver:
        driver: Driver
        if kind == "sync":
            driver = SyncDriver(PromptClient(base_url, api_key, **options))
        else:
            driver = AsyncDriver(lambda: AsyncPromptClient(base_url, api_key, **options))
        made.append(driver)
        return driver

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for driver in made:
        driver.shutdown()


@pytest.fixture
def legacy() -> Iterator[LegacyServer]:
    """The legacy-behaving server with a greeting in two environments and a meditation prompt."""
    with running_legacy_server(API_KEY) as server:
        server.add(
            LegacyPrompt(
                id=GREETING_ID,
                name="greeting",
                body="{% if formal %}Dear{% else %}Hey{% endif %} {{ user_name }}\n",
                version="1.2.0",
            )
        )
        server.add(
            LegacyPrompt(
                name="greeting", body="[dev] Hi {{ user_name }}", environment="development"
            )
        )
        server.add(
            LegacyPrompt(
                name="meditation_script_relax",
                body="Relax, {{ user.display_name }}. {{ vision.identity_statement }}",
                model={"default": "gemini-2.0-flash", "temperature": 0.7, "fallback": ["x"]},
            )
        )
        yield server


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL where nothing listens: connections are refused at once."""
    with refused_address() as url:
        yield url


def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll `condition` (bounded in time) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class LegacyBackend:
    """The legacy server behind the interface the integration tests use for any server."""

    name = "legacy"

    def __init__(self, server: LegacyServer) -> None:
        self.server = server
        self.url = server.url
        self.greeting_id = GREETING_ID

    def update_body(self, prompt_id: str, body: str) -> None:
        """Change a prompt's body (and so its ETag)."""
        with self.server.lock:
            self.server.prompts[prompt_id].body = body

    def delete(self, prompt_id: str) -> None:
        """Remove a prompt."""
        self.server.remove(prompt_id)

    def count(self, path_part: str = "/api/") -> int:
        """How many requests whose path contains `path_part` the server has seen."""
        return self.server.count(path_part)

    def conditional_count(self) -> int:
        """How many requests carried If-None-Match."""
        with self.server.lock:
            return sum(1 for r in self.server.requests if "If-None-Match" in r.headers)


class CountingApp:
    """An ASGI wrapper that records every HTTP request an app receives (instrumentation,
    not a mock: the app answers as it always does)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            path = scope["path"] + (
                "?" + scope["query_string"].decode() if scope["query_string"] else ""
            )
            with self.lock:
                self.requests.append((scope["method"], path, headers))
        await self.app(scope, receive, send)


class PromptoryBackend:
    """promptory's own server over a git repository, behind the integration-test interface."""

    name = "promptory"

    def __init__(self, repo: Any, url: str, counter: CountingApp, store: Any) -> None:
        self.repo = repo
        self.url = url
        self.counter = counter
        self.store = store
        self.greeting_id = GREETING_ID

    def _commit_and_wait(self, message: str) -> None:
        sha = self.repo.commit(message)
        deadline = time.monotonic() + 5
        while self.store.snapshot.commit != sha:
            if time.monotonic() > deadline:
                raise AssertionError(f"commit {sha} not served within 5 s")
            time.sleep(0.01)

    def update_body(self, prompt_id: str, body: str) -> None:
        """Commit a new body for the greeting (production)."""
        assert prompt_id == GREETING_ID
        write_greeting(self.repo, body, version="1.2.1")
        self._commit_and_wait("change the greeting")

    def delete(self, prompt_id: str) -> None:
        """Commit the removal of the greeting (production)."""
        assert prompt_id == GREETING_ID
        self.repo.remove("myorg/myapp/greeting.md")
        self._commit_and_wait("remove the greeting")

    def count(self, path_part: str = "/api/") -> int:
        with self.counter.lock:
            return sum(1 for _, path, _ in self.counter.requests if path_part in path)

    def conditional_count(self) -> int:
        with self.counter.lock:
            return sum(1 for *_, headers in self.counter.requests if "if-none-match" in headers)


def write_greeting(repo: Any, body: str, version: str = "1.2.0") -> None:
    repo.write_prompt(
        "myorg",
        "myapp",
        "greeting",
        body,
        id=GREETING_ID,
        version=version,
        environment="production",
        role="system",
        model={"default": "gemini-2.0-flash"},
    )


@pytest.fixture
def promptory_backend(tmp_path: Any, api_key: str) -> Iterator[PromptoryBackend]:
    """promptory's server over a repository holding the same prompts as the legacy fixture."""
    from promptory.server.app import ServerSettings, create_app
    from promptory.server.keys import KeyRecord, KeyRing
    from promptory.server.runner import BackgroundServer
    from support.gitrepo import PromptRepo

    repo = PromptRepo(tmp_path / "prompts")
    write_greeting(repo, "{% if formal %}Dear{% else %}Hey{% endif %} {{ user_name }}\n")
    repo.write_prompt(
        "myorg",
        "myapp",
        "greeting",
        "[dev] Hi {{ user_name }}",
        path="myorg/myapp/greeting.dev.md",
        name="greeting",
        environment="development",
    )
    repo.write_prompt(
        "myorg",
        "myapp",
        "meditation_script_relax",
        "Relax, {{ user.display_name }}. {{ vision.identity_statement }}",
        environment="production",
        model={"default": "gemini-2.0-flash", "temperature": 0.7, "fallback": ["x"]},
    )
    repo.commit("prompts")
    keyring = KeyRing([KeyRecord.for_key(API_KEY), KeyRecord.for_key(api_key)])
    app = create_app(
        ServerSettings(repo=str(repo.path), keyring=keyring, poll_interval=0.02, rate_limit=0)
    )
    counter = CountingApp(app)
    with BackgroundServer(counter) as server:
        yield PromptoryBackend(repo, server.url, counter, app.state.store)


@pytest.fixture(params=["legacy", "promptory"])
def backend(request: pytest.FixtureRequest) -> Any:
    """A server holding the greeting (production and development) and a meditation prompt,
    counting the requests it receives: the legacy-behaving one, then promptory's own."""
    if request.param == "legacy":
        return LegacyBackend(request.getfixturevalue("legacy"))
    return request.getfixturevalue("promptory_backend")
