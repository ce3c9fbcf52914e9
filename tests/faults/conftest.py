"""Fixtures for the fault tests: the legacy server, a `FaultProxy` in front of it, clients of
either kind pointed at the proxy, and the fault matrix printed at the end of the run.

The clients come from the SDK suite's drivers (`sdk.conftest`): one interface for
`PromptClient` and `AsyncPromptClient`, every test run once per kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promptory import AsyncPromptClient, PromptClient
from sdk.conftest import API_KEY, AsyncDriver, Driver, SyncDriver
from sdk.legacy_server import LegacyPrompt, LegacyServer, running_legacy_server
from support.summaries import MATRIX, Cell, Matrix

from .proxy import FaultProxy

__all__ = ["PROMPT_ID", "Cell", "ClientFactory", "Matrix"]

PROMPT_ID = "22222222-2222-4222-8222-222222222222"

ClientFactory = Callable[..., Driver]


@pytest.fixture
def legacy() -> Iterator[LegacyServer]:
    """The legacy-behaving server, holding one prompt with the id `PROMPT_ID`."""
    with running_legacy_server(API_KEY) as server:
        server.add(LegacyPrompt(id=PROMPT_ID, name="welcome", body="Welcome, {{ user }}.\n"))
        yield server


@pytest.fixture
def proxy(legacy: LegacyServer) -> Iterator[FaultProxy]:
    """A fault proxy in `pass` mode in front of the legacy server; stopped (no thread left)
    at teardown."""
    host, port = legacy.url.removeprefix("http://").split(":")
    with FaultProxy((host, int(port))) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def client_kind(request: pytest.FixtureRequest) -> str:
    """The kind of client a test runs with: each test runs once per kind."""
    return str(request.param)


@pytest.fixture
def make_client(client_kind: str) -> Iterator[ClientFactory]:
    """A factory of clients of the test's kind, closed at teardown."""
    made: list[Driver] = []

    def make(base_url: str, **options: Any) -> Driver:
        driver: Driver
        if client_kind == "sync":
            driver = SyncDriver(PromptClient(base_url, API_KEY, **options))
        else:
            driver = AsyncDriver(lambda: AsyncPromptClient(base_url, API_KEY, **options))
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.shutdown()


# -- the matrix table ----------------------------------------------------------------------


@pytest.fixture
def matrix() -> Matrix:
    """Where the matrix tests record their cells (printed at the end of the run)."""
    return MATRIX
