"""Fixtures for the fault tests: the legacy server, a `FaultProxy` in front of it, clients of
either kind pointed at the proxy, and the fault matrix printed at the end of the run.

The clients come from the SDK suite's drivers (`sdk.conftest`): one interface for
`PromptClient` and `AsyncPromptClient`, every test run once per kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from promptory import AsyncPromptClient, PromptClient
from sdk.conftest import API_KEY, AsyncDriver, Driver, SyncDriver
from sdk.legacy_server import LegacyPrompt, LegacyServer, running_legacy_server

from .proxy import FaultProxy

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


@dataclass
class Cell:
    """One cell of the matrix: what a client did with one fault in one cache state."""

    outcome: str
    attempts: int
    seconds: float
    passed: bool = False

    def text(self) -> str:
        mark = "" if self.passed else " FAILED"
        return f"{self.outcome} {self.attempts}x {self.seconds:.2f}s{mark}"


@dataclass
class Matrix:
    """The cells recorded by the matrix tests, by (fault, state, client kind)."""

    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    STATES = ("cold", "fresh", "stale")
    KINDS = ("sync", "async")

    def record(self, fault: str, state: str, kind: str, cell: Cell) -> Cell:
        if fault not in self.faults:
            self.faults.append(fault)
        self.cells[fault, state, kind] = cell
        return cell

    def lines(self) -> list[str]:
        columns = [(s, k) for s in self.STATES for k in self.KINDS]
        header = ["fault", *(f"{s}/{k}" for s, k in columns)]
        rows = [header]
        for fault in self.faults:
            row = [fault]
            for state, kind in columns:
                cell = self.cells.get((fault, state, kind))
                row.append(cell.text() if cell is not None else "-")
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)) for row in rows]
        out.insert(1, "  ".join("-" * w for w in widths))
        return out


MATRIX = Matrix()


@pytest.fixture
def matrix() -> Matrix:
    """Where the matrix tests record their cells (printed at the end of the run)."""
    return MATRIX


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MATRIX.cells:
        return
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(
        "cell: outcome, attempts the proxy saw, seconds of the caller's call "
        "(stale: the background revalidation's attempts)"
    )
    for line in MATRIX.lines():
        terminalreporter.write_line(line)
